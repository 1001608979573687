"""SpeechEncoderDecoder against transformers: every encoder x decoder pair, the two facebook layouts, warm start,
save/load, generation defaults and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_decoders import DECODERS, ENCODERS, VOCAB, audio, decoder_config, make_sed, relative_error
from safetensors.torch import load_file

import speechseq
from speechseq.errors import CheckpointError, InputError
from speechseq.models.speech_encoder_decoder.checkpoint import config_from_hf, config_to_hf

pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "s2t2_model"
# transformers itself fails on this pair: GPT-2's Conv1D views the adapter's non-contiguous output.
UNSUPPORTED = {("wav2vec2_adapter", "gpt2")}
PAIRS = [(e, d) for e in ENCODERS for d in DECODERS if (e, d) not in UNSUPPORTED]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Return make(encoder, decoder, **options) -> (transformers model, folder), each made once per module."""
    made = {}

    def make(encoder: str, decoder: str, **options):
        key = (encoder, decoder, json.dumps(options, sort_keys=True))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{encoder}-{decoder}")
            made[key] = make_sed(folder, encoder, decoder, **options), folder
        return made[key]

    return make


def _copy(folder: Path, tmp_path: Path) -> Path:
    """A private copy of a shared checkpoint, for tests that edit its files."""
    import shutil

    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _labels(seed: int = 0) -> torch.Tensor:
    labels = torch.randint(3, VOCAB, (3, 6), generator=torch.Generator().manual_seed(seed))
    labels[1, 4:] = -100
    return labels


def _stop_token(hf, inputs, mask) -> int:
    """A token greedy decoding emits mid-way, used as eos so that rows end at different steps."""
    ids = hf.generate(inputs, attention_mask=mask, max_new_tokens=10, eos_token_id=None, pad_token_id=1)
    return int(ids[0, 4])


@pytest.mark.parametrize("encoder, decoder", PAIRS)
def test_pair_matches_transformers(checkpoints, encoder, decoder):
    hf, folder = checkpoints(encoder, decoder)
    ours = speechseq.load_model(folder)
    inputs, mask = audio(encoder)
    labels = _labels()
    with torch.no_grad():
        expected = hf(inputs, attention_mask=mask, labels=labels)
        actual = ours(inputs, attention_mask=mask, labels=labels)
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5)
    assert relative_error(expected.encoder_last_hidden_state, actual.encoder_last_hidden_state) < 1e-4
    options = dict(max_new_tokens=10, eos_token_id=_stop_token(hf, inputs, mask))
    for beams in (1, 3):
        want = hf.generate(inputs, attention_mask=mask, num_beams=beams, **options)
        assert (
            ours.generate(inputs, attention_mask=mask, num_beams=beams, **options).tolist() == want.tolist()
        )


def test_speech2text2_layout_matches_transformers_4_50_fixture():
    # facebook/s2t-wav2vec2-large-en-de's layout, recorded by scripts/make_s2t2_fixtures.py with transformers 4.50.3.
    model = speechseq.load_model(FIXTURES / "sed")
    expected = load_file(str(FIXTURES / "sed_expected.safetensors"))
    recorded = json.loads((FIXTURES / "sed_expected.json").read_text())
    inputs, mask = expected["input_values"], expected["attention_mask"]
    assert model.enc_to_dec_proj is not None and not model.config.decoder.tie_word_embeddings
    with torch.no_grad():
        actual = model(input_values=inputs, attention_mask=mask, labels=expected["labels"])
    assert relative_error(expected["logits"], actual.logits) < 1e-4
    assert torch.allclose(expected["loss"], actual.loss, rtol=1e-5)
    greedy = model.generate(inputs, attention_mask=mask, num_beams=1, **recorded["options"])
    beam = model.generate(inputs, attention_mask=mask, num_beams=3, **recorded["options"])
    assert greedy.tolist() == expected["greedy"].tolist()
    assert beam.tolist() == expected["beam"].tolist()
    # No generation_config.json: num_beams, max_length and early_stopping come from the decoder section.
    default = model.generate(inputs, attention_mask=mask)
    assert default.tolist() == expected["default"].tolist()
    processor = speechseq.load_processor(FIXTURES / "sed")
    assert processor.batch_decode(default, skip_special_tokens=True) == recorded["default_texts"]


def test_presets_follow_transformers_projection_rule():
    from speechseq.models.speech_encoder_decoder import SpeechEncoderDecoderConfig

    en_de = SpeechEncoderDecoderConfig.s2t_wav2vec2_large_en_de()
    assert en_de.has_projection and (en_de.encoder_hidden_size, en_de.decoder.d_model) == (1024, 256)
    xls_r = SpeechEncoderDecoderConfig.xls_r_300m_en_to_15()
    assert not xls_r.has_projection and xls_r.encoder_output_width == xls_r.decoder.d_model == 1024


