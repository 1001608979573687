"""End to end: a checkpoint folder saved by transformers, transcribed by speechseq's API and CLI, same text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import speechseq
from speechseq.cli import main

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from make_tiny_checkpoint import make_checkpoint, make_recording  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    model = make_checkpoint(root / "model")
    files = [make_recording(root / f"clip{i}.wav", seconds=s, seed=i) for i, s in enumerate([1.3, 2.1, 0.7])]
    return model, files


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("mustc") / "model", multilingual=True, seed=1)


def _transformers_text(folder, files, **options):
    import soundfile as sf
    from transformers import Speech2TextForConditionalGeneration, Speech2TextProcessor

    processor = Speech2TextProcessor.from_pretrained(folder)
    model = Speech2TextForConditionalGeneration.from_pretrained(folder).eval()
    audio = [sf.read(f, dtype="float32")[0] for f in files]
    inputs = processor(audio, sampling_rate=16000, return_tensors="pt", padding=True)
    ids = model.generate(inputs.input_features, attention_mask=inputs.attention_mask, **options)
    return processor.batch_decode(ids, skip_special_tokens=True)


def test_api_matches_transformers(checkpoint):
    folder, files = checkpoint
    processor = speechseq.load_processor(folder)
    model = speechseq.load_model(folder)
    audio = [speechseq.load_audio(f) for f in files]
    inputs = processor(audio, sampling_rate=16000)
    assert inputs["input_features"].shape[0] == 3 and inputs["input_features"].shape[2] == 80
    ids = model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"])
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    assert texts == _transformers_text(folder, files)
    assert all(texts)


def test_cli_txt_and_json(checkpoint, capsys):
    folder, files = checkpoint
    expected = _transformers_text(folder, files, num_beams=2)
    assert (
        main(
            ["transcribe", *map(str, files), "--model", str(folder), "--num-beams", "2", "--batch-size", "2"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == expected
    assert main(["transcribe", str(files[0]), "--model", str(folder), "--output-format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"file": str(files[0]), "text": _transformers_text(folder, files[:1])[0]}]


def test_cli_translate_forces_language(multilingual, checkpoint, capsys):
    _, files = checkpoint
    fr = speechseq.load_tokenizer(multilingual).convert_tokens_to_ids("<lang:fr>")
    expected = _transformers_text(multilingual, files, forced_bos_token_id=fr)
    assert (
        main(
            [
                "transcribe",
                *map(str, files),
                "--model",
                str(multilingual),
                "--task",
                "translate",
                "--tgt-lang",
                "fr",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == expected


def test_cli_errors_exit_2_with_message(checkpoint, tmp_path, capsys):
    folder, files = checkpoint
    assert main(["transcribe", str(tmp_path / "missing.wav"), str(files[0]), "--model", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "missing.wav" in captured.err and "Traceback" not in captured.err
    # The good file is still transcribed, and each input keeps its line: the failed one's is empty.
    assert captured.out.splitlines() == ["", *_transformers_text(folder, files[:1])]
    missing = ["transcribe", str(tmp_path / "missing.wav"), str(files[0]), "--model", str(folder)]
    assert main([*missing, "--output-format", "json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in rows] == [str(tmp_path / "missing.wav"), str(files[0])]
    assert "missing.wav" in rows[0]["error"] and "text" not in rows[0] and rows[1]["text"]
    assert main(["transcribe", str(files[0]), "--model", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    assert (
        main(["transcribe", str(files[0]), "--model", str(folder), "--task", "translate", "--tgt-lang", "fr"])
        == 2
    )
    assert "no target languages" in capsys.readouterr().err
    assert main(["transcribe", str(files[0]), "--model", str(folder), "--task", "translate"]) == 2
    assert "--tgt-lang" in capsys.readouterr().err


def test_cli_refuses_before_any_work(checkpoint, tmp_path, capsys):
    import shutil

    import torch

    folder, files = checkpoint
    run = ["transcribe", str(files[0]), "--model", str(folder)]
    assert main([*run, "--device", "nonsense"]) == 2
    assert "--device 'nonsense'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*run, "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert main([*run, "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be >= 1" in capsys.readouterr().err
    # Two inputs with one stem would write one transcript: refused before either is written.
    twin = tmp_path / "other" / files[0].name
    twin.parent.mkdir()
    shutil.copy(files[0], twin)
    out = tmp_path / "out"
    twins = ["transcribe", str(files[0]), str(twin), "--model", str(folder)]
    assert main([*twins, "--output-format", "srt", "--output-dir", str(out)]) == 2
    assert "several inputs would write" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    # An output folder that is a file: one line, no traceback.
    (tmp_path / "afile").write_text("mine")
    assert main([*run, "--output-format", "srt", "--output-dir", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "afile" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_cli_help_reads_well():
    result = subprocess.run(
        [sys.executable, "-m", "speechseq.cli", "transcribe", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in (
        "--model",
        "--num-beams",
        "--task",
        "--tgt-lang",
        "--batch-size",
        "--output-format",
        "examples:",
    ):
        assert flag in result.stdout


def test_hub_id_from_offline_cache(checkpoint, tmp_path):
    """A hub id resolves from the local cache with HF_HUB_OFFLINE=1 (no network)."""
    folder, files = checkpoint
    snapshot = tmp_path / "hub" / "models--someone--tiny-s2t" / "snapshots" / "0123456789abcdef"
    shutil.copytree(folder, snapshot)
    (tmp_path / "hub" / "models--someone--tiny-s2t" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-s2t" / "refs" / "main").write_text("0123456789abcdef")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    command = [
        sys.executable,
        "-m",
        "speechseq.cli",
        "transcribe",
        str(files[0]),
        "--model",
        "someone/tiny-s2t",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == _transformers_text(folder, files[:1])
    missing = subprocess.run([*command[:-1], "someone/absent"], capture_output=True, text=True, env=env)
    assert (
        missing.returncode == 2 and "someone/absent" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_processor_rejects_bad_audio(checkpoint):
    folder, _ = checkpoint
    processor = speechseq.load_processor(folder)
    with pytest.raises(speechseq.AudioError):
        processor(np.zeros(16000, dtype=np.int16), sampling_rate=16000)
    with pytest.raises(speechseq.AudioError):
        processor(np.zeros((2, 16000), dtype=np.float32), sampling_rate=16000)
    with pytest.raises(speechseq.AudioError, match="8000"):
        processor(np.zeros(16000, dtype=np.float32), sampling_rate=8000)
    with pytest.raises(speechseq.SpeechSeqError):
        processor([], sampling_rate=16000)
    with pytest.raises(speechseq.AudioError):
        processor(torch.full((16000,), float("nan")), sampling_rate=16000)


def test_transcribe_refuses_models_without_text_output(tmp_path, checkpoint, capsys):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(config).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(
        json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5})
    )
    _, files = checkpoint
    assert main(["transcribe", str(files[0]), "--model", str(tmp_path)]) == 2
    assert "encoder without a head" in capsys.readouterr().err
    assert main(["classify", str(files[0]), "--model", str(tmp_path)]) == 2
    assert "no classification head" in capsys.readouterr().err
