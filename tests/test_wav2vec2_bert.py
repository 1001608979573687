"""Wav2Vec2-BERT vs transformers: position schemes, adapter, heads and losses, saving, front end, CTC, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import speechseq
from speechseq.cli import main
from speechseq.errors import CheckpointError, InputError

pytest.importorskip("transformers")
import transformers  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
TINY.update(conv_depthwise_kernel_size=5, classifier_proj_size=20, xvector_output_dim=12)
TINY.update(tdnn_dim=(16, 16, 24), tdnn_kernel=(3, 3, 1), tdnn_dilation=(1, 2, 1))
# Short clipping ranges for relative_key, so that the clips exceed them on both sides.
TINY.update(left_max_position_embeddings=6, right_max_position_embeddings=3)
LENGTHS = [37, 25, 12]  # a padded batch of three clips, in stacked frames
HEADS = {
    "base": "Wav2Vec2BertModel",
    "ctc": "Wav2Vec2BertForCTC",
    "sequence": "Wav2Vec2BertForSequenceClassification",
    "frame": "Wav2Vec2BertForAudioFrameClassification",
    "xvector": "Wav2Vec2BertForXVector",
}
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ABCDEHILMNORST'"]


def make_model(folder, head: str = "base", seed: int = 0, **overrides):
    """Create, save and return a random transformers Wav2Vec2-BERT model (eval mode) with the given head."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2BertConfig(**{**TINY, "vocab_size": len(VOCAB), **overrides})
    model = getattr(transformers, HEADS[head])(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            # Perturb what initialises to constants (norms, biases, u/v biases), so that every weight matters.
            if "layer_norm" in name or "pos_bias" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return model


def features(lengths=LENGTHS, seed: int = 0):
    """Return stacked-fbank-like inputs (B, T, 160) padded with 1.0 (w2v-bert-2.0's padding_value) and a mask."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.ones(len(lengths), max(lengths), 160)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        offset = torch.randn(160, generator=generator)  # clips differ as wholes
        values[row, :length] = torch.randn(length, 160, generator=generator) + offset
        mask[row, :length] = 1
    return values, mask


def relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max())


def _labels(head: str, config, lengths=LENGTHS):
    generator = torch.Generator().manual_seed(1)
    if head == "ctc":
        labels = torch.randint(5, config.vocab_size, (len(lengths), 6), generator=generator)
        labels[1, 4:] = -100
        labels[2, 3:] = -100
        return labels
    if head == "frame":
        classes = torch.randint(0, config.num_labels, (len(lengths), max(lengths)), generator=generator)
        return torch.nn.functional.one_hot(classes, config.num_labels).float()
    return torch.randint(0, config.num_labels, (len(lengths),), generator=generator)


def _run(tmp_path, head="base", masked=True, **overrides):
    hf = make_model(tmp_path, head, **overrides)
    ours = speechseq.load_model(tmp_path)
    values, mask = features()
    mask = mask if masked else None
    kwargs = {"labels": _labels(head, hf.config)} if head != "base" else {}
    with torch.no_grad():
        expected = hf(values, attention_mask=mask, output_hidden_states=True, **kwargs)
        actual = ours(values, attention_mask=mask, output_hidden_states=True, **kwargs)
    return hf, ours, expected, actual


@pytest.mark.parametrize("position", ["relative_key", "relative", "rotary", None])
def test_encoder_matches_for_every_position_scheme(tmp_path, position):
    _, _, expected, actual = _run(tmp_path, position_embeddings_type=position)
    assert relative_error(expected.last_hidden_state, actual.last_hidden_state) < 1e-4
    assert len(expected.hidden_states) == len(actual.hidden_states) == 3
    for want, got in zip(expected.hidden_states, actual.hidden_states, strict=True):
        assert relative_error(want, got) < 1e-4


def test_padding_never_changes_valid_frames(tmp_path):
    make_model(tmp_path)
    model = speechseq.load_model(tmp_path)
    values, mask = features()
    with torch.no_grad():
        batch = model(values, attention_mask=mask).last_hidden_state
        alone = model(values[2:, :12]).last_hidden_state
    assert torch.allclose(batch[2, :12], alone[0], atol=1e-5)


ADAPTER, FFN = dict(add_adapter=True), dict(use_intermediate_ffn_before_adapter=True)
ADAPTERS = {
    "one_layer": ADAPTER,
    "projected_two_layers_ffn": dict(ADAPTER, **FFN, output_hidden_size=24, num_adapter_layers=2),
    "kernel5_stride3": dict(ADAPTER, adapter_kernel_size=5, adapter_stride=3, adapter_act="gelu"),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_states_and_output_mask(tmp_path, name):
    hf, ours, expected, actual = _run(tmp_path, **ADAPTERS[name])
    assert expected.last_hidden_state.shape == actual.last_hidden_state.shape
    assert relative_error(expected.last_hidden_state, actual.last_hidden_state) < 1e-4
    values, mask = features()
    with torch.no_grad():
        encoded = ours.encode(values, mask)
    # transformers' own mask helper fails when its length rule overshoots (k=5, s=3), so compare positions.
    lengths = hf._get_feat_extract_output_lengths(mask.sum(-1))
    assert torch.equal(encoded.padding_mask, torch.arange(encoded.hidden.shape[1]) >= lengths[:, None])
    assert torch.equal(actual.lengths, lengths.clamp(max=encoded.hidden.shape[1]))
    assert torch.equal(encoded.hidden, actual.last_hidden_state)


WEIGHTED = dict(num_labels=3, use_weighted_layer_sum=True)
HEAD_CASES = {
    "ctc_adapter_sum": ("ctc", dict(add_adapter=True)),
    "ctc_mean_zero_infinity": ("ctc", dict(ctc_loss_reduction="mean", ctc_zero_infinity=True)),
    "sequence": ("sequence", dict(num_labels=5)),
    "sequence_weighted_rotary": ("sequence", dict(WEIGHTED, position_embeddings_type="rotary")),
    "frame": ("frame", dict(num_labels=4)),
    "frame_weighted": ("frame", WEIGHTED),
    "xvector": ("xvector", dict(num_labels=6)),
    "xvector_weighted_relative": ("xvector", dict(WEIGHTED, position_embeddings_type="relative")),
    "xvector_adapter": ("xvector", dict(num_labels=3, add_adapter=True)),
    # Adapters whose convolutions (padding stride // 2) give other lengths than transformers' rule (kernel // 2):
    # the CTC and x-vector heads count frames by the rule, also without a mask and over the pre-adapter states
    # of a weighted sum (transformers refuses an adapter under the two classification heads, as speechseq does).
    "ctc_adapter_kernel1": ("ctc", dict(add_adapter=True, adapter_kernel_size=1)),
    "xvector_weighted_adapter_stride1": (
        "xvector",
        dict(WEIGHTED, add_adapter=True, adapter_stride=1, num_adapter_layers=3),
    ),
}


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_head_logits_and_loss(tmp_path, name, masked):
    head, overrides = HEAD_CASES[name]
    _, _, expected, actual = _run(tmp_path, head, masked=masked, **overrides)
    assert expected.logits.shape == actual.logits.shape
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5, atol=1e-6), (expected.loss, actual.loss)
    if head == "xvector":
        assert relative_error(expected.embeddings, actual.embeddings) < 1e-4


def test_loss_trains(tmp_path):
    # No layerdrop: whether layer 0 would be skipped must not hang on the random state that loading leaves.
    make_model(tmp_path, "ctc", add_adapter=True, layerdrop=0.0)
    model = speechseq.load_model(tmp_path).train()
    model(*features(), labels=_labels("ctc", model.config)).loss.backward()
    assert model.encoder.conformer.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", ["base", "ctc", "xvector"])
def test_save_pretrained_round_trip_through_transformers(tmp_path, head):
    extra = (
        dict(use_weighted_layer_sum=True)
        if head == "xvector"
        else dict(add_adapter=True, output_hidden_size=24)
    )
    make_model(tmp_path / "a", head, position_embeddings_type="relative", num_labels=3, **extra)
    ours = speechseq.load_model(tmp_path / "a")
    ours.save_pretrained(tmp_path / "b")
    hf = getattr(transformers, HEADS[head]).from_pretrained(tmp_path / "b").eval()
    values, mask = features()
    with torch.no_grad():
        expected, actual = hf(values, attention_mask=mask), ours(values, attention_mask=mask)
    key = "last_hidden_state" if head == "base" else "logits"
    assert relative_error(getattr(expected, key), getattr(actual, key)) < 1e-5
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["architectures"] == [HEADS[head]] and saved["position_embeddings_type"] == "relative"
    assert speechseq.load_model(tmp_path / "b").config == ours.config


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_w2v_bert_2_defaults_on_long_clips(tmp_path, attention):
    """w2v-bert-2.0's settings (relative_key 64/8, kernel 31), fewer layers; both transformers attention paths."""
    torch.manual_seed(0)
    sizes = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32)
    transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(**sizes)).save_pretrained(tmp_path)
    hf = transformers.Wav2Vec2BertModel.from_pretrained(tmp_path, attn_implementation=attention).eval()
    values, mask = features([150, 90])
    with torch.no_grad():
        expected = hf(values, attention_mask=mask).last_hidden_state
        actual = speechseq.load_model(tmp_path)(values, attention_mask=mask).last_hidden_state
    assert relative_error(expected, actual) < 1e-4


