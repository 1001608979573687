"""Greedy CTC decoding and `speechseq transcribe` on CTC checkpoints, against transformers' tokenizer and pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_wav2vec2 import LETTERS, make_ctc_checkpoint, random_batch, write_vocab

import speechseq
from speechseq.cli import main
from speechseq.errors import InputError
from speechseq.generation.ctc import ctc_transcripts, greedy_ctc
from speechseq.text.ctc_vocab import Wav2Vec2CTCTokenizer

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from make_tiny_checkpoint import make_recording  # noqa: E402

# ARCHITECTURES.md §4.11: blanks (0) between repeats, delimiters (4), <s> (1) and </s> (2) inside.
SCRIPTED = [0, 7, 7, 0, 7, 4, 4, 0, 4, 6, 1, 6, 5, 0, 0, 2, 4, 8, 8, 9]


def _hf_tokenizer(folder):
    from transformers import Wav2Vec2CTCTokenizer as HFTokenizer

    return HFTokenizer(str(write_vocab(folder)))


def _one_hot_log_probs(rows: list[list[int]]) -> torch.Tensor:
    longest = max(map(len, rows))
    scores = torch.full((len(rows), longest, len(LETTERS)), -10.0)
    for b, row in enumerate(rows):
        scores[b, torch.arange(len(row)), torch.tensor(row)] = 0.0
    return scores.log_softmax(-1)


@pytest.mark.parametrize("skip", [False, True], ids=["keep_special", "skip_special"])
def test_scripted_frames_decode_as_transformers(tmp_path, skip):
    hf = _hf_tokenizer(tmp_path)
    ours = Wav2Vec2CTCTokenizer(tmp_path / "vocab.json")
    log_probs = _one_hot_log_probs([SCRIPTED, SCRIPTED[:9]])
    frames = greedy_ctc(log_probs, torch.tensor([20, 9]))
    assert [f.tolist() for f in frames] == [SCRIPTED, SCRIPTED[:9]]
    (full, short) = ctc_transcripts(frames, ours, 320, 16000, skip_special_tokens=skip)
    expected = hf.decode(
        SCRIPTED, skip_special_tokens=skip, output_char_offsets=True, output_word_offsets=True
    )
    assert full.text == expected.text == ("A TE ON" if skip else "AA  T<s>TE</s> ON")
    assert [(w.text, w.start, w.end) for w in full.words] == [
        (w["word"], w["start_offset"] * 320 / 16000, w["end_offset"] * 320 / 16000)
        for w in expected.word_offsets
    ]
    assert [t.text for t in full.tokens] == [c["char"] for c in expected.char_offsets]
    assert short.text == hf.decode(SCRIPTED[:9], skip_special_tokens=skip)


def test_model_output_decodes_as_transformers(tmp_path):
    from transformers import Wav2Vec2ForCTC

    folder = make_ctc_checkpoint(tmp_path / "model")
    hf_tokenizer = _hf_tokenizer(tmp_path)
    model = speechseq.load_model(folder)
    tokenizer = speechseq.load_tokenizer(folder)
    values, mask = random_batch((8000, 6100, 3300))
    with torch.no_grad():
        output = model(values, attention_mask=mask)
        hf_logits = Wav2Vec2ForCTC.from_pretrained(folder).eval()(values, attention_mask=mask).logits
    hf_ids = hf_logits.argmax(-1)
    everything = ctc_transcripts(greedy_ctc(output.logits), tokenizer, model.inputs_to_logits_ratio, 16000)
    assert [t.text for t in everything] == hf_tokenizer.batch_decode(hf_ids)
    valid = greedy_ctc(output.logits, output.lengths)
    ratio = model.inputs_to_logits_ratio
    for frames, transcript in zip(valid, ctc_transcripts(valid, tokenizer, ratio, 16000), strict=True):
        expected = hf_tokenizer.decode(frames, output_word_offsets=True)
        assert transcript.text == expected.text and transcript.text
        assert [(w.text, w.start, w.end) for w in transcript.words] == [
            (w["word"], w["start_offset"] * ratio / 16000, w["end_offset"] * ratio / 16000)
            for w in expected.word_offsets
        ]


def test_word_times_match_transformers_pipeline(tmp_path):
    from transformers import pipeline

    folder = make_ctc_checkpoint(tmp_path / "model", with_mask=False)
    audio = speechseq.load_audio(make_recording(tmp_path / "clip.wav", seconds=1.1))
    expected = pipeline("automatic-speech-recognition", model=str(folder))(
        np.asarray(audio), return_timestamps="word"
    )
    processor = speechseq.load_processor(folder)
    assert type(processor.feature_extractor).__name__ == "Wav2Vec2FeatureExtractor"
    assert type(processor.tokenizer).__name__ == "Wav2Vec2CTCTokenizer"
    model = speechseq.load_model(folder)
    with torch.no_grad():
        output = model(processor(audio, sampling_rate=16000)["input_values"])
    frames = greedy_ctc(output.logits, output.lengths)
    (ours,) = ctc_transcripts(frames, processor.tokenizer, model.inputs_to_logits_ratio, 16000)
    assert ours.text == expected["text"]
    assert [(w.text, (w.start, w.end)) for w in ours.words] == [
        (chunk["text"], chunk["timestamp"]) for chunk in expected["chunks"]
    ]


def _transformers_texts(folder, files) -> list[str]:
    import soundfile as sf
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(folder)
    model = Wav2Vec2ForCTC.from_pretrained(folder).eval()
    texts = []
    for file in files:  # one at a time, as transformers' pipeline does
        inputs = processor(sf.read(file, dtype="float32")[0], sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            texts.append(processor.batch_decode(model(**inputs).logits.argmax(-1))[0])
    return texts


@pytest.mark.parametrize(
    ("variant", "with_mask"),
    [("layer_stable_ln", True), ("group_post_ln", False)],
    ids=["masked", "unmasked"],
)
def test_cli_transcribes_ctc_checkpoint(tmp_path, capsys, variant, with_mask):
    folder = make_ctc_checkpoint(tmp_path / "model", variant, with_mask=with_mask)
    files = [
        make_recording(tmp_path / f"clip{i}.wav", seconds=s, seed=i) for i, s in enumerate([1.3, 2.1, 0.7])
    ]
    expected = _transformers_texts(folder, files)
    assert main(["transcribe", *map(str, files), "--model", str(folder), "--batch-size", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert all(expected)


def test_cli_rejects_generation_options_for_ctc(tmp_path, capsys):
    folder = make_ctc_checkpoint(tmp_path / "model")
    clip = make_recording(tmp_path / "clip.wav", seconds=0.5)
    assert main(["transcribe", str(clip), "--model", str(folder), "--num-beams", "3"]) == 2
    assert "CTC model" in capsys.readouterr().err


def test_processor_saved_by_transformers_5_loads(tmp_path):
    # transformers 5 saves a processor's feature extractor inside processor_config.json, with no
    # preprocessor_config.json.
    from transformers import Wav2Vec2Processor

    folder = make_ctc_checkpoint(tmp_path / "model", with_mask=True)
    Wav2Vec2Processor.from_pretrained(folder).save_pretrained(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert (saved / "processor_config.json").is_file()
    assert not (saved / "preprocessor_config.json").is_file()
    processor = speechseq.load_processor(saved)
    original = speechseq.load_processor(folder)
    assert processor.feature_extractor == original.feature_extractor
    audio = speechseq.load_audio(make_recording(tmp_path / "clip.wav", seconds=0.5))
    assert torch.equal(
        processor(audio, sampling_rate=16000)["input_values"],
        original(audio, sampling_rate=16000)["input_values"],
    )


def test_processor_options_reach_tokenizer_and_extractor(tmp_path):
    from transformers import Wav2Vec2Processor

    folder = make_ctc_checkpoint(tmp_path / "model", with_mask=True)
    hf, ours = Wav2Vec2Processor.from_pretrained(folder), speechseq.load_processor(folder)
    texts = ["A", "HELLO THERE"]
    for options in (
        dict(padding=True),
        dict(padding=True, return_tensors="pt"),
        dict(truncation=True, max_length=3),
    ):
        want = hf(text=texts, **options)
        got = ours(text=texts, **options)
        for key in ("input_ids", "attention_mask"):
            assert (got[key].tolist() if hasattr(got[key], "tolist") else got[key]) == (
                want[key].tolist() if hasattr(want[key], "tolist") else want[key]
            )
    audio = [np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1 for n in (1600, 2400)]
    want = hf(audio=audio, sampling_rate=16000, text=texts, padding=True, return_tensors="pt")
    got = ours(audio, sampling_rate=16000, text=texts, padding=True, return_tensors="pt")
    assert torch.equal(got["input_values"], want["input_values"])
    assert torch.equal(got["labels"], want["labels"])
    as_numpy = ours(audio, sampling_rate=16000, return_tensors="np")
    assert isinstance(as_numpy["input_values"], np.ndarray)
    assert np.array_equal(as_numpy["input_values"], got["input_values"].numpy())
    with pytest.raises(InputError, match="return_tensors"):
        ours(audio, sampling_rate=16000, return_tensors="tf")
    with pytest.raises(InputError, match="only text was given"):
        ours(text=texts, sampling_rate=16000)
