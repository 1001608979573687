"""Tokenizer base class: special and added tokens, id conversion, batching and saving, written once.

The behaviour mirrors transformers' slow-tokenizer base class (`PythonBackend`, 5.x) so that the subclasses in
this package give the same ids and strings as transformers' own classes for the same files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, TokenizerError
from . import files

# transformers' VERY_LARGE_INTEGER: the model_max_length it reports and saves when none is configured.
NO_MAX_LENGTH = int(1e30)


@dataclass
class AddedToken:
    """A token matched whole in the input text before the model's own splitting (transformers' AddedToken).

    Attributes:
        content: The token text.
        special: Whether it counts as special (skipped by skip_special_tokens).
        lstrip: Strip whitespace on its left when matched.
        rstrip: Strip whitespace on its right when matched.
        single_word: Only match it as a whole word.
        normalized: Whether the model's normalisation applies to it.
    """

    content: str
    special: bool = False
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = True


def to_id_list(ids: Any) -> list[int]:
    """Turn an int, list, 1-D numpy array or 1-D torch tensor of ids into a list of ints."""
    if hasattr(ids, "tolist"):  # numpy arrays and torch tensors, without importing either
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if (
        isinstance(ids, str)
        or not isinstance(ids, Sequence)
        or any(isinstance(i, (list, tuple)) for i in ids)
    ):
        raise InputError(
            f"expected one sequence of token ids, got {type(ids).__name__}; use batch_decode for a batch"
        )
    return [int(i) for i in ids]


class Tokenizer:
    """Shared machinery of the speechseq tokenizers; subclasses supply the model-specific hooks.

    Subclasses implement `_tokenize` (text without added tokens -> token strings), `_tokens_to_string`,
    `_save_vocabulary` and `_config_fields`, and may override `_build_inputs` (special tokens around ids).
    """

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        special_tokens: dict[str, str | None],
        extra_special_tokens: Iterable[str] = (),
        added_tokens: dict[int, AddedToken] | None = None,
        model_max_length: int | None = None,
        clean_up_tokenization_spaces: bool = False,
    ) -> None:
        """Set up vocabulary and special tokens.

        Args:
            vocab: Base vocabulary, token -> id.
            special_tokens: Named special tokens (`bos_token`, ..., and model-specific `*_token` keys).
            extra_special_tokens: Further special tokens (transformers' additional/extra special tokens).
            added_tokens: Added tokens by id, as saved in tokenizer_config.json's `added_tokens_decoder`.
            model_max_length: Longest input the model takes; None means unlimited.
            clean_up_tokenization_spaces: Remove spaces before punctuation when decoding.
        """
        self._vocab = dict(vocab)
        self._vocab_ids = {index: token for token, index in self._vocab.items()}
        order = {key: i for i, key in enumerate(files.SPECIAL_TOKEN_KEYS)}
        named = sorted(special_tokens.items(), key=lambda item: order.get(item[0], len(order)))
        self._special_tokens = {key: value for key, value in named if value is not None}
        self._extra_special_tokens = list(dict.fromkeys(extra_special_tokens))
        self._added: dict[int, AddedToken] = {}
        self._added_ids: dict[str, int] = {}
        self.model_max_length = NO_MAX_LENGTH if model_max_length is None else int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        loaded = added_tokens or {}  # copied: the caller's AddedToken objects stay untouched
        self._add_tokens([AddedToken(**asdict(t)) for t in loaded.values()], list(loaded))
        # Like transformers, special tokens are also registered as added tokens (ids beyond the vocab if new).
        specials = [AddedToken(t, special=True, normalized=False) for t in self.all_special_tokens]
        self._add_tokens([t for t in specials if t.content not in self._added_ids])

    # ----- hooks -----
    def _tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def _tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def _build_inputs(self, ids: list[int]) -> list[int]:
        return ids

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        raise NotImplementedError

    def _config_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    # ----- vocabulary and special tokens -----
    def _add_tokens(self, tokens: list[AddedToken], ids: list[int] | None = None) -> None:
        """Register added tokens; a token already known keeps its id, a new one gets the next free id."""
        vocab = self.get_vocab()
        next_id = len(vocab)
        for k, token in enumerate(tokens):
            if ids is not None:
                index = ids[k]
            elif token.content in vocab:
                index = vocab[token.content]
            else:
                index, next_id = next_id, next_id + 1
                vocab[token.content] = index
            self._added[index] = token
            self._added_ids[token.content] = index
        contents = sorted(self._added_ids, key=len, reverse=True)
        self._added_pattern = re.compile("|".join(map(re.escape, contents))) if contents else None

    def get_vocab(self) -> dict[str, int]:
        """Return the full vocabulary, added tokens included, token -> id."""
        return {**self._vocab, **{token.content: index for index, token in sorted(self._added.items())}}

    def __len__(self) -> int:
        return len(self.get_vocab())

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, added tokens excluded (as transformers counts it)."""
        return len(self._vocab)

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens, then extra special tokens, without repeats."""
        return list(dict.fromkeys([*self._special_tokens.values(), *self._extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of all_special_tokens, in the same order."""
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def added_tokens(self) -> dict[int, AddedToken]:
        """Added tokens by id, sorted by id."""
        return dict(sorted(self._added.items()))

    def _special_id(self, key: str) -> int | None:
        token = self._special_tokens.get(key)
        return None if token is None else self.convert_tokens_to_ids(token)

    bos_token = property(
        lambda self: self._special_tokens.get("bos_token"), doc="Beginning-of-sequence token."
    )
    eos_token = property(lambda self: self._special_tokens.get("eos_token"), doc="End-of-sequence token.")
    unk_token = property(lambda self: self._special_tokens.get("unk_token"), doc="Unknown token.")
    pad_token = property(lambda self: self._special_tokens.get("pad_token"), doc="Padding token.")
    bos_token_id = property(lambda self: self._special_id("bos_token"), doc="Id of bos_token.")
    eos_token_id = property(lambda self: self._special_id("eos_token"), doc="Id of eos_token.")
    unk_token_id = property(lambda self: self._special_id("unk_token"), doc="Id of unk_token.")
    pad_token_id = property(lambda self: self._special_id("pad_token"), doc="Id of pad_token.")

    # ----- conversions -----
    def _token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token, self._vocab.get(self.unk_token) if self.unk_token else None)

    def _id_to_token(self, index: int) -> str:
        if index in self._added:
            return self._added[index].content
        return self._vocab_ids.get(index, self.unk_token)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> Any:
        """Map a token or a list of tokens to ids; unknown tokens map to unk_token's id."""
        if isinstance(tokens, str):
            return self._added_ids[tokens] if tokens in self._added_ids else self._token_to_id(tokens)
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Map an id to its token, or a sequence of ids to a list of tokens (unknown ids give unk_token)."""
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(index) for index in to_id_list(ids) if index not in skip]

    # ----- encoding -----
    def _split_on_added(self, text: str) -> list[str]:
        """Cut text around added tokens, leftmost longest match first, dropping empty pieces."""
        if self._added_pattern is None:
            return [text] if text else []
        pieces = []
        start = 0
        for match in self._added_pattern.finditer(text):
            pieces += [text[start : match.start()], match.group()]
            start = match.end()
        return [piece for piece in [*pieces, text[start:]] if piece]

    def _prepare(self, text: str) -> str:
        """Hook applied to the raw text before added tokens are matched."""
        return text

    def _lower_outside_special(self, text: str) -> str:
        """Lower-case text but not special tokens, as transformers 4.x does for do_lower_case."""
        normalized = [t.content for t in self._added.values() if not t.special and t.normalized]
        protected = sorted({*self.all_special_tokens, *normalized}, key=len, reverse=True)
        if not protected:
            return text.lower()
        parts = re.split("(" + "|".join(map(re.escape, protected)) + ")", text)
        return "".join(part if i % 2 else part.lower() for i, part in enumerate(parts))

    def tokenize(self, text: str) -> list[str]:
        """Split text into tokens; added tokens are matched whole and honour their strip flags."""
        pieces = self._split_on_added(self._prepare(text))
        for i, piece in enumerate(pieces):
            if piece not in self._added_ids:
                continue
            token = self._added[self._added_ids[piece]]
            left = pieces[i - 1] if i > 0 else None
            right = pieces[i + 1] if i < len(pieces) - 1 else None
            if token.rstrip and right:
                pieces[i + 1] = right.lstrip()
            if token.lstrip and left:
                pieces[i - 1] = left.rstrip()
            # Neighbours as they were before stripping decide, the stripped text is what gets joined.
            if token.single_word and left and left[-1] != " ":
                pieces[i - 1], pieces[i] = pieces[i - 1] + piece, ""
            elif token.single_word and right and right[0] != " ":
                pieces[i + 1], pieces[i] = piece + pieces[i + 1], ""
        specials = set(self.all_special_tokens)
        tokens: list[str] = []
        for piece in filter(None, pieces):
            tokens += [piece] if piece in self._added_ids or piece in specials else self._tokenize(piece)
        return tokens

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of one text, with the model's special tokens unless add_special_tokens is False."""
        if not isinstance(text, str):
            raise InputError(f"encode takes a string, got {type(text).__name__}")
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        return self._build_inputs(ids) if add_special_tokens else ids

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Encode one text or a batch into `input_ids` and `attention_mask`, as transformers' tokenizers do.

        Args:
            text: A string, or a list of strings for a batch.
            add_special_tokens: Add the model's special tokens (e.g. eos, language tag).
            padding: True or "longest" right-pads a batch to its longest sequence, "max_length" to max_length,
                with pad_token_id (mask 0 there); False or "do_not_pad" leaves lengths as they are.
            truncation: True, "longest_first" or "only_first" cut each text so that it fits max_length (or
                model_max_length) with its special tokens; False or "do_not_truncate" keeps it whole.
            max_length: The length that padding="max_length" and truncation use.
            return_tensors: None for lists, "pt" for torch tensors, "np" for numpy arrays.

        Returns:
            {"input_ids": ..., "attention_mask": ...}, (B, T) for a batch, (T,) lists or (1, T) tensors otherwise.
        """
        batch = [text] if isinstance(text, str) else text
        if not isinstance(batch, (list, tuple)) or not all(isinstance(t, str) for t in batch):
            raise InputError("text must be a string or a list of strings")
        pad_to, limit = self._lengths(padding, truncation, max_length)
        if limit is None:
            ids = [self.encode(t, add_special_tokens) for t in batch]
        else:
            ids = [self._encode_within(t, add_special_tokens, limit) for t in batch]
        masks = [[1] * len(row) for row in ids]
        if pad_to is not None and ids:
            # To the longest row, or to max_length, where a longer row (not truncated) stays as it is.
            target = pad_to or max(map(len, ids))
            if self.pad_token_id is None and any(len(row) < target for row in ids):
                raise InputError("this tokenizer has no pad token, so it cannot pad; pass padding=False")
            ids = [row + [self.pad_token_id] * max(0, target - len(row)) for row in ids]
            masks = [row + [0] * max(0, target - len(row)) for row in masks]
        if isinstance(text, str) and return_tensors is None:
            ids, masks = ids[0], masks[0]
        return {
            "input_ids": _as_tensor(ids, return_tensors),
            "attention_mask": _as_tensor(masks, return_tensors),
        }

    def _lengths(self, padding, truncation, max_length) -> tuple[int | None, int | None]:
        """Return the length to pad to (0: the longest; None: no padding) and the truncation limit (or None)."""
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)):
            raise InputError(f"max_length must be an int, got {max_length!r}")
        if max_length is not None and max_length < 1:
            raise InputError(f"max_length must be >= 1, got {max_length}")
        configured = self.model_max_length if self.model_max_length != NO_MAX_LENGTH else None
        if padding in (True, "longest"):
            pad_to = 0
        elif padding in (False, None, "do_not_pad"):
            pad_to = None
        elif padding == "max_length":
            pad_to = max_length if max_length is not None else configured
            if pad_to is None:
                raise InputError(
                    'padding="max_length" needs max_length (the tokenizer sets no model_max_length)'
                )
        else:
            raise InputError(
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
            )
        if truncation in (True, "longest_first", "only_first"):
            limit = max_length if max_length is not None else configured
        elif truncation in (False, None, "do_not_truncate"):
            limit = None
        else:
            raise InputError(
                f"truncation must be True, False, 'longest_first', 'only_first' or 'do_not_truncate', "
                f"got {truncation!r}"
            )
        return pad_to, limit

    def _encode_within(self, text: str, add_special_tokens: bool, limit: int) -> list[int]:
        """Encode text cut at its end so that, special tokens included, it holds at most `limit` ids."""
        ids = self.encode(text, add_special_tokens=False)
        room = limit - (len(self._build_inputs([])) if add_special_tokens else 0)
        # A limit below the special tokens alone still keeps them, as in transformers.
        ids = ids[: max(0, room)]
        return self._build_inputs(ids) if add_special_tokens else ids

    # ----- decoding -----
    def clean_up_tokenization(self, text: str) -> str:
        """Remove the spaces a word-level tokenizer leaves before punctuation and English contractions."""
        for old, new in _CLEAN_UP:
            text = text.replace(old, new)
        return text

    def _finish(self, text: str, clean_up_tokenization_spaces: bool | None) -> str:
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        """Turn one sequence of ids (list, 1-D tensor or array) back into text."""
        tokens = self.convert_ids_to_tokens(to_id_list(ids), skip_special_tokens=skip_special_tokens)
        return self._finish(self._tokens_to_string(tokens), clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """Decode each row of a (B, T) tensor/array or a list of id lists."""
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    # ----- saving -----
    def save_pretrained(self, folder: str | Path) -> list[Path]:
        """Write the vocabulary files, tokenizer_config.json and special_tokens_map.json into folder.

        Only these files are written; anything else in the folder is left alone. transformers' own class
        for this tokenizer loads the result.

        Returns:
            The paths written.
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise TokenizerError(f"cannot save tokenizer: {str(folder)!r} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        extra = (
            {"additional_special_tokens": self._extra_special_tokens} if self._extra_special_tokens else {}
        )
        special_map = {**self._special_tokens, **extra}
        config = {
            "tokenizer_class": type(self).__name__,
            "added_tokens_decoder": {str(i): asdict(t) for i, t in sorted(self._added.items())},
            **special_map,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            **self._config_fields(),
        }
        files.write_json(folder / files.CONFIG_FILE, config, indent=2, ensure_ascii=False)
        files.write_json(folder / files.SPECIAL_TOKENS_FILE, special_map, indent=2, ensure_ascii=False)
        return [
            *self._save_vocabulary(folder),
            folder / files.CONFIG_FILE,
            folder / files.SPECIAL_TOKENS_FILE,
        ]

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any):
        """Load a tokenizer from a folder holding its files and tokenizer_config.json.

        Args:
            folder: Folder written by transformers' or speechseq's save_pretrained (or a hub snapshot).
            **overrides: Settings that replace those of tokenizer_config.json (e.g. tgt_lang="de").
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise TokenizerError(f"tokenizer folder {str(folder)!r} does not exist")
        return cls._from_config(folder, {**files.read_tokenizer_config(folder), **overrides})

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]):
        raise NotImplementedError

    @staticmethod
    def _common_options(config: dict[str, Any], token_keys: Iterable[str]) -> dict[str, Any]:
        """Pick the constructor options every tokenizer takes from a config read by read_tokenizer_config."""
        options = files.common_options(config, token_keys)
        options["added_tokens"] = {i: AddedToken(**fields) for i, fields in options["added_tokens"].items()}
        return options


_CLEAN_UP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m")]
_CLEAN_UP += [(" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


def _as_tensor(rows: list, return_tensors: str | None) -> Any:
    if return_tensors is None:
        return rows
    if return_tensors not in ("pt", "np"):
        raise InputError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
    if len({len(row) for row in rows}) > 1:
        raise InputError("sequences of different lengths cannot form a tensor; pass padding=True")
    import numpy as np

    array = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(rows[0]) if rows else 0)
    if return_tensors == "np":
        return array
    import torch

    return torch.from_numpy(array)