def test_bad_inputs_are_rejected(tmp_path):
    make_model(tmp_path, "sequence", num_labels=3)
    model = speechseq.load_model(tmp_path)
    values, mask = features()
    with pytest.raises(InputError, match=r"\(B, T, 160\)"):
        model(values[..., :80])
    with pytest.raises(InputError, match=r"\(B, T, 160\)"):
        model(values[0])
    with pytest.raises(InputError, match="floating point"):
        model(values.long())
    with pytest.raises(InputError, match="attention_mask shape"):
        model(values, attention_mask=mask[:, :-1])
    with pytest.raises(InputError, match="right-padded"):
        model(values, attention_mask=mask.flip(-1))
    empty = mask.clone()
    empty[1] = 0
    with pytest.raises(InputError, match=r"no valid frame in batch item\(s\) \[1\]"):
        model(values, attention_mask=empty)
    with pytest.raises(InputError, match=r"class ids in \[0, 2\]"):
        model(values, attention_mask=mask, labels=torch.tensor([0, 1, 3]))


@pytest.mark.parametrize(
    "head, call, message",
    [
        ("ctc", lambda m, v, k: m(v, attention_mask=k, labels=torch.full((3, 2), 99)), "vocab_size"),
        ("xvector", lambda m, v, k: m(v[:, :6], attention_mask=k[:, :6]), "too short for the x-vector"),
        ("base", lambda m, v, k: m(v, labels=torch.tensor([0, 1, 0])), "no head"),
    ],
)
def test_bad_labels_and_short_clips(tmp_path, head, call, message):
    make_model(tmp_path, head)
    with pytest.raises(InputError, match=message):
        call(speechseq.load_model(tmp_path), *features())


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(architectures=["Wav2Vec2BertForPreTraining"]), "Wav2Vec2BertForPreTraining.*not supported"),
        (dict(conv_depthwise_kernel_size=4), "must be odd"),
        (dict(hidden_size=36), r"lm_head.weight: checkpoint \(20, 32\), config expects \(20, 36\)"),
    ],
)
def test_bad_checkpoints_are_reported(tmp_path, change, message):
    make_model(tmp_path, "ctc")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        speechseq.load_model(tmp_path)


