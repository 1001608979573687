"""Speech2TextTokenizer: fairseq S2T sentencepiece vocabulary (vocab.json + sentencepiece.bpe.model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import sentencepiece

from ..errors import InputError, TokenizerError
from .base import Tokenizer
from .files import read_json, require_files

VOCAB_FILE = "vocab.json"
SPM_FILE = "sentencepiece.bpe.model"
# Target languages of the MuST-C multilingual models, in the order transformers lists them.
LANGUAGES = {"mustc": ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]}


class Speech2TextTokenizer(Tokenizer):
    """Tokenizer of facebook/s2t-* models, giving the same ids and text as transformers' Speech2TextTokenizer.

    Encoding is `[<lang:xx>] + pieces + [</s>]` (the language tag only for multilingual models); decoding
    joins pieces with sentencepiece and writes special tokens followed by a space.

    Args:
        vocab_file: vocab.json, token -> id in fairseq dictionary order.
        spm_file: sentencepiece.bpe.model.
        do_upper_case: Upper-case decoded text.
        do_lower_case: Lower-case text, special tokens excepted, before encoding (transformers 4.x does;
            5.x ignores the flag when encoding).
        tgt_lang: Target language of a multilingual model; defaults to the first of lang_codes.
        lang_codes: Name of the language set ("mustc") of a multilingual model, else None.
        sp_model_kwargs: Options of sentencepiece.SentencePieceProcessor (e.g. sampling).
        bos_token: Beginning-of-sequence token.
        eos_token: End-of-sequence token, appended on encode.
        pad_token: Padding token.
        unk_token: Unknown token.
        extra_special_tokens: Further special tokens; the `<lang:xx>` tokens are added in front of them.
        **options: added_tokens, model_max_length, clean_up_tokenization_spaces (see Tokenizer).
    """

    def __init__(
        self,
        vocab_file: str | Path,
        spm_file: str | Path,
        *,
        do_upper_case: bool = False,
        do_lower_case: bool = False,
        tgt_lang: str | None = None,
        lang_codes: str | None = None,
        sp_model_kwargs: dict[str, Any] | None = None,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        pad_token: str | None = "<pad>",
        unk_token: str | None = "<unk>",
        extra_special_tokens: list[str] | tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        """Load the vocabulary and sentencepiece model."""
        self.vocab_file, self.spm_file = Path(vocab_file), Path(spm_file)
        self.do_upper_case, self.do_lower_case = bool(do_upper_case), bool(do_lower_case)
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.sp_model = _load_spm(self.spm_file, self.sp_model_kwargs)
        self.lang_codes = lang_codes
        langs = _languages(lang_codes)
        self.lang_code_to_id = {lang: self.sp_model.PieceToId(f"<lang:{lang}>") for lang in langs}
        self.prefix_tokens: list[int] = []
        self._tgt_lang: str | None = None
        super().__init__(
            _read_vocab(self.vocab_file),
            special_tokens={
                "bos_token": bos_token,
                "eos_token": eos_token,
                "pad_token": pad_token,
                "unk_token": unk_token,
            },
            extra_special_tokens=[*(f"<lang:{lang}>" for lang in langs), *extra_special_tokens],
            **options,
        )
        if langs:
            self.tgt_lang = tgt_lang if tgt_lang is not None else langs[0]

    @property
    def tgt_lang(self) -> str | None:
        """Target language; setting it makes encode start with its `<lang:xx>` token."""
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, lang: str) -> None:
        if lang not in self.lang_code_to_id:
            known = ", ".join(self.lang_code_to_id) or "none: this tokenizer has no lang_codes"
            raise InputError(f"unknown tgt_lang {lang!r}; valid target languages: {known}")
        self._tgt_lang = lang
        self.prefix_tokens = [self.lang_code_to_id[lang]]

    def _prepare(self, text: str) -> str:
        # transformers 4.x lower-cases for do_lower_case; 5.x silently stopped (a regression), we keep 4.x.
        return self._lower_outside_special(text) if self.do_lower_case else text

    def _tokenize(self, text: str) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _build_inputs(self, ids: list[int]) -> list[int]:
        return [*self.prefix_tokens, *ids, self.eos_token_id]

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # Special tokens must not reach sentencepiece, which would drop or mangle them.
        specials = set(self.all_special_tokens)
        text, run = "", []
        for token in tokens:
            if token in specials:
                text += self._decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        return (text + self._decode_pieces(run)).strip()

    def _decode_pieces(self, pieces: list[str]) -> str:
        decoded = self.sp_model.decode(pieces)
        return decoded.upper() if self.do_upper_case else decoded

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        vocab_path, spm_path = folder / VOCAB_FILE, folder / SPM_FILE
        with open(vocab_path, "w", encoding="utf-8") as handle:
            json.dump(self._vocab, handle, indent=2)
        if self.spm_file.is_file() and self.spm_file.resolve() != spm_path.resolve():
            shutil.copyfile(self.spm_file, spm_path)
        elif not self.spm_file.is_file():
            spm_path.write_bytes(self.sp_model.serialized_model_proto())
        return [vocab_path, spm_path]

    def _config_fields(self) -> dict[str, Any]:
        return {
            "do_upper_case": self.do_upper_case,
            "do_lower_case": self.do_lower_case,
            "tgt_lang": self.tgt_lang,
            "lang_codes": self.lang_codes,
            "sp_model_kwargs": self.sp_model_kwargs,
        }

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Speech2TextTokenizer:
        vocab_file, spm_file = require_files(folder, [VOCAB_FILE, SPM_FILE])
        return cls(
            vocab_file,
            spm_file,
            do_upper_case=bool(config.get("do_upper_case", False)),
            do_lower_case=bool(config.get("do_lower_case", False)),
            tgt_lang=config.get("tgt_lang"),
            lang_codes=config.get("lang_codes"),
            sp_model_kwargs=config.get("sp_model_kwargs"),
            **cls._common_options(config, ["bos_token", "eos_token", "pad_token", "unk_token"]),
        )


def _languages(lang_codes: str | None) -> list[str]:
    if lang_codes is None:
        return []
    if lang_codes not in LANGUAGES:
        raise InputError(f"unknown lang_codes {lang_codes!r}; valid: {', '.join(LANGUAGES)}")
    return LANGUAGES[lang_codes]


def _load_spm(path: Path, options: dict[str, Any]) -> sentencepiece.SentencePieceProcessor:
    if not path.is_file():
        raise TokenizerError(f"sentencepiece model {path.name!r} not found in {str(path.parent)!r}")
    model = sentencepiece.SentencePieceProcessor(**options)
    try:
        model.Load(str(path))
    except (OSError, RuntimeError) as error:
        raise TokenizerError(
            f"cannot read sentencepiece model {path.name!r} in {str(path.parent)!r}: {error}"
        ) from error
    return model


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = read_json(path, "vocabulary")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(f"{path.name} in {str(path.parent)!r} is not a token -> id mapping")
    return vocab
