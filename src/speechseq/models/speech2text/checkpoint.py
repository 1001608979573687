"""Speech2Text: transformers config.json and state-dict names <-> ours."""

from __future__ import annotations

from dataclasses import fields

from ...errors import CheckpointError
from ...keymap import KeyMap, decoder_layer_rules, encoder_layer_rules
from .config import Speech2TextConfig

MODEL_TYPE = "speech_to_text"

KEY_MAP = KeyMap(
    rules=[
        ("model.encoder.conv.", "encoder.conv."),
        *encoder_layer_rules("model.encoder.", "encoder.stack."),
        ("model.encoder.layer_norm.", "encoder.stack.final_norm."),
        ("model.decoder.embed_tokens.", "decoder.embed_tokens."),
        *decoder_layer_rules("model.decoder.", "decoder."),
        ("model.decoder.layer_norm.", "decoder.final_norm."),
        ("lm_head.", "lm_head."),
    ],
    # Releases before 4.4x stored the sinusoid tables as parameters; they are recomputed, never loaded.
    ignore=[r"embed_positions\.weights$"],
)

_FIELDS = {f.name for f in fields(Speech2TextConfig)} - {"extra"}


def config_from_hf(raw: dict, path: str = "config.json") -> Speech2TextConfig:
    """Build our config from a transformers config.json dict; keys we do not model are kept in `extra`."""
    values = {key: raw[key] for key in _FIELDS if key in raw and raw[key] is not None}
    if "conv_kernel_sizes" in values:
        values["conv_kernel_sizes"] = tuple(values["conv_kernel_sizes"])
    if isinstance(values.get("eos_token_id"), list):
        values["eos_token_id"] = values["eos_token_id"][0]
    try:
        return Speech2TextConfig(**values, extra={k: v for k, v in raw.items() if k not in _FIELDS})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid Speech2Text config: {error}") from error


def config_to_hf(config: Speech2TextConfig) -> dict:
    """Return a config.json dict that transformers' Speech2TextConfig loads."""
    raw = {k: v for k, v in config.extra.items() if k not in ("transformers_version",)}
    raw.update({name: getattr(config, name) for name in _FIELDS})
    raw["conv_kernel_sizes"] = list(config.conv_kernel_sizes)
    raw["model_type"] = MODEL_TYPE
    raw["architectures"] = ["Speech2TextForConditionalGeneration"]
    raw["is_encoder_decoder"] = True
    return raw