def _recording(path: Path, seconds: float, seed: int) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * 16000)) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.02, t.shape)
    wave = 0.3 * np.sin(2 * np.pi * (200 + 70 * seed) * t) * np.sin(2 * np.pi * 3 * t) + noise
    sf.write(path, wave.astype(np.float32), 16000)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2vbert_audio")
    return [_recording(root / f"clip{i}.wav", s, i) for i, s in enumerate([1.3, 0.6, 2.1])]


@pytest.fixture(scope="module")
def ctc_checkpoint(tmp_path_factory):
    """A CTC fine-tune laid out as on the hub: model with adapter, character tokenizer, padding_value 1 front end."""
    folder = tmp_path_factory.mktemp("w2vbert_ctc")
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(VOCAB)}))
    transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
    transformers.SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(folder)
    model = make_model(folder, "ctc", seed=3, add_adapter=True)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # confident frame labels: the text is not decided by near-ties
        model.lm_head.bias[0] -= 1.0  # fewer blanks, more characters
    model.save_pretrained(folder)
    return folder


def _hf_inputs(folder, files):
    import soundfile as sf

    extractor = transformers.SeamlessM4TFeatureExtractor.from_pretrained(folder)
    audio = [sf.read(f, dtype="float32")[0] for f in files]
    return extractor(audio, sampling_rate=16000, return_tensors="pt")


