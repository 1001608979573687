"""Wav2Vec2CTCTokenizer: character vocabulary of CTC models (wav2vec2, HuBERT, W2V-BERT), with CTC decoding."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from ..errors import InputError, TokenizerError
from .base import AddedToken, Tokenizer, to_id_list
from .files import read_json, require_files, write_json

VOCAB_FILE = "vocab.json"


@dataclass
class CTCDecoding:
    """Text of a CTC output with the frames each character and word spans.

    Attributes:
        text: The decoded text.
        char_offsets: One {"char", "start_offset", "end_offset"} per emitted character, end exclusive, in frames.
        word_offsets: One {"word", "start_offset", "end_offset"} per word, in frames.

    Args:
        vocab_file: vocab.json, token -> id, or language -> (token -> id) for multilingual (MMS) models.
        word_delimiter_token: Token standing for a space between words.
        replace_word_delimiter_char: What the delimiter becomes in decoded text.
        do_lower_case: Upper-case text before encoding (the vocabularies are upper-case) and lower-case
            decoded text, as transformers does.
        target_lang: Language whose vocabulary to use from a multilingual vocab.json.
        bos_token: Beginning-of-sequence token.
        eos_token: End-of-sequence token.
        unk_token: Unknown token.
        pad_token: Padding token, also the CTC blank.
        **options: extra_special_tokens, added_tokens, model_max_length, clean_up_tokenization_spaces.
    """

    text: str
    char_offsets: list[dict[str, Any]]
    word_offsets: list[dict[str, Any]]


class Wav2Vec2CTCTokenizer(Tokenizer):
    """Character tokenizer of CTC models, identical to transformers' Wav2Vec2CTCTokenizer.

    The pad token doubles as the CTC blank. Encoding maps spaces to the word delimiter and adds no special
    tokens; decoding collapses repeats, drops blanks and turns the delimiter back into a space.
    """

    def __init__(
        self,
        vocab_file: str | Path,
        *,
        word_delimiter_token: str = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        unk_token: str | None = "<unk>",
        pad_token: str | None = "<pad>",
        **options: Any,
    ) -> None:
        """Load the vocabulary."""
        self.vocab_file = Path(vocab_file)
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = bool(do_lower_case)
        self.vocabs = read_json(self.vocab_file, "vocabulary")
        self.target_lang = target_lang
        special = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "unk_token": unk_token,
            "pad_token": pad_token,
        }
        super().__init__(
            self._language_vocab(target_lang),
            special_tokens={**special, "word_delimiter_token": word_delimiter_token},
            **options,
        )
        self._add_multichar_tokens()

    def _language_vocab(self, lang: str | None) -> dict[str, int]:
        vocabs = self.vocabs
        nested = isinstance(vocabs, dict) and any(isinstance(v, dict) for v in vocabs.values())
        if lang is None and nested:
            raise InputError(
                f"vocab.json holds one vocabulary per language; pass target_lang, one of: {', '.join(vocabs)}"
            )
        if lang is not None and not nested:
            raise InputError(
                f"target_lang {lang!r} given but vocab.json is not a multilingual (nested) vocabulary"
            )
        if lang is not None and lang not in vocabs:
            raise InputError(f"unknown target_lang {lang!r}; valid: {', '.join(vocabs)}")
        vocab = vocabs[lang] if lang is not None else vocabs
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise TokenizerError(
                f"{self.vocab_file.name} in {str(self.vocab_file.parent)!r} is not a token -> id mapping"
            )
        return vocab

    def _add_multichar_tokens(self) -> None:
        # Multi-character entries (<pad>, <s>, ...) must be matched whole, not split into characters.
        tokens = [t for t in self._vocab if len(t) > 1]
        self._add_tokens([AddedToken(t, lstrip=True, rstrip=True, normalized=False) for t in tokens])

    def set_target_lang(self, target_lang: str) -> None:
        """Switch to another language's vocabulary of a multilingual vocab.json."""
        self._vocab = self._language_vocab(target_lang)
        self._vocab_ids = {index: token for token, index in self._vocab.items()}
        self.target_lang = target_lang
        # Ids of the new vocabulary take precedence over added tokens left from the old one.
        for index in [i for i in self._added if i in self._vocab_ids]:
            self._added_ids.pop(self._added.pop(index).content, None)
        self._add_multichar_tokens()

    @property
    def word_delimiter_token(self) -> str | None:
        """Token standing for a space between words."""
        return self._special_tokens.get("word_delimiter_token")

    @property
    def word_delimiter_token_id(self) -> int | None:
        """Id of word_delimiter_token."""
        return self._special_id("word_delimiter_token")

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids of the (selected language's) vocabulary."""
        return len(self._vocab_ids)

    def _id_to_token(self, index: int) -> str:
        # The vocabulary wins over added tokens, which matters after set_target_lang.
        if index in self._vocab_ids:
            return self._vocab_ids[index]
        return self._added[index].content if index in self._added else self.unk_token

    def _tokenize(self, text: str) -> list[str]:
        if self.do_lower_case:
            text = text.upper()
        return list(text.replace(" ", self.word_delimiter_token))

    def decode(
        self,
        ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        group_tokens: bool = True,
    ) -> str:
        """Decode one CTC id sequence (frame-level ids or already collapsed ones).

        With skip_special_tokens, special tokens, the blank included, are removed before repeats are
        grouped, so "A <pad> A" gives "A" (transformers' order).
        """
        return self.decode_with_offsets(
            ids, skip_special_tokens, clean_up_tokenization_spaces, group_tokens
        ).text

    def decode_with_offsets(
        self,
        ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        group_tokens: bool = True,
    ) -> CTCDecoding:
        """Decode one sequence of frame ids and report the frames of each character and word.

        Offsets count frames of the sequence after special tokens were skipped, as transformers does;
        seconds = offset * inputs_to_logits_ratio / sampling_rate.
        """
        tokens = self.convert_ids_to_tokens(to_id_list(ids))
        if skip_special_tokens:
            skipped = set(self.all_special_tokens) - {self.word_delimiter_token}
            tokens = [token for token in tokens if token not in skipped]
        runs = [(t, len(list(g))) for t, g in groupby(tokens)] if group_tokens else [(t, 1) for t in tokens]
        chars = []
        end = 0
        for token, count in runs:
            start, end = end, end + count
            if token != self.pad_token:
                char = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
                chars.append({"char": char, "start_offset": start, "end_offset": end})
        text = "".join(c["char"] for c in chars).strip()
        text = self._finish(text.lower() if self.do_lower_case else text, clean_up_tokenization_spaces)
        return CTCDecoding(text, chars, self._word_offsets(chars))

    def _word_offsets(self, chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
        words: list[dict[str, Any]] = []
        in_word = False
        for char in chars:
            if char["char"] == self.replace_word_delimiter_char:
                in_word = False
            elif in_word:
                words[-1]["word"] += char["char"]
                words[-1]["end_offset"] = char["end_offset"]
            else:
                words.append(
                    {
                        "word": char["char"],
                        "start_offset": char["start_offset"],
                        "end_offset": char["end_offset"],
                    }
                )
                in_word = True
        return words

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        path = folder / VOCAB_FILE
        write_json(path, self.vocabs, indent=2, sort_keys=True, ensure_ascii=False)
        return [path]

    def _config_fields(self) -> dict[str, Any]:
        return {
            "replace_word_delimiter_char": self.replace_word_delimiter_char,
            "do_lower_case": self.do_lower_case,
            "target_lang": self.target_lang,
        }

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Wav2Vec2CTCTokenizer:
        (vocab_file,) = require_files(folder, [VOCAB_FILE])
        keys = ["bos_token", "eos_token", "unk_token", "pad_token", "word_delimiter_token"]
        return cls(
            vocab_file,
            replace_word_delimiter_char=config.get("replace_word_delimiter_char", " "),
            do_lower_case=bool(config.get("do_lower_case", False)),
            target_lang=config.get("target_lang"),
            **cls._common_options(config, keys),
        )
