"""Text decoders alone (Speech2Text2, MBart, BERT, GPT-2) against transformers: logits, cache, configs, warm start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_decoders import VOCAB, WIDTH, decoder_config, make_decoder, relative_error
from safetensors.torch import load_file

from speechseq.errors import CheckpointError
from speechseq.models.text_decoder import TextDecoder, TextDecoderConfig
from speechseq.models.text_decoder.checkpoint import KEY_MAPS, config_from_hf, config_to_hf
from speechseq.models.text_decoder.family import load_pretrained

pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "s2t2_model"
DECODER_CLASSES = {"mbart": "MBartForCausalLM", "bert": "BertLMHeadModel", "gpt2": "GPT2LMHeadModel"}
# Non-default options each flavour maps: activations, norms, sizes, untied heads.
ODD = {
    "mbart": dict(scale_embedding=False, activation_function="relu", tie_word_embeddings=False),
    "bert": dict(hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3, tie_word_embeddings=False),
    "gpt2": dict(n_inner=56, activation_function="gelu", layer_norm_epsilon=1e-6),
}


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (3, 7), generator=generator)
    memory = torch.randn(3, 9, WIDTH, generator=generator)
    memory_mask = torch.ones(3, 9, dtype=torch.long)
    memory_mask[1, 5:] = 0
    return tokens, memory, memory_mask


@pytest.mark.parametrize("odd", [False, True], ids=["defaults", "odd_options"])
@pytest.mark.parametrize("flavour", ["mbart", "bert", "gpt2"])
def test_logits_match_transformers(tmp_path, flavour, odd):
    hf = make_decoder(flavour, tmp_path, **(ODD[flavour] if odd else {}))
    ours, report = load_pretrained(tmp_path)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    tokens, memory, memory_mask = _inputs()
    with torch.no_grad():
        expected = hf(
            input_ids=tokens, encoder_hidden_states=memory, encoder_attention_mask=memory_mask
        ).logits
        actual = ours.logits(tokens, memory, memory_mask == 0)
    assert relative_error(expected, actual) < 1e-4


@pytest.mark.parametrize("flavour", ["mbart", "bert", "gpt2"])
def test_padded_decoder_inputs_match_on_valid_tokens(tmp_path, flavour):
    hf = make_decoder(flavour, tmp_path)
    ours, _ = load_pretrained(tmp_path)
    tokens, memory, memory_mask = _inputs(1)
    mask = torch.ones_like(tokens)
    mask[0, 4:] = 0
    with torch.no_grad():
        expected = hf(
            input_ids=tokens,
            attention_mask=mask,
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
        ).logits
        actual = ours.logits(tokens, memory, memory_mask == 0, padding_mask=mask == 0)
    valid = mask.bool()
    assert relative_error(expected[valid], actual[valid]) < 1e-4


def test_speech2text2_matches_transformers_4_50_fixture():
    # transformers 5 has no Speech2Text2; scripts/make_s2t2_fixtures.py recorded these with 4.50.3.
    ours, report = load_pretrained(FIXTURES / "decoder")
    assert (report.missing, report.unexpected) == ([], [])
    expected = load_file(str(FIXTURES / "decoder_expected.safetensors"))
    with torch.no_grad():
        actual = ours.logits(expected["tokens"], expected["encoder_hidden"], expected["encoder_mask"] == 0)
    # Rows 1 and 2 hold right and left padding: the padding-aware positions must skip the pads.
    assert relative_error(expected["logits"], actual) < 1e-4
    assert not ours.config.tie_word_embeddings


def _decoder(flavour: str, folder: Path) -> TextDecoder:
    if flavour == "speech_to_text_2":
        return load_pretrained(FIXTURES / "decoder")[0]
    make_decoder(flavour, folder)
    return load_pretrained(folder)[0]


@pytest.mark.parametrize("flavour", ["speech_to_text_2", "mbart", "bert", "gpt2"])
def test_cached_steps_equal_full_forward(tmp_path, flavour):
    decoder = _decoder(flavour, tmp_path)
    tokens = torch.randint(3, decoder.config.vocab_size, (2, 8))
    memory = torch.randn(2, 6, decoder.config.d_model)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        kv = decoder.build_memory(memory, padding)
        full = decoder.lm_head(decoder(tokens, kv))
        cache = decoder.new_cache(2, 3, memory)  # small: the cache must grow on demand
        stepped = [decoder.lm_head(decoder(tokens[:, i : i + 1], kv, cache)) for i in range(tokens.shape[1])]
    assert torch.allclose(full, torch.cat(stepped, dim=1), atol=1e-5)


@pytest.mark.parametrize("flavour", ["mbart", "bert", "gpt2"])
def test_config_defaults_are_transformers_defaults(flavour):
    import transformers

    config_class = {"mbart": "MBartConfig", "bert": "BertConfig", "gpt2": "GPT2Config"}[flavour]
    full = getattr(transformers, config_class)().to_dict()
    assert config_from_hf({"model_type": flavour}) == config_from_hf(full)


def test_speech2text2_config_round_trip():
    raw = json.loads((FIXTURES / "decoder" / "config.json").read_text())
    config = config_from_hf(raw)
    assert (config.d_model, config.num_layers, config.max_positions, config.vocab_size) == (16, 2, 48, 45)
    assert config_from_hf(config_to_hf(config)) == config
    defaults = json.loads((FIXTURES / "decoder_default_config.json").read_text())
    assert config_from_hf({"model_type": "speech_to_text_2"}) == config_from_hf(defaults)


@pytest.mark.parametrize("flavour", ["mbart", "bert", "gpt2"])
def test_key_map_covers_every_weight(flavour):
    import transformers

    from speechseq.models.text_decoder.checkpoint import from_loadable, to_loadable

    config = decoder_config(flavour, tie_word_embeddings=False)
    upstream = getattr(transformers, DECODER_CLASSES[flavour])(config).state_dict()
    ours = TextDecoder(config_from_hf(config.to_dict()))
    key_map = KEY_MAPS[flavour]
    # Every weight of ours has an upstream name, and every upstream weight (but derived ones) has one of ours.
    renamed = {key_map.to_upstream(name): tensor for name, tensor in ours.state_dict().items()}
    assert {k for k in from_loadable(flavour, renamed) if not key_map.ignored(k)} == {
        k for k in upstream if not key_map.ignored(k)
    }
    loadable = to_loadable(flavour, dict(upstream))
    assert {key_map.to_ours(k) for k in loadable if not key_map.ignored(k)} == set(ours.state_dict())


def _transformers_missing(folder: Path) -> list[str]:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    config.is_decoder = config.add_cross_attention = True
    _, info = AutoModelForCausalLM.from_pretrained(folder, config=config, output_loading_info=True)
    return sorted(info["missing_keys"])


@pytest.mark.parametrize("source", ["bert_lm", "bert_base", "gpt2_lm", "gpt2_base"])
def test_warm_start_reports_new_weights_like_transformers(tmp_path, source):
    import transformers

    flavour, kind = source.split("_")
    config = decoder_config(flavour, add_cross_attention=False)
    torch.manual_seed(0)
    if kind == "base":
        model = getattr(transformers, {"bert": "BertModel", "gpt2": "GPT2Model"}[flavour])(config)
    else:
        model = getattr(transformers, DECODER_CLASSES[flavour])(config)
    model.save_pretrained(tmp_path)
    decoder, report = load_pretrained(tmp_path)
    assert report.missing == _transformers_missing(tmp_path)
    assert any("cross" in name for name in report.missing)
    # Pretrained weights arrive unchanged; the tied head shares the embedding.
    assert torch.equal(decoder.stack.embed_tokens.weight, model.get_input_embeddings().weight)
    assert decoder.projection.weight is decoder.stack.embed_tokens.weight
    assert torch.equal(decoder.stack.layers[1].ffn.fc1.bias, _fc1_bias(model, flavour))


def _fc1_bias(model, flavour: str) -> torch.Tensor:
    base = getattr(model, {"bert": "bert", "gpt2": "transformer"}[flavour], model)
    return base.encoder.layer[1].intermediate.dense.bias if flavour == "bert" else base.h[1].mlp.c_fc.bias


def test_warm_start_takes_mbart_shared_embedding(tmp_path):
    import transformers

    config = transformers.MBartConfig(
        vocab_size=VOCAB, d_model=WIDTH, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.MBartForConditionalGeneration(config).save_pretrained(tmp_path)
    decoder, report = load_pretrained(tmp_path)
    # transformers 5 reports the embedding missing here (it sits under model.shared); speechseq takes it.
    assert report.missing == []
    assert "model.encoder.layer_norm.weight" in report.unexpected
    shared = load_file(str(tmp_path / "model.safetensors"))["model.shared.weight"]
    assert torch.equal(decoder.stack.embed_tokens.weight, shared)


@pytest.mark.parametrize(
    "flavour, option",
    [
        ("gpt2", {"scale_attn_by_inverse_layer_idx": True}),
        ("gpt2", {"scale_attn_weights": False}),
        ("bert", {"position_embedding_type": "relative_key"}),
        ("t5", {}),
    ],
)
def test_unsupported_decoders_are_refused(flavour, option):
    with pytest.raises(CheckpointError, match="not supported"):
        config_from_hf({"model_type": flavour, **option})


def test_learned_positions_refuse_overlong_inputs():
    decoder = TextDecoder(
        TextDecoderConfig.gpt2(vocab_size=10, d_model=8, num_layers=1, num_heads=2, max_positions=4)
    )
    memory = decoder.build_memory(torch.randn(1, 3, 8), None)
    with pytest.raises(ValueError, match="4 tokens"):
        decoder(torch.zeros(1, 5, dtype=torch.long), memory)