def _hf_ctc(folder, files):
    """transformers' frame labels and decodings (with offsets) for a batch of files."""
    inputs = _hf_inputs(folder, files)
    model = transformers.Wav2Vec2BertForCTC.from_pretrained(folder).eval()
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**inputs).logits
    lengths = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))
    ids = [row[:n] for row, n in zip(logits.argmax(-1), lengths.tolist(), strict=True)]
    decoded = [tokenizer.decode(i, output_char_offsets=True, output_word_offsets=True) for i in ids]
    return logits, decoded, model.config.inputs_to_logits_ratio


@pytest.mark.parametrize("padding_value", [1.0, 0.0])
def test_seamless_features_match(recordings, tmp_path, padding_value):
    transformers.SeamlessM4TFeatureExtractor(padding_value=padding_value).save_pretrained(tmp_path)
    expected = _hf_inputs(tmp_path, recordings)
    audio = [speechseq.load_audio(f) for f in recordings]
    actual = speechseq.load_feature_extractor(tmp_path)(audio, sampling_rate=16000)
    assert actual["input_features"].shape == expected["input_features"].shape
    assert float((actual["input_features"] - expected["input_features"]).abs().max()) < 1e-4
    assert torch.equal(actual["attention_mask"].long(), expected["attention_mask"].long())


def test_ctc_text_and_times_match(ctc_checkpoint, recordings):
    from speechseq.generation.ctc import ctc_transcripts, greedy_ctc

    logits, decoded, ratio = _hf_ctc(ctc_checkpoint, recordings)
    processor = speechseq.load_processor(ctc_checkpoint)
    model = speechseq.load_model(ctc_checkpoint)
    inputs = processor([speechseq.load_audio(f) for f in recordings], sampling_rate=16000)
    with torch.no_grad():
        output = model(inputs["input_features"], attention_mask=inputs["attention_mask"])
    assert relative_error(logits, output.logits) < 1e-4
    assert model.inputs_to_logits_ratio == ratio == 640
    transcripts = ctc_transcripts(
        greedy_ctc(output.logits, output.lengths), processor.tokenizer, ratio, 16000
    )
    seconds = lambda frames: frames * ratio / 16000  # noqa: E731
    for want, got in zip(decoded, transcripts, strict=True):
        assert got.text == want.text and len(got.text) > 3
        words = [(w["word"], seconds(w["start_offset"]), seconds(w["end_offset"])) for w in want.word_offsets]
        assert [(w.text, w.start, w.end) for w in got.words] == words
        chars = [(c["char"], seconds(c["start_offset"]), seconds(c["end_offset"])) for c in want.char_offsets]
        assert [(c.text, c.start, c.end) for c in got.tokens] == chars


