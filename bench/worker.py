"""One side of the benchmark in a process of its own: time one group of work and print the result as JSON.

Run by bench/run.py, once per side and group, so that each side's imports, allocations and peak RSS are its
own. Both sides load the same checkpoint folder and the same inputs, which `prepare` writes once.

    python bench/worker.py prepare FOLDER
    python bench/worker.py speechseq FOLDER --group greedy --repeats 5 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SECONDS, RATE, CLIPS, SEED = 10.0, 16000, 8, 0
BATCHES = (1, 8)


def make_waveforms() -> list[np.ndarray]:
    """Return CLIPS clips of 10 s: a few random tones in coloured noise, different per clip."""
    rng = np.random.default_rng(SEED)
    t = np.arange(int(SECONDS * RATE)) / RATE
    clips = []
    for _ in range(CLIPS):
        tones = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t) for _ in range(3))
        noise = np.convolve(rng.standard_normal(t.size), rng.uniform(0, 1, 8), mode="same")
        clips.append((0.5 * tones + 0.02 * noise).astype(np.float32))
    return clips


def prepare(folder: Path) -> None:
    """Save a random transformers Speech2Text (default config) and the decode inputs, from fixed seeds."""
    from transformers import (
        Speech2TextConfig,
        Speech2TextFeatureExtractor,
        Speech2TextForConditionalGeneration,
    )

    torch.manual_seed(SEED)
    model = Speech2TextForConditionalGeneration(Speech2TextConfig()).eval()
    with torch.no_grad():
        # Make a random model decode like a trained one: the audio steers the decoder (cross-attention x4),
        # logits spread (embedding, which the head shares, x3), and random signs on the final norm stop the
        # tied head from predicting the previous token again and again. Rows then decode differently, beams
        # overtake each other at most steps (so a beam step pays for moving cache rows, as in a real beam
        # search) and both libraries still pick the same ids.
        for name, param in model.named_parameters():
            if "encoder_attn.v_proj" in name or "encoder_attn.out_proj" in name:
                param.mul_(4.0)
        model.model.decoder.embed_tokens.weight.mul_(3.0)
        signs = torch.randint(0, 2, (model.config.d_model,), generator=torch.Generator().manual_seed(SEED))
        model.model.decoder.layer_norm.weight.copy_(signs * 2.0 - 1.0)
    model.save_pretrained(folder)
    inputs = Speech2TextFeatureExtractor()(
        make_waveforms(), sampling_rate=RATE, return_tensors="pt", padding=True
    )
    torch.save({"features": inputs.input_features, "mask": inputs.attention_mask}, folder / "inputs.pt")
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": params}))


def _load(side: str, folder: Path, dtype: str, device: str, compile: bool = False):
    if side == "speechseq":
        import speechseq

        return speechseq.load_model(folder, dtype=dtype, device=device, compile=compile)
    from transformers import Speech2TextForConditionalGeneration

    if dtype != "float32" or compile:
        raise SystemExit("the transformers side runs in float32 only, not compiled")
    return Speech2TextForConditionalGeneration.from_pretrained(folder).eval().to(device)


def _extractor(side: str):
    if side == "speechseq":
        from speechseq.audio import Speech2TextFeatureExtractor

        return lambda clips: Speech2TextFeatureExtractor()(clips, sampling_rate=RATE)["input_features"]
    from transformers import Speech2TextFeatureExtractor

    extractor = Speech2TextFeatureExtractor()
    return lambda clips: (
        extractor(clips, sampling_rate=RATE, return_tensors="pt", padding=True).input_features
    )


def _time(run: Callable[[], object], repeats: int, device: str = "cpu") -> tuple[float, object]:
    """Run once to warm up, then `repeats` times; return the fastest wall time and the last result."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    result = run()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_group(
    side: str,
    group: str,
    folder: Path,
    repeats: int,
    tokens: int,
    dtype: str,
    device: str = "cpu",
    compile: bool = False,
) -> dict:
    """Time one group for batches 1 and 8: features (on the CPU), encoder, greedy or beam (5 beams).

    With `compile`, the untimed first run of each batch compiles the decoder step for it.
    """
    out: dict = {"times": {}, "ids": {}}
    if group == "features":
        extract, clips = _extractor(side), make_waveforms()
        for count in BATCHES:
            out["times"][count], features = _time(lambda n=count: extract(clips[:n]), repeats)
        np.save(folder / f"features_{side}.npy", features.numpy())
        return out
    model = _load(side, folder, dtype, device, compile)
    inputs = torch.load(folder / "inputs.pt")
    for batch in BATCHES:
        features, mask = inputs["features"][:batch].to(device), inputs["mask"][:batch].to(device)
        with torch.inference_mode():
            if group == "encoder":
                encode = model.encode if side == "speechseq" else model.model.encoder
                out["times"][batch], _ = _time(lambda f=features, m=mask, e=encode: e(f, m), repeats, device)
                continue
            beams = 5 if group == "beam" else 1
            options = dict(num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens, attention_mask=mask)
            out["times"][batch], ids = _time(
                lambda f=features, o=options: model.generate(f, **o), repeats, device
            )
            out["ids"][batch] = ids.tolist()
    return out


def measure_bandwidth(repeats: int) -> dict:
    """Measure memory bandwidth roughly: a 512 MB float32 read (sum) and copy, fastest of `repeats`."""
    source = torch.ones(128 * 2**20)
    target = torch.empty_like(source)
    size = source.numel() * source.element_size()
    read, _ = _time(source.sum, repeats)
    copy, _ = _time(lambda: target.copy_(source), repeats)
    return {"read_gb_s": size / read / 1e9, "copy_gb_s": 2 * size / copy / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["prepare", "speechseq", "transformers", "bandwidth"])
    parser.add_argument("folder", nargs="?", type=Path, help="checkpoint and inputs folder")
    parser.add_argument("--group", choices=["features", "encoder", "greedy", "beam"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=100, help="new tokens per sequence, forced")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "int8"])
    parser.add_argument("--compile", action="store_true", help="speechseq: load_model(compile=True)")
    parser.add_argument(
        "--device", default="cpu", help="where the model runs; features are always on the CPU"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.side == "prepare":
        return prepare(args.folder)
    if args.side == "bandwidth":
        result = measure_bandwidth(args.repeats)
    else:
        result = run_group(
            args.side,
            args.group,
            args.folder,
            args.repeats,
            args.tokens,
            args.dtype,
            args.device,
            args.compile,
        )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
