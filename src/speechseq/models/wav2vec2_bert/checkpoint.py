"""Wav2Vec2-BERT: transformers config.json and state-dict names <-> ours."""

from __future__ import annotations

from dataclasses import fields

from ...errors import CheckpointError
from ...keymap import KeyMap
from .config import Wav2Vec2BertConfig

MODEL_TYPE = "wav2vec2-bert"
PREFIX = "wav2vec2_bert."  # where head models keep the trunk (transformers' base_model_prefix)

# config.json `architectures` entry -> our head.
ARCHITECTURES = {
    "Wav2Vec2BertModel": None,
    "Wav2Vec2BertForCTC": "ctc",
    "Wav2Vec2BertForSequenceClassification": "sequence_classification",
    "Wav2Vec2BertForAudioFrameClassification": "frame_classification",
    "Wav2Vec2BertForXVector": "xvector",
}

# transformers' config keys -> our field names, where they differ.
RENAMED = {
    "hidden_size": "d_model",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "ffn_dim",
    "feature_projection_input_dim": "input_dim",
    "hidden_act": "activation",
    "position_embeddings_type": "position",
}

# Per conformer layer, transformers' names -> ours (nn.conformer.ConformerLayer).
_LAYER = [
    ("ffn1_layer_norm.", "ffn1_norm."),
    ("ffn1.intermediate_dense.", "ffn1.fc1."),
    ("ffn1.output_dense.", "ffn1.fc2."),
    ("self_attn_layer_norm.", "attn_norm."),
    ("self_attn.linear_q.", "self_attn.q_proj."),
    ("self_attn.linear_k.", "self_attn.k_proj."),
    ("self_attn.linear_v.", "self_attn.v_proj."),
    ("self_attn.linear_out.", "self_attn.out_proj."),
    ("self_attn.distance_embedding.", "self_attn.positions.distance_embedding."),
    ("self_attn.linear_pos.", "self_attn.positions.linear_pos."),
    ("self_attn.pos_bias_u", "self_attn.positions.pos_bias_u"),
    ("self_attn.pos_bias_v", "self_attn.positions.pos_bias_v"),
    ("conv_module.layer_norm.", "conv.norm."),
    ("conv_module.pointwise_conv1.", "conv.pointwise_in."),
    ("conv_module.depthwise_conv.", "conv.depthwise."),
    ("conv_module.depthwise_layer_norm.", "conv.depthwise_norm."),
    ("conv_module.pointwise_conv2.", "conv.pointwise_out."),
    ("ffn2_layer_norm.", "ffn2_norm."),
    ("ffn2.intermediate_dense.", "ffn2.fc1."),
    ("ffn2.output_dense.", "ffn2.fc2."),
    ("final_layer_norm.", "final_norm."),
]
# Per adapter layer (nn.conformer.ConformerAdapterLayer).
_ADAPTER_LAYER = [
    ("residual_layer_norm.", "residual_norm."),
    ("residual_conv.", "residual_conv."),
    ("self_attn_layer_norm.", "attn_norm."),
    ("self_attn_conv.", "attn_conv."),
    ("self_attn.linear_q.", "self_attn.q_proj."),
    ("self_attn.linear_k.", "self_attn.k_proj."),
    ("self_attn.linear_v.", "self_attn.v_proj."),
    ("self_attn.linear_out.", "self_attn.out_proj."),
    ("ffn_layer_norm.", "ffn_norm."),
    ("ffn.intermediate_dense.", "ffn.fc1."),
    ("ffn.output_dense.", "ffn.fc2."),
]
# Heads (models.heads); each rule only matches in checkpoints of that head.
_HEADS = [
    ("lm_head.", "head.proj."),
    ("layer_weights", "head.layer_sum.weights"),
    ("projector.", "head.projector."),
    ("classifier.", "head.classifier."),
    ("tdnn.{i}.kernel.", "head.tdnn.{i}."),
    ("feature_extractor.", "head.feature_extractor."),
    ("objective.weight", "head.objective_weight"),
]