def test_cli_transcribe_ctc(ctc_checkpoint, recordings, capsys):
    _, decoded, _ = _hf_ctc(ctc_checkpoint, recordings)
    assert main(["transcribe", *map(str, recordings), "--model", str(ctc_checkpoint)]) == 0
    assert capsys.readouterr().out.splitlines() == [d.text for d in decoded]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w2vbert_cls")
    transformers.SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(folder)
    names = {0: "angry", 1: "happy", 2: "neutral", 3: "sad"}
    make_model(folder, "sequence", seed=5, id2label=names, label2id={v: k for k, v in names.items()})
    return folder


def test_cli_classify_matches_transformers(classifier, recordings, capsys):
    hf = transformers.Wav2Vec2BertForSequenceClassification.from_pretrained(classifier).eval()
    with torch.no_grad():
        probs = hf(**_hf_inputs(classifier, recordings)).logits.softmax(-1)
    assert main(["classify", *map(str, recordings), "--model", str(classifier), "--top-k", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in rows] == list(map(str, recordings))
    for row, p in zip(rows, probs, strict=True):
        values, ids = p.topk(3)
        assert [r["label"] for r in row["labels"]] == [hf.config.id2label[int(i)] for i in ids]
        assert np.allclose([r["score"] for r in row["labels"]], values.numpy(), atol=1e-5)


def test_classify_frames_and_xvectors(tmp_path, recordings):
    from speechseq.classify import classify_files

    for head in ("frame", "xvector"):
        transformers.SeamlessM4TFeatureExtractor().save_pretrained(tmp_path / head)
        hf = make_model(tmp_path / head, head, num_labels=3)
        inputs = _hf_inputs(tmp_path / head, recordings)
        with torch.no_grad():
            expected = hf(**inputs)
        results = classify_files(recordings, tmp_path / head, batch_size=2, top_k=2)
        if head == "xvector":
            norm = torch.nn.functional.normalize
            cosines = norm(expected.logits, dim=1) @ norm(hf.objective.weight.detach(), dim=0)
            for result, embedding, scores in zip(results, expected.embeddings, cosines, strict=True):
                assert np.allclose(result.embedding, embedding.numpy(), atol=1e-4)
                assert np.allclose([r["score"] for r in result.labels], scores.topk(2).values, atol=1e-5)
            continue
        frames = inputs["attention_mask"].sum(-1).tolist()
        for result, logits, length in zip(results, expected.logits, frames, strict=True):
            assert result.segments[-1]["end"] == pytest.approx(length * 0.02)
            covered = [s for s in result.segments for _ in range(round((s["end"] - s["start"]) / 0.02))]
            assert [s["label"] for s in covered] == [
                hf.config.id2label[int(i)] for i in logits[:length].argmax(-1)
            ]


def test_cli_classify_errors(ctc_checkpoint, classifier, recordings, tmp_path, capsys):
    assert main(["classify", str(recordings[0]), "--model", str(ctc_checkpoint)]) == 2
    assert "transcribe" in capsys.readouterr().err
    missing = str(tmp_path / "missing.wav")
    assert main(["classify", missing, str(recordings[0]), "--model", str(classifier)]) == 2
    captured = capsys.readouterr()
    assert "missing.wav" in captured.err and "Traceback" not in captured.err
    assert len(json.loads(captured.out)) == 1


def test_classify_a_bad_file_does_not_stop_the_others(classifier, recordings, tmp_path):
    import soundfile as sf

    from speechseq.classify import _batches, classify_files

    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(50, np.float32), 16000)  # under one fbank frame
    results = classify_files([short, recordings[0], tmp_path / "missing.wav"], classifier, top_k=1)
    assert "short.wav" in results[0].error and "400 samples" in results[0].error
    assert results[1].error is None and results[1].labels
    assert "does not exist" in results[2].error
    # Files are read a batch at a time, longest first, and long files do not share a batch of 8.
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16000 * 100, np.float32), 16000)
    from speechseq.classify import ClassifyResult

    files = [ClassifyResult(str(p)) for p in (short, long, recordings[0], long, long)]
    assert _batches(files, batch_size=8, rate=16000) == [[1, 3], [4, 2], [0]]  # padded to 100 s each
