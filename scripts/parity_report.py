"""Print Speech2Text parity figures against transformers (needs the dev extra): logits, loss, features, ids.

python scripts/parity_report.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from hf_models import make_s2t, random_features  # noqa: E402
from test_speech2text import _S2T_SMALL, ODD_CONFIGS  # noqa: E402

import speechseq  # noqa: E402


def logits_report(name: str, config: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        hf = make_s2t(folder, sharpen=20.0, **config)
        ours = speechseq.load_model(folder)
        features, mask = random_features([150, 111, 67], hf.config.input_feat_per_channel)
        labels = torch.randint(4, hf.config.vocab_size, (3, 11))
        with torch.no_grad():
            a = hf(input_features=features, attention_mask=mask, labels=labels)
            b = ours(input_features=features, attention_mask=mask, labels=labels)
        error = float((a.logits - b.logits).abs().max() / a.logits.abs().max())
        same = []
        for options in (dict(num_beams=1), dict(num_beams=5, length_penalty=0.6, early_stopping=True)):
            x = hf.generate(features, attention_mask=mask, max_new_tokens=30, **options)
            y = ours.generate(features, attention_mask=mask, max_new_tokens=30, **options)
            same.append(x.tolist() == y.tolist())
        print(
            f"{name:32s} logits rel err {error:.1e}  loss {a.loss:.6f} vs {b.loss:.6f}  "
            f"greedy ids identical {same[0]}  5-beam ids identical {same[1]}"
        )


def features_report() -> None:
    from transformers import Speech2TextFeatureExtractor

    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000, 11680, 21920)]
    a = Speech2TextFeatureExtractor()(clips, sampling_rate=16000, padding=True, return_tensors="pt")
    from speechseq.audio.features import Speech2TextFeatureExtractor as Ours

    b = Ours()(clips, sampling_rate=16000)
    diff = float((a.input_features - b["input_features"]).abs().max())
    print(
        f"{'features (3 padded clips)':32s} max abs diff {diff:.1e}  masks equal "
        f"{torch.equal(a.attention_mask.long(), b['attention_mask'].long())}"
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    features_report()
    logits_report("s2t-small shape (vocab 1000)", _S2T_SMALL)
    for name, config in ODD_CONFIGS.items():
        logits_report(name, config)
