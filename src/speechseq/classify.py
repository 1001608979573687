"""Classify a list of files with one model: utterance labels, labelled frame segments, or speaker scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import AudioError, InputError

HEADS = ("sequence_classification", "frame_classification", "xvector")
_BATCH_SECONDS = 30.0  # padded audio per file a batch may hold on average


@dataclass
class ClassifyResult:
    """What one file was classified as, or why it was not."""

    file: str
    labels: list[dict] | None = (
        None  # [{"label", "score"}], best first (utterance classes, x-vector speakers)
    )
    segments: list[dict] | None = None  # frame classification: [{"start", "end", "label", "score"}], seconds
    embedding: list[float] | None = None  # x-vector speaker embedding
    error: str | None = None

    def to_json(self) -> dict:
        """Return the non-empty fields as a JSON-ready dict."""
        fields = {"labels": self.labels, "segments": self.segments, "embedding": self.embedding}
        return {"file": self.file, **{k: v for k, v in fields.items() if v is not None}}


def classify_files(
    paths, model_name_or_path, batch_size: int = 8, top_k: int = 5, device="cpu", dtype="float32"
) -> list[ClassifyResult]:
    """Classify audio files; unreadable files get an error instead of labels.

    Utterance classifiers give the top_k labels with softmax scores (transformers' audio-classification
    pipeline); frame classifiers give runs of frames with the same best label; x-vector models give their
    embedding and the top_k speakers by cosine similarity to the AM-softmax class directions.
    """
    from . import load_feature_extractor, load_model

    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    model = load_model(model_name_or_path, device=device, dtype=dtype)
    head = getattr(model, "task", None)
    if head not in HEADS:
        raise InputError(
            f"{model_name_or_path} has no classification head ({head or 'none'}); classify needs one of {HEADS}"
            + ("; use `speechseq transcribe` for it" if head in ("ctc", "seq2seq") else "")
        )
    extractor = load_feature_extractor(model_name_or_path)
    rate = extractor.sampling_rate
    results = [ClassifyResult(str(path)) for path in paths]
    for batch in _batches(results, batch_size, rate):
        audio = _decode(results, batch, rate)
        batch = [i for i in batch if i in audio]
        try:
            _classify(model, extractor, results, audio, batch, top_k, device)
        except (AudioError, InputError):  # a clip too short for the model: the others still get labels
            for index in batch:
                try:
                    _classify(model, extractor, results, audio, [index], top_k, device)
                except (AudioError, InputError) as error:
                    results[index].error = f"{results[index].file}: {error}"
    return results


def _batches(results: list[ClassifyResult], batch_size: int, rate: int) -> list[list[int]]:
    """Group files longest first (by their headers), at most batch_size per group and about batch_size x
    _BATCH_SECONDS of padded audio, so that long files go alone instead of eight at once."""
    from .audio.stream import audio_duration

    seconds = {i: audio_duration(r.file) or 0.0 for i, r in enumerate(results)}
    order = sorted(seconds, key=lambda i: seconds[i], reverse=True)
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        longest = seconds[batch[0]] if batch else 0.0
        if batch and len(batch) < batch_size and (len(batch) + 1) * longest <= batch_size * _BATCH_SECONDS:
            batch.append(index)
        else:
            batches.append([index])
    return batches


def _decode(results: list[ClassifyResult], batch: list[int], rate: int) -> dict[int, object]:
    """Decode the files of one batch at `rate`; a file that cannot be read gets its error and no waveform."""
    from . import load_audio

    audio = {}
    for index in batch:
        try:
            audio[index] = load_audio(results[index].file, rate)
        except AudioError as error:
            results[index].error = str(error)
    return audio


@torch.inference_mode()
def _classify(model, extractor, results, audio, batch: list[int], top_k: int, device) -> None:
    if not batch:
        return
    rate = extractor.sampling_rate
    inputs = {k: v.to(device) for k, v in extractor([audio[i] for i in batch], sampling_rate=rate).items()}
    output = model(inputs.pop(model.main_input_name), attention_mask=inputs.get("attention_mask"))
    for row, index in enumerate(batch):
        _describe(results[index], model, output, row, top_k, model.inputs_to_logits_ratio / rate)


def _describe(result: ClassifyResult, model, output, row: int, top_k: int, frame_seconds: float) -> None:
    labels = model.config.id2label
    if model.config.head == "sequence_classification":
        result.labels = top_labels(output.logits[row].float().softmax(-1), labels, top_k)
    elif model.config.head == "xvector":
        result.labels = top_labels(model.head.label_scores(output.logits[row : row + 1])[0], labels, top_k)
        result.embedding = output.embeddings[row].float().tolist()
    else:
        length = int(output.lengths[row])
        probs = output.logits[row, :length].float().softmax(-1)
        result.segments = frame_segments(probs, labels, frame_seconds)


def top_labels(scores: Tensor, id2label: dict[int, str], top_k: int) -> list[dict]:
    """Return the top_k of one item's class scores (C,) as [{"label", "score"}], best first."""
    values, ids = scores.topk(min(top_k, scores.shape[-1]))
    return [{"label": id2label[int(i)], "score": float(v)} for v, i in zip(values, ids, strict=True)]


def frame_segments(probs: Tensor, id2label: dict[int, str], frame_seconds: float) -> list[dict]:
    """Merge runs of frames (T, C) with the same best label into segments with their mean probability."""
    scores, best = probs.max(dim=-1)
    segments: list[dict] = []
    start = 0
    for frame in range(1, len(best) + 1):
        if frame == len(best) or best[frame] != best[start]:
            segments.append(
                {
                    "start": start * frame_seconds,
                    "end": frame * frame_seconds,
                    "label": id2label[int(best[start])],
                    "score": float(scores[start:frame].mean()),
                }
            )
            start = frame
    return segments
