"""MBart50Tokenizer: MBart-50's sentencepiece model with fairseq ids and 52 language codes (no tokenizer.json needed)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import AddedToken, Tokenizer
from .fast import MBART50_LANGUAGES
from .files import require_files
from .sentencepiece import SPM_FILE, _load_spm

# fairseq's dictionary puts these first; sentencepiece's own <unk>, <s>, </s> (ids 0-2) are not used.
_FAIRSEQ = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
_OFFSET = 1  # fairseq id = sentencepiece id + 1
_SPECIAL_KEYS = ["eos_token", "sep_token", "cls_token", "unk_token", "pad_token", "mask_token"]


class MBart50Tokenizer(Tokenizer):
    """Tokenizer of MBart-50 decoders (e.g. facebook/wav2vec2-xls-r-300m-en-to-15), giving the ids and text of
    transformers 4.x's sentencepiece MBart50Tokenizer.

    Ids are fairseq's: <s> <pad> </s> <unk>, the sentencepiece pieces shifted by one, the 52 language codes,
    then <mask>. Encoding frames text as `[src_lang] pieces </s>`; `lang_code_to_id` gives the language ids
    that generation forces as the first token.

    Args:
        spm_file: sentencepiece.bpe.model.
        src_lang: Language code put in front of encoded text (default en_XX).
        tgt_lang: Target language code, kept for saving.
        sp_model_kwargs: Options of sentencepiece.SentencePieceProcessor.
        **options: Special tokens (eos_token, sep_token, cls_token, unk_token, pad_token, mask_token),
            extra_special_tokens, added_tokens, model_max_length, clean_up_tokenization_spaces.
    """

    def __init__(
        self,
        spm_file: str | Path,
        *,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        sp_model_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Load the sentencepiece model and lay out fairseq's vocabulary."""
        self.spm_file = Path(spm_file)
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.sp_model = _load_spm(self.spm_file, self.sp_model_kwargs)
        size = self.sp_model.GetPieceSize()
        vocab = {self.sp_model.IdToPiece(i): i + _OFFSET for i in range(3, size)}
        vocab.update(_FAIRSEQ)
        self.lang_code_to_id = {code: size + _OFFSET + i for i, code in enumerate(MBART50_LANGUAGES)}
        vocab.update(self.lang_code_to_id)
        vocab["<mask>"] = size + _OFFSET + len(MBART50_LANGUAGES)
        special = {key: options.pop(key, None) for key in _SPECIAL_KEYS}
        defaults = dict(
            eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>"
        )
        special = {key: special[key] or defaults.get(key) for key in _SPECIAL_KEYS}
        special["mask_token"] = special["mask_token"] or "<mask>"
        extra = [*options.pop("extra_special_tokens", [])]
        extra += [code for code in MBART50_LANGUAGES if code not in extra]
        added = options.pop("added_tokens", None) or {vocab["<mask>"]: _mask(special["mask_token"])}
        super().__init__(
            vocab, special_tokens=special, extra_special_tokens=extra, added_tokens=added, **options
        )
        self.tgt_lang = tgt_lang
        self.src_lang = src_lang or "en_XX"

    @property
    def src_lang(self) -> str:
        """Source language; encoding puts its token first and </s> last."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, lang: str) -> None:
        if lang not in self.lang_code_to_id:
            raise InputError(f"unknown src_lang {lang!r}; valid languages: {', '.join(self.lang_code_to_id)}")
        self._src_lang = lang

    def _tokenize(self, text: str) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _build_inputs(self, ids: list[int]) -> list[int]:
        return [self.lang_code_to_id[self.src_lang], *ids, self.eos_token_id]

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # transformers 4.x: special tokens are glued to the text before them, with one space ahead of a run.
        specials = set(self.all_special_tokens)
        text, run, after_special = "", [], False
        for token in tokens:
            if token in specials:
                text += ("" if after_special else " ") + self.sp_model.decode(run) + token
                run, after_special = [], True
            else:
                run.append(token)
                after_special = False
        return (text + self.sp_model.decode(run)).strip()

    def _save_vocabulary(self, folder: Path) -> list[Path]:
        target = folder / SPM_FILE
        if self.spm_file.is_file() and self.spm_file.resolve() != target.resolve():
            shutil.copyfile(self.spm_file, target)
        elif not self.spm_file.is_file():
            target.write_bytes(self.sp_model.serialized_model_proto())
        return [target]

    def _config_fields(self) -> dict[str, Any]:
        return {"src_lang": self.src_lang, "tgt_lang": self.tgt_lang, "sp_model_kwargs": self.sp_model_kwargs}

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> MBart50Tokenizer:
        (spm_file,) = require_files(folder, [SPM_FILE])
        return cls(
            spm_file,
            src_lang=config.get("src_lang"),
            tgt_lang=config.get("tgt_lang"),
            sp_model_kwargs=config.get("sp_model_kwargs"),
            **cls._common_options(config, _SPECIAL_KEYS),
        )


def _mask(content: str) -> AddedToken:
    # transformers gives <mask> lstrip, so "a <mask>" encodes without a separate space piece.
    return AddedToken(content, special=True, lstrip=True, normalized=False)
