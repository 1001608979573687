"""Speech2Text2Tokenizer: fastBPE vocabulary (vocab.json + merges.txt) of the Speech2Text2 decoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from .base import Tokenizer, to_id_list
from .files import read_json, require_files, write_json

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
END_OF_WORD = "</w>"  # fastBPE's marker on the last symbol of a word, in merges.txt only
CONTINUATION = "@@ "  # what a non-final subword ends with once pieces are joined by spaces


class Speech2Text2Tokenizer(Tokenizer):
    """fastBPE tokenizer, identical to transformers 4.x's Speech2Text2Tokenizer (removed from transformers 5).

    Encoding splits on whitespace and applies BPE merges per word; no special tokens are added. Decoding
    joins tokens with spaces and deletes "@@ ". Without merges.txt the tokenizer can only decode.

    Args:
        vocab_file: vocab.json, token -> id (fairseq dictionary order, subwords ending in "@@").
        merges_file: merges.txt, one "left right [count]" merge per line, best first.
        do_lower_case: Lower-case text before encoding.
        bos_token: Beginning-of-sequence token.
        pad_token: Padding token.
        eos_token: End-of-sequence token.
        unk_token: Unknown token.
        **options: extra_special_tokens, added_tokens, model_max_length, clean_up_tokenization_spaces.
    """

    def __init__(
        self,
        vocab_file: str | Path,
        merges_file: str | Path | None = None,
        *,
        do_lower_case: bool = False,
        bos_token: str | None = "<s>",
        pad_token: str | None = "<pad>",
        eos_token: str | None = "</s>",
        unk_token: str | None = "<unk>",
        **options: Any,
    ) -> None:
        """Load the vocabulary and, if given, the merges."""
        self.vocab_file = Path(vocab_file)
        self.merges_file = None if merges_file is None else Path(merges_file)
        self.do_lower_case = bool(do_lower_case)
        self.bpe_ranks = None if self.merges_file is None else _read_merges(self.merges_file)
        self._cache: dict[str, str] = {}
        vocab = read_json(self.vocab_file, "vocabulary")
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise TokenizerError(
                f"{self.vocab_file.name} in {str(self.vocab_file.parent)!r} is not a token -> id mapping"
            )
        special = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "unk_token": unk_token,
            "pad_token": pad_token,
        }
        super().__init__(vocab, special_tokens=special, **options)

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids of vocab.json."""
        return len(self._vocab_ids)

    def bpe(self, word: str) -> str:
        """Split one word into subwords joined by "@@ " (e.g. "hello" -> "hel@@ lo")."""
        if word in self._cache:
            return self._cache[word]
        symbols = [*word[:-1], word[-1] + END_OF_WORD]
        if len(symbols) < 2:
            return word  # fastBPE leaves one-character words untouched (no end marker, no merges)
        ranks = self.bpe_ranks or {}
        while len(symbols) > 1:
            pairs = set(zip(symbols, symbols[1:], strict=False))
            best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            symbols = _merge(symbols, best)
        joined = " ".join(symbols)
        if joined.endswith(END_OF_WORD):
            joined = joined.replace(END_OF_WORD, "")
        self._cache[word] = joined.replace(" ", CONTINUATION)
        return self._cache[word]

    def _prepare(self, text: str) -> str:
        return self._lower_outside_special(text) if self.do_lower_case else text

    def _tokenize(self, text: str) -> list[str]:
        if self.bpe_ranks is None:
            folder = str(self.vocab_file.parent)
            raise TokenizerError(
                f"no {MERGES_FILE} was loaded from {folder!r}: this tokenizer can only decode"
            )
        if self.do_lower_case:
            text = text.lower()
        return [piece for word in text.split() for piece in self.bpe(word).split(" ")]

    def _tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(" ".join(tokens).split(CONTINUATION))

    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        """Turn one sequence of ids back into text with transformers 4.x's rules (this class is 4.x-only).

        Unlike 5.x, 4.x also drops unknown ids (they read as unk_token) when skipping special tokens, and
        decodes non-special added tokens on their own, joined to the rest by spaces.
        """
        tokens = self.convert_ids_to_tokens(to_id_list(ids), skip_special_tokens=skip_special_tokens)
        specials = set(self.all_special_tokens)
        if skip_special_tokens:
            tokens = [token for token in tokens if token not in specials]
        beyond_vocab = {
            t for t in self._extra_special_tokens if self.convert_tokens_to_ids(t) >= self.vocab_size
        }
        standalone = (set(self._added_ids) - specials) | beyond_vocab
        parts: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token not in standalone:
                run.append(token)
                continue
            if run and self._tokens_to_string(run):  # 4.x drops a run that decodes to nothing here...
                parts.append(self._tokens_to_string(run))
            parts.append(token)
            run = []
        if run:  # ...but not at the end
            parts.append(self._tokens_to_string(run))
        return self._finish(" ".join(parts), clean_up_tokenization_spaces)

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        vocab_path = folder / VOCAB_FILE
        write_json(vocab_path, self._vocab, indent=2, sort_keys=True, ensure_ascii=False)
        if self.bpe_ranks is None:
            return [vocab_path]
        merges_path = folder / MERGES_FILE
        merges = sorted(self.bpe_ranks.items(), key=lambda item: item[1])
        # One line per merge with a final newline, so the file survives the last-line quirk of _read_merges.
        merges_path.write_text("".join(" ".join(pair) + "\n" for pair, _ in merges), encoding="utf-8")
        return [vocab_path, merges_path]

    def _config_fields(self) -> dict[str, Any]:
        return {"do_lower_case": self.do_lower_case}

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Speech2Text2Tokenizer:
        (vocab_file,) = require_files(folder, [VOCAB_FILE])
        merges_file = folder / MERGES_FILE
        return cls(
            vocab_file,
            merges_file if merges_file.is_file() else None,
            do_lower_case=bool(config.get("do_lower_case", False)),
            **cls._common_options(config, ["bos_token", "pad_token", "eos_token", "unk_token"]),
        )


def _read_merges(path: Path) -> dict[tuple[str, ...], int]:
    """Read merge ranks, keeping transformers' quirk: the text after the last newline is always dropped."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerError(f"cannot read {path.name!r} in {str(path.parent)!r}: {error}") from error
    return {tuple(line.split()[:2]): rank for rank, line in enumerate(lines)}


def _merge(symbols: list[str], pair: tuple[str, ...]) -> list[str]:
    """Merge every non-overlapping occurrence of pair, scanning left to right."""
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged
