"""Time one weight product for a few row counts, as a decoding step makes them, on several CPU libraries.

A greedy step multiplies 1 row per sequence by every weight matrix, a 5-beam step 5 rows, a batch of 8
8 rows. This prints microseconds per product (fastest of `--repeats` runs of `--calls` calls) for MKL
(torch's F.linear, what transformers calls), OpenBLAS (numpy's matmul), oneDNN through mkldnn_linear (an
mkldnn-layout weight, dense in and out) and oneDNN on a weight packed for few rows (`_linear_pointwise`,
tried for speechseq's few-row products and not kept, README) and speechseq's own few-row kernel
(`nn/few_rows.c`), with the weight in cache, or with `--cold` cycling through copies of it that fill 96 MB
(more than the L3), so that each product reads its weight from memory as a decoding step does. README
quotes it.

    OMP_WAIT_POLICY=PASSIVE python bench/products.py              # 1 thread, a 2048 x 256 weight
    OMP_WAIT_POLICY=PASSIVE python bench/products.py --threads 2 --shape 10000 256 --cold
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable


def _best(run: Callable[[], object], calls: int, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(2048, 256), metavar=("OUT", "IN"))
    parser.add_argument("--rows", type=int, nargs="+", default=(1, 2, 5, 8, 40))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cold", action="store_true", help="read each weight from memory, not from cache")
    args = parser.parse_args()
    # numpy's OpenBLAS reads its thread count when it loads: set it before numpy (or torch) is imported.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from speechseq.nn import native

    out_features, in_features = args.shape
    count = -(-(96 << 20) // (4 * out_features * in_features)) if args.cold else 1
    copies = []
    for _ in range(count):
        weight = torch.randn(out_features, in_features)
        packed, transposed = weight.to_mkldnn(), weight.t().contiguous().numpy()
        few_rows = torch.ops.mkldnn._reorder_linear_weight(weight, 8)
        copies.append((weight, packed, transposed, few_rows))
    turn = itertools.cycle(copies)
    kernel = "speechseq" if native.available() else "(no kernel)"
    print(
        f"{out_features} x {in_features} weight, {args.threads} thread(s), {'cold' if args.cold else 'in cache'}"
    )
    print(
        f"microseconds per product\n{'rows':>5} {'MKL':>9} {'OpenBLAS':>9} {'oneDNN':>9} {'packed':>9} {kernel:>11}"
    )
    with torch.inference_mode():
        for rows in args.rows:
            x = torch.randn(rows, in_features)
            numpy_x = x.numpy()
            runs = [
                lambda x=x: F.linear(x, next(turn)[0]),
                lambda x=numpy_x: x @ next(turn)[2],
                lambda x=x: torch._C._nn.mkldnn_linear(x.to_mkldnn(), next(turn)[1], None).to_dense(),
                lambda x=x: torch.ops.mkldnn._linear_pointwise(x, next(turn)[3], None, "none", [], ""),
                lambda x=x: native.few_rows_linear(x, next(turn)[0], None),
            ]
            times = [_best(run, max(args.calls, count), args.repeats) for run in runs]
            print(f"{rows:>5} " + " ".join(f"{t * 1e6:9.1f}" for t in times[:4]) + f" {times[4] * 1e6:11.1f}")


if __name__ == "__main__":
    main()