def key_map(upstream: str, ours: str = "") -> KeyMap:
    """Return the rules between a trunk stored under `upstream` and a Wav2Vec2BertModel under `ours`.

    Args:
        upstream: "wav2vec2_bert." in head checkpoints, "" in base ones, "encoder." inside a
            SpeechEncoderDecoder checkpoint.
        ours: Where our Wav2Vec2BertModel sits in the model being loaded ("" when it is the model).
    """
    u, o = upstream, ours
    rules = [
        (f"{u}feature_projection.layer_norm.", f"{o}encoder.feature_norm."),
        (f"{u}feature_projection.projection.", f"{o}encoder.feature_proj."),
        (f"{u}masked_spec_embed", f"{o}encoder.masked_spec_embed"),
        *[(f"{u}encoder.layers.{{i}}.{a}", f"{o}encoder.conformer.layers.{{i}}.{b}") for a, b in _LAYER],
        (f"{u}intermediate_ffn.intermediate_dense.", f"{o}encoder.intermediate_ffn.fc1."),
        (f"{u}intermediate_ffn.output_dense.", f"{o}encoder.intermediate_ffn.fc2."),
        (f"{u}adapter.proj_layer_norm.", f"{o}encoder.adapter.proj_norm."),
        (f"{u}adapter.proj.", f"{o}encoder.adapter.proj."),
        *[
            (f"{u}adapter.layers.{{i}}.{a}", f"{o}encoder.adapter.layers.{{i}}.{b}")
            for a, b in _ADAPTER_LAYER
        ],
        *[(a, f"{o}{b}") for a, b in _HEADS],
    ]
    return KeyMap(rules=rules)


def head_of(raw: dict, path: str = "config.json") -> str | None:
    """Return our head for config.json's `architectures` (none listed: the base model)."""
    names = raw.get("architectures") or []
    known = [name for name in names if name in ARCHITECTURES]
    if names and not known:
        raise CheckpointError(
            f"{path}: architectures {names} are not supported; supported: {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[known[0]] if known else None


_FIELDS = {f.name for f in fields(Wav2Vec2BertConfig)} - {"extra", "head"}
_UPSTREAM = set(RENAMED) | {n for n in _FIELDS if n not in RENAMED.values()}
_TUPLES = ("tdnn_dim", "tdnn_kernel", "tdnn_dilation")


def config_from_hf(raw: dict, path: str = "config.json") -> Wav2Vec2BertConfig:
    """Build our config from a transformers config.json dict; keys we do not model are kept in `extra`."""
    values = {RENAMED.get(key, key): value for key, value in raw.items() if key in _UPSTREAM}
    # None is meaningful for the position scheme (no positions) and the adapter width (= d_model) only.
    values = {k: v for k, v in values.items() if v is not None or k in ("position", "output_hidden_size")}
    values.update({key: tuple(values[key]) for key in _TUPLES if key in values})
    if "id2label" in values:
        values["id2label"] = {int(k): v for k, v in values["id2label"].items()}
    elif isinstance(raw.get("num_labels"), int):
        values["id2label"] = {i: f"LABEL_{i}" for i in range(raw["num_labels"])}
    extra = {k: v for k, v in raw.items() if k not in _UPSTREAM}
    try:
        return Wav2Vec2BertConfig(**values, head=head_of(raw, path), extra=extra)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid Wav2Vec2-BERT config: {error}") from error


def config_to_hf(config: Wav2Vec2BertConfig) -> dict:
    """Return a config.json dict that transformers' Wav2Vec2BertConfig loads."""
    upstream = {ours: theirs for theirs, ours in RENAMED.items()}
    stale = ("transformers_version", "architectures", "num_labels", "label2id")
    raw = {k: v for k, v in config.extra.items() if k not in stale}
    raw.update({upstream.get(name, name): getattr(config, name) for name in _FIELDS})
    raw.update({key: list(getattr(config, key)) for key in _TUPLES})
    raw["id2label"] = {str(k): v for k, v in config.id2label.items()}
    raw["label2id"] = {v: k for k, v in config.id2label.items()}
    raw["output_hidden_size"] = config.adapter_width
    architecture = {head: name for name, head in ARCHITECTURES.items()}[config.head]
    raw["model_type"] = MODEL_TYPE
    raw["architectures"] = [architecture]
    return raw
