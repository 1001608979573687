"""The feature extractors of the supported model families (filter banks: fbank.py).

The three extractors read and write transformers' preprocessor_config.json and return what transformers'
classes of the same name return (with return_tensors="pt"), bit for bit on CPU, but for whole blocks of
frames at once instead of one frame at a time, spread over torch.get_num_threads() threads.
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
from .fbank import FRAME_LENGTH, cpu_samples, fbank_cpu, kaldi_fbank, num_fbank_frames, run_parallel
from .io import PreprocessorConfig, collect_waveforms, pad_waveforms, read_preprocessor_config


def _normalise_clips(
    features: Tensor,
    lengths: Tensor,
    normalise: Callable[[np.ndarray], np.ndarray] | None,
    padding_value: float,
) -> Tensor:
    """Normalise each clip's valid rows and set the rest to padding_value, (B, T, ...) float32, in place on CPU.

    Clips run on torch.get_num_threads() threads; see `_normalise_rows`.
    """
    array = features.cpu().numpy()
    counts = lengths.tolist()
    run_parallel(
        len(counts), lambda _, clip: _normalise_rows(array[clip], counts[clip], normalise, padding_value)
    )
    return torch.from_numpy(array).to(features.device)


def _normalise_rows(
    rows: np.ndarray, length: int, normalise: Callable[[np.ndarray], np.ndarray] | None, padding_value: float
) -> None:
    """Normalise rows[:length] of one clip in place and set the rest to padding_value.

    Statistics use transformers' float32 numpy operations on the same float32 input, so they round alike:
    in a nearly constant mel bin, 1 / std amplifies float32 rounding of the mean to ~3e-4.
    """
    if normalise is not None:
        valid = rows[:length]
        normalised = normalise(valid)
        if normalised is not valid:
            valid[...] = normalised
    rows[length:] = padding_value


def _utterance_cmvn(x: np.ndarray, means: bool, variances: bool) -> np.ndarray:
    """Normalise x, (T, M) float32, in place with transformers' operations: the same roundings."""
    # A constant bin (digital silence) has std 0 and transformers divides by it (inf/NaN): give such a bin
    # 0 after mean removal (what its float32 mean residual should be), or leave it unscaled. Only bins equal
    # in a few sampled frames can be constant; max == min decides for those (a full check costs ~1/3 of CMVN).
    constant = None
    if variances and x.shape[0]:
        probe = x[[0, x.shape[0] // 3, 2 * x.shape[0] // 3, -1]]
        suspects = np.flatnonzero((probe == probe[0]).all(axis=0))
        if suspects.size:
            values = x[:, suspects]
            constant = suspects[values.max(axis=0) == values.min(axis=0)]
    if means:
        np.subtract(x, x.mean(axis=0), out=x)
    if variances:
        std = x.std(axis=0)
        if constant is not None and constant.size:
            std[constant] = 1.0
        np.divide(x, std, out=x)
        if constant is not None and constant.size and means:
            x[:, constant] = 0.0
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


def _outputs(name: str, values: Tensor, mask: Tensor, with_mask: bool, return_tensors: str | None) -> dict:
    """The extractor's result: torch tensors ("pt", and None, whose lists transformers gives are not kept) or
    numpy arrays ("np")."""
    if return_tensors not in ("pt", "np", None):
        raise InputError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
    outputs = {name: values, "attention_mask": mask.to(torch.int32)} if with_mask else {name: values}
    if return_tensors == "np":
        return {key: value.cpu().numpy() for key, value in outputs.items()}
    return outputs


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

    def _features(
        self,
        audio: Any,
        sampling_rate: int | None,
        padding: bool,
        device: Any,
        normalise: Callable[[np.ndarray], np.ndarray] | None,
        dither: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """Validate and batch the clips, compute their fbank and normalise each clip's valid frames.

        Returns:
            Features (B, T, M) float32 with padded frames set to padding_value, and frame counts (B,).
        """
        clips = collect_waveforms(audio, sampling_rate, self.sampling_rate)
        for index, clip in enumerate(clips):
            if clip.shape[0] < FRAME_LENGTH:
                raise AudioError(
                    f"audio[{index}] has {clip.shape[0]} samples; fbank features need at least "
                    f"{FRAME_LENGTH} samples (25 ms at 16 kHz) for one frame"
                )
        sizes = [clip.shape[0] for clip in clips]
        if _on_cpu(clips, device) and (padding or len(set(sizes)) == 1):
            # On CPU the clips need no padded copy: only their valid frames are computed.
            samples = [cpu_samples(clip) for clip in clips]
            frames = num_fbank_frames(torch.tensor(sizes))
        else:
            waveforms, lengths = pad_waveforms(clips, padding, device)  # raises for a bad device or lengths
            frames = num_fbank_frames(lengths)
            if waveforms.device.type != "cpu":
                features = kaldi_fbank(waveforms, self.sampling_rate, self.num_mel_bins, dither)
                return _normalise_clips(features, frames, normalise, self.padding_value), frames
            samples = list(cpu_samples(waveforms))
        # Each clip is normalised as soon as its frames are done, while other threads go on with other clips.
        counts = frames.tolist()
        out = np.empty((len(counts), max(counts), self.num_mel_bins), np.float32)

        def finish(clip: int) -> None:
            _normalise_rows(out[clip], counts[clip], normalise, self.padding_value)

        fbank_cpu(samples, counts, self.sampling_rate, dither, out, finish)
        return torch.from_numpy(out), frames


def _on_cpu(clips: list[Tensor], device: Any) -> bool:
    """Whether the clips are on CPU and `device` asks for CPU (or nothing); False for a device torch rejects."""
    try:
        return torch.device(device if device is not None else "cpu").type == "cpu" and all(
            clip.device.type == "cpu" for clip in clips
        )
    except (RuntimeError, TypeError):
        return False


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
        return_tensors: str | None = "pt",
    ) -> dict[str, Tensor]:
        """Turn one waveform or a list of them into normalised log-mel frames.

        Args:
            audio: A mono waveform (N,) in [-1, 1] (numpy or torch), or a list of them.
            sampling_rate: Rate of `audio` in Hz; None trusts that it is `self.sampling_rate`.
            padding: True/"longest" pads to the longest clip; False/"do_not_pad" requires equal lengths.
            return_attention_mask: Whether to return the mask; None means yes.
            device: Where to compute and return tensors; default: the first clip's device.
            return_tensors: "pt" (and None) for torch tensors, "np" for numpy arrays.

        Returns:
            "input_features" (B, T, num_mel_bins) float32 with padded frames set to padding_value, and
            "attention_mask" (B, T) int32, 1 on valid frames.
        """
        cmvn = functools.partial(_utterance_cmvn, means=self.normalize_means, variances=self.normalize_vars)
        normalise = cmvn if self.do_ceptral_normalize else None
        pads = _wants_padding(padding)
        features, lengths = self._features(audio, sampling_rate, pads, device, normalise, self.dither)
        mask = _length_mask(lengths, features.shape[1])
        return _outputs("input_features", features, mask, return_attention_mask is not False, return_tensors)


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
        return_tensors: str | None = "pt",
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
        normalise = _normalise_mel_bins if do_normalize_per_mel_bins else None
        features, lengths = self._features(audio, sampling_rate, pads, device, normalise)
        if pads and pad_to_multiple_of:
            extra = -features.shape[1] % pad_to_multiple_of
            features = torch.nn.functional.pad(features, (0, 0, 0, extra), value=self.padding_value)
        batch, num_frames, width = features.shape
        usable = num_frames - num_frames % self.stride  # a ragged last frame is dropped, as in transformers
        features = features[:, :usable].reshape(batch, usable // self.stride, width * self.stride)
        mask = _length_mask(lengths, usable)[:, (1 if self.stride > 1 else 0) :: self.stride]
        return _outputs("input_features", features, mask, return_attention_mask is not False, return_tensors)


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
        return_tensors: str | None = "pt",
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
        return _outputs(
            "input_values", values, _length_mask(lengths, values.shape[1]), with_mask, return_tensors
        )


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
