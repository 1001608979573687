"""The compiled decoder step (load_model(compile=True)): the same ids as eager decoding, and clear refusals."""

from __future__ import annotations

import shutil

import pytest
import torch
from hf_decoders import audio, make_sed
from hf_models import make_s2t, random_features

import speechseq
from speechseq.errors import InputError

pytest.importorskip("transformers")


def _has_compiler() -> bool:
    from torch._inductor import cpp_builder

    return shutil.which(cpp_builder.get_cpp_compiler()) is not None


needs_compiler = pytest.mark.skipif(not _has_compiler(), reason="torch inductor needs a C++ compiler")


def _eager(model, *args, **options) -> torch.Tensor:
    compiled, model.compiled_step = model.compiled_step, None
    try:
        return model.generate(*args, **options)
    finally:
        model.compiled_step = compiled


@needs_compiler
def test_speech2text_compiled_generate_matches_eager(tmp_path, monkeypatch):
    from speechseq.models.compiled import MAX_ROWS, CompiledStep

    make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    model = speechseq.load_model(tmp_path, compile=True)
    rows = []
    run = CompiledStep.__call__
    monkeypatch.setattr(
        CompiledStep, "__call__", lambda self, t, s: rows.append(t.shape[0]) or run(self, t, s)
    )
    # A padded batch, greedy and beam (beams share their memory row), then encoder lengths not seen before:
    # those are a dynamic dimension of the same graph.
    for lengths, beams in (([133, 97, 63], 1), ([133, 97, 63], 2), ([150, 41, 80], 1), ([150, 41, 80], 2)):
        features, mask = random_features(lengths, seed=len(lengths))
        options = dict(num_beams=beams, max_new_tokens=12, min_new_tokens=4)
        expected = _eager(model, features, attention_mask=mask, **options)
        actual = model.generate(features, attention_mask=mask, **options)
        assert torch.equal(actual, expected), (lengths, beams)
    assert set(rows) == {3, 6}  # every step of both searches ran compiled
    # More rows than MAX_ROWS decode eagerly (faster there), with the same ids.
    features, mask = random_features([133, 97, 63], seed=3)
    rows.clear()
    options = dict(num_beams=MAX_ROWS, max_new_tokens=6)
    assert torch.equal(
        model.generate(features, attention_mask=mask, **options),
        _eager(model, features, attention_mask=mask, **options),
    )
    assert rows == []


@needs_compiler
def test_compiled_step_follows_weight_changes(tmp_path):
    make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    model = speechseq.load_model(tmp_path, compile=True)
    features, mask = random_features([90], seed=3)
    before = model.generate(features, attention_mask=mask, max_new_tokens=10)
    with torch.no_grad():
        model.lm_head.weight.copy_(model.lm_head.weight.flip(0))  # the graphs hold frozen copies of it
    after = model.generate(features, attention_mask=mask, max_new_tokens=10)
    assert torch.equal(after, _eager(model, features, attention_mask=mask, max_new_tokens=10))
    assert not torch.equal(after, before)


@needs_compiler
@pytest.mark.parametrize("decoder", ["mbart", "bert"])
def test_learned_positions_decoder_compiled_matches_eager(tmp_path, decoder):
    # MBart: learned positions with an offset, an embedding norm, a tied head. BERT: post-LN layers, token
    # types, a transform head. wav2vec2 samples in.
    make_sed(tmp_path, "wav2vec2", decoder)
    model = speechseq.load_model(tmp_path, compile=True)
    inputs, mask = audio("wav2vec2")
    options = dict(num_beams=2, max_new_tokens=8, min_new_tokens=8)  # beams reorder the cache too
    expected = _eager(model, inputs, attention_mask=mask, **options)
    assert torch.equal(model.generate(inputs, attention_mask=mask, **options), expected)


def test_compile_refusals(tmp_path):
    make_s2t(tmp_path)
    with pytest.raises(InputError, match="int8"):
        speechseq.load_model(tmp_path, dtype="int8", compile=True)
    with pytest.raises(InputError, match="float32"):
        speechseq.load_model(tmp_path, dtype="bfloat16", compile=True)


def test_compile_refuses_models_without_a_decoder(tmp_path):
    from hf_wav2vec2 import make_ctc_checkpoint

    folder = make_ctc_checkpoint(tmp_path)
    with pytest.raises(InputError, match="encoder-decoder"):
        speechseq.load_model(folder, compile=True)


def test_cli_compile_refusal_is_one_line(tmp_path, capsys):
    import sys
    from pathlib import Path

    from speechseq.cli import main

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from make_tiny_checkpoint import make_checkpoint, make_recording

    folder = make_checkpoint(tmp_path / "model")
    clip = make_recording(tmp_path / "clip.wav", seconds=1.0)
    assert main(["transcribe", str(clip), "--model", str(folder), "--compile", "--quantize", "int8"]) == 2
    err = capsys.readouterr().err
    assert "compile is built for float32" in err and "Traceback" not in err
    if _has_compiler():
        clips = [clip, make_recording(tmp_path / "other.wav", seconds=2.5)]
        run = ["transcribe", *map(str, clips), "--model", str(folder), "--num-beams", "2"]
        assert main(run) == 0
        eager = capsys.readouterr().out
        assert main([*run, "--compile"]) == 0
        assert capsys.readouterr().out == eager and eager.strip()


@needs_compiler
def test_graph_limit_falls_back_to_eager(tmp_path, monkeypatch):
    from speechseq.models import compiled

    make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    model = speechseq.load_model(tmp_path, compile=True)
    monkeypatch.setattr(compiled, "_GRAPH_LIMIT", 0)  # as if the process already held every graph it may
    features, mask = random_features([90, 50], seed=4)
    with pytest.warns(UserWarning, match="decodes eagerly from now on"):
        actual = model.generate(features, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(actual, _eager(model, features, attention_mask=mask, max_new_tokens=6))
    assert not model.compiled_step.takes(features[:, :1, 0].long())
