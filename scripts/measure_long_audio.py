"""Measure the peak memory of transcribing 10 and 60 minutes of audio with a tiny model (not run in CI).

Writes synthetic recordings (voiced buzz regions between faint-noise pauses, 16 kHz WAV and 8 kHz FLAC, the
latter exercising the streaming resampler), transcribes each in a fresh process, and prints the peak resident
memory above the process's size after loading the model and decoding one short clip.

    python scripts/measure_long_audio.py /tmp/long-audio --minutes 10 60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
PATTERN = [(0.7, 4.2), (5.0, 5.9), (7.1, 19.0), (19.8, 21.0)]  # speech within each 22 s cycle
CYCLE_S = 22.0


def write_recording(path: Path, minutes: float, rate: int) -> list[tuple[float, float]]:
    """Write `minutes` of audio block by block (never whole in memory); return the known speech regions."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_pipeline import voiced

    known, cycles = [], int(minutes * 60 / CYCLE_S)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for cycle in range(cycles):
            block = 0.003 * np.random.default_rng(cycle).standard_normal(int(CYCLE_S * RATE)).astype(
                np.float32
            )
            for index, (start, end) in enumerate(PATTERN):
                block[int(start * RATE) : int(end * RATE)] += voiced(
                    int(end * RATE) - int(start * RATE), index
                )
                known.append((cycle * CYCLE_S + start, cycle * CYCLE_S + end))
            handle.write(block[:: RATE // rate])
    return known


def _child(model: str, path: str) -> None:
    import torch

    from speechseq.pipeline import Transcriber

    torch.set_num_threads(4)
    transcriber = Transcriber(model, max_new_tokens=4, batch_size=8)
    list(transcriber.transcribe(np.zeros(RATE, np.float32) + 0.1))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, segments = time.time(), [(s.start, s.end) for s in transcriber.transcribe(path)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "base_mb": base / 1024,
                "peak_mb": peak / 1024,
                "seconds": time.time() - start,
                "segments": segments,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).parent))
    from make_tiny_checkpoint import make_checkpoint

    model = args.folder / "model"
    if not model.exists():
        make_checkpoint(model)
    for minutes in args.minutes:
        for rate, suffix in [(RATE, "wav"), (RATE // 2, "flac")]:
            path = args.folder / f"long{minutes:g}min.{suffix}"
            known = write_recording(path, minutes, rate)
            code = (
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"from measure_long_audio import _child; _child({str(model)!r}, {str(path)!r})"
            )
            result = json.loads(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout.splitlines()[-1]
            )
            starts = np.array([s for s, _ in result["segments"]])
            ends = np.array([e for _, e in result["segments"]])
            errors = [min(abs(starts - a)) for a, _ in known] + [min(abs(ends - b)) for _, b in known]
            print(
                f"{minutes:g} min {suffix} ({rate} Hz): peak RSS {result['peak_mb']:.0f} MB, "
                f"{result['peak_mb'] - result['base_mb']:.0f} MB above the loaded model; "
                f"{len(result['segments'])} segments for {len(known)} speech regions, worst boundary error "
                f"{max(errors):.3f} s; {result['seconds']:.0f} s wall"
            )


if __name__ == "__main__":
    main()