def test_speech2text2_head_stays_untied_without_flag(tmp_path):
    # Section 8.4: a decoder section without tie_word_embeddings keeps its stored (fairseq embed_out) head.
    folder = _copy(FIXTURES / "sed", tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    del raw["decoder"]["tie_word_embeddings"]
    (folder / "config.json").write_text(json.dumps(raw))
    model = speechseq.load_model(folder)
    stored = load_file(str(folder / "model.safetensors"))["decoder.lm_head.weight"]
    assert torch.equal(model.lm_head.weight, stored)
    assert not torch.equal(model.lm_head.weight, model.decoder.stack.embed_tokens.weight)


def test_xls_r_layout_forces_the_language_token(checkpoints, tmp_path):
    # facebook/wav2vec2-xls-r-300m-en-to-15's layout: adapter as wide as the MBart decoder, no projection, and
    # generation_config.json forcing the target-language token first.
    hf, folder = checkpoints("wav2vec2_adapter", "mbart")
    folder = _copy(folder, tmp_path)
    settings = dict(
        forced_bos_token_id=7, forced_eos_token_id=2, num_beams=3, max_length=12, early_stopping=True
    )
    stored = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**stored, **settings}))
    ours = speechseq.load_model(folder)
    assert ours.enc_to_dec_proj is None
    inputs, mask = audio("wav2vec2_adapter")
    expected = hf.generate(inputs, attention_mask=mask, **settings)
    actual = ours.generate(inputs, attention_mask=mask)
    assert actual.tolist() == expected.tolist()
    assert (actual[:, 1] == 7).all()


def test_generation_defaults_from_config_sections(checkpoints, tmp_path):
    from transformers import SpeechEncoderDecoderModel

    folder = _copy(checkpoints("hubert", "bert")[1], tmp_path)
    (folder / "generation_config.json").unlink()
    raw = json.loads((folder / "config.json").read_text())
    raw["decoder"].update(num_beams=3, max_length=9, no_repeat_ngram_size=2, decoder_start_token_id=5)
    raw["max_length"] = 7  # the top level wins over the decoder section
    (folder / "config.json").write_text(json.dumps(raw))
    hf = SpeechEncoderDecoderModel.from_pretrained(folder).eval()
    ours = speechseq.load_model(folder)
    inputs, mask = audio("hubert")
    assert (
        ours.generate(inputs, attention_mask=mask).tolist()
        == hf.generate(inputs, attention_mask=mask).tolist()
    )


@pytest.mark.parametrize("encoder, decoder", [("wav2vec2", "gpt2"), ("wav2vec2_bert", "bert")])
def test_cached_steps_equal_full_forward(checkpoints, encoder, decoder):
    model = speechseq.load_model(checkpoints(encoder, decoder)[1])
    inputs, mask = audio(encoder)
    tokens = torch.randint(3, VOCAB, (3, 8))
    with torch.no_grad():
        encoded = model.encode(inputs, mask)
        full = model.decode(tokens, encoded, None)
        state = model.start_decoding(encoded, 1, 3)
        stepped = torch.stack(
            [model.step(tokens[:, i : i + 1], state) for i in range(tokens.shape[1])], dim=1
        )
    assert torch.allclose(full, stepped, atol=1e-5)


@pytest.mark.parametrize(
    "encoder, decoder, untied",
    [("wav2vec2", "bert", True), ("wav2vec2_bert", "gpt2", False), ("hubert", "mbart", False)],
)
def test_save_pretrained_round_trip_through_transformers(checkpoints, tmp_path, encoder, decoder, untied):
    from transformers import SpeechEncoderDecoderModel

    options = {"decoder_options": {"tie_word_embeddings": False}} if untied else {}
    folder = checkpoints(encoder, decoder, **options)[1]
    ours = speechseq.load_model(folder)
    ours.save_pretrained(tmp_path / "b")
    written = set(load_file(str(tmp_path / "b" / "model.safetensors")))
    assert written == set(load_file(str(folder / "model.safetensors")))
    hf = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "b").eval()
    inputs, mask = audio(encoder)
    with torch.no_grad():
        expected = hf(inputs, attention_mask=mask, labels=_labels()).logits
        actual = ours(inputs, attention_mask=mask, labels=_labels()).logits
    assert relative_error(expected, actual) < 1e-5
    assert speechseq.load_model(tmp_path / "b").config == ours.config


