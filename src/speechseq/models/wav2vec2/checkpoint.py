"""Wav2Vec2 / HuBERT: transformers config.json and state-dict names <-> ours."""

from __future__ import annotations

import re
from dataclasses import fields

from torch import Tensor

from ...errors import CheckpointError
from ...keymap import KeyMap
from .config import Wav2Vec2Config

# config.json `architectures` entry -> the head we build.
ARCHITECTURES = {
    "Wav2Vec2ForCTC": "ctc",
    "HubertForCTC": "ctc",
    "Wav2Vec2Model": "base",
    "HubertModel": "base",
    "Wav2Vec2ForPreTraining": "base",
}
# Keys of the transformers model that holds the trunk under this attribute (base_model_prefix).
PREFIXES = {"wav2vec2": "wav2vec2.", "hubert": "hubert."}

# Per encoder layer: transformers' names -> ours (nn.transformer.EncoderLayer).
_LAYER = [
    ("attention.", "self_attn."),
    ("layer_norm.", "self_attn_block.norm."),
    ("feed_forward.intermediate_dense.", "ffn.fc1."),
    ("feed_forward.output_dense.", "ffn.fc2."),
    ("final_layer_norm.", "ffn_block.norm."),
]
# Weight-norm names written before torch's parametrizations (2021 checkpoints) -> today's names.
LEGACY_RENAMES = [
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
]
# Pretraining-only parts (quantizer, contrastive projections) that inference never uses.
PRETRAINING_KEYS = [r"^quantizer\.", r"^project_q\.", r"^project_hid\."]


def key_map(config: Wav2Vec2Config, upstream: str, ours: str = "encoder.") -> KeyMap:
    """Return the rules between a trunk stored under `upstream` (e.g. "wav2vec2.", "" or "encoder.") and ours.

    The CTC head `lm_head.` is included; it simply never matches in checkpoints without one.
    """
    u, o = upstream, ours
    # Post-LN stacks apply encoder.layer_norm before layer 0, stable-LN stacks after the last layer.
    encoder_norm = (
        f"{o}context.stack.final_norm." if config.do_stable_layer_norm else f"{o}context.input_norm."
    )
    rules = [
        (f"{u}feature_extractor.conv_layers.{{i}}.conv.", f"{o}frontend.layers.{{i}}.conv."),
        (f"{u}feature_extractor.conv_layers.{{i}}.layer_norm.", f"{o}frontend.layers.{{i}}.norm."),
        (f"{u}feature_projection.layer_norm.", f"{o}projection.norm."),
        (f"{u}feature_projection.projection.", f"{o}projection.linear."),
        (f"{u}masked_spec_embed", f"{o}masked_spec_embed"),
        (f"{u}encoder.pos_conv_embed.", f"{o}context.positions."),
        (f"{u}encoder.layer_norm.", encoder_norm),
        *[(f"{u}encoder.layers.{{i}}.{a}", f"{o}context.stack.layers.{{i}}.{b}") for a, b in _LAYER],
        (f"{u}adapter.proj_layer_norm.", f"{o}adapter.proj_norm."),
        (f"{u}adapter.proj.", f"{o}adapter.proj."),
        (f"{u}adapter.layers.{{i}}.conv.", f"{o}adapter.convs.conv_layers.{{i}}."),
        ("lm_head.", "ctc_head."),
    ]
    ignore = list(PRETRAINING_KEYS)
    if not config.has_mask_embedding:
        # transformers drops it too when the config asks for no masking.
        ignore.append(rf"^{re.escape(u)}masked_spec_embed$")
    return KeyMap(rules=rules, ignore=ignore)


def rename_legacy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename old weight-norm keys (`conv.weight_g` / `conv.weight_v`) to the parametrization names."""
    renamed = {}
    for key, tensor in state.items():
        for pattern, replacement in LEGACY_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = tensor
    return renamed


def head_of(raw: dict, path: str = "config.json") -> str:
    """Return "ctc" or "base" from config.json's `architectures` (no entry: the base model)."""
    names = raw.get("architectures") or []
    heads = {ARCHITECTURES[name] for name in names if name in ARCHITECTURES}
    if names and not heads:
        raise CheckpointError(
            f"{path}: architectures {names} are not supported; supported: {sorted(ARCHITECTURES)}"
        )
    return "ctc" if "ctc" in heads else "base"


_FIELDS = {f.name for f in fields(Wav2Vec2Config)} - {"extra"}
_TUPLES = ("conv_dim", "conv_stride", "conv_kernel")
_WAV2VEC2_ONLY = {
    "add_adapter",
    "adapter_kernel_size",
    "adapter_stride",
    "num_adapter_layers",
    "output_hidden_size",
}
_HUBERT_ONLY = {"conv_pos_batch_norm", "feat_proj_layer_norm"}


def config_from_hf(raw: dict, path: str = "config.json") -> Wav2Vec2Config:
    """Build our config from a transformers config.json dict; keys we do not model are kept in `extra`."""
    if raw.get("adapter_attn_dim") is not None:
        raise CheckpointError(f"{path}: MMS attention adapters (adapter_attn_dim) are not supported")
    values = {key: raw[key] for key in _FIELDS if key in raw and raw[key] is not None}
    values.update({key: tuple(values[key]) for key in _TUPLES if key in values})
    if isinstance(values.get("eos_token_id"), list):
        values["eos_token_id"] = values["eos_token_id"][0]
    extra = {k: v for k, v in raw.items() if k not in _FIELDS}
    try:
        return Wav2Vec2Config(**values, extra=extra)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid {raw.get('model_type')} config: {error}") from error


def config_to_hf(config: Wav2Vec2Config, head: str) -> dict:
    """Return a config.json dict that transformers' Wav2Vec2Config or HubertConfig loads."""
    skip = _WAV2VEC2_ONLY if config.model_type == "hubert" else _HUBERT_ONLY
    raw = {k: v for k, v in config.extra.items() if k not in ("transformers_version", "architectures")}
    raw.update({name: getattr(config, name) for name in _FIELDS - skip})
    raw.update({key: list(getattr(config, key)) for key in _TUPLES})
    stem = "Wav2Vec2" if config.model_type == "wav2vec2" else "Hubert"
    raw["architectures"] = [f"{stem}ForCTC" if head == "ctc" else f"{stem}Model"]
    return raw
