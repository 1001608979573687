"""The speech encoders a SpeechEncoderDecoder can hold, by their config.json model_type.

Each entry adapts one encoder family (its own config, model class and key map live in that family's package)
to what the encoder-decoder needs: build the base model without a head, rename its weights, save its config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from ...errors import CheckpointError
from ...keymap import KeyMap


@dataclass(frozen=True)
class EncoderKind:
    """How to build, load and save one encoder family inside an encoder-decoder."""

    config_from_hf: Callable[[dict, str], Any]  # encoder config.json section -> the family's config
    config_to_hf: Callable[[Any], dict]  # and back, for a headless base model
    build: Callable[[Any], nn.Module]  # config -> base model with encode(inputs, attention_mask)
    key_map: Callable[[Any], KeyMap]  # base-model weight names (no prefix) <-> the base model's
    optional: frozenset[str]  # our weight names a checkpoint may lack (SpecAugment's mask embedding)
    hidden_size: str  # config attribute: transformer width (input width of transformers' enc_to_dec_proj)
    declared_width: str  # config attribute transformers reads as the output width (output_hidden_size)
    output_width: str  # config attribute: the width the encoder really outputs (after any adapter)
    base_prefix: Callable[[Any], str]  # where head/pretraining checkpoints keep the trunk ("wav2vec2.")
    prepare: Callable[[dict[str, Tensor]], dict[str, Tensor]] = dict  # legacy renames before mapping


def _wav2vec2() -> EncoderKind:
    from ..wav2vec2 import Wav2Vec2Model, checkpoint, family

    return EncoderKind(
        config_from_hf=checkpoint.config_from_hf,
        config_to_hf=lambda config: checkpoint.config_to_hf(config, "base"),
        build=Wav2Vec2Model,
        key_map=lambda config: checkpoint.key_map(config, ""),
        optional=frozenset({family.MASK_EMBEDDING}),
        hidden_size="hidden_size",
        # HuBERT's config has no output_hidden_size; ours then holds hidden_size, which is what transformers uses.
        declared_width="output_hidden_size",
        output_width="output_width",
        base_prefix=lambda config: checkpoint.PREFIXES[config.model_type],
        prepare=checkpoint.rename_legacy,
    )


def _wav2vec2_bert() -> EncoderKind:
    from ..wav2vec2_bert import Wav2Vec2BertModel, checkpoint, family

    return EncoderKind(
        # A warm start from a CTC checkpoint keeps its architectures entry; the encoder is always headless.
        config_from_hf=lambda raw, path: replace(checkpoint.config_from_hf(raw, path), head=None),
        config_to_hf=checkpoint.config_to_hf,
        build=Wav2Vec2BertModel,
        key_map=lambda config: checkpoint.key_map(""),
        optional=frozenset({family.MASK_EMBEDDING}),
        hidden_size="d_model",
        declared_width="adapter_width",
        output_width="output_width",
        base_prefix=lambda config: checkpoint.PREFIX,
    )


ENCODERS: dict[str, Callable[[], EncoderKind]] = {
    "wav2vec2": _wav2vec2,
    "hubert": _wav2vec2,
    "wav2vec2-bert": _wav2vec2_bert,
}


def encoder_kind(model_type: str | None, path: str) -> EncoderKind:
    """Return the encoder family of a model_type, or raise naming the supported ones."""
    if model_type not in ENCODERS:
        raise CheckpointError(
            f"{path}: encoder model_type {model_type!r} is not supported; supported: {sorted(ENCODERS)}"
        )
    return ENCODERS[model_type]()