def test_speech2text2_save_round_trip(tmp_path):
    ours = speechseq.load_model(FIXTURES / "sed")
    ours.save_pretrained(tmp_path)
    reloaded = speechseq.load_model(tmp_path)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    # Everything transformers 4.50 wrote, except the sinusoid table it stored as a parameter.
    stored = {k for k in load_file(str(FIXTURES / "sed" / "model.safetensors")) if "embed_positions" not in k}
    assert set(load_file(str(tmp_path / "model.safetensors"))) == stored
    assert config_from_hf(config_to_hf(ours.config)) == ours.config
    assert reloaded.generation_defaults == ours.generation_defaults


def _transformers_missing(folder: Path) -> list[str]:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    config.is_decoder = config.add_cross_attention = True
    _, info = AutoModelForCausalLM.from_pretrained(folder, config=config, output_loading_info=True)
    return sorted(info["missing_keys"])


def _pretrained_parts(folder: Path, encoder: str, decoder: str) -> tuple[Path, Path]:
    import transformers

    encoder_class, encoder_options = ENCODERS[encoder]
    head = {"Wav2Vec2Config": "Wav2Vec2ForCTC", "Wav2Vec2BertConfig": "Wav2Vec2BertForCTC"}[encoder_class]
    torch.manual_seed(0)
    config = getattr(transformers, encoder_class)(**encoder_options, vocab_size=12)
    getattr(transformers, head)(config).save_pretrained(folder / "encoder")
    base = {"bert": "BertLMHeadModel", "gpt2": "GPT2Model"}[decoder]
    getattr(transformers, base)(decoder_config(decoder, add_cross_attention=False)).save_pretrained(
        folder / "decoder"
    )
    return folder / "encoder", folder / "decoder"


@pytest.mark.parametrize("encoder, decoder", [("wav2vec2", "bert"), ("wav2vec2_bert", "gpt2")])
def test_from_encoder_decoder_pretrained(tmp_path, encoder, decoder):
    from transformers import SpeechEncoderDecoderModel

    encoder_path, decoder_path = _pretrained_parts(tmp_path, encoder, decoder)
    ours, report = speechseq.SpeechEncoderDecoder.from_encoder_decoder_pretrained(
        encoder_path, decoder_path, decoder_start_token_id=2, pad_token_id=1, output_loading_info=True
    )
    assert report.decoder_missing == _transformers_missing(decoder_path)
    assert report.encoder_unused == ["lm_head.bias", "lm_head.weight"]
    assert report.projection == ["enc_to_dec_proj.bias", "enc_to_dec_proj.weight"]
    # transformers' warm start of the same checkpoints differs from ours exactly in the newly initialised weights.
    # transformers routes decoder_* keyword arguments to the decoder, so its top-level ids are set afterwards.
    hf = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(str(encoder_path), str(decoder_path))
    hf.config.decoder_start_token_id, hf.config.pad_token_id = 2, 1
    hf.save_pretrained(tmp_path / "hf")
    theirs = load_file(str(tmp_path / "hf" / "model.safetensors"))
    ours.save_pretrained(tmp_path / "ours")
    mine = load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert set(mine) == set(theirs)
    differing = {key for key in mine if not torch.equal(mine[key], theirs[key])}
    assert differing <= set(report.newly_initialized) and any("cross" in key for key in differing)
    # Initialised as transformers does (normal(0, 0.02), zero biases, unit norms), not left as allocated.
    assert all(mine[key].isfinite().all() and mine[key].abs().max() <= 1 for key in report.newly_initialized)
    reloaded = speechseq.load_model(tmp_path / "hf")
    inputs, mask = audio(encoder)
    assert reloaded.generate(inputs, attention_mask=mask, max_new_tokens=4).shape[0] == 3


def test_bad_input_is_refused(checkpoints):
    model = speechseq.load_model(checkpoints("wav2vec2", "gpt2")[1])
    inputs, mask = audio("wav2vec2")
    with pytest.raises(InputError, match="once"):
        model(inputs, input_values=inputs, labels=_labels())
    with pytest.raises(InputError, match="no audio"):
        model(labels=_labels())
    with pytest.raises(InputError, match="input_values"):
        model.generate(inputs[:, :, None], attention_mask=mask)
    with pytest.raises(InputError, match="labels hold id .* vocabulary has 60"):
        model(inputs, attention_mask=mask, labels=_labels() + VOCAB)
    with pytest.raises(InputError, match="64 positions"):
        model.generate(inputs, attention_mask=mask, max_new_tokens=80)


def test_labels_need_the_top_level_start_token(checkpoints, tmp_path):
    folder = _copy(checkpoints("hubert", "mbart")[1], tmp_path)
    _edit_config(folder, lambda raw: raw.pop("decoder_start_token_id"))
    model = speechseq.load_model(folder)
    inputs, mask = audio("hubert")
    with pytest.raises(InputError, match="decoder_start_token_id"):
        model(inputs, attention_mask=mask, labels=_labels())


