"""Kaldi-compatible log-mel filter banks, bit for bit as transformers' numpy path computes them on CPU.

Frames are transformed in blocks of whole clips rather than one at a time, and the blocks are spread over
torch.get_num_threads() threads (numpy and ctypes release the GIL). Each block's steps before and after
numpy's FFT run in audio/fbank.c where the native library is built (nn/native.py), else as numpy operations.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..nn import native

# Frame geometry is fixed in samples, whatever the sampling rate, as in transformers' numpy fbank path.
FRAME_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
FFT_LENGTH = 512
_PREEMPHASIS = 0.97
_MEL_FLOOR = 1.192092955078125e-07  # float32 eps: Kaldi's floor on mel energies before the log
_LOW_FREQUENCY = 20.0  # Hz, Kaldi's default low edge of the first mel filter
# Frames of one clip transformed at once on CPU, by one thread (numpy releases the GIL): long enough that
# numpy's per-call overhead and the threads' hand-overs of the GIL stay small, short enough that a 10 s clip
# still makes 2 blocks, and that a thread's scratch (~7 MB of float64) stays bounded however long the audio.
_BLOCK_FRAMES = 512
# Frames of all clips transformed at once on GPU.
_GPU_BLOCK_FRAMES = 64 * 512
# OpenBLAS runs a matrix product on several threads of its own (costly here, ~40x slower when our threads
# already use the cores) once m * n * k exceeds 4 * 65536; the mel products of a block stay below 3 * 65536.
_BLAS_SERIAL_SIZE = 3 * 65536


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
    differ by a float32 ulp), with the defaults of torchaudio.compliance.kaldi.fbank: 400-sample frames every
    160 samples (snip_edges), DC removal, pre-emphasis 0.97, povey window, 512-point power spectrum, Kaldi mel
    filters from 20 Hz to Nyquist, floor 1.19e-7, natural log. Frames overlapping the padding of a shorter
    clip are garbage: see `num_fbank_frames`. On CPU, blocks of frames run on torch.get_num_threads() threads.

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
    if device.type == "cpu":
        features = np.empty((batch, num_frames, num_mel_bins), np.float32)
        fbank_cpu(list(cpu_samples(waveforms)), [num_frames] * batch, sampling_rate, dither, features)
        return torch.from_numpy(features)
    features = torch.empty(batch, num_frames, num_mel_bins, dtype=torch.float32, device=device)
    if num_frames == 0:
        return features
    window, bank = _povey_window(device), _sparse_mel_bank(sampling_rate, num_mel_bins, device)
    step = min(num_frames, max(1, _GPU_BLOCK_FRAMES // batch))
    # One zero-padded FFT buffer for all blocks: only its first 400 columns are ever written.
    buffer = torch.zeros(batch, step, FFT_LENGTH, dtype=torch.float64, device=device)
    for start in range(0, num_frames, step):
        count = min(step, num_frames - start)
        segment = waveforms[:, start * HOP_LENGTH : (start + count - 1) * HOP_LENGTH + FRAME_LENGTH]
        features[:, start : start + count] = _log_mel(segment, window, bank, buffer[:, :count], dither)
    return features


def _log_mel(segment: Tensor, window: Tensor, bank: Tensor, buffer: Tensor, dither: float) -> Tensor:
    """Turn the samples of one block of frames, (B, L), into log-mel frames (B, t, M) with torch (GPU)."""
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
    parts = torch.view_as_real(torch.fft.rfft(buffer)).to(torch.float32).to(torch.float64).square_()
    power = (parts[..., 0] + parts[..., 1]).flatten(0, 1)
    mel = torch.sparse.mm(bank, power.T).clamp_min_(_MEL_FLOOR).log_()
    return mel.T.unflatten(0, buffer.shape[:2])


def cpu_samples(waveforms: Tensor) -> np.ndarray:
    """Return CPU waveforms, (B, N) or (N,), as a numpy float32 or float64 array without copying if possible."""
    waveforms = waveforms.detach()
    if waveforms.dtype not in (torch.float32, torch.float64):
        waveforms = waveforms.to(torch.float32)
    return waveforms.numpy()


def _filter_spans(bank: np.ndarray) -> list[tuple[int, int] | None]:
    """Each filter's (first, last + 1) non-zero FFT bin in bank (bins, filters); None for an all-zero one."""
    spans = []
    for column in bank.T:
        nonzero = np.flatnonzero(column)
        spans.append((int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else None)
    return spans


@functools.lru_cache(maxsize=8)
def _mel_groups(
    sampling_rate: int, num_mel_bins: int, rows: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Split the mel bank into groups of filters with the band of FFT bins they weigh: (j0, j1, k0, k1, W).

    W = bank[k0:k1, j0:j1] holds every non-zero weight of filters j0..j1-1, so that power[:, k0:k1] @ W gives
    their energies: float64 sums of the same positive terms as the full product, in another order. Each
    filter spans a few of the 257 bins, so ~8 such products do ~8x fewer multiply-adds than the full one; each
    is kept small enough (rows * W.size) for OpenBLAS to run it on the calling thread.
    """
    bank = _kaldi_mel_bank(sampling_rate, num_mel_bins, torch.device("cpu")).numpy()
    num_fft_bins = bank.shape[0]
    spans = _filter_spans(bank)
    limit = max(1, _BLAS_SERIAL_SIZE // max(1, rows))
    groups = []
    first = 0
    while first < num_mel_bins:
        low, high = num_fft_bins, 0  # the band of the group so far (none yet)
        stop = first
        while stop < num_mel_bins:
            low2, high2 = spans[stop] or (low, high)
            if stop > first and (max(high, high2) - min(low, low2)) * (stop + 1 - first) > limit:
                break
            low, high, stop = min(low, low2), max(high, high2), stop + 1
        low, high = (low, high) if low < high else (0, 1)  # all-zero filters: any one bin will do
        groups.append((first, stop, low, high, np.ascontiguousarray(bank[low:high, first:stop])))
        first = stop
    return groups


@functools.lru_cache(maxsize=8)
def _mel_bands(sampling_rate: int, num_mel_bins: int) -> tuple[np.ndarray, ...]:
    """Each mel filter's band of non-zero weights for fbank.c: (first bin, width, offset, weights).

    Filter j weighs bins first[j] .. first[j] + width[j] - 1 by weights[offset[j] ..]; an all-zero filter
    has width 0 (its energy is 0, floored as transformers floors it).
    """
    bank = _kaldi_mel_bank(sampling_rate, num_mel_bins, torch.device("cpu")).numpy()
    first, width, pieces = [], [], []
    for column, span in zip(bank.T, _filter_spans(bank), strict=True):
        low, high = span or (0, 0)
        first.append(low)
        width.append(high - low)
        pieces.append(column[low:high])
    offset = np.cumsum([0, *width[:-1]])
    weights = np.concatenate(pieces) if sum(width) else np.zeros(1)
    return (np.array(first, np.int64), np.array(width, np.int64), offset.astype(np.int64), weights)


class _Scratch:
    """One thread's work arrays for blocks of up to `rows` frames (~15 KB per frame, 7.5 MB for 512).

    Kept between calls (see `_scratch`): freeing MBs after every call lets malloc hand them back to the OS,
    and faulting them in afresh on the next call costs more than the work done in them.
    """

    def __init__(self, rows: int) -> None:
        bins = FFT_LENGTH // 2 + 1
        self.rows = rows
        self.samples = np.empty((rows - 1) * HOP_LENGTH + FRAME_LENGTH)
        step = self.samples.strides[0]
        self.frames = np.lib.stride_tricks.as_strided(
            self.samples, (rows, FRAME_LENGTH), (HOP_LENGTH * step, step), writeable=False
        )
        self.means = np.empty((rows, 1))
        self.centred = np.empty((rows, FRAME_LENGTH))  # centred, pre-emphasised, then the power spectrum
        self.buffer = np.zeros((rows, FFT_LENGTH))  # the FFT's input
        # 0.97 * centred, the complex128 spectrum, its rounded parts squared, then the mel energies
        self.squares = np.empty((rows, 2 * bins))
        self.spectrum = np.empty((rows, bins), np.complex64)


_SCRATCH_KEPT = 4  # scratch arrays kept for the next call: ~30 MB at most
_scratch_lock = threading.Lock()
_scratch_free: list[_Scratch] = []


@contextlib.contextmanager
def _scratch(rows: int) -> Iterator[_Scratch]:
    """Lend a _Scratch of at least `rows` rows, from those kept by earlier calls if one fits."""
    with _scratch_lock:
        scratch = _scratch_free.pop() if _scratch_free else None
    if scratch is None or scratch.rows < rows:
        scratch = _Scratch(max(rows, _BLOCK_FRAMES))
    try:
        yield scratch
    finally:
        with _scratch_lock:
            if len(_scratch_free) < _SCRATCH_KEPT:
                _scratch_free.append(scratch)


def fbank_cpu(
    clips: Sequence[np.ndarray],
    frame_counts: Sequence[int],
    sampling_rate: int,
    dither: float,
    out: np.ndarray,
    finish: Callable[[int], None] | None = None,
) -> None:
    """Write the first frame_counts[b] log-mel frames of clips[b] into out[b], (B, T, M) float32.

    Blocks of _BLOCK_FRAMES frames run on torch.get_num_threads() threads (numpy and ctypes release the
    GIL), through fbank.c's steps around numpy's FFT where the native library is built, else through numpy
    operations (_log_mel_block); either way each block rounds as transformers' frame loop up to the FFT.
    finish(b) runs, on whichever thread completes clip b, once its frames are all written (e.g. to
    normalise it while other clips are still being computed).
    """
    # Each clip in blocks of at most _BLOCK_FRAMES frames, of equal sizes (so that 998 frames make 2 x 499).
    step = max(1, _BLOCK_FRAMES)
    tasks = []
    remaining = []
    for clip, frames in enumerate(frame_counts):
        blocks = -(-frames // step)
        bounds = [frames * block // max(1, blocks) for block in range(blocks + 1)]
        tasks += [(clip, start, stop - start) for start, stop in itertools.pairwise(bounds)]
        remaining.append(blocks)
    if finish is not None:
        for clip in (b for b, n in enumerate(remaining) if n == 0):
            finish(clip)
    if not tasks:
        return
    # Dither draws from torch's generator, one seed per block, so that torch.manual_seed makes it repeatable.
    seeds = torch.randint(0, 2**63 - 1, (len(tasks),)).tolist() if dither != 0.0 else None
    rows = min(step, max(frame_counts))
    kernels = native.fbank_kernels() if out.dtype == np.float32 and out.strides[2] == 4 else None
    if kernels is not None:
        # Held here for the whole call: the C code gets only their addresses.
        window, bands = _window(), _mel_bands(sampling_rate, out.shape[2])
    else:
        groups = _mel_groups(sampling_rate, out.shape[2], step)
    lock = threading.Lock()

    def run(scratch: _Scratch, index: int) -> None:
        clip, start, count = tasks[index]
        samples = clips[clip][start * HOP_LENGTH : (start + count - 1) * HOP_LENGTH + FRAME_LENGTH]
        rng = np.random.default_rng(seeds[index]) if seeds is not None else None
        block = out[clip, start : start + count]
        if kernels is not None:
            _native_block(kernels, samples, count, window, bands, dither, rng, scratch, block)
        else:
            _log_mel_block(samples, count, groups, dither, rng, scratch, block)
        if finish is not None:
            with lock:
                remaining[clip] -= 1
                done = remaining[clip] == 0
            if done:
                finish(clip)

    run_parallel(len(tasks), run, lambda: _scratch(rows))


def _log_mel_block(
    samples: np.ndarray,
    count: int,
    groups: list[tuple[int, int, int, int, np.ndarray]],
    dither: float,
    rng: np.random.Generator | None,
    scratch: _Scratch,
    out: np.ndarray,
) -> None:
    """Write the log-mel energies of `count` frames of `samples` into out, (count, M) float32.

    Each step is one of transformers' float64 numpy operations in its order, on whole blocks of frames: the
    same pairwise mean, DC removal, then x[t] - (0.97 x[t-1]), window and pocketfft; so the FFT input is bit
    for bit transformers' and so is the spectrum it rounds to complex64. Only the mel sums (banded, not
    dense) may round differently, in float64, far below a float32 ulp. The care is needed: CMVN's 1 / std
    blows a 1-ulp difference in the fbank up to ~1e-4 in a nearly constant mel bin.
    """
    # x * 2**15 is exact in float32 as in float64; numpy computes it in the input's dtype, as transformers does.
    np.multiply(samples, 32768.0, out=scratch.samples[: samples.shape[0]])
    frames = scratch.frames[:count]
    if rng is not None:
        frames = frames + dither * rng.standard_normal(frames.shape)
    # np.mean's steps: a pairwise sum of each frame's 400 contiguous samples, then a division by 400.
    means = np.add.reduce(frames, axis=1, out=scratch.means[:count, 0])
    np.divide(means, FRAME_LENGTH, out=means)
    centred = np.subtract(frames, scratch.means[:count], out=scratch.centred[:count])
    # Pre-emphasis x[t] - (0.97 x[t-1]) as passes over whole contiguous blocks (~2x faster than row by row):
    # at the start of each row it mixes in the previous row's last sample, but the window is 0 there (as is
    # transformers' x[0] * (1 - 0.97) * 0, up to a sign that changes nothing).
    scaled = np.multiply(centred, _PREEMPHASIS, out=_rows(scratch.squares, count, FRAME_LENGTH))
    flat = centred.reshape(-1)
    np.subtract(flat[1:], scaled.reshape(-1)[:-1], out=flat[1:])
    # Columns from 400 on of the FFT buffer are never written: the FFT sees 512 zero-padded points.
    buffer = scratch.buffer[:count]
    np.multiply(centred, _tiled_window(scratch.rows)[:count], out=buffer[:, :FRAME_LENGTH])
    buffer[:, 0] = 0.0
    # transformers stores the spectrum as complex64, then squares |X| in float64 (exactly, from float32 parts).
    # (numpy's FFT is slower on 400 columns with n=512, or when it casts its output to complex64 itself.)
    exact = np.fft.rfft(buffer, axis=1, out=scratch.squares[:count].view(np.complex128))
    spectrum = scratch.spectrum[:count]
    np.copyto(spectrum, exact, casting="same_kind")
    squares = np.square(spectrum.view(np.float32), out=scratch.squares[:count], dtype=np.float64)
    power = np.add(squares[:, 0::2], squares[:, 1::2], out=_rows(scratch.centred, count, spectrum.shape[1]))
    mel = _rows(scratch.squares, count, out.shape[1])
    for first, stop, low, high, weights in groups:
        np.matmul(power[:, low:high], weights, out=mel[:, first:stop])
    np.maximum(mel, _MEL_FLOOR, out=mel)
    np.log(mel, out=out, casting="same_kind")


def _native_block(
    kernels: tuple,
    samples: np.ndarray,
    count: int,
    window: np.ndarray,
    bands: tuple[np.ndarray, ...],
    dither: float,
    rng: np.random.Generator | None,
    scratch: _Scratch,
    out: np.ndarray,
) -> None:
    """_log_mel_block's results through fbank.c's steps around numpy's FFT, in two GIL-free calls."""
    frames, mel = kernels
    if samples.dtype not in (np.float32, np.float64) or not samples.flags.c_contiguous:
        samples = np.ascontiguousarray(samples, np.float64 if samples.dtype == np.float64 else np.float32)
    noise = rng.standard_normal((count, FRAME_LENGTH)) if rng is not None else None
    buffer = scratch.buffer[:count]
    frames(
        samples.ctypes.data,
        samples.dtype == np.float32,
        count,
        None if noise is None else noise.ctypes.data,
        dither,
        window.ctypes.data,
        buffer.ctypes.data,
    )
    spectrum = np.fft.rfft(buffer, axis=1, out=scratch.squares[:count].view(np.complex128))
    first, width, offset, weights = bands
    mel(
        spectrum.ctypes.data,
        count,
        first.ctypes.data,
        width.ctypes.data,
        offset.ctypes.data,
        weights.ctypes.data,
        out.shape[1],
        out.ctypes.data,
        out.strides[0] // 4,
    )


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """The povey window as a contiguous float64 array, 0 at its first sample (fbank.c and _log_mel_block
    rely on it)."""
    window = np.ascontiguousarray(_povey_window(torch.device("cpu")).numpy())
    if window[0] != 0.0:
        raise AssertionError("the povey window must be 0 at its first sample")
    window.flags.writeable = False  # shared by every call
    return window


@functools.lru_cache(maxsize=4)
def _tiled_window(rows: int) -> np.ndarray:
    """The povey window repeated over `rows` frames, (rows, 400): a product with whole contiguous blocks runs
    faster than one that broadcasts the window row by row."""
    tiled = np.tile(_window(), (rows, 1))
    tiled.flags.writeable = False
    return tiled


def _rows(array: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """View the start of a contiguous float64 array as a (rows, columns) array, or make one if it is too small."""
    if array.size < rows * columns:
        return np.empty((rows, columns))
    return array.reshape(-1)[: rows * columns].reshape(rows, columns)


_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0


def _thread_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """Return the shared pool, grown to at least `workers` threads (idle ones cost nothing)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)  # its threads end once idle
            _pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="speechseq-features")
            _pool_size = workers
        return _pool


def _forget_threads() -> None:
    # A forked child has none of the parent's threads: start afresh, whatever state the locks were in.
    global _pool, _pool_size, _pool_lock, _scratch_lock
    _pool, _pool_size, _pool_lock, _scratch_lock = None, 0, threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_threads)


def run_parallel(
    count: int,
    run: Callable[[Any, int], None],
    state: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """Call run(state, i) for i in range(count) on up to torch.get_num_threads() threads, this one included.

    Each thread takes the next index until none is left, so that uneven tasks balance out, and enters its
    own `state()` once it has a first one; a thread that has not started by then is cancelled, not awaited.
    """
    threads = min(torch.get_num_threads(), count)
    indices = itertools.count()
    failed = threading.Event()

    def work() -> None:
        try:
            index = next(indices)
            if index >= count or failed.is_set():
                return
            with state() as value:  # only once there is work for this thread
                while True:
                    run(value, index)
                    if failed.is_set() or (index := next(indices)) >= count:
                        return
        except BaseException:
            failed.set()
            raise

    if threads <= 1:
        work()
        return
    pool = _thread_pool(threads - 1)
    futures = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for future in futures:
            if not future.cancel():
                future.result()
