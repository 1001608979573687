"""Feature-extractor inputs and outputs: audio files, waveform checks and batching, config files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import av
import numpy as np
import soundfile as sf
import soxr
import torch
from torch import Tensor

from ..errors import AudioError, CheckpointError, InputError

CONFIG_NAME = "preprocessor_config.json"
PROCESSOR_CONFIG_NAME = "processor_config.json"  # transformers 5 nests the feature extractor here
# How far an MP3 may fall short of the frame count libsndfile estimates from its header before we call it
# truncated: without a Xing/LAME header that count is a size/bitrate estimate, exact only to a frame or so.
_MP3_SLACK_FRAMES = 2304
# WAV writers that stream to a pipe cannot seek back, so they leave these placeholder sizes in the header.
_STREAMING_WAV_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF}
# Suggested divisor per integer dtype, used in the error that tells the user how to convert to float.
_INT_SCALES = {"int8": "128", "int16": "32768", "int32": "2147483648", "uint8": "128 after subtracting 128"}


def load_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Decode an audio (or video) file to a mono float32 waveform at `sampling_rate`.

    Plain audio (wav, flac, ogg, mp3, ...) is decoded with soundfile; anything libsndfile does not recognise
    (m4a/aac, opus in webm, the soundtrack of a video, ...) with PyAV. Channels are averaged, and a file at
    another rate is resampled with soxr "HQ" and padded/trimmed to ceil(n * sampling_rate / file_rate)
    samples, the same steps (and samples) as transformers' soundfile backend and `librosa.load`.

    Args:
        path: The file to read.
        sampling_rate: Rate of the returned waveform in Hz.

    Returns:
        Samples in [-1, 1], (N,) float32.

    Raises:
        AudioError: The file is missing, a folder, empty, unreadable, not audio, truncated or corrupt, has
            no audio stream, or holds no samples.
        InputError: `path` or `sampling_rate` has the wrong type or value.
    """
    path = _check_path(path)
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int) or sampling_rate <= 0:
        raise InputError(f"sampling_rate must be a positive int (Hz), got {sampling_rate!r}")
    samples, file_rate = _decode(path)
    if samples.shape[1] == 0:
        raise AudioError(f"{path} contains no audio samples")
    check_finite_samples(samples.reshape(-1, samples.shape[-1]).T, path, file_rate, 0)
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    if file_rate == sampling_rate:
        return np.ascontiguousarray(mono, dtype=np.float32)
    num_samples = math.ceil(mono.shape[0] * sampling_rate / file_rate)
    resampled = soxr.resample(mono, file_rate, sampling_rate, quality="HQ")
    resampled = np.pad(resampled, (0, max(0, num_samples - resampled.shape[0])))[:num_samples]
    return np.ascontiguousarray(resampled, dtype=np.float32)


def check_finite_samples(block: np.ndarray, path: Path, rate: int, offset: int) -> None:
    """Refuse NaN or infinite samples (a float file can hold them) with the time of the first."""
    finite = np.isfinite(block)
    if not finite.all():
        first = int(np.argmin(finite.reshape(finite.shape[0], -1).all(axis=1))) + offset
        raise AudioError(f"{path} holds NaN or infinite samples (the first at {first / rate:.3f} s)")


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected an audio file path (str or PathLike), got {type(path).__name__}")
    path = Path(path).expanduser()
    if not path.exists():
        raise AudioError(f"audio file {path} does not exist")
    if path.is_dir():
        raise AudioError(f"{path} is a folder; expected an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"audio file {path} cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    return path


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Return (channels, samples) float32 and the file's rate, trying soundfile first, then PyAV."""
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        # libsndfile does not know the container; ffmpeg (PyAV) knows many more.
        return _decode_pyav(path, error)
    with handle:
        declared = handle.frames
        try:
            data = handle.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, ValueError) as error:
            raise AudioError(f"{path} is corrupt or truncated: {error}") from error
        _check_complete(path, handle, data.shape[0], declared)
        return data.T, handle.samplerate


