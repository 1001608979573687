"""Read an audio file as a stream of mono float32 blocks at a target rate, in bounded memory.

`load_audio` decodes a whole file at once; an hour at 16 kHz is 230 MB of float32 before resampling. Here the
file is read block by block (soundfile, else PyAV frames) and resampled with soxr's streaming resampler, so
memory stays at a few blocks whatever the file's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError
from .io import _check_complete, _check_path, check_finite_samples

BLOCK_SECONDS = 1.0  # length of the blocks read from the file


def audio_duration(path: str | os.PathLike) -> float | None:
    """Return a file's duration in seconds from its header, or None when the header does not say."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        return _pyav_duration(Path(path))
    return info.frames / info.samplerate if info.samplerate else None


def _pyav_duration(path: Path) -> float | None:
    try:
        with av.open(str(path)) as container:
            return container.duration / 1_000_000 if container.duration else None
    except (av.FFmpegError, OSError, ValueError):
        return None


def stream_audio(path: str | os.PathLike, sampling_rate: int) -> Iterator[np.ndarray]:
    """Yield a file's samples as mono float32 blocks at `sampling_rate`.

    Args:
        path: An audio or video file.
        sampling_rate: Rate of the yielded samples in Hz.

    Yields:
        Consecutive blocks (N_i,) float32, about `BLOCK_SECONDS` each.

    Raises:
        AudioError: The file is missing, unreadable, not audio, or fails while decoding.
    """
    path = _check_path(path)
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        yield from _resampled(_pyav_blocks(path, error), sampling_rate, path)
        return
    with handle:
        yield from _resampled(_soundfile_blocks(path, handle), sampling_rate, path)


def _soundfile_blocks(path: Path, handle: sf.SoundFile) -> Iterator[tuple[np.ndarray, int]]:
    frames, declared, read = max(1, int(BLOCK_SECONDS * handle.samplerate)), handle.frames, 0
    while True:
        try:
            data = handle.read(frames, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, ValueError) as error:
            raise AudioError(f"{path} is corrupt or truncated: {error}") from error
        if data.shape[0] == 0:
            # The same checks as load_audio: a file that ends before its header says is an error, not a
            # shorter transcript.
            _check_complete(path, handle, read, declared)
            return
        read += data.shape[0]
        yield data.mean(axis=1, dtype=np.float32), handle.samplerate


def _pyav_blocks(path: Path, soundfile_error: Exception) -> Iterator[tuple[np.ndarray, int]]:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise AudioError(
            f"cannot decode {path}: not an audio or video format soundfile or ffmpeg can read "
            f"(soundfile: {soundfile_error}; ffmpeg: {error})"
        ) from error
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().mean(axis=0, dtype=np.float32), out.sample_rate
        except (av.FFmpegError, ValueError) as error:
            raise AudioError(
                f"{path} is corrupt or truncated: ffmpeg failed while decoding: {error}"
            ) from error


def _resampled(
    blocks: Iterator[tuple[np.ndarray, int]], sampling_rate: int, path: Path
) -> Iterator[np.ndarray]:
    """Resample (samples, rate) blocks to `sampling_rate` with one streaming soxr resampler."""
    resampler, file_rate, empty, offset = None, None, True, 0
    for block, rate in blocks:
        empty = False
        check_finite_samples(block, path, rate, offset)
        offset += block.shape[0]
        if rate == sampling_rate:
            yield np.ascontiguousarray(block, dtype=np.float32)
            continue
        if resampler is None or rate != file_rate:
            resampler, file_rate = (
                soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32", quality="HQ"),
                rate,
            )
        out = resampler.resample_chunk(block)
        if out.size:
            yield out
    if empty:
        raise AudioError(f"{path} contains no audio samples")
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield tail
