"""Transcriber: inputs → regions (voice activity, maximum length) → batches → model → search → Segments.

Inputs are files, folders, manifests or waveforms. Each is streamed and cut into regions (see segments.py), so
hours of audio decode in bounded memory; regions from several inputs are pooled, sorted by length and decoded
in batches, and the results come back lazily, in input order, as one Segment per region.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import AudioError, InputError, check_finite
from .generation.ctc import ctc_transcripts, greedy_ctc
from .nn.masks import lengths_to_padding_mask
from .segments import Region, VadOptions, fixed_regions, speech_regions, strided_chunks

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".mkv", ".wma"}
MANIFEST_EXTENSIONS = {".tsv", ".jsonl"}
_POOL_BATCHES = 4  # regions pooled per length sort, in batches
_MIN_SECONDS = 0.025  # one 25 ms feature frame; shorter audio has nothing to transcribe


@dataclass
class Word:
    """A word and the stretch of the input it was read from, in seconds."""

    text: str
    start: float
    end: float


@dataclass
class Segment:
    """The text of one region of one input; a failed input gives a single Segment with `error` set."""

    source: str  # file path, or the name given with a waveform
    item: int  # position of the input among all inputs, so equal names stay apart
    start: float  # seconds
    end: float  # seconds
    text: str = ""
    words: list[Word] | None = None  # CTC models only
    error: str | None = None


@dataclass
class Source:
    """One input: a name and either a path to stream or a waveform at the model's rate."""

    name: str
    audio: str | os.PathLike | np.ndarray
    extra: dict = field(default_factory=dict)  # manifest columns, kept for evaluation


def expand_inputs(inputs) -> list[Source]:
    """Turn files, folders (their audio files), manifests, waveforms or (name, audio) pairs into Sources."""
    named = isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], str)
    if named or isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor, Source)):
        inputs = [inputs]
    sources = []
    for index, item in enumerate(inputs):
        if isinstance(item, Source):
            sources.append(item)
        elif isinstance(item, tuple):
            sources.append(Source(str(item[0]), _waveform_or_path(item[1])))
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            sources.append(Source(f"array{index}", _waveform_or_path(item)))
        elif not isinstance(item, (str, os.PathLike)):
            raise InputError(f"cannot transcribe a {type(item).__name__}; pass paths or waveforms")
        elif Path(item).is_dir():
            files = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
            sources.extend(Source(str(p), p) for p in files)
        elif Path(item).suffix.lower() in MANIFEST_EXTENSIONS and Path(item).is_file():
            from .evaluate import read_manifest

            sources.extend(read_manifest(item))
        else:
            sources.append(Source(str(item), item))
    return sources


def _waveform_or_path(audio):
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        # Only floating tensors become float32; integer samples stay integers, for the check that refuses them.
        return (audio.float() if audio.is_floating_point() else audio).numpy()
    return audio


