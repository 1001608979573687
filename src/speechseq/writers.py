"""Format one input's Segments as txt, json, srt, vtt or tsv, and write them without clobbering files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # the CLI imports this module for FORMATS; torch loads only when transcribing
    from .pipeline import Segment

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def full_text(segments: list[Segment]) -> str:
    """Return the text of all segments of one input on one line."""
    return " ".join(segment.text for segment in segments if segment.text)


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def _spoken(segments: list[Segment]) -> list[Segment]:
    return [segment for segment in segments if segment.text]


def to_txt(segments: list[Segment]) -> str:
    """One line per segment."""
    return "".join(f"{segment.text}\n" for segment in _spoken(segments))


def to_json(segments: list[Segment]) -> str:
    """The file, its full text and every segment with its times (and words, for CTC models)."""
    rows = []
    for segment in _spoken(segments):
        row = {"start": round(segment.start, 3), "end": round(segment.end, 3), "text": segment.text}
        if segment.words is not None:
            row["words"] = [
                {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in segment.words
            ]
        rows.append(row)
    source = segments[0].source if segments else ""
    document = {"file": source, "text": full_text(segments), "segments": rows}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_srt(segments: list[Segment]) -> str:
    """SubRip: numbered cues, HH:MM:SS,mmm times, a blank line after each cue."""
    cues = []
    for number, segment in enumerate(_spoken(segments), start=1):
        times = f"{_timestamp(segment.start, ',')} --> {_timestamp(segment.end, ',')}"
        cues.append(f"{number}\n{times}\n{segment.text}\n")
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT: a WEBVTT header, then HH:MM:SS.mmm cues separated by blank lines."""
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.replace('-->', '->')}\n"
        for s in _spoken(segments)
    ]
    return "\n".join(["WEBVTT\n", *cues])


def to_tsv(segments: list[Segment]) -> str:
    """start, end (integer milliseconds, as whisper writes them) and text, with a header row."""
    rows = ["start\tend\ttext\n"]
    for segment in _spoken(segments):
        text = segment.text.replace("\t", " ")
        rows.append(f"{round(segment.start * 1000)}\t{round(segment.end * 1000)}\t{text}\n")
    return "".join(rows)


FORMATTERS: dict[str, Callable[[list[Segment]], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def output_path(source: str, output_format: str, output_dir: str | Path | None = None) -> Path:
    """Return where an input's transcript goes: output_dir/STEM.FORMAT, or beside the input."""
    path = Path(source)
    name = f"{path.stem}.{output_format}"
    return Path(output_dir) / name if output_dir is not None else path.with_name(name)


def write_transcript(
    segments: list[Segment], path: Path, output_format: str, overwrite: bool = False
) -> Path:
    """Write one input's segments to `path` in `output_format`.

    Raises:
        InputError: Unknown format, or `path` exists and `overwrite` is False.
    """
    if output_format not in FORMATTERS:
        raise InputError(f"unknown output format {output_format!r}; expected one of {FORMATS}")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FORMATTERS[output_format](segments), encoding="utf-8")
    return path
