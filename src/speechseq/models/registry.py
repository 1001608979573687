"""model_type (config.json) -> the family that loads and saves it. The one place load_model looks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import CheckpointError


@dataclass(frozen=True)
class Family:
    """How to load and save one model_type."""

    load: Callable[[Path, dict, dict], nn.Module]  # (folder, config.json dict, generation defaults) -> model
    save: Callable[[nn.Module, Path], None]


def _speech2text() -> Family:
    from .speech2text import family

    return Family(family.load, family.save)


def _wav2vec2() -> Family:
    from .wav2vec2 import family

    return Family(family.load, family.save)


def _wav2vec2_bert() -> Family:
    # One model class for the base model and every head; config.json `architectures` picks the head.
    from .wav2vec2_bert import family

    return Family(family.load, family.save)


def _speech_encoder_decoder() -> Family:
    from .speech_encoder_decoder import family

    return Family(family.load, family.save)


_FAMILIES: dict[str, Callable[[], Family]] = {
    "speech_to_text": _speech2text,
    "wav2vec2": _wav2vec2,
    "hubert": _wav2vec2,  # the same trunk; config and key prefix differ
    "wav2vec2-bert": _wav2vec2_bert,
    "speech-encoder-decoder": _speech_encoder_decoder,
}


def get_family(model_type: str | None, source: str) -> Family:
    """Return the family for a model_type, or raise naming the file and the supported types."""
    if model_type not in _FAMILIES:
        raise CheckpointError(
            f"{source}: model_type {model_type!r} is not supported; supported: {sorted(_FAMILIES)}"
        )
    return _FAMILIES[model_type]()
