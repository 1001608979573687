"""Evaluate a Transcriber on a manifest: WER and CER (jiwer) for ASR, BLEU (sacrebleu) for translation.

Manifests are fairseq S2T TSV files (a header row with id, audio, n_frames, tgt_text, speaker; audio paths
relative to the manifest's folder) or JSON lines with an audio path (`audio`, `audio_filepath` or `path`) and
a reference (`text`, `tgt_text` or `sentence`).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .pipeline import Segment, Source, transcripts

_AUDIO_KEYS = ("audio", "audio_filepath", "path")
_TEXT_KEYS = ("tgt_text", "text", "sentence")


def read_manifest(path: str | Path) -> list[Source]:
    """Read a fairseq S2T TSV or JSON-lines manifest into Sources whose `extra` holds id and reference."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    rows = _jsonl_rows(path) if path.suffix.lower() == ".jsonl" else _tsv_rows(path)
    sources = []
    for number, row in enumerate(rows, start=1):
        audio_key = next((k for k in _AUDIO_KEYS if row.get(k)), None)
        if audio_key is None:
            raise InputError(f"{path} row {number} has no audio column ({', '.join(_AUDIO_KEYS)})")
        text_key = next((k for k in _TEXT_KEYS if row.get(k) is not None), None)
        for key in (audio_key, text_key):
            if key is not None and not isinstance(row[key], str):
                kind = type(row[key]).__name__
                raise InputError(f"{path} row {number}: {key!r} must be a string, found {kind} {row[key]!r}")
        audio = row[audio_key]
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        reference = row[text_key] if text_key else None
        ident = str(row.get("id", number))
        sources.append(Source(str(audio_path), audio_path, {"id": ident, "reference": reference}))
    return sources


def _tsv_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or "audio" not in reader.fieldnames:
            raise InputError(f"{path} is not a fairseq S2T manifest: its header row has no 'audio' column")
        return list(reader)


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path} line {number} is not JSON: {error}") from error
        if not isinstance(row, dict):
            raise InputError(f"{path} line {number} must be a JSON object")
        rows.append(row)
    return rows


def basic_normalize(text: str) -> str:
    """Lower-case, drop punctuation and symbols (apostrophes inside words are kept), squeeze spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" and c != "'" else c for c in text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": lambda text: text, "basic": basic_normalize}


@dataclass
class Evaluation:
    """Corpus scores and one row per utterance."""

    metric: str  # "wer" (WER and CER) or "bleu"
    scores: dict[str, float]
    rows: list[dict] = field(default_factory=list)
    failed: int = 0  # utterances whose audio could not be read (left out of the scores)


def evaluate(segments: Iterable[Segment], sources: list[Source], metric: str, normalizer: str) -> Evaluation:
    """Score the transcripts of `sources` (the Transcriber's Segments for them, in order).

    Args:
        segments: What `Transcriber.transcribe(sources)` yields.
        sources: The manifest's Sources, with references in `extra`.
        metric: "wer" for ASR (WER and CER), "bleu" for translation.
        normalizer: A NORMALIZERS key, applied to references and hypotheses alike.
    """
    if normalizer not in NORMALIZERS:
        raise InputError(f"unknown normalizer {normalizer!r}; expected one of {sorted(NORMALIZERS)}")
    normalize = NORMALIZERS[normalizer]
    rows, failed = [], 0
    for group in transcripts(segments):
        source = sources[group[0].item]
        error = next((s.error for s in group if s.error), None)
        failed += error is not None
        hypothesis = " ".join(s.text for s in group if s.text)
        row = {"id": source.extra.get("id"), "audio": source.name, "reference": source.extra.get("reference")}
        row.update(hypothesis=hypothesis, error=error)
        row.update(_utterance_scores(normalize(row["reference"] or ""), normalize(hypothesis), metric))
        rows.append(row)
    scored = [r for r in rows if r["error"] is None and r["reference"] is not None]
    refs = [normalize(r["reference"]) for r in scored]
    hyps = [normalize(r["hypothesis"]) for r in scored]
    return Evaluation(metric, corpus_scores(refs, hyps, metric), rows, failed)


def _utterance_scores(reference: str, hypothesis: str, metric: str) -> dict[str, float | None]:
    if not reference.strip():
        return {"wer": None, "cer": None} if metric == "wer" else {"bleu": None}
    if metric == "bleu":
        import sacrebleu

        return {"bleu": round(sacrebleu.sentence_bleu(hypothesis, [reference]).score, 2)}
    import jiwer

    return {
        "wer": round(jiwer.wer(reference, hypothesis), 4),
        "cer": round(jiwer.cer(reference, hypothesis), 4),
    }


def corpus_scores(references: list[str], hypotheses: list[str], metric: str) -> dict[str, float]:
    """Return corpus WER and CER (as fractions) or BLEU (0-100); utterances with empty references are skipped."""
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        raise InputError("no utterance with a non-empty reference could be scored")
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    if metric == "bleu":
        import sacrebleu

        return {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score}
    if metric != "wer":
        raise InputError(f"unknown metric {metric!r}; expected 'wer' or 'bleu'")
    import jiwer

    return {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps)}