class Transcriber:
    """Transcribe or translate audio of any length with one checkpoint.

    Args:
        model_name_or_path: Checkpoint folder or hub id of a seq2seq or CTC model.
        device: torch device for the model.
        dtype: "float32", "float16" or "bfloat16".
        batch_size: Regions (or CTC chunks) decoded together.
        num_beams: Beam size; default the checkpoint's (seq2seq only).
        task: "transcribe" or "translate" (translate needs `tgt_lang`).
        tgt_lang: Target language of multilingual models.
        vad: True: cut at voice activity; False: cut at `max_region_s`; None: cut only inputs longer
            than `max_region_s` and decode shorter ones whole.
        vad_options: Voice-activity settings.
        max_region_s: Longest region; default 20 s for seq2seq and 60 s for CTC models.
        chunk_length_s: CTC chunk length; longer regions are decoded in strided chunks.
        stride_length_s: CTC context on each side of a chunk; default chunk_length_s / 6.
        progress: Show a progress bar (seconds of audio done).
        compile: Compile the decoding step (load_model's `compile`).
        generate_options: Further generation settings (max_new_tokens, length_penalty, ...).
    """

    def __init__(
        self,
        model_name_or_path,
        device="cpu",
        dtype="float32",
        batch_size: int = 8,
        num_beams: int | None = None,
        task: str = "transcribe",
        tgt_lang: str | None = None,
        vad: bool | None = None,
        vad_options: VadOptions | None = None,
        max_region_s: float | None = None,
        chunk_length_s: float = 20.0,
        stride_length_s: float | None = None,
        progress: bool = False,
        compile: bool = False,
        **generate_options,
    ):
        from .api import load_model, load_processor

        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if task not in ("transcribe", "translate") or (task == "translate" and not tgt_lang):
            raise InputError("task must be 'transcribe', or 'translate' with a tgt_lang")
        self.model = load_model(model_name_or_path, device=device, dtype=dtype, compile=compile)
        self.processor = load_processor(model_name_or_path)
        self.device, self.progress = device, progress
        beams = {} if num_beams is None else {"num_beams": num_beams}
        language = tgt_lang if task == "translate" else None
        self.options = _search_options(
            self.model, self.processor.tokenizer, language, generate_options | beams
        )
        self.is_ctc = not hasattr(self.model, "generate")
        self.rate = self.processor.feature_extractor.sampling_rate
        # Without an attention mask padding changes the results, so regions go one at a time (as in
        # transformers' pipeline).
        masked = getattr(self.processor.feature_extractor, "return_attention_mask", True)
        self.batch_size = batch_size if masked else 1
        self._set_regions(vad, vad_options, max_region_s, chunk_length_s, stride_length_s)

    def _set_regions(self, vad, vad_options, max_region_s, chunk_length_s, stride_length_s) -> None:
        if vad not in (None, True, False):
            raise InputError(f"vad must be True, False or None (only long inputs), got {vad!r}")
        for name, value in (("max_region_s", max_region_s), ("stride_length_s", stride_length_s)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InputError(f"{name} must be a number of seconds, got {value!r}")
        if max_region_s is not None and not max_region_s > 0:
            raise InputError(f"max_region_s must be > 0, got {max_region_s!r}")
        if (
            isinstance(chunk_length_s, bool)
            or not isinstance(chunk_length_s, (int, float))
            or not chunk_length_s > 0
        ):
            raise InputError(f"chunk_length_s must be a number of seconds > 0, got {chunk_length_s!r}")
        if stride_length_s is not None and not 0 <= 2 * stride_length_s < chunk_length_s:
            raise InputError(
                f"stride_length_s ({stride_length_s}) must be >= 0 and less than half of chunk_length_s "
                f"({chunk_length_s})"
            )
        self.vad = vad
        default_max = 60.0 if self.is_ctc else 20.0
        self.vad_options = vad_options or VadOptions(max_region_s=max_region_s or default_max)
        self.max_region_s = max_region_s or self.vad_options.max_region_s
        # Chunk and stride are whole numbers of output frames, so that chunks stitch without rounding.
        ratio = getattr(self.model, "inputs_to_logits_ratio", 1)
        stride_length_s = chunk_length_s / 6 if stride_length_s is None else stride_length_s
        self.chunk, self.stride = (
            int(round(s * self.rate / ratio)) * ratio for s in (chunk_length_s, stride_length_s)
        )

    def transcribe(self, inputs) -> Iterator[Segment]:
        """Yield the Segments of every input, in input order, as soon as each pool of regions is decoded.

        Args:
            inputs: A path, folder, manifest (.tsv/.jsonl), waveform (N,) at the model's rate, a
                (name, audio) pair, or a list of them.
        """
        from tqdm import tqdm

        items = self._items(expand_inputs(inputs))
        with tqdm(unit="s", unit_scale=True, disable=not self.progress, desc="audio") as bar:
            while pool := list(itertools.islice(items, self.batch_size * _POOL_BATCHES)):
                yield from self._decode_pool(pool)
                bar.update(sum(len(r.audio) for _, _, r in pool if isinstance(r, Region)) / self.rate)

    def _items(self, sources: list[Source]) -> Iterator[tuple[int, str, Region | str]]:
        """Yield (item, name, region) for every region, or (item, name, message) for a failed input."""
        for item, source in enumerate(sources):
            found = False
            try:
                for region in self._regions(source):
                    found = True
                    yield item, source.name, region
            except AudioError as error:
                yield item, source.name, str(error)
                continue
            if not found:  # all silence: one empty Segment, so that the input still shows up
                yield item, source.name, Region(np.zeros(0, np.float32), 0.0, 0.0, 0.0)

    def _regions(self, source: Source) -> Iterator[Region]:
        from .audio.stream import audio_duration, stream_audio

        limit = int(self.max_region_s * self.rate)
        if isinstance(source.audio, np.ndarray):
            blocks: Iterator[np.ndarray] = iter([_check_waveform(source)])
        else:
            duration = audio_duration(source.audio) if self.vad is not True else None
            if duration is not None and duration <= self.max_region_s:
                from .audio.io import load_audio

                blocks = iter([load_audio(source.audio, self.rate)])
            else:
                blocks = stream_audio(source.audio, self.rate)
        head, done = _peek(blocks, limit)
        if done and self.vad is None:
            audio = np.concatenate(head) if head else np.zeros(0, np.float32)
            yield Region(audio, 0.0, 0.0, len(audio) / self.rate)
            return
        stream = itertools.chain(head, blocks)
        if self.vad is False:
            regions = fixed_regions(stream, self.rate, self.max_region_s)
            yield from (r for r in regions if len(r.audio) >= _MIN_SECONDS * self.rate)
        else:
            yield from speech_regions(stream, self.rate, self.vad_options)

    def _decode_pool(self, pool: list[tuple[int, str, Region | str]]) -> Iterator[Segment]:
        regions = [(i, r) for i, (_, _, r) in enumerate(pool) if isinstance(r, Region) and len(r.audio)]
        decoded = self._decode_safely(regions)
        for index, (item, name, region) in enumerate(pool):
            if isinstance(region, str) or isinstance(decoded.get(index), str):
                error = region if isinstance(region, str) else f"{name}: {decoded[index]}"
                yield Segment(name, item, 0.0, 0.0, error=error)
            else:
                text, words = decoded.get(index, ("", None))
                yield Segment(name, item, region.start, region.end, text.strip(), words)

    def _decode_safely(self, regions: list[tuple[int, Region]]) -> dict[int, tuple | str]:
        """Decode regions in batches; if a batch fails (audio too short for the model), retry one by one."""
        decode = self._decode_ctc if self.is_ctc else self._decode_seq2seq
        try:
            return decode(regions)
        except AudioError:
            pass
        results: dict[int, tuple | str] = {}
        for pair in regions:
            try:
                results.update(decode([pair]))
            except AudioError as error:
                results[pair[0]] = str(error)
        return results

    @torch.inference_mode()
    def _decode_seq2seq(self, regions: list[tuple[int, Region]]) -> dict[int, tuple[str, None]]:
        texts = {}
        order = sorted(regions, key=lambda pair: len(pair[1].audio), reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            features, mask = self._features([region.audio for _, region in batch])
            ids = self.model.generate(features, attention_mask=mask, **self.options)
            for (index, _), text in zip(
                batch, self.processor.batch_decode(ids, skip_special_tokens=True), strict=True
            ):
                texts[index] = (text, None)
        return texts

    def _features(self, clips: list[np.ndarray]):
        inputs = self.processor(clips, sampling_rate=self.rate)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        features = inputs.pop(getattr(self.model, "main_input_name", "input_features"))
        mask = inputs.get("attention_mask")
        return features.to(next(self.model.parameters()).dtype), mask

    @torch.inference_mode()
    def _decode_ctc(self, regions: list[tuple[int, Region]]) -> dict[int, tuple[str, list[Word]]]:
        chunks = []  # (region index, chunk position, samples, left, right)
        for index, region in regions:
            pieces = strided_chunks(region.audio, self.chunk, self.stride)
            chunks.extend((index, k, *piece) for k, piece in enumerate(pieces))
        frames: dict[tuple[int, int], torch.Tensor] = {}
        ratio = self.model.inputs_to_logits_ratio
        order = sorted(chunks, key=lambda chunk: len(chunk[2]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            features, mask = self._features([chunk[2] for chunk in batch])
            output = self.model(features, attention_mask=mask)
            lengths = output.lengths
            padded = None if lengths is None else lengths_to_padding_mask(lengths, output.logits.shape[1])
            check_finite(output.logits, "the CTC model's output", padded)
            for chunk, labels in zip(batch, greedy_ctc(output.logits, output.lengths), strict=True):
                frames[chunk[0], chunk[1]] = _drop_context(labels, *chunk[2:], ratio)
        return {index: self._ctc_text(region, frames, index) for index, region in regions}

    def _ctc_text(self, region: Region, frames: dict, index: int) -> tuple[str, list[Word]]:
        parts = [frames[key] for key in sorted(k for k in frames if k[0] == index)]
        ratio = self.model.inputs_to_logits_ratio
        (transcript,) = ctc_transcripts([torch.cat(parts)], self.processor.tokenizer, ratio, self.rate)
        words = [Word(w.text, w.start + region.offset, w.end + region.offset) for w in transcript.words]
        return transcript.text, words


def _drop_context(
    labels: torch.Tensor, samples: np.ndarray, left: int, right: int, ratio: int
) -> torch.Tensor:
    """Keep the frames of a chunk that lie outside its context.

    The frame counts follow transformers' pipeline (`rescale_stride`): the chunk counts round(N / ratio)
    frames, which can be a frame more than the model emits, and the context is scaled to that count.
    """
    total = int(round(len(samples) / ratio))
    left_frames = int(round(left / len(samples) * total))
    right_frames = int(round(right / len(samples) * total))
    return labels[left_frames : total - right_frames]


def _peek(blocks: Iterator[np.ndarray], limit: int) -> tuple[list[np.ndarray], bool]:
    """Read blocks until more than `limit` samples; return them and whether the stream ended first."""
    head, count = [], 0
    for block in blocks:
        head.append(block)
        count += len(block)
        if count > limit:
            return head, False
    return head, True


def _check_waveform(source: Source) -> np.ndarray:
    from .audio.io import validate_waveform

    try:
        return validate_waveform(source.audio, None, 1, source.name).numpy()
    except InputError as error:
        raise AudioError(str(error)) from error


def _search_options(model, tokenizer, tgt_lang: str | None, options: dict) -> dict:
    task = getattr(model, "task", None)
    if task not in ("seq2seq", "ctc"):
        kind = f"a {task} model" if task else "an encoder without a head"
        raise InputError(f"this checkpoint is {kind}; transcription needs a CTC head or a text decoder")
    if not hasattr(model, "generate") and options:
        raise InputError(
            f"this is a CTC model: {', '.join(sorted(options))} apply only to encoder-decoder models"
        )
    if tgt_lang is not None:
        options["forced_bos_token_id"] = _language_id(tokenizer, tgt_lang)
    return options


def _language_id(tokenizer, tgt_lang: str) -> int:
    codes = getattr(tokenizer, "lang_code_to_id", None) or {}
    if not codes:
        raise InputError(
            f"this model's tokenizer has no target languages, so --tgt-lang {tgt_lang} cannot be used"
        )
    if tgt_lang not in codes:
        raise InputError(f"unknown target language {tgt_lang!r}; this model knows {sorted(codes)}")
    return codes[tgt_lang]


def transcripts(segments: Iterable[Segment]) -> Iterator[list[Segment]]:
    """Group a Transcriber's Segments into one list per input, lazily."""
    for _, group in itertools.groupby(segments, key=lambda segment: segment.item):
        yield list(group)
