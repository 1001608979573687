"""Profile one decoder step of speechseq on the benchmark checkpoint: wall time per step and the torch
operations that take it, for greedy and 5-beam decoding at batch 1 and 8. README, Performance, quotes it.

    python bench/worker.py prepare /tmp/bench                  # once: the checkpoint and inputs
    OMP_WAIT_POLICY=PASSIVE python bench/step_profile.py /tmp/bench [--torch-layers]

With the native decoder step (nn/native_decoder.py) the layers are one call that the profile does not
list; --torch-layers runs them as torch operations instead, to compare.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import profile

import speechseq
from speechseq.nn import native_decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder written by `bench/worker.py prepare`")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=6, help="operations listed per case")
    parser.add_argument("--torch-layers", action="store_true", help="not the native decoder step")
    args = parser.parse_args()
    if args.torch_layers:
        native_decoder.step = lambda *args: None
    torch.set_num_threads(args.threads)
    model = speechseq.load_model(args.folder)
    inputs = torch.load(args.folder / "inputs.pt")
    with torch.inference_mode():
        for beams, batch in ((1, 1), (5, 1), (1, 8), (5, 8)):
            encoded = model.encode(inputs["features"][:batch], inputs["mask"][:batch])

            def decode(beams=beams, batch=batch, encoded=encoded) -> None:
                # The same token each step, and beams kept in place: the step itself, without the search.
                state = model.start_decoding(encoded, beams, args.steps + 1)
                tokens = torch.full((batch * beams, 1), model.special_tokens["decoder_start_token_id"])
                for _ in range(args.steps):
                    model.step(tokens, state)

            decode()
            wall = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                decode()
                wall = min(wall, (time.perf_counter() - start) / args.steps)
            with profile() as prof:
                decode()
            events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            counted = sum(e.count for e in events) / args.steps
            top = ", ".join(
                f"{e.key.removeprefix('aten::')[:24]} {e.self_cpu_time_total / args.steps / 1e3:.2f} ms"
                f" ({e.count // args.steps})"
                for e in events[: args.top]
            )
            print(
                f"{beams}-beam batch {batch}: {wall * 1e3:.2f} ms/step, {counted:.0f} torch operations/step; {top}"
            )


if __name__ == "__main__":
    main()
