"""Kaldi-compatible log-mel filter banks and the feature extractors of the supported model families.

The three extractors read and write transformers' preprocessor_config.json and return what transformers'
classes of the same name return (with return_tensors="pt"), bit for bit on CPU, but for whole blocks of
frames at once instead of one frame at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import AudioError, CheckpointError, InputError
from .io import PreprocessorConfig, collect_waveforms, pad_waveforms, read_preprocessor_config

# Frame geometry is fixed in samples, whatever the sampling rate, as in transformers' numpy fbank path.
FRAME_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
FFT_LENGTH = 512
_PREEMPHASIS = 0.97
_MEL_FLOOR = 1.192092955078125e-07  # float32 eps: Kaldi's floor on mel energies before the log
_LOW_FREQUENCY = 20.0  # Hz, Kaldi's default low edge of the first mel filter
# Frames transformed at once on CPU: blocks of a few MB stay in cache and in malloc's reused heap (larger ones
# are mmapped afresh on every call and page-faulted in), and an hour-long clip never needs GBs of float64.
_BLOCK_FRAMES = 512


def num_fbank_frames(num_samples: Tensor) -> Tensor:
    """Count the frames Kaldi's fbank yields with snip_edges: 1 + (N - 400) // 160, and 0 below 400 samples."""
    return ((num_samples - FRAME_LENGTH) // HOP_LENGTH + 1).clamp_min(0)


@functools.lru_cache(maxsize=8)
def _povey_window(device: torch.device) -> Tensor:
    # Symmetric Hann raised to 0.85 (Kaldi's "povey" window), built with numpy like transformers' window_function.
    return torch.from_numpy(np.hanning(FRAME_LENGTH) ** 0.85).to(device)


@functools.lru_cache(maxsize=8)
def _kaldi_mel_bank(sampling_rate: int, num_mel_bins: int, device: torch.device) -> Tensor:
    """Build Kaldi's triangular mel filters, (FFT_LENGTH // 2 + 1, num_mel_bins) float64.

    The triangles are linear in mel (1127 ln(1 + f / 700)), not in Hz, span 20 Hz to Nyquist and are not
    area-normalised; this is transformers' mel_filter_bank(mel_scale="kaldi", triangularize_in_mel_space=True).
    """

    def to_mel(hertz: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log(1.0 + np.asarray(hertz, dtype=np.float64) / 700.0)

    centres = np.linspace(to_mel(_LOW_FREQUENCY), to_mel(sampling_rate // 2), num_mel_bins + 2)
    bin_mels = to_mel(sampling_rate / FFT_LENGTH * np.arange(FFT_LENGTH // 2 + 1))
    widths = np.diff(centres)
    offsets = centres[None, :] - bin_mels[:, None]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling))).to(device)


@functools.lru_cache(maxsize=8)
def _sparse_mel_bank(sampling_rate: int, num_mel_bins: int, device: torch.device) -> Tensor:
    # Each filter spans a few of the 257 bins (~500 weights of 20k are non-zero): a sparse product is ~3x
    # faster than the dense one, and over positive terms it changes nothing but float64 rounding order.
    return _kaldi_mel_bank(sampling_rate, num_mel_bins, device).T.contiguous().to_sparse()


def kaldi_fbank(
    waveforms: Tensor, sampling_rate: int = 16000, num_mel_bins: int = 80, dither: float = 0.0
) -> Tensor:
    """Compute Kaldi-compatible log-mel filter-bank frames for a batch of waveforms.

    On CPU bit-identical to transformers' numpy path (float64 inside, float32 out; on GPU torch's FFT may
    differ by a float32 ulp), with the defaults of torchaudio.compliance.kaldi.fbank: 400-sample frames every 160 samples (snip_edges), DC removal,
    pre-emphasis 0.97, povey window, 512-point power spectrum, Kaldi mel filters from 20 Hz to Nyquist, floor
    1.19e-7, natural log. Frames overlapping the padding of a shorter clip are garbage: see `num_fbank_frames`.

    Args:
        waveforms: Samples in [-1, 1], (B, N); scaled to the 16-bit range Kaldi expects here. transformers
            casts input to float32 first; pass float32 to match it.
        sampling_rate: Rate of the waveforms in Hz; it places the mel filters.
        num_mel_bins: Number of mel filters M.
        dither: Standard deviation (in 16-bit units) of Gaussian noise added to each frame; 0 disables it.

    Returns:
        Log-mel energies, (B, T, M) float32, T = num_fbank_frames(N).
    """
    if waveforms.ndim != 2:
        raise InputError(f"waveforms must be a (batch, samples) tensor, got shape {tuple(waveforms.shape)}")
    device, batch = waveforms.device, waveforms.shape[0]
    num_frames = max(0, (waveforms.shape[1] - FRAME_LENGTH) // HOP_LENGTH + 1)
    features = torch.empty(batch, num_frames, num_mel_bins, dtype=torch.float32, device=device)
    if num_frames == 0:
        return features
    window, bank = _povey_window(device), _sparse_mel_bank(sampling_rate, num_mel_bins, device)
    step = min(num_frames, max(1, (_BLOCK_FRAMES if device.type == "cpu" else 64 * _BLOCK_FRAMES) // batch))
    # One zero-padded FFT buffer for all blocks: only its first 400 columns are ever written.
    buffer = torch.zeros(batch, step, FFT_LENGTH, dtype=torch.float64, device=device)
    for start in range(0, num_frames, step):
        count = min(step, num_frames - start)
        segment = waveforms[:, start * HOP_LENGTH : (start + count - 1) * HOP_LENGTH + FRAME_LENGTH]
        features[:, start : start + count] = _log_mel(segment, window, bank, buffer[:, :count], dither)
    return features


def _log_mel(segment: Tensor, window: Tensor, bank: Tensor, buffer: Tensor, dither: float) -> Tensor:
    """Turn the samples of one block of frames, (B, L), into log-mel frames (B, t, M); t = buffer.shape[1]."""
    frames = segment.to(torch.float64, copy=True).mul_(32768.0).unfold(-1, FRAME_LENGTH, HOP_LENGTH)
    if dither != 0.0:
        frames = frames + dither * torch.randn_like(frames)
    # transformers' float64 steps in its order (DC removal, then x[t] - (0.97 x[t-1]) with x[-1] = x[0]), so
    # that roundings agree: CMVN's 1 / std can blow a 1-ulp difference up to 1e-4 in a nearly constant bin.
    centred = frames - frames.mean(dim=-1, keepdim=True)
    torch.sub(centred[..., 1:], centred[..., :-1] * _PREEMPHASIS, out=buffer[..., 1:FRAME_LENGTH])
    buffer[..., 0] = centred[..., 0] * (1.0 - _PREEMPHASIS)
    buffer[..., :FRAME_LENGTH] *= window
    # transformers stores the spectrum as complex64 before taking |X|^2 in float64; rounding alike keeps parity.
    parts = torch.view_as_real(_rfft(buffer)).to(torch.float32).to(torch.float64).square_()
    power = (parts[..., 0] + parts[..., 1]).flatten(0, 1)
    mel = torch.sparse.mm(bank, power.T).clamp_min_(_MEL_FLOOR).log_()
    return mel.T.unflatten(0, buffer.shape[:2])


def _rfft(frames: Tensor) -> Tensor:
    # On CPU, numpy's pocketfft is the FFT transformers runs (torch's, MKL, rounds differently) and as fast.
    if frames.device.type == "cpu":
        return torch.from_numpy(np.fft.rfft(frames.numpy(), axis=-1))
    return torch.fft.rfft(frames)


def _normalise_clips(
    features: Tensor,
    lengths: Tensor,
    normalise: Callable[[np.ndarray], np.ndarray] | None,
    padding_value: float,
) -> Tensor:
    """Normalise each clip's valid rows and set the rest to padding_value, (B, T, ...) float32, in place on CPU.

    Statistics use transformers' float32 numpy operations on the same float32 input, so they round alike:
    in a nearly constant mel bin, 1 / std amplifies float32 rounding of the mean to ~3e-4.
    """
    array = features.cpu().numpy()
    for row, length in zip(array, lengths.tolist(), strict=True):
        if normalise is not None:
            row[:length] = normalise(row[:length])
        row[length:] = padding_value
    return torch.from_numpy(array).to(features.device)


def _utterance_cmvn(x: np.ndarray, means: bool, variances: bool) -> np.ndarray:
    # A constant bin (digital silence) has std 0 and transformers divides by it (inf/NaN): give such a bin
    # 0 after mean removal (what its float32 mean residual should be), or leave it unscaled.
    constant = x.max(axis=0) == x.min(axis=0)
    if means:
        x = x - x.mean(axis=0)
    if variances:
        scaled = x / np.where(constant, np.float32(1.0), x.std(axis=0))
        x = np.where(constant & means, np.float32(0.0), scaled)
    return x


def _normalise_mel_bins(x: np.ndarray) -> np.ndarray:
    # transformers normalises the transposed (column-major) fbank output, which numpy sums pairwise.
    x = np.asfortranarray(x)
    # One frame has no sample variance (ddof=1 gives NaN in transformers); take it as 0.
    variance = x.var(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1], np.float32)
    return (x - x.mean(axis=0)) / np.sqrt(variance + 1e-7)


def _zero_mean_unit_variance(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def _length_mask(lengths: Tensor, size: int) -> Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _outputs(name: str, values: Tensor, mask: Tensor, with_mask: bool) -> dict[str, Tensor]:
    return {name: values, "attention_mask": mask.to(torch.int32)} if with_mask else {name: values}


def _wants_padding(padding: bool | str) -> bool:
    if padding in (True, "longest", False, "do_not_pad"):
        return padding in (True, "longest")
    raise InputError(f"padding must be True, False, 'longest' or 'do_not_pad', got {padding!r}")


@dataclasses.dataclass(frozen=True)
class _FbankFeatureExtractor(PreprocessorConfig):
    """Config and shared steps of the extractors built on Kaldi fbank frames."""

    num_mel_bins: int = 80  # mel filters per frame

    model_input_names: ClassVar[list[str]] = ["input_features", "attention_mask"]
    return_attention_mask: ClassVar[bool] = True  # transformers forces it on for fbank extractors
    _FORCED: ClassVar[dict[str, Any]] = {"return_attention_mask": True}

    def _fbank(self, audio: Any, sampling_rate: int | None, padding: bool, device: Any, dither: float = 0.0):
        """Validate and batch the clips and compute their fbank: (B, T, M) float32 and frame counts (B,)."""
        clips = collect_waveforms(audio, sampling_rate, self.sampling_rate)
        for index, clip in enumerate(clips):
            if clip.shape[0] < FRAME_LENGTH:
                raise AudioError(
                    f"audio[{index}] has {clip.shape[0]} samples; fbank features need at least "
                    f"{FRAME_LENGTH} samples (25 ms at 16 kHz) for one frame"
                )
        waveforms, lengths = pad_waveforms(clips, padding, device)
        features = kaldi_fbank(waveforms, self.sampling_rate, self.num_mel_bins, dither)
        return features, num_fbank_frames(lengths)


@dataclasses.dataclass(frozen=True)
class Speech2TextFeatureExtractor(_FbankFeatureExtractor):
    """Log-mel fbank with utterance-level CMVN, as transformers' Speech2TextFeatureExtractor (numpy path).

    Deliberate deviation: a mel bin that is constant over a clip (digital silence, a one-frame clip) has std
    0; transformers divides by it and returns inf or NaN, we return 0 there (or, with normalize_means off,
    the unscaled value), so silence gives finite features. Other bins match transformers bit for bit.
    """

    dither: float = 0.0  # Gaussian noise std per frame (16-bit units); 0 keeps results deterministic
    do_ceptral_normalize: bool = True  # sic: transformers' key for utterance CMVN
    normalize_means: bool = True  # subtract the per-bin mean over valid frames
    normalize_vars: bool = True  # divide by the per-bin std (ddof 0) over valid frames

    def __call__(
        self,
        audio: Any,
        sampling_rate: int | None = None,
        padding: bool | str = True,
        return_attention_mask: bool | None = None,
        device: str | torch.device | None = None,
    ) -> dict[str, Tensor]:
        """Turn one waveform or a list of them into normalised log-mel frames.

        Args:
            audio: A mono waveform (N,) in [-1, 1] (numpy or torch), or a list of them.
            sampling_rate: Rate of `audio` in Hz; None trusts that it is `self.sampling_rate`.
            padding: True/"longest" pads to the longest clip; False/"do_not_pad" requires equal lengths.
            return_attention_mask: Whether to return the mask; None means yes.
            device: Where to compute and return tensors; default: the first clip's device.

        Returns:
            "input_features" (B, T, num_mel_bins) float32 with padded frames set to padding_value, and
            "attention_mask" (B, T) int32, 1 on valid frames.
        """
        features, lengths = self._fbank(audio, sampling_rate, _wants_padding(padding), device, self.dither)
        cmvn = functools.partial(_utterance_cmvn, means=self.normalize_means, variances=self.normalize_vars)
        normalise = cmvn if self.do_ceptral_normalize else None
        features = _normalise_clips(features, lengths, normalise, self.padding_value)
        mask = _length_mask(lengths, features.shape[1])
        return _outputs("input_features", features, mask, return_attention_mask is not False)


@dataclasses.dataclass(frozen=True)
class SeamlessM4TFeatureExtractor(_FbankFeatureExtractor):
    """Log-mel fbank normalised per mel bin and stacked in pairs: the Wav2Vec2-BERT (w2v-bert-2.0) front end.

    As transformers' SeamlessM4TFeatureExtractor: (x - mean) / sqrt(var(ddof=1) + 1e-7) per clip before
    padding, padding to the longest clip rounded up to `pad_to_multiple_of`, then `stride` consecutive frames
    concatenated. Deviation: a one-frame clip (no sample variance; NaN in transformers) normalises to zeros.
    """

    stride: int = 2  # frames concatenated into one output vector

    def __call__(
        self,
        audio: Any,
        sampling_rate: int | None = None,
        padding: bool | str = True,
        return_attention_mask: bool | None = None,
        device: str | torch.device | None = None,
        pad_to_multiple_of: int | None = 2,
        do_normalize_per_mel_bins: bool = True,
    ) -> dict[str, Tensor]:
        """Turn one waveform or a list of them into stacked, normalised log-mel frames.

        Args are those of `Speech2TextFeatureExtractor.__call__`, plus:
            pad_to_multiple_of: Round the padded frame count up to a multiple of this (when padding).
            do_normalize_per_mel_bins: Whether to normalise each mel bin over the clip's frames.

        Returns:
            "input_features" (B, T // stride, num_mel_bins * stride) float32 and "attention_mask"
            (B, T // stride) int32: the frame mask at indices i with i % stride == 1, as in transformers.
        """
        pads = _wants_padding(padding)
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1
        ):
            raise InputError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        features, lengths = self._fbank(audio, sampling_rate, pads, device)
        normalise = _normalise_mel_bins if do_normalize_per_mel_bins else None
        features = _normalise_clips(features, lengths, normalise, self.padding_value)
        if pads and pad_to_multiple_of:
            extra = -features.shape[1] % pad_to_multiple_of
            features = torch.nn.functional.pad(features, (0, 0, 0, extra), value=self.padding_value)
        batch, num_frames, width = features.shape
        usable = num_frames - num_frames % self.stride  # a ragged last frame is dropped, as in transformers
        features = features[:, :usable].reshape(batch, usable // self.stride, width * self.stride)
        mask = _length_mask(lengths, usable)[:, (1 if self.stride > 1 else 0) :: self.stride]
        return _outputs("input_features", features, mask, return_attention_mask is not False)


@dataclasses.dataclass(frozen=True)
class Wav2Vec2FeatureExtractor(PreprocessorConfig):
    """Raw waveform, zero-mean unit-variance per clip: the Wav2Vec2 / HuBERT front end.

    As transformers: with an attention mask the statistics cover the valid samples and padded samples are
    reset to padding_value; without one (return_attention_mask False, e.g. wav2vec2-base-960h) they cover
    the whole padded row, padding included, and padded samples keep their normalised value.
    """

    model_input_names: ClassVar[list[str]] = ["input_values", "attention_mask"]
    feature_size: int = 1  # one value per time step
    return_attention_mask: bool = False  # default for return_attention_mask=None; also decides the stats
    do_normalize: bool = True  # zero-mean unit-variance per clip (eps 1e-7 inside the sqrt)

    def __call__(
        self,
        audio: Any,
        sampling_rate: int | None = None,
        padding: bool | str = True,
        return_attention_mask: bool | None = None,
        device: str | torch.device | None = None,
    ) -> dict[str, Tensor]:
        """Batch one waveform or a list of them into normalised input values.

        Args are those of `Speech2TextFeatureExtractor.__call__`, except that return_attention_mask=None
        follows the config's `return_attention_mask`.

        Returns:
            "input_values" (B, N) float32 and, if asked for, "attention_mask" (B, N) int32.
        """
        with_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        clips = collect_waveforms(audio, sampling_rate, self.sampling_rate)
        values, lengths = pad_waveforms(clips, _wants_padding(padding), device, fill=self.padding_value)
        if self.do_normalize:
            counts = lengths if with_mask else torch.full_like(lengths, values.shape[1])
            values = _normalise_clips(values, counts, _zero_mean_unit_variance, self.padding_value)
        return _outputs("input_values", values, _length_mask(lengths, values.shape[1]), with_mask)


FEATURE_EXTRACTORS: dict[str, type[PreprocessorConfig]] = {
    cls.__name__: cls
    for cls in (Speech2TextFeatureExtractor, SeamlessM4TFeatureExtractor, Wav2Vec2FeatureExtractor)
}


def load_feature_extractor(folder: str | os.PathLike) -> PreprocessorConfig:
    """Load the extractor named by `feature_extractor_type` in the folder's preprocessor_config.json."""
    path, config = read_preprocessor_config(folder)
    kind = config.get("feature_extractor_type")
    if kind not in FEATURE_EXTRACTORS:
        raise CheckpointError(
            f"{path}: feature_extractor_type {kind!r} is not supported; expected one of {sorted(FEATURE_EXTRACTORS)}"
        )
    return FEATURE_EXTRACTORS[kind].from_pretrained(folder)
