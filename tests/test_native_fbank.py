"""The native fbank steps (audio/fbank.c): the numpy path's results, and transformers' through either path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechseq.audio import Speech2TextFeatureExtractor, kaldi_fbank
from speechseq.audio import fbank as fbank_module
from speechseq.nn import native

needs_kernel = pytest.mark.skipif(native.fbank_kernels() is None, reason="native library not built")


def _numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_fbank", None)


def _clips(seed: int, sizes: list[int], dtype=np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    clips = []
    for size in sizes:
        t = np.arange(size) / 16000
        tone = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 7000) * t) * np.exp(-t)
        clips.append((tone + rng.uniform(1e-4, 0.1) * rng.standard_normal(size)).astype(dtype))
    return clips


def _both(monkeypatch, clips, rate=16000, mel_bins=80, dither=0.0):
    """Features of the clips through the native steps, then through numpy's, with the same dither draws."""
    results = []
    for native_path in (True, False):
        if not native_path:
            _numpy_path(monkeypatch)
        counts = [max(0, (clip.shape[0] - 400) // 160 + 1) for clip in clips]
        out = np.full((len(clips), max(counts), mel_bins), 7.0, np.float32)
        torch.manual_seed(0)
        fbank_module.fbank_cpu(clips, counts, rate, dither, out)
        results.append(out)
    return results


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("rate", "mel_bins"), [(16000, 80), (16000, 40), (8000, 23), (16000, 128)])
def test_native_steps_match_numpy_steps(monkeypatch, dtype, rate, mel_bins):
    # Frame counts that are not multiples of the 4 frames fbank.c takes at once, nor of the block size.
    clips = _clips(rate + mel_bins, [400, 561, 16000 + 77, 3 * 16000 + 1234], dtype)
    fast, slow = _both(monkeypatch, clips, rate, mel_bins)
    # Only the mel band sums and the log may round differently, in float64: at most one float32 ulp.
    np.testing.assert_array_max_ulp(fast, slow, maxulp=1)
    assert (fast == slow).mean() > 0.999


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dither", [0.0, 1.0])
def test_native_fft_input_is_the_numpy_steps_bit_for_bit(dtype, dither):
    # The FFT input (mean, DC removal, pre-emphasis, window) must round exactly as numpy's float64 steps,
    # so that pocketfft gives transformers' spectrum; float64 samples make the pairwise order count.
    count = 37
    samples = _clips(5, [(count - 1) * 160 + 400], dtype)[0]
    rows = fbank_module._BLOCK_FRAMES
    groups = fbank_module._mel_groups(16000, 80, rows)
    expected = fbank_module._Scratch(rows)
    out = np.empty((count, 80), np.float32)
    fbank_module._log_mel_block(samples, count, groups, dither, np.random.default_rng(9), expected, out)
    frames, _ = native.fbank_kernels()
    buffer = np.full((count, fbank_module.FFT_LENGTH), np.nan)
    noise = np.random.default_rng(9).standard_normal((count, fbank_module.FRAME_LENGTH))
    window = fbank_module._window()
    frames(
        samples.ctypes.data,
        dtype == np.float32,
        count,
        noise.ctypes.data,
        dither,
        window.ctypes.data,
        buffer.ctypes.data,
    )
    assert np.array_equal(buffer, expected.buffer[:count])


@needs_kernel
def test_native_dither_draws_match_numpy_path(monkeypatch):
    fast, slow = _both(monkeypatch, _clips(1, [16000, 9000]), dither=1.0)
    np.testing.assert_array_max_ulp(fast, slow, maxulp=1)


@needs_kernel
def test_native_strided_and_half_inputs(monkeypatch):
    strided = torch.from_numpy(_clips(2, [40000], np.float64)[0])[::2].unsqueeze(0)  # gaps between samples
    half = strided.to(torch.float16)
    fast = [kaldi_fbank(strided), kaldi_fbank(half)]
    _numpy_path(monkeypatch)
    slow = [kaldi_fbank(strided.contiguous()), kaldi_fbank(half)]
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_max_ulp(a.numpy(), b.numpy(), maxulp=1)


@needs_kernel
def test_native_nan_and_extremes_propagate_as_numpy_does(monkeypatch):
    clip = _clips(3, [8000])[0]
    loud = (clip * 1e20).astype(np.float32)  # energies near 1e54: logs of huge finite values
    silent = np.zeros(8000, np.float32)  # energies at the floor
    holed = clip.copy()
    holed[4000] = np.nan
    fast, slow = _both(monkeypatch, [loud, silent, holed])
    assert np.array_equal(np.isnan(fast), np.isnan(slow)) and np.isnan(fast[2]).any()
    np.testing.assert_array_max_ulp(fast[~np.isnan(fast)], slow[~np.isnan(slow)], maxulp=1)
    assert np.all(fast[1] == np.float32(np.log(np.float64(np.finfo(np.float32).eps))))


@pytest.mark.parametrize("path", ["native", "numpy"])
def test_either_path_matches_transformers(monkeypatch, path):
    transformers = pytest.importorskip("transformers")
    if path == "numpy":
        _numpy_path(monkeypatch)
    elif native.fbank_kernels() is None:
        pytest.skip("native library not built")
    clips = _clips(4, [16000, 23456, 7000])
    theirs = transformers.Speech2TextFeatureExtractor()(
        clips, sampling_rate=16000, padding=True, return_tensors="pt"
    )
    ours = Speech2TextFeatureExtractor()(clips, sampling_rate=16000)
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    assert float((ours["input_features"] - theirs["input_features"]).abs().max()) <= 1e-4