def _check_complete(path: Path, handle: sf.SoundFile, read: int, declared: int) -> None:
    """Raise AudioError when the header promises more audio than the file holds."""
    log = handle.extra_info
    if "ended unexpectedly" in log:
        raise AudioError(f"{path} is truncated: the {handle.format} stream ends unexpectedly")
    for header_bytes, present_bytes in re.findall(r"data : (\d+) \(should be (\d+)\)", log):
        header_bytes, present_bytes = int(header_bytes), int(present_bytes)
        if header_bytes > present_bytes and header_bytes not in _STREAMING_WAV_SIZES:
            raise AudioError(
                f"{path} is truncated: its header declares {header_bytes} bytes of audio data "
                f"but only {present_bytes} are present"
            )
    slack = max(_MP3_SLACK_FRAMES, declared // 100) if handle.format == "MP3" else 0
    if read < declared - slack:
        raise AudioError(f"{path} is truncated: its header declares {declared} frames, only {read} decode")


def _decode_pyav(path: Path, soundfile_error: Exception) -> tuple[np.ndarray, int]:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise AudioError(
            f"cannot decode {path}: not an audio or video format soundfile or ffmpeg can read, or a corrupt "
            f"or truncated file (soundfile: {soundfile_error}; ffmpeg: {error})"
        ) from error
    with container:
        if not container.streams.audio:
            kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "none"
            raise AudioError(f"{path} has no audio stream (streams found: {kinds})")
        try:
            return _decode_stream(container, container.streams.audio[0])
        except (av.FFmpegError, ValueError) as error:
            raise AudioError(
                f"{path} is corrupt or truncated: ffmpeg failed while decoding: {error}"
            ) from error


def _decode_stream(container: av.container.InputContainer, stream: av.AudioStream) -> tuple[np.ndarray, int]:
    # Convert every frame to planar float32 so that (channels, samples) chunks concatenate whatever the codec's
    # native sample format (s16, s32p, flt, ...); layout and rate are kept, since we downmix and resample ourselves.
    resampler = av.AudioResampler(format="fltp")
    chunks, rate = [], stream.rate
    for frame in container.decode(stream):
        rate = frame.sample_rate or rate
        chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
    chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    channels = stream.channels or 1
    if not chunks:
        return np.zeros((channels, 0), dtype=np.float32), rate or 1
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def validate_waveform(
    waveform: np.ndarray | Tensor, sampling_rate: int | None, expected_rate: int, name: str = "audio"
) -> Tensor:
    """Check one waveform given to a feature extractor and return it as a float32 tensor.

    float64 (and float16/bfloat16) input is cast to float32 first, as transformers does, so results match it.

    Args:
        waveform: Mono samples in [-1, 1], (N,), numpy or torch, any float dtype.
        sampling_rate: Rate the caller says the waveform has, in Hz. None skips the check (transformers only
            warns then): the caller vouches that the audio is at `expected_rate`.
        expected_rate: Rate the feature extractor was configured for, in Hz.
        name: How to call the waveform in error messages, e.g. "audio[2]".

    Returns:
        The samples, (N,) float32, on the waveform's device (CPU for numpy input).

    Raises:
        AudioError: Integer or complex samples, not 1-D, empty, NaN/inf samples, or a mismatched rate.
        InputError: `waveform` is not an array, or `sampling_rate` is not a number.
    """
    _check_rate(sampling_rate, expected_rate, name)
    waveform = _float_tensor(waveform, name)
    if waveform.ndim != 1:
        what = "a 0-d array (a single number)" if waveform.ndim == 0 else f"shape {tuple(waveform.shape)}"
        raise AudioError(
            f"{name} has {what}; expected a 1-D mono waveform: downmix channels (e.g. x.mean(axis=0)) "
            "or pass a list of 1-D clips for a batch"
        )
    if waveform.shape[0] == 0:
        raise AudioError(f"{name} is empty (0 samples)")
    # A NaN or inf anywhere makes the sum non-finite: one cheap reduction instead of a full mask per clip.
    if not bool(torch.isfinite(waveform.sum())) and not bool(torch.isfinite(waveform).all()):
        first = int((~torch.isfinite(waveform)).nonzero()[0, 0])
        raise AudioError(f"{name} contains NaN or infinite values (first at sample {first})")
    return waveform


def _float_tensor(waveform: Any, name: str) -> Tensor:
    """Convert a float numpy array or tensor to float32 torch, rejecting other types and dtypes."""
    if isinstance(waveform, np.generic):  # a numpy scalar: report it as the 0-d array it is
        waveform = np.asarray(waveform)
    if isinstance(waveform, np.ndarray):
        _check_dtype(name, waveform.dtype.kind, str(waveform.dtype))
        return torch.from_numpy(np.asarray(waveform, dtype=np.float32, order="C"))
    if isinstance(waveform, Tensor):
        kind = "c" if waveform.is_complex() else "f" if waveform.is_floating_point() else "i"
        kind = "b" if waveform.dtype == torch.bool else kind
        _check_dtype(name, kind, str(waveform.dtype).removeprefix("torch."))
        return waveform.detach().to(torch.float32)
    hint = "; read files with speechseq.audio.load_audio first" if isinstance(waveform, (str, Path)) else ""
    raise InputError(
        f"{name} must be a numpy array or torch tensor of samples, got {type(waveform).__name__}{hint}"
    )


def _check_rate(sampling_rate: int | None, expected_rate: int, name: str) -> None:
    if sampling_rate is None:
        return
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, Real):
        raise InputError(f"sampling_rate must be a number (Hz) or None, got {sampling_rate!r}")
    if sampling_rate != expected_rate:
        raise AudioError(
            f"{name} was sampled at {sampling_rate} Hz but this feature extractor expects {expected_rate} Hz; "
            f"resample it first, e.g. speechseq.audio.load_audio(path, sampling_rate={expected_rate}) "
            f"or soxr.resample(x, {sampling_rate}, {expected_rate})"
        )


