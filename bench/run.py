"""Benchmark speechseq against transformers on the same random s2t-small weights and the same 10 s inputs.

Each side runs each group of work (features, encoder, greedy, 5-beam) in a process of its own, with 2 threads
and OMP_WAIT_POLICY=PASSIVE, and reports the fastest of its runs and its peak RSS. Rounds alternate the
sides, so that a busy spell on a shared host slows both. The table gives transformers time / speechseq time
and whether both generated the same ids.

    python bench/run.py                 # the README table (3 rounds x 3 repeats, about 15 minutes)
    python bench/run.py --quick         # 1 round, 2 repeats, 20 tokens: a smoke run
    python bench/run.py --int8          # add speechseq with dtype="int8" (dynamic quantization)
    python bench/run.py --compile       # add speechseq with compile=True (compiled decoder step)
    python bench/run.py --device cuda   # models on a GPU (features stay on the CPU); the targets are CPU ones
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("worker.py")
GROUPS = ("features", "encoder", "greedy", "beam")
LABELS = {"features": "features, {} clip", "encoder": "encoder, batch {}", "greedy": "greedy, batch {}"}
LABELS["beam"] = "5-beam, batch {}"
# transformers time / speechseq time that the issue asks for, per (group, batch).
TARGETS = {("features", "8"): 10, ("greedy", "1"): 4, ("beam", "1"): 3, ("greedy", "8"): 2, ("beam", "8"): 2}
RSS_TARGET = 0.8


def _worker(*args: str, threads: int) -> dict:
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE"
    )
    command = [sys.executable, str(WORKER), *args, "--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _merge(old: dict | None, new: dict) -> dict:
    """Keep the fastest time and the highest peak memory (RSS, and GPU where measured) over rounds."""
    if old is None:
        return new
    times = {batch: min(old["times"][batch], new["times"][batch]) for batch in new["times"]}
    peaks = {key: max(old[key], new[key]) for key in ("peak_rss_mb", "peak_gpu_mb") if key in new}
    return {**new, "times": times, **peaks}


def measure(args: argparse.Namespace, folder: Path) -> dict:
    """Run every (side, group) process args.rounds times, alternating sides; return merged results."""
    sides = [("transformers", "float32"), ("speechseq", "float32")] + [("speechseq", "int8")] * args.int8
    sides += [("speechseq", "compiled")] * args.compile
    common = ["--repeats", str(args.repeats), "--tokens", str(args.tokens)]
    results: dict = {}
    for round_ in range(args.rounds):
        for group in GROUPS:
            order = sides if round_ % 2 == 0 else sides[::-1]
            for side, dtype in order:
                if (dtype == "int8" and group == "features") or (dtype == "compiled" and group in GROUPS[:2]):
                    continue  # int8 has no features of its own; compiling changes decoding only
                extra = ["--group", group]
                extra += ["--compile"] if dtype == "compiled" else ["--dtype", dtype]
                if group != "features":
                    extra += ["--device", args.device]
                new = _worker(side, str(folder), *extra, *common, threads=args.threads)
                key = (side if dtype == "float32" else dtype, group)
                results[key] = _merge(results.get(key), new)
                print(f"  round {round_ + 1}: {key[0]:<12} {group:<8} done", file=sys.stderr, flush=True)
    if args.device == "cpu":
        results["bandwidth"] = _worker("bandwidth", "--repeats", str(args.repeats), threads=args.threads)
    return results


def _row(label: str, theirs: float, ours: float, target: int | None, note: str) -> str:
    ratio = theirs / ours
    goal = f">= {target}x {'met' if ratio >= target else 'MISSED'}" if target else ""
    return f"| {label:<18} | {theirs * 1e3:9.1f} | {ours * 1e3:9.1f} | {ratio:5.2f}x | {goal:<14} | {note}"


def report(args: argparse.Namespace, folder: Path, results: dict) -> None:
    print(
        f"\n{_machine(args.device)}; {args.rounds} rounds x {args.repeats} runs (fastest), {args.threads} "
        f"threads, OMP_WAIT_POLICY=PASSIVE, {args.tokens} new tokens forced\n"
    )
    print("| work               | transformers ms | speechseq ms | ratio | target | ids |")
    print("|--------------------|----------:|----------:|-------:|----------------|-----|")
    for group in GROUPS:
        theirs, ours = results["transformers", group], results["speechseq", group]
        for batch in ("1", "8"):
            note = ""
            if group in ("greedy", "beam"):
                note = "identical" if ours["ids"][batch] == theirs["ids"][batch] else "DIFFERENT"
            label = LABELS[group].format(batch) + ("s" if group == "features" and batch == "8" else "")
            target = TARGETS.get((group, batch)) if args.device == "cpu" or group == "features" else None
            print(_row(label, theirs["times"][batch], ours["times"][batch], target, note))
    if args.int8:
        _report_variant(results, "int8", ("encoder", "greedy", "beam"))
    if args.compile:
        _report_variant(results, "compiled", ("greedy", "beam"))
    rows = [tuple(row[1:]) for row in results["speechseq", "greedy"]["ids"]["8"]]  # without the start token
    distinct = sorted(len(set(row)) for row in rows)
    print(
        f"\ngreedy, batch 8: {len(set(rows))} different sequences of 8, "
        f"{distinct[0]}-{distinct[-1]} different tokens in each (a check that the ids compared are not trivial)"
    )
    features = np.load(folder / "features_speechseq.npy"), np.load(folder / "features_transformers.npy")
    print(f"\nfeatures: max |speechseq - transformers| = {np.abs(features[0] - features[1]).max():.1e}")
    if args.device != "cpu":
        _report_gpu_memory(results)
        return
    print(f"\npeak RSS per process, MB (target: speechseq <= {RSS_TARGET} x transformers):")
    for group in GROUPS[1:]:
        theirs, ours = (
            results["transformers", group]["peak_rss_mb"],
            results["speechseq", group]["peak_rss_mb"],
        )
        others = "".join(
            f", {variant} {results[variant, group]['peak_rss_mb']:.0f} "
            f"({results[variant, group]['peak_rss_mb'] / theirs:.2f}x)"
            for variant in ("int8", "compiled")
            if (variant, group) in results
        )
        print(
            f"  {group:<8} transformers {theirs:4.0f}, speechseq {ours:4.0f} ({ours / theirs:.2f}x){others}"
        )
    _report_bound(args, results)


def _report_gpu_memory(results: dict) -> None:
    print("\npeak GPU memory allocated per process, MB:")
    for group in GROUPS[1:]:
        theirs, ours = (results[side, group]["peak_gpu_mb"] for side in ("transformers", "speechseq"))
        print(f"  {group:<8} transformers {theirs:6.0f}, speechseq {ours:6.0f} ({ours / theirs:.2f}x)")


def _report_variant(results: dict, variant: str, groups: tuple[str, ...]) -> None:
    """Rows for a speechseq variant against transformers float32, with the share of ids equal to float32's."""
    for group in groups:
        theirs, ours, exact = (
            results["transformers", group],
            results[variant, group],
            results["speechseq", group],
        )
        for batch in ("1", "8"):
            note = ""
            if group != "encoder":
                same = np.array(ours["ids"][batch]) == np.array(exact["ids"][batch])
                note = f"{same.mean():.1%} of ids as float32"
                if ours["ids"][batch] == theirs["ids"][batch]:
                    note = "identical"
            print(
                _row(
                    f"{variant} " + LABELS[group].format(batch),
                    theirs["times"][batch],
                    ours["times"][batch],
                    None,
                    note,
                )
            )


