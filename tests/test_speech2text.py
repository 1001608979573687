"""Speech2Text parity with transformers: logits, loss, cache, checkpoint formats, save round trip, bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from hf_models import make_s2t, random_features

import speechseq
from speechseq.errors import CheckpointError, InputError

pytest.importorskip("transformers")

ODD_CONFIGS = {
    "three_convs_untied_odd_heads": dict(
        num_conv_layers=3,
        conv_kernel_sizes=(5, 3, 7),
        tie_word_embeddings=False,
        d_model=30,
        encoder_attention_heads=5,
        decoder_attention_heads=3,
        scale_embedding=False,
        activation_function="gelu",
    ),
    "one_conv_deep_decoder": dict(
        num_conv_layers=1,
        conv_kernel_sizes=(3,),
        d_model=24,
        encoder_attention_heads=3,
        decoder_attention_heads=6,
        decoder_layers=3,
        encoder_ffn_dim=40,
        decoder_ffn_dim=56,
        input_feat_per_channel=40,
        vocab_size=53,
    ),
}


def relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max())


def _compare(tmp_path, safe=True, **config):
    hf = make_s2t(tmp_path, safe=safe, **config)
    ours = speechseq.load_model(tmp_path)
    num_features = hf.config.input_feat_per_channel
    features, mask = random_features([150, 111, 67], num_features)
    labels = torch.randint(4, hf.config.vocab_size, (3, 11))
    labels[1, 7:] = -100
    with torch.no_grad():
        expected = hf(input_features=features, attention_mask=mask, labels=labels)
        actual = ours(input_features=features, attention_mask=mask, labels=labels)
    return expected, actual


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
def test_default_config_logits_and_loss(tmp_path, safe):
    expected, actual = _compare(tmp_path, safe=safe, **{k: v for k, v in _S2T_SMALL.items()})
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(ODD_CONFIGS))
def test_odd_config_logits_and_loss(tmp_path, name):
    expected, actual = _compare(tmp_path, **ODD_CONFIGS[name])
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5)


def test_encoder_states_match_without_mask(tmp_path):
    hf = make_s2t(tmp_path)
    ours = speechseq.load_model(tmp_path)
    features, _ = random_features([90])
    with torch.no_grad():
        expected = hf.model.encoder(features).last_hidden_state
        actual = ours.encode(features, None).hidden
    assert relative_error(expected, actual) < 1e-5


def test_cached_steps_equal_full_forward(tmp_path):
    make_s2t(tmp_path)
    model = speechseq.load_model(tmp_path)
    features, mask = random_features([80, 51])
    tokens = torch.randint(4, 97, (2, 9))
    with torch.no_grad():
        encoded = model.encode(features, mask)
        full = model.decode(tokens, encoded, None)
        state = model.start_decoding(encoded, 1, 4)  # small capacity: the cache must grow on demand
        stepped = torch.stack(
            [model.step(tokens[:, i : i + 1], state) for i in range(tokens.shape[1])], dim=1
        )
    assert torch.allclose(full, stepped, atol=1e-5)


def test_old_checkpoint_with_position_tables_loads(tmp_path):
    make_s2t(tmp_path, safe=False)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    state["model.encoder.embed_positions.weights"] = torch.zeros(302, 32)
    state["model.decoder.embed_positions.weights"] = torch.zeros(82, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    speechseq.load_model(tmp_path)


def test_sharded_checkpoint(tmp_path):
    hf = make_s2t(tmp_path / "sharded")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "sharded" / "model.safetensors").unlink(missing_ok=True)
    model = speechseq.load_model(tmp_path / "sharded")
    assert torch.equal(model.decoder.embed_tokens.weight, hf.model.decoder.embed_tokens.weight)


def test_save_pretrained_round_trip_through_transformers(tmp_path):
    from transformers import Speech2TextForConditionalGeneration

    make_s2t(tmp_path / "a", tie_word_embeddings=False)
    ours = speechseq.load_model(tmp_path / "a")
    ours.save_pretrained(tmp_path / "b")
    hf = Speech2TextForConditionalGeneration.from_pretrained(tmp_path / "b").eval()
    features, mask = random_features([70, 40])
    tokens = torch.randint(4, 97, (2, 5))
    with torch.no_grad():
        expected = hf(input_features=features, attention_mask=mask, decoder_input_ids=tokens).logits
        actual = ours(input_features=features, attention_mask=mask, decoder_input_ids=tokens).logits
    assert relative_error(expected, actual) < 1e-5


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        speechseq.load_model(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        speechseq.load_model(str(tmp_path / "nowhere" / "deeper" / "model"))


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(CheckpointError, match="whisper.*supported"):
        speechseq.load_model(tmp_path)


def test_weights_that_do_not_fit_are_listed(tmp_path):
    make_s2t(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    state["model.encoder.layers.0.extra.weight"] = torch.zeros(3)
    del state["model.decoder.layer_norm.bias"]
    state["model.encoder.layer_norm.weight"] = torch.zeros(7)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        speechseq.load_model(tmp_path)
    message = str(error.value)
    assert "model.decoder.layer_norm.bias" in message
    assert "model.encoder.layers.0.extra.weight" in message
    assert "model.encoder.layer_norm.weight: checkpoint (7,), config expects (32,)" in message


def test_no_weights(tmp_path):
    make_s2t(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        speechseq.load_model(tmp_path)


def test_corrupt_weights(tmp_path):
    make_s2t(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        speechseq.load_model(tmp_path)


def test_bad_features_are_rejected(tmp_path):
    make_s2t(tmp_path)
    model = speechseq.load_model(tmp_path)
    with pytest.raises(InputError, match=r"\(B, T, 80\)"):
        model.generate(torch.zeros(2, 50))
    with pytest.raises(InputError, match="attention_mask shape"):
        model.generate(torch.zeros(2, 50, 80), attention_mask=torch.ones(2, 49))
    with pytest.raises(InputError, match="empty"):
        model.generate(torch.zeros(0, 50, 80))


# transformers' default Speech2TextConfig is the s2t-small shape; only the vocabulary is cut to keep the test quick.
_S2T_SMALL = dict(
    vocab_size=1000,
    d_model=256,
    encoder_layers=12,
    decoder_layers=6,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=2048,
    decoder_ffn_dim=2048,
    conv_channels=1024,
    max_source_positions=6000,
    max_target_positions=1024,
)
