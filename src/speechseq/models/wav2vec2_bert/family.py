"""Load and save Wav2Vec2-BERT checkpoints in transformers' layout."""

from __future__ import annotations

import json
from pathlib import Path

from ...checkpoints import load_into, read_weights, save_weights, skip_init
from .checkpoint import PREFIX, config_from_hf, config_to_hf, key_map
from .model import Wav2Vec2BertModel

MASK_EMBEDDING = "encoder.masked_spec_embed"


def load(folder: Path, raw: dict, generation_defaults: dict) -> Wav2Vec2BertModel:
    """Build the model (and head) that config.json names and load the folder's weights into it.

    Encoder-only models have no generation settings, so generation_defaults is unused.
    """
    config = config_from_hf(raw, str(folder / "config.json"))
    with skip_init():
        model = Wav2Vec2BertModel(config)
    state = read_weights(folder)
    # Head models keep the trunk under "wav2vec2_bert."; a base model saved by itself has no prefix.
    upstream = PREFIX if config.head or any(key.startswith(PREFIX) for key in state) else ""
    # SpecAugment's embedding may be absent (saved with masking off); transformers would initialise it randomly.
    load_into(model, state, key_map(upstream), str(folder), optional={MASK_EMBEDDING})
    return model.eval()


def save(model: Wav2Vec2BertModel, folder: Path) -> None:
    """Write config.json and model.safetensors that transformers loads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2) + "\n")
    upstream = PREFIX if model.config.head else ""
    save_weights(model, key_map(upstream), folder / "model.safetensors")