def _report_bound(args: argparse.Namespace, results: dict) -> None:
    """Compare the batch-1 greedy cost per token with reading the decoder weights once per token."""
    ours = results["speechseq", "greedy"]["times"]["1"] - results["speechseq", "encoder"]["times"]["1"]
    theirs = (
        results["transformers", "greedy"]["times"]["1"] - results["transformers", "encoder"]["times"]["1"]
    )
    bandwidth, weights = results["bandwidth"], _decoder_bytes_per_token()
    bound = weights / (bandwidth["read_gb_s"] * 1e9)
    print(
        f"\nmemory bandwidth (512 MB): read {bandwidth['read_gb_s']:.1f} GB/s, "
        f"copy {bandwidth['copy_gb_s']:.1f} GB/s"
        f"\ndecoder weights read per token: {weights / 1e6:.1f} MB -> bound {bound * 1e3:.2f} ms/token"
        f"\ngreedy batch 1 per token (generate - encoder) / {args.tokens}: speechseq "
        f"{ours / args.tokens * 1e3:.2f} ms ({bound / ours * args.tokens:.0%} of the bound), "
        f"transformers {theirs / args.tokens * 1e3:.2f} ms"
    )


def _decoder_bytes_per_token() -> int:
    """Float32 bytes one decoder step reads: each decoder matrix but cross-attention keys/values, the head."""
    d, ffn, layers, vocab = 256, 2048, 6, 10000  # Speech2TextConfig() defaults
    per_layer = 4 * d * d + 2 * d * d + 2 * d * ffn  # self-attention q/k/v/out, cross-attention q/out, FFN
    return 4 * (layers * per_layer + vocab * d)


def _machine(device: str) -> str:
    import torch
    import transformers

    if device != "cpu":
        gpu = torch.cuda.get_device_name(torch.device(device))
        return f"{gpu}, torch {torch.__version__}, transformers {transformers.__version__}"
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, transformers {transformers.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each process runs, sides alternating")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process; the fastest counts")
    parser.add_argument("--tokens", type=int, default=100, help="new tokens per sequence (min = max)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also time speechseq with dtype='int8'")
    parser.add_argument(
        "--compile", action="store_true", help="also time speechseq with compile=True (decoding only)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 2 repeats, 20 tokens")
    parser.add_argument("--device", default="cpu", help="where the models run (cpu, cuda); features: CPU")
    args = parser.parse_args()
    if args.int8 and args.device != "cpu":
        parser.error("--int8 (dynamic quantization) runs on the CPU only")
    if args.compile and args.device != "cpu":
        parser.error("--compile is built for the CPU only")
    if args.quick:
        args.rounds, args.repeats, args.tokens = 1, 2, 20
    with tempfile.TemporaryDirectory(prefix="speechseq-bench-") as folder:
        print(f"checkpoint: {json.dumps(_worker('prepare', folder, threads=args.threads))}", flush=True)
        report(args, Path(folder), measure(args, Path(folder)))


if __name__ == "__main__":
    main()
