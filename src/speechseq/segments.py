"""Cut a stream of audio into regions to decode: voice activity, a maximum length, CTC strided chunks.

Everything here works on a stream of blocks and keeps at most one region (plus padding) in memory, so an
hour of audio costs no more than a minute.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import InputError

_WEBRTC_RATES = (8000, 16000, 32000, 48000)
_QUIET_RATIO = 0.003  # -25 dB below the region's loud frames (90th percentile energy) counts as silence
_MAX_TIGHTEN_S = 0.5  # edges move in by at most this much


@dataclass
class Region:
    """A stretch of one input to decode: its samples and where it lies in the input."""

    audio: np.ndarray  # (N,) float32, the speech plus padding on both sides
    offset: float  # seconds from the input's start to audio[0]
    start: float  # seconds, where the speech starts
    end: float  # seconds, where the speech ends


@dataclass(frozen=True)
class VadOptions:
    """How voice activity becomes regions."""

    aggressiveness: int = 2  # webrtcvad mode: 0 keeps the most audio as speech, 3 the least
    frame_ms: int = 30  # webrtcvad accepts 10, 20 or 30 ms frames
    min_speech_s: float = 0.25  # shorter bursts (clicks, breaths) are dropped
    min_silence_s: float = 0.5  # a pause at least this long ends a region
    pad_s: float = 0.2  # audio kept on each side of the speech, at most min_silence_s
    max_region_s: float = 20.0  # longer speech is split at its quietest frame

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise InputError(f"VadOptions.aggressiveness must be 0, 1, 2 or 3, got {self.aggressiveness!r}")
        if self.frame_ms not in (10, 20, 30):
            raise InputError(f"VadOptions.frame_ms must be 10, 20 or 30 (webrtcvad), got {self.frame_ms!r}")
        for name in ("min_speech_s", "min_silence_s", "pad_s", "max_region_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"VadOptions.{name} must be a number of seconds >= 0, got {value!r}")
        if not self.max_region_s > 0:
            raise InputError(f"VadOptions.max_region_s must be > 0, got {self.max_region_s!r}")


class WebRtcVad:
    """Speech/non-speech decision for one frame with webrtcvad (the WebRTC GMM detector)."""

    def __init__(self, sampling_rate: int, aggressiveness: int = 2):
        import webrtcvad

        if sampling_rate not in _WEBRTC_RATES:
            raise InputError(
                f"voice activity detection needs audio at {_WEBRTC_RATES} Hz, not {sampling_rate}"
            )
        self.sampling_rate = sampling_rate
        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, frame: np.ndarray) -> bool:
        """Return whether a 10/20/30 ms frame of float32 samples holds speech."""
        pcm = (np.clip(frame, -1.0, 1.0) * 32767).astype(np.int16)
        return self._vad.is_speech(pcm.tobytes(), self.sampling_rate)


def speech_regions(
    blocks: Iterable[np.ndarray], sampling_rate: int, options: VadOptions = VadOptions(), vad=None
) -> Iterator[Region]:
    """Yield the speech regions of a stream, each as soon as the pause after it is heard.

    Args:
        blocks: Consecutive mono float32 blocks at `sampling_rate`.
        sampling_rate: Samples per second.
        options: Frame length, minimum speech and silence, padding and maximum region length.
        vad: Callable frame -> bool; default webrtcvad at `options.aggressiveness`.
    """
    cutter = _Cutter(sampling_rate, options, vad or WebRtcVad(sampling_rate, options.aggressiveness))
    for block in blocks:
        yield from cutter.push(block)
    yield from cutter.finish()


class _Cutter:
    """Frame-by-frame state of `speech_regions`: a rolling buffer and the open region, if any."""

    def __init__(self, rate: int, options: VadOptions, vad):
        self.rate, self.options, self.vad = rate, options, vad
        self.frame = rate * options.frame_ms // 1000
        self.pad = int(min(options.pad_s, options.min_silence_s) * rate)
        self.buffer, self.buffer_start, self.next_frame = np.zeros(0, np.float32), 0, 0
        self.speech_start: int | None = None
        self.speech_end = 0
        self.quiet_at, self.quiet_energy = None, np.inf

    def push(self, block: np.ndarray) -> Iterator[Region]:
        self.buffer = np.concatenate([self.buffer, np.asarray(block, np.float32)])
        while self.next_frame + self.frame <= self.buffer_start + len(self.buffer):
            begin = self.next_frame
            samples = self.buffer[begin - self.buffer_start : begin - self.buffer_start + self.frame]
            self.next_frame += self.frame
            yield from self._step(begin, samples)
        keep = self.next_frame - self.pad if self.speech_start is None else self.speech_start - self.pad
        self._trim(min(keep, self.next_frame))

    def _step(self, begin: int, samples: np.ndarray) -> Iterator[Region]:
        end, options = begin + self.frame, self.options
        if self.vad(samples):
            if self.speech_start is None:
                self.speech_start = begin
            self.speech_end = end
        elif self.speech_start is not None and end - self.speech_end >= options.min_silence_s * self.rate:
            yield from self._close(self.speech_end)
            return
        if self.speech_start is None:
            return
        length = end - self.speech_start
        if length >= (options.max_region_s / 2) * self.rate:
            # Split candidates lie in the second half, so no piece is shorter than half the maximum.
            energy = float(np.mean(samples**2))
            if energy < self.quiet_energy:
                self.quiet_at, self.quiet_energy = end, energy
        if length + 2 * self.pad >= options.max_region_s * self.rate:
            cut = self.quiet_at if self.quiet_at is not None else end
            yield from self._close(cut)
            self.speech_start, self.speech_end = cut, max(self.speech_end, cut)

    def _close(self, end: int) -> Iterator[Region]:
        start, self.speech_start = self.speech_start, None
        self.quiet_at, self.quiet_energy = None, np.inf
        if start is None:
            return
        start, end = self._tighten(start, end)
        if end - start < self.options.min_speech_s * self.rate:
            return
        first = max(self.buffer_start, start - self.pad)
        last = min(self.buffer_start + len(self.buffer), end + self.pad)
        audio = self.buffer[first - self.buffer_start : last - self.buffer_start].copy()
        yield Region(audio, first / self.rate, start / self.rate, end / self.rate)

    def _tighten(self, start: int, end: int) -> tuple[int, int]:
        """Move the edges in over quiet 10 ms hops: webrtcvad holds "speech" for up to ~0.3 s after it ends."""
        hop = self.rate // 100
        speech = self.buffer[start - self.buffer_start : end - self.buffer_start]
        hops = len(speech) // hop
        if hops < 3:
            return start, end
        energy = np.mean(speech[: hops * hop].reshape(hops, hop) ** 2, axis=1)
        loud = np.flatnonzero(energy >= _QUIET_RATIO * np.percentile(energy, 90))
        limit = int(_MAX_TIGHTEN_S * 100)
        head, tail = min(int(loud[0]), limit), min(hops - 1 - int(loud[-1]), limit)
        return start + head * hop, end - tail * hop - (len(speech) - hops * hop if tail else 0)

    def _trim(self, keep_from: int) -> None:
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[keep_from - self.buffer_start :]
            self.buffer_start = keep_from

    def finish(self) -> Iterator[Region]:
        if self.speech_start is not None:
            yield from self._close(self.speech_end)


def fixed_regions(blocks: Iterable[np.ndarray], sampling_rate: int, max_region_s: float) -> Iterator[Region]:
    """Yield a stream as consecutive regions of `max_region_s` seconds (the last one shorter)."""
    size = max(1, int(max_region_s * sampling_rate))
    pending, consumed = [], 0
    for block in blocks:
        pending.append(np.asarray(block, np.float32))
        while sum(len(p) for p in pending) >= size:
            joined = np.concatenate(pending)
            yield _region(joined[:size], consumed, sampling_rate)
            consumed += size
            pending = [joined[size:]]
    tail = np.concatenate(pending) if pending else np.zeros(0, np.float32)
    if len(tail):
        yield _region(tail, consumed, sampling_rate)


def _region(audio: np.ndarray, first: int, rate: int) -> Region:
    return Region(audio, first / rate, first / rate, (first + len(audio)) / rate)


def strided_chunks(
    audio: np.ndarray, chunk_samples: int, stride_samples: int
) -> list[tuple[np.ndarray, int, int]]:
    """Cut audio into overlapping chunks whose overlaps are dropped again after the model has run.

    The rule of transformers' ASR pipeline (`chunk_iter`): chunks of `chunk_samples` advance by
    chunk - 2 * stride; each chunk but the first has `stride_samples` of left context and each but the last
    as much right context, so every sample is kept from exactly one chunk.

    Returns:
        (samples, left, right) per chunk: left/right are the context samples to drop at each side.
    """
    step = chunk_samples - 2 * stride_samples
    if step <= 0:
        raise InputError(f"chunk length {chunk_samples} must exceed twice the stride {stride_samples}")
    chunks = []
    for start in range(0, len(audio), step):
        chunk = audio[start : start + chunk_samples]
        last = start + chunk_samples >= len(audio)
        left = 0 if start == 0 else stride_samples
        if len(chunk) > left:
            chunks.append((chunk, left, 0 if last else stride_samples))
        if last:
            break
    return chunks
