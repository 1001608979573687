"""Evaluation: manifests (fairseq S2T TSV, JSON lines), normaliser, WER/CER/BLEU, and `speechseq eval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from speechseq.cli import main
from speechseq.errors import InputError
from speechseq.evaluate import basic_normalize, corpus_scores, read_manifest

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from make_tiny_checkpoint import make_checkpoint, make_recording  # noqa: E402


def test_read_fairseq_tsv_and_jsonl(tmp_path):
    (tmp_path / "clips").mkdir()
    tsv = tmp_path / "dev.tsv"
    tsv.write_text(
        'id\taudio\tn_frames\ttgt_text\tspeaker\nu1\tclips/a.wav\t16000\tHe said "hi".\tspk1\n'
        f"u2\t{tmp_path}/b.flac\t8000\tok\tspk2\n"
    )
    sources = read_manifest(tsv)
    assert [s.extra for s in sources] == [
        {"id": "u1", "reference": 'He said "hi".'},
        {"id": "u2", "reference": "ok"},
    ]
    assert [s.audio for s in sources] == [tmp_path / "clips/a.wav", tmp_path / "b.flac"]
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text(
        '{"audio_filepath": "a.wav", "text": "x y"}\n\n{"id": "k", "audio": "/b.wav", "tgt_text": "z"}\n'
    )
    sources = read_manifest(jsonl)
    assert [s.extra for s in sources] == [{"id": "1", "reference": "x y"}, {"id": "k", "reference": "z"}]
    assert sources[1].name == "/b.wav"
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="audio"):
        read_manifest(tmp_path / "bad.tsv")
    for line, field in (
        ('{"audio": 7, "text": "x"}', "'audio'"),
        ('{"audio": "a.wav", "text": ["x"]}', "'text'"),
    ):
        (tmp_path / "typed.jsonl").write_text(line + "\n")
        with pytest.raises(InputError, match=f"row 1: {field} must be a string"):
            read_manifest(tmp_path / "typed.jsonl")


def test_normalizer_and_scores():
    assert basic_normalize("  Hello, World!  It's 'quoted'. ") == "hello world it's quoted"
    scores = corpus_scores(["a b c d", "e f"], ["a x c d", "e f"], "wer")
    assert scores["wer"] == pytest.approx(1 / 6)
    assert scores["cer"] == pytest.approx(1 / 10)
    assert corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"], "bleu")[
        "bleu"
    ] == pytest.approx(100)
    with pytest.raises(InputError):
        corpus_scores([""], ["x"], "wer")


def test_cli_eval(tmp_path, capsys):
    model = make_checkpoint(tmp_path / "model")
    clips = [make_recording(tmp_path / f"c{i}.wav", seconds=1.0 + i / 2, seed=i) for i in range(2)]
    assert main(["transcribe", *map(str, clips), "--model", str(model), "--max-new-tokens", "6"]) == 0
    hypotheses = capsys.readouterr().out.splitlines()
    manifest = tmp_path / "test.tsv"
    rows = [f"u{i}\tc{i}.wav\t0\t{text.upper()}!\ts" for i, text in enumerate(hypotheses)]
    manifest.write_text(
        "\n".join(["id\taudio\tn_frames\ttgt_text\tspeaker", *rows, "u9\tmissing.wav\t0\tx\ts"])
    )
    results = tmp_path / "results.jsonl"
    argv = ["eval", "--manifest", str(manifest), "--model", str(model), "--results", str(results)]
    argv += ["--max-new-tokens", "6"]
    assert main(argv) == 2  # the missing file is reported; the others are scored
    captured = capsys.readouterr()
    assert "WER 0.00%, CER 0.00% on 2 utterances (1 failed)" in captured.out
    assert "missing.wav" in captured.err
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["u0", "u1", "u9"] and lines[0]["wer"] == 0.0
    assert lines[2]["error"] and lines[2]["hypothesis"] == ""
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    # A results file that cannot be written is refused before any decoding.
    elsewhere = [*argv[:-4], "--results", str(tmp_path / "no-such-folder" / "r.jsonl")]
    assert main(elsewhere) == 2 and "no-such-folder" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--normalizer", "none", "--metric", "bleu"]) == 2
    assert "BLEU" in capsys.readouterr().out