def _edit_config(folder: Path, edit) -> None:
    raw = json.loads((folder / "config.json").read_text())
    edit(raw)
    (folder / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: raw.pop("decoder"), "needs an `decoder` section"),
        (
            lambda raw: raw["encoder"].update(model_type="speech_to_text"),
            "encoder model_type 'speech_to_text'",
        ),
        (lambda raw: raw["decoder"].update(model_type="t5"), "decoder model_type 't5'"),
        (lambda raw: raw["decoder"].update(add_cross_attention=False), "add_cross_attention = true"),
        (lambda raw: raw["decoder"].update(cross_attention_hidden_size=7), "cross_attention_hidden_size"),
        # output_hidden_size 20 != hidden 32: transformers' projection could not take the adapter's output.
        (lambda raw: raw["encoder"].update(add_adapter=True, output_hidden_size=20), "cannot run"),
    ],
)
def test_bad_configs_are_reported(checkpoints, tmp_path, edit, message):
    folder = _copy(checkpoints("wav2vec2", "bert")[1], tmp_path)
    _edit_config(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        speechseq.load_model(folder)


def test_weights_that_do_not_fit_are_listed(checkpoints, tmp_path):
    from safetensors.torch import save_file

    folder = _copy(checkpoints("wav2vec2", "mbart")[1], tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["decoder.model.decoder.layers.1.fc1.weight"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="extra.weight"):
        speechseq.load_model(folder)
    del state["extra.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"decoder(.|\n)*layers.1.fc1.weight"):
        speechseq.load_model(folder)


def test_warm_start_rejects_unknown_options(tmp_path):
    encoder_path, decoder_path = _pretrained_parts(tmp_path, "wav2vec2", "bert")
    with pytest.raises(InputError, match="unknown option"):
        speechseq.SpeechEncoderDecoder.from_encoder_decoder_pretrained(encoder_path, decoder_path, beam=3)


def _recordings(folder: Path, clips) -> list[Path]:
    import soundfile as sf

    paths = []
    for index, clip in enumerate(clips):
        paths.append(folder / f"clip{index}.wav")
        sf.write(paths[-1], clip.numpy(), 16000, subtype="FLOAT")  # float samples: no quantisation
    return paths


def test_transcribe_speech2text2_layout(tmp_path, capsys):
    from speechseq.cli import main

    expected = load_file(str(FIXTURES / "sed_expected.safetensors"))
    recorded = json.loads((FIXTURES / "sed_expected.json").read_text())
    files = _recordings(tmp_path, [expected[f"audio{i}"] for i in range(3)])
    processor = speechseq.load_processor(FIXTURES / "sed")
    inputs = processor([speechseq.load_audio(f) for f in files], sampling_rate=16000)
    assert torch.allclose(inputs["input_values"], expected["input_values"], atol=1e-6)
    assert main(["transcribe", *map(str, files), "--model", str(FIXTURES / "sed")]) == 0
    assert capsys.readouterr().out.splitlines() == recorded["default_texts"]


def test_translate_with_mbart50_language_token(tmp_path, capsys):
    import soundfile as sf
    from test_fast_tokenizers import _mbart50
    from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor

    from speechseq.cli import main

    _mbart50(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    hf = make_sed(
        tmp_path / "model", "wav2vec2_adapter", "mbart", decoder_options={"vocab_size": len(tokenizer)}
    )
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(tmp_path / "model")
    inputs, _ = audio("wav2vec2_adapter", lengths=(1600, 1100))
    files = _recordings(tmp_path, [inputs[0], inputs[1, :1100]])
    clips = [sf.read(f, dtype="float32")[0] for f in files]
    features = extractor(clips, sampling_rate=16000, padding=True, return_tensors="pt")
    forced = tokenizer.lang_code_to_id["de_DE"]
    # With no max_length anywhere, transformers 5 allows 20 new tokens and 4.x 19; max_new_tokens settles it.
    ids = hf.generate(
        features.input_values,
        attention_mask=features.attention_mask,
        forced_bos_token_id=forced,
        max_new_tokens=12,
    )
    expected = tokenizer.batch_decode(ids, skip_special_tokens=True)
    args = ["transcribe", *map(str, files), "--model", str(tmp_path / "model"), "--max-new-tokens", "12"]
    args += ["--task", "translate"]
    assert main([*args, "--tgt-lang", "de_DE"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert main([*args, "--tgt-lang", "xx_YY"]) == 2
    assert "de_DE" in capsys.readouterr().err
