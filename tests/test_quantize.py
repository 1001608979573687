"""int8 dynamic quantization: load_model(dtype="int8") and `--quantize int8` run and agree with float32."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hf_models import make_s2t, random_features
from torch import nn

import speechseq
from speechseq.cli import main
from speechseq.errors import InputError

pytest.importorskip("transformers")


def test_int8_generate_agrees_with_float32(tmp_path):
    make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    float32 = speechseq.load_model(tmp_path)
    int8 = speechseq.load_model(tmp_path, dtype="int8")
    assert not any(isinstance(module, nn.Linear) for module in int8.modules())
    assert isinstance(int8.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    features, mask = random_features([133, 97, 63], seed=2)
    for beams in (1, 3):
        options = dict(num_beams=beams, max_new_tokens=16, min_new_tokens=16)
        expected = float32.generate(features, attention_mask=mask, **options)
        actual = int8.generate(features, attention_mask=mask, **options)
        assert actual.shape == expected.shape
        assert float((actual == expected).float().mean()) >= 0.8


def test_int8_is_cpu_only(tmp_path):
    make_s2t(tmp_path)
    with pytest.raises(InputError, match="CPU only"):
        speechseq.load_model(tmp_path, device="meta", dtype="int8")


def test_cli_quantize(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from make_tiny_checkpoint import make_checkpoint, make_recording

    folder = make_checkpoint(tmp_path / "model")
    clip = make_recording(tmp_path / "clip.wav", seconds=1.3)
    assert main(["transcribe", str(clip), "--model", str(folder), "--quantize", "int8"]) == 0
    assert capsys.readouterr().out.strip()
    assert (
        main(["transcribe", str(clip), "--model", str(folder), "--quantize", "int8", "--dtype", "bfloat16"])
        == 2
    )
    assert "--quantize int8" in capsys.readouterr().err
