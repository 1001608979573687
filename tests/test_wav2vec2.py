"""Wav2Vec2 / HuBERT parity with transformers: encoder states, CTC logits and loss, checkpoint formats, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from hf_wav2vec2 import VARIANTS, make_model, random_batch
from safetensors.torch import load_file, save_file

import speechseq
from speechseq.errors import CheckpointError, InputError
from speechseq.models.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2Model

pytest.importorskip("transformers")


def relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max())


def _trunk(hf):
    return getattr(hf, "wav2vec2", None) or getattr(hf, "hubert", None) or hf


def _hf_frame_mask(hf, frames: int, mask: torch.Tensor) -> torch.Tensor:
    trunk = _trunk(hf)
    if hasattr(hf.config, "add_adapter"):
        return trunk._get_feature_vector_attention_mask(frames, mask, add_adapter=hf.config.add_adapter)
    return trunk._get_feature_vector_attention_mask(frames, mask)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_last_hidden_state_on_padded_batch(tmp_path, variant):
    hf = make_model(tmp_path, variant, head="base")
    ours = speechseq.load_model(tmp_path)
    assert isinstance(ours, Wav2Vec2Model)
    values, mask = random_batch()
    with torch.no_grad():
        expected = hf(values, attention_mask=mask).last_hidden_state
        actual = ours(values, attention_mask=mask)
    assert relative_error(expected, actual.last_hidden_state) < 1e-4
    frames = _hf_frame_mask(hf, expected.shape[1], mask)
    assert torch.equal(~actual.padding_mask, frames)


@pytest.mark.parametrize("variant", ["group_post_ln", "layer_stable_ln"])
def test_last_hidden_state_without_mask(tmp_path, variant):
    hf = make_model(tmp_path, variant, head="base")
    ours = speechseq.load_model(tmp_path)
    values, _ = random_batch((1500, 1500))
    with torch.no_grad():
        expected = hf(values).last_hidden_state
        actual = ours(values)
    assert relative_error(expected, actual.last_hidden_state) < 1e-4
    assert actual.padding_mask is None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ctc_logits_and_loss(tmp_path, variant):
    hf = make_model(tmp_path, variant, head="ctc")
    ours = speechseq.load_model(tmp_path)
    assert isinstance(ours, Wav2Vec2ForCTC)
    values, mask = random_batch()
    labels = torch.randint(5, 32, (3, 6))
    labels[1, 4:] = -100
    labels[2, 3:] = 0  # padding with the pad id (= blank) is masked too
    with torch.no_grad():
        expected = hf(values, attention_mask=mask, labels=labels)
        actual = ours(values, attention_mask=mask, labels=labels)
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5)
    assert torch.equal(actual.lengths, hf._get_feat_extract_output_lengths(mask.sum(-1)))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(ctc_loss_reduction="mean"),
        dict(ctc_zero_infinity=True),
        dict(ctc_loss_reduction="mean", vocab_size=40),
    ],
    ids=["mean", "zero_infinity", "mean_big_vocab"],
)
def test_ctc_loss_options(tmp_path, overrides):
    hf = make_model(tmp_path, "group_post_ln", **overrides)
    ours = speechseq.load_model(tmp_path)
    values, mask = random_batch((1600, 250))
    labels = torch.randint(1, 32, (2, 14))  # item 1 has 11 frames: too few for 14 labels -> infinite loss
    labels[0, 9:] = -100
    with torch.no_grad():
        expected = hf(values, attention_mask=mask, labels=labels).loss
        actual = ours(values, attention_mask=mask, labels=labels).loss
    assert torch.allclose(expected, actual, rtol=1e-5)


def test_ctc_loss_has_gradients(tmp_path):
    make_model(tmp_path, "layer_stable_ln")
    ours = speechseq.load_model(tmp_path).train()
    values, mask = random_batch((1600, 900))
    labels = torch.randint(5, 32, (2, 5))
    ours(values, attention_mask=mask, labels=labels).loss.backward()
    assert ours.ctc_head.weight.grad is not None
    assert ours.encoder.context.positions.conv.parametrizations.weight.original0.grad is not None


def test_padding_keeps_valid_frames(tmp_path):
    make_model(tmp_path, "layer_stable_ln", head="base")
    ours = speechseq.load_model(tmp_path)
    values, mask = random_batch((1600, 1203))
    with torch.no_grad():
        batched = ours(values, attention_mask=mask).last_hidden_state
        alone = ours(values[1:, :1203], attention_mask=mask[1:, :1203]).last_hidden_state
    assert torch.allclose(batched[1, : alone.shape[1]], alone[0], atol=1e-5)


def test_legacy_weight_norm_keys_load(tmp_path):
    hf = make_model(tmp_path, "group_post_ln")
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    for new, old in (("original0", "weight_g"), ("original1", "weight_v")):
        key = f"wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.{new}"
        state[key.replace(f"parametrizations.weight.{new}", old)] = state.pop(key)
    save_file(state, path)
    ours = speechseq.load_model(tmp_path)
    values, mask = random_batch()
    with torch.no_grad():
        expected = hf(values, attention_mask=mask).logits
        actual = ours(values, attention_mask=mask).logits
    assert relative_error(expected, actual) < 1e-4


def test_pretraining_checkpoint_loads_as_base_model(tmp_path):
    hf = make_model(tmp_path, "layer_stable_ln", head="pretraining")
    assert any(key.startswith("quantizer.") for key in load_file(tmp_path / "model.safetensors"))
    ours = speechseq.load_model(tmp_path)
    assert isinstance(ours, Wav2Vec2Model)
    values, mask = random_batch()
    with torch.no_grad():
        expected = hf.wav2vec2(values, attention_mask=mask).last_hidden_state
        actual = ours(values, attention_mask=mask).last_hidden_state
    assert relative_error(expected, actual) < 1e-4


@pytest.mark.parametrize(
    ("variant", "head"), [("adapter_proj", "ctc"), ("hubert", "base"), ("layer_stable_ln", "ctc")]
)
def test_save_pretrained_round_trip_through_transformers(tmp_path, variant, head):
    import transformers

    make_model(tmp_path / "a", variant, head=head)
    ours = speechseq.load_model(tmp_path / "a")
    ours.save_pretrained(tmp_path / "b")
    stem = VARIANTS[variant][0]
    cls = getattr(transformers, f"{stem}ForCTC" if head == "ctc" else f"{stem}Model")
    hf, info = cls.from_pretrained(tmp_path / "b", output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert (
        load_file(tmp_path / "a" / "model.safetensors").keys()
        == load_file(tmp_path / "b" / "model.safetensors").keys()
    )
    values, mask = random_batch()
    with torch.no_grad():
        expected = hf.eval()(values, attention_mask=mask)
        actual = ours(values, attention_mask=mask)
    key = "logits" if head == "ctc" else "last_hidden_state"
    assert relative_error(getattr(expected, key), getattr(actual, key)) == 0


def test_weights_that_do_not_fit_are_listed(tmp_path):
    make_model(tmp_path, "group_post_ln")
    state = load_file(tmp_path / "model.safetensors")
    del state["wav2vec2.encoder.layers.1.final_layer_norm.bias"]
    state["wav2vec2.feature_projection.projection.weight"] = torch.zeros(32, 7)
    state["wav2vec2.encoder.layers.0.attention.extra.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        speechseq.load_model(tmp_path)
    message = str(error.value)
    assert "wav2vec2.encoder.layers.1.final_layer_norm.bias" in message
    assert (
        "wav2vec2.feature_projection.projection.weight: checkpoint (32, 7), config expects (32, 24)"
        in message
    )
    assert "wav2vec2.encoder.layers.0.attention.extra.weight" in message


def test_unsupported_configs_are_named(tmp_path):
    make_model(tmp_path, "group_post_ln")
    raw = json.loads((tmp_path / "config.json").read_text())
    for change, expected in (
        ({"architectures": ["Wav2Vec2ForXVector"]}, "Wav2Vec2ForXVector"),
        ({"adapter_attn_dim": 16}, "adapter_attn_dim"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(CheckpointError, match=expected):
            speechseq.load_model(tmp_path)


def test_bad_input_is_rejected(tmp_path):
    make_model(tmp_path, "group_post_ln")
    model = speechseq.load_model(tmp_path)
    with pytest.raises(InputError, match=r"\(B, N\)"):
        model(torch.zeros(2, 1, 1600))
    with pytest.raises(InputError, match="attention_mask shape"):
        model(torch.zeros(2, 1600), attention_mask=torch.ones(2, 1599))
    values, mask = random_batch((1600, 30))
    with pytest.raises(InputError, match=r"clip\(s\) \[1\] have \[30\] samples.*at least 40"):
        model(values, attention_mask=mask)
    with pytest.raises(InputError, match="labels must be < vocab_size 32"):
        model(values[:1], labels=torch.tensor([[3, 32]]))


@pytest.mark.parametrize("variant", ["group_post_ln", "layer_stable_ln"])
def test_waveform_encoder_matches_feature_encoder(tmp_path, variant):
    hf = make_model(tmp_path, variant, head="base")
    ours = speechseq.load_model(tmp_path).encoder.frontend
    values, _ = random_batch((1600, 1203))
    with torch.no_grad():
        expected = hf.feature_extractor(values).transpose(1, 2)
        actual = ours(values)
    assert relative_error(expected, actual) < 1e-5
    lengths = torch.tensor([1600, 1203, 40, 39])
    assert torch.equal(ours.output_lengths(lengths), hf._get_feat_extract_output_lengths(lengths))
    assert ours.receptive_field == 40 and ours.stride == 20 == hf.config.inputs_to_logits_ratio


@pytest.mark.parametrize("variant", ["group_post_ln", "adapter_stable_odd_pos", "hubert_batch_norm_stable"])
def test_conv_positions_match(tmp_path, variant):
    hf = make_model(tmp_path, variant, head="base")
    ours = speechseq.load_model(tmp_path).encoder.context.positions
    hidden = torch.randn(2, 37, 32)
    with torch.no_grad():
        expected = hf.encoder.pos_conv_embed(hidden)
        actual = ours(hidden)
    assert actual.shape == hidden.shape
    assert relative_error(expected, actual) < 1e-6


def test_adapter_lengths_follow_stride(tmp_path):
    hf = make_model(tmp_path, "adapter_proj", head="base", adapter_stride=3)
    ours = speechseq.load_model(tmp_path)
    lengths = torch.tensor([1600, 1203, 640, 41])
    assert torch.equal(ours.encoder.output_lengths(lengths), hf._get_feat_extract_output_lengths(lengths))
    assert ours.inputs_to_logits_ratio == 20 * 3 * 3
    values, mask = random_batch()
    with torch.no_grad():
        expected = hf(values, attention_mask=mask).last_hidden_state
        actual = ours(values, attention_mask=mask).last_hidden_state
    assert relative_error(expected, actual) < 1e-4


ACTIVATIONS = [
    "gelu_fast",
    "quick_gelu",
    "gelu_python",
    "gelu_accurate",
    "gelu_10",
    "mish",
    "relu6",
    "linear",
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_transformers_activation_name_matches(tmp_path, activation):
    # The encoder FFN and the feature encoder's convolutions both take the configured activation.
    hf = make_model(
        tmp_path, "group_post_ln", head="base", hidden_act=activation, feat_extract_activation=activation
    )
    ours = speechseq.load_model(tmp_path)
    values, _ = random_batch((1500,))
    with torch.no_grad():
        expected = hf(values).last_hidden_state
        actual = ours(values).last_hidden_state
    assert relative_error(expected, actual) < 1e-4


def test_unknown_activation_is_a_checkpoint_error(tmp_path):
    make_model(tmp_path, "group_post_ln", head="base")
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "hidden_act": "xielu"}))
    with pytest.raises(CheckpointError, match="activation function 'xielu'"):
        speechseq.load_model(tmp_path)
