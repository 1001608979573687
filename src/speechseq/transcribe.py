"""Transcribe a list of files with one model: decode audio, batch by length, generate (or label frames, for CTC
models), detokenize."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import AudioError, InputError
from .generation.ctc import greedy_ctc


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
    options = _search_options(model, processor.tokenizer, tgt_lang, generate_options, model_name_or_path)
    if not getattr(processor.feature_extractor, "return_attention_mask", True):
        # Without an attention mask, padding changes the results (waveform normalisation and group-norm
        # statistics cover it), so clips go one at a time, as in transformers' pipeline.
        batch_size = 1
    rate = processor.feature_extractor.sampling_rate
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
        texts = _texts(model, processor, features, inputs.get("attention_mask"), options)
        for index, text in zip(batch, texts, strict=True):
            results[index].text = text
    return results


def _search_options(model, tokenizer, tgt_lang: str | None, options: dict, name) -> dict:
    task = getattr(model, "task", None)
    if task not in ("seq2seq", "ctc"):
        kind = f"a {task} model" if task else "an encoder without a head"
        raise InputError(f"{name} is {kind}; transcription needs a CTC head or a text decoder")
    if not hasattr(model, "generate") and options:
        raise InputError(
            f"{name} is a CTC model: {', '.join(sorted(options))} apply only to encoder-decoder models"
        )
    if tgt_lang is not None:
        options["forced_bos_token_id"] = _language_id(tokenizer, tgt_lang)
    return options


@torch.inference_mode()
def _texts(model, processor, features, attention_mask, options: dict) -> list[str]:
    if not hasattr(model, "generate"):
        # A CTC model labels every frame in one pass; the pipeline's decoding keeps special tokens, so blanks
        # are dropped after repeats are grouped.
        output = model(features, attention_mask=attention_mask)
        return [processor.decode(ids) for ids in greedy_ctc(output.logits, output.lengths)]
    ids = model.generate(features, attention_mask=attention_mask, **options)
    return processor.batch_decode(ids, skip_special_tokens=True)


def _language_id(tokenizer, tgt_lang: str) -> int:
    codes = getattr(tokenizer, "lang_code_to_id", None) or {}
    if not codes:
        raise InputError(
            f"this model's tokenizer has no target languages, so --tgt-lang {tgt_lang} cannot be used"
        )
    if tgt_lang not in codes:
        raise InputError(f"unknown target language {tgt_lang!r}; this model knows {sorted(codes)}")
    return codes[tgt_lang]
