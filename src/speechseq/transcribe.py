"""Transcribe a list of files with one model: a thin wrapper over `pipeline.Transcriber` that returns one
result per file (all its segments' text on one line)."""

from __future__ import annotations

from dataclasses import dataclass

from .pipeline import Source, Transcriber, transcripts


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
    """Transcribe (or, with tgt_lang, translate) files; unreadable files get an error instead of text.

    Files up to 20 s (60 s for CTC models) are decoded whole; longer ones are cut at voice activity.
    """
    transcriber = Transcriber(
        model_name_or_path,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        task="translate" if tgt_lang is not None else "transcribe",
        tgt_lang=tgt_lang,
        **generate_options,
    )
    sources = [Source(str(path), path) for path in paths]
    results = []
    for group in transcripts(transcriber.transcribe(sources)):
        error = next((segment.error for segment in group if segment.error), None)
        text = " ".join(segment.text for segment in group if segment.text)
        results.append(FileResult(group[0].source, text, error))
    return results
