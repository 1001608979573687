"""TokenizersTokenizer: a tokenizer.json run by the `tokenizers` library, as transformers' fast tokenizers run it.

This serves the text decoders of encoder-decoder checkpoints (BERT WordPiece, GPT-2 byte-level BPE, MBart-50
unigram with language codes): the ids, tokens and text equal those of transformers' tokenizer for the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as Backend
from tokenizers import processors

from ..errors import InputError, TokenizerError
from .base import AddedToken, Tokenizer, to_id_list
from .files import SPECIAL_TOKEN_KEYS, require_files

TOKENIZER_FILE = "tokenizer.json"
# fairseq's MBart-50 target languages, in transformers' order (FAIRSEQ_LANGUAGE_CODES).
MBART50_LANGUAGES = [
    "ar_AR",
    "cs_CZ",
    "de_DE",
    "en_XX",
    "es_XX",
    "et_EE",
    "fi_FI",
    "fr_XX",
    "gu_IN",
    "hi_IN",
    "it_IT",
    "ja_XX",
    "kk_KZ",
    "ko_KR",
    "lt_LT",
    "lv_LV",
    "my_MM",
    "ne_NP",
    "nl_XX",
    "ro_RO",
    "ru_RU",
    "si_LK",
    "tr_TR",
    "vi_VN",
    "zh_CN",
    "af_ZA",
    "az_AZ",
    "bn_IN",
    "fa_IR",
    "he_IL",
    "hr_HR",
    "id_ID",
    "ka_GE",
    "km_KH",
    "mk_MK",
    "ml_IN",
    "mn_MN",
    "mr_IN",
    "pl_PL",
    "ps_AF",
    "pt_XX",
    "sv_SE",
    "sw_KE",
    "ta_IN",
    "te_IN",
    "th_TH",
    "tl_XX",
    "uk_UA",
    "ur_PK",
    "xh_ZA",
    "gl_ES",
    "sl_SI",
]
_MBART50 = ("MBart50Tokenizer", "MBart50TokenizerFast")


class TokenizersTokenizer(Tokenizer):
    """A tokenizer.json tokenizer with transformers' fast-tokenizer behaviour (BERT, GPT-2, MBart-50, ...).

    Encoding and decoding run in the `tokenizers` library; special tokens, added tokens and batching follow
    speechseq's Tokenizer. MBart-50 tokenizers frame encoded text as `[src_lang] ... </s>` like transformers,
    and list their language tokens in `lang_code_to_id` (for forced_bos_token_id).

    Args:
        tokenizer_file: The tokenizer.json file.
        tokenizer_class: transformers class named by tokenizer_config.json, written back when saving.
        src_lang: MBart-50 source language (default en_XX).
        tgt_lang: MBart-50 target language, kept for saving.
        **options: Special tokens (bos_token, ..., mask_token), extra_special_tokens, model_max_length,
            clean_up_tokenization_spaces.
    """

    def __init__(
        self,
        tokenizer_file: str | Path,
        *,
        tokenizer_class: str | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        **options: Any,
    ) -> None:
        """Load tokenizer.json; its added tokens are the tokenizer's added tokens."""
        self.tokenizer_file = Path(tokenizer_file)
        self.backend = _read_backend(self.tokenizer_file)
        self.tokenizer_class = tokenizer_class or "PreTrainedTokenizerFast"
        self.tgt_lang = tgt_lang
        special = {key: options.pop(key) for key in SPECIAL_TOKEN_KEYS if key in options}
        options["added_tokens"] = {
            index: AddedToken(t.content, t.special, t.lstrip, t.rstrip, t.single_word, t.normalized)
            for index, t in self.backend.get_added_tokens_decoder().items()
        }
        super().__init__(self.backend.get_vocab(with_added_tokens=False), special_tokens=special, **options)
        self.lang_code_to_id = {}
        if self.tokenizer_class in _MBART50:
            self.lang_code_to_id = {code: self.convert_tokens_to_ids(code) for code in MBART50_LANGUAGES}
            self.src_lang = src_lang or "en_XX"

    @property
    def src_lang(self) -> str | None:
        """MBart-50 source language; encoding puts its token first and </s> last."""
        return getattr(self, "_src_lang", None)

    @src_lang.setter
    def src_lang(self, lang: str) -> None:
        if lang not in self.lang_code_to_id:
            raise InputError(f"unknown src_lang {lang!r}; valid languages: {', '.join(self.lang_code_to_id)}")
        self._src_lang = lang
        framing = [(lang, self.lang_code_to_id[lang]), (self.eos_token, self.eos_token_id)]
        self.backend.post_processor = processors.TemplateProcessing(
            single=[lang, "$A", self.eos_token],
            pair=[lang, "$A", "$B", self.eos_token],
            special_tokens=framing,
        )

    def tokenize(self, text: str) -> list[str]:
        """Split text into tokens, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of one text, framed by the tokenizer's special tokens unless add_special_tokens is False."""
        if not isinstance(text, str):
            raise InputError(f"encode takes a string, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def _encode_within(self, text: str, add_special_tokens: bool, limit: int) -> list[int]:
        # As transformers' fast tokenizers: cut the text, then let the post-processor frame what is left.
        encoding = self.backend.encode(text, add_special_tokens=False)
        framing = self.backend.post_processor
        special = (
            framing.num_special_tokens_to_add(False) if add_special_tokens and framing is not None else 0
        )
        # A limit below the special tokens alone leaves the text whole, as in transformers.
        if limit >= special:
            encoding.truncate(limit - special)
        return (self.backend.post_process(encoding) if add_special_tokens else encoding).ids

    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        """Turn one sequence of ids back into text."""
        text = self.backend.decode(to_id_list(ids), skip_special_tokens=skip_special_tokens)
        # transformers skips the clean-up for BPE models: it would strip real spaces before punctuation.
        if type(self.backend.model).__name__ == "BPE":
            return text
        return self._finish(text, clean_up_tokenization_spaces)

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        self.backend.save(str(folder / TOKENIZER_FILE))
        return [folder / TOKENIZER_FILE]

    def _config_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"tokenizer_class": self.tokenizer_class}
        if self.lang_code_to_id:
            fields.update(src_lang=self.src_lang, tgt_lang=self.tgt_lang)
        return fields

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]):
        (path,) = require_files(folder, [TOKENIZER_FILE])
        options = cls._common_options(config, SPECIAL_TOKEN_KEYS)
        options.pop("added_tokens")  # tokenizer.json's added tokens are authoritative
        return cls(
            path,
            tokenizer_class=config.get("tokenizer_class"),
            src_lang=config.get("src_lang"),
            tgt_lang=config.get("tgt_lang"),
            **options,
        )


def _read_backend(path: Path) -> Backend:
    if not path.is_file():
        raise TokenizerError(f"{path.name} not found in {str(path.parent)!r}")
    try:
        return Backend.from_file(str(path))
    except Exception as error:  # the tokenizers library raises bare Exceptions for malformed files
        raise TokenizerError(f"cannot read {path.name} in {str(path.parent)!r}: {error}") from error
