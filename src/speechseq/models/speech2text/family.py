"""Load and save Speech2Text checkpoints in transformers' layout."""

from __future__ import annotations

import json
from pathlib import Path

from ...checkpoints import load_into, read_weights, save_weights, skip_init
from .checkpoint import KEY_MAP, config_from_hf, config_to_hf
from .model import Speech2TextModel


def load(folder: Path, raw: dict, generation_defaults: dict) -> Speech2TextModel:
    """Build the model for config.json `raw` and load the folder's weights into it."""
    config = config_from_hf(raw, str(folder / "config.json"))
    with skip_init():
        model = Speech2TextModel(config, generation_defaults)
    state = read_weights(folder)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if tied:
        # transformers ties the head to the embedding, so the embedding wins over any stored head.
        state.pop("lm_head.weight", None)
    load_into(model, state, KEY_MAP, str(folder), optional=tied)
    return model.eval()


def save(model: Speech2TextModel, folder: Path) -> None:
    """Write config.json, model.safetensors and generation_config.json that transformers loads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2) + "\n")
    skip = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    save_weights(model, KEY_MAP, folder / "model.safetensors", skip=skip)
    if model.generation_defaults:
        (folder / "generation_config.json").write_text(json.dumps(model.generation_defaults, indent=2) + "\n")
