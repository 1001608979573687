"""Transcribe a list of files with one model: decode audio, batch by length, generate, detokenize."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import AudioError, InputError


@dataclass
class FileResult:
    """The text of one file, or why it has none."""

    file: str
    text: str = ""
    error: str | None = None


def transcribe_files(
    paths,
    model_name_or_path,
    batch_size: int = 8,
    tgt_lang: str | None = None,
    device="cpu",
    dtype="float32",
    **generate_options,
) -> list[FileResult]:
    """Transcribe (or, with tgt_lang, translate) files; unreadable files get an error instead of text."""
    from . import load_audio, load_model, load_processor

    model = load_model(model_name_or_path, device=device, dtype=dtype)
    processor = load_processor(model_name_or_path)
    rate = processor.feature_extractor.sampling_rate
    if tgt_lang is not None:
        generate_options["forced_bos_token_id"] = _language_id(processor.tokenizer, tgt_lang)
    results = [FileResult(str(path)) for path in paths]
    audio = {}
    for index, result in enumerate(results):
        try:
            audio[index] = load_audio(result.file, rate)
        except AudioError as error:
            result.error = str(error)
    order = sorted(audio, key=lambda i: len(audio[i]), reverse=True)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        inputs = processor([audio[i] for i in batch], sampling_rate=rate)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        features = inputs.pop(getattr(model, "main_input_name", "input_features"))
        with torch.inference_mode():
            ids = model.generate(features, attention_mask=inputs.get("attention_mask"), **generate_options)
        for index, text in zip(batch, processor.batch_decode(ids, skip_special_tokens=True), strict=True):
            results[index].text = text
    return results


def _language_id(tokenizer, tgt_lang: str) -> int:
    codes = getattr(tokenizer, "lang_code_to_id", None) or {}
    if not codes:
        raise InputError(
            f"this model's tokenizer has no target languages, so --tgt-lang {tgt_lang} cannot be used"
        )
    if tgt_lang not in codes:
        raise InputError(f"unknown target language {tgt_lang!r}; this model knows {sorted(codes)}")
    return codes[tgt_lang]