def _check_dtype(name: str, kind: str, dtype: str) -> None:
    if kind in "iu":
        scale = _INT_SCALES.get(dtype, "its integer range")
        raise AudioError(f"{name}: expected a float waveform in [-1, 1], got {dtype}; divide by {scale}")
    if kind != "f":
        raise AudioError(f"{name}: expected a real float waveform in [-1, 1], got {dtype}")


def collect_waveforms(audio: Any, sampling_rate: int | None, expected_rate: int) -> list[Tensor]:
    """Validate one waveform or a list of them (see `validate_waveform`) and return (N_i,) float32 tensors."""
    if isinstance(audio, (list, tuple)):
        if not audio:
            raise InputError("audio is an empty list; pass at least one waveform")
        if all(isinstance(item, Real) for item in audio):
            raise InputError(
                "audio is a list of numbers; pass one waveform as np.asarray(samples, np.float32)"
            )
        return [
            validate_waveform(x, sampling_rate, expected_rate, f"audio[{i}]") for i, x in enumerate(audio)
        ]
    return [validate_waveform(audio, sampling_rate, expected_rate, "audio")]


def pad_waveforms(
    clips: list[Tensor], padding: bool, device: str | torch.device | None = None, fill: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Right-pad clips with `fill` into one batch.

    Args:
        clips: Waveforms (N_i,) float32.
        padding: Whether clips may differ in length; without padding they must not.
        device: Where to put the batch; default: the first clip's device.
        fill: Value of padded samples.

    Returns:
        The batch (B, max N_i) float32 and the lengths (B,) int64.
    """
    lengths = [clip.shape[0] for clip in clips]
    if not padding and len(set(lengths)) > 1:
        raise InputError(f"clips have different lengths {lengths} samples; pass padding=True to batch them")
    try:
        device = torch.device(device) if device is not None else clips[0].device
    except (RuntimeError, TypeError) as error:
        raise InputError(f"device {device!r} is not a torch device: {error}") from error
    batch = torch.full((len(clips), max(lengths)), fill, dtype=torch.float32, device=device)
    for row, clip in zip(batch, clips, strict=True):
        row[: clip.shape[0]] = clip
    return batch, torch.tensor(lengths, device=device)


_Config = TypeVar("_Config", bound="PreprocessorConfig")


@dataclasses.dataclass(frozen=True)
class PreprocessorConfig:
    """Base of the feature extractors: typed fields mapping one-to-one onto preprocessor_config.json keys."""

    feature_size: int = 80  # width of one feature vector (transformers shapes padding with it)
    sampling_rate: int = 16000  # Hz the audio must have
    padding_value: float = 0.0  # value of padded frames or samples
    padding_side: str = "right"  # only right padding is supported

    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = dict(
        int=(int,), float=(int, float), bool=(bool,), str=(str,)
    )
    _FORCED: ClassVar[dict[str, Any]] = {}  # keys transformers always writes with a fixed value

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in dataclasses.fields(self):
            value, allowed = getattr(self, field.name), self._TYPES[str(field.type)]
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise InputError(f"{name}: {field.name} must be {field.type}, got {value!r}")
            if field.type == "float":
                object.__setattr__(self, field.name, float(value))
        for key in ("feature_size", "sampling_rate", "num_mel_bins", "stride"):
            if getattr(self, key, 1) < 1:
                raise InputError(f"{name}: {key} must be >= 1, got {getattr(self, key)}")
        if self.padding_side != "right":
            raise InputError(f"{name}: padding_side {self.padding_side!r} is not supported; use 'right'")

    @classmethod
    def from_dict(cls: type[_Config], config: dict[str, Any]) -> _Config:
        """Build from a preprocessor config dict; unknown or obsolete keys are ignored."""
        if not isinstance(config, dict):
            raise InputError(f"{cls.__name__} config must be a dict, got {type(config).__name__}")
        kind = config.get("feature_extractor_type", cls.__name__)
        if kind != cls.__name__:
            raise InputError(
                f"feature_extractor_type is {kind!r}, not {cls.__name__!r}; use load_feature_extractor"
            )
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in names})

    @classmethod
    def from_pretrained(cls: type[_Config], folder: str | os.PathLike) -> _Config:
        """Load from a folder holding transformers' preprocessor_config.json."""
        path, config = read_preprocessor_config(folder)
        try:
            return cls.from_dict(config)
        except InputError as error:
            raise CheckpointError(f"{path}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """Return the config as transformers writes it, including `feature_extractor_type`."""
        return {**dataclasses.asdict(self), **self._FORCED, "feature_extractor_type": type(self).__name__}

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write preprocessor_config.json into `folder` (created if needed) and return its path."""
        path = Path(folder) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def read_preprocessor_config(folder: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Return the path of `folder`'s feature extractor config and its content, a JSON object.

    That is preprocessor_config.json or, failing it, the "feature_extractor" object of processor_config.json,
    where transformers 5 saves a processor's feature extractor.
    """
    path = Path(folder) / CONFIG_NAME
    if path.is_file():
        return path, _json_object(path)
    processor = Path(folder) / PROCESSOR_CONFIG_NAME
    if processor.is_file():
        nested = _json_object(processor).get("feature_extractor")
        if isinstance(nested, dict):
            return processor, nested
    raise CheckpointError(
        f"{path} not found; the checkpoint folder needs a {CONFIG_NAME} (or a {PROCESSOR_CONFIG_NAME} with "
        'a "feature_extractor" entry)'
    )


def _json_object(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(config).__name__}")
    return config
