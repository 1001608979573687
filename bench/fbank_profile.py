"""Profile speechseq's fbank on the benchmark clips: one block of frames stage by stage, through the native
steps (audio/fbank.c) and through the numpy steps, then all eight 10 s clips. README, Performance, quotes it.

    OMP_WAIT_POLICY=PASSIVE python bench/fbank_profile.py

Times are the fastest of --repeats runs, in microseconds for a block and milliseconds for the clips.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from worker import _time, make_waveforms

from speechseq.audio import fbank
from speechseq.nn import native


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    kernels = native.fbank_kernels()
    if kernels is None:
        raise SystemExit("the native library is not built here (see README, Performance)")
    clips = make_waveforms()
    frame_counts = [(clip.shape[0] - fbank.FRAME_LENGTH) // fbank.HOP_LENGTH + 1 for clip in clips]
    count = frame_counts[0] // 2  # a block as fbank_cpu cuts a 10 s clip
    samples = clips[0][: (count - 1) * fbank.HOP_LENGTH + fbank.FRAME_LENGTH]
    scratch, out = fbank._Scratch(fbank._BLOCK_FRAMES), np.empty((count, 80), np.float32)
    window, bands = fbank._window(), fbank._mel_bands(16000, 80)
    groups = fbank._mel_groups(16000, 80, fbank._BLOCK_FRAMES)
    frames, mel = kernels
    buffer = scratch.buffer[:count]
    spectrum = scratch.squares[:count].view(np.complex128)
    first, width, offset, weights = bands

    def native_frames() -> None:
        frames(samples.ctypes.data, True, count, None, 0.0, window.ctypes.data, buffer.ctypes.data)

    def native_mel() -> None:
        mel(spectrum.ctypes.data, count, first.ctypes.data, width.ctypes.data, offset.ctypes.data,
            weights.ctypes.data, 80, out.ctypes.data, 80)  # fmt: skip

    stages = {
        "native block": lambda: fbank._native_block(
            kernels, samples, count, window, bands, 0.0, None, scratch, out
        ),
        "  frame steps (C)": native_frames,
        "  FFT (numpy)": lambda: np.fft.rfft(buffer, axis=1, out=spectrum),
        "  mel and log (C)": native_mel,
        "numpy block": lambda: fbank._log_mel_block(samples, count, groups, 0.0, None, scratch, out),
    }
    print(f"one block of {count} frames (us):")
    for name, run in stages.items():
        print(f"  {name:<20} {_time(run, args.repeats)[0] * 1e6:8.1f}")
    torch.set_num_threads(args.threads)
    features = np.empty((len(clips), max(frame_counts), 80), np.float32)
    whole = {}
    for name, fbank_kernels in (("native", kernels), ("numpy", None)):
        native._fbank = fbank_kernels
        whole[name], _ = _time(
            lambda: fbank.fbank_cpu(clips, frame_counts, 16000, 0.0, features), args.repeats
        )
    native._fbank = kernels
    print(
        f"{len(clips)} clips of 10 s on {args.threads} threads (ms): native {whole['native'] * 1e3:.2f}, "
        f"numpy {whole['numpy'] * 1e3:.2f}"
    )


if __name__ == "__main__":
    main()
