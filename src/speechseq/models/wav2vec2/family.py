"""Load and save Wav2Vec2 / HuBERT checkpoints in transformers' layout."""

from __future__ import annotations

import json
from pathlib import Path

from ...checkpoints import StoredTensor, load_into, read_weights, save_weights, skip_init
from .checkpoint import PREFIXES, config_from_hf, config_to_hf, head_of, key_map, rename_legacy
from .config import Wav2Vec2Config
from .heads import Wav2Vec2ForCTC, Wav2Vec2Model

MASK_EMBEDDING = "encoder.masked_spec_embed"


def load(folder: Path, raw: dict, generation_defaults: dict) -> Wav2Vec2Model | Wav2Vec2ForCTC:
    """Build the base or CTC model that config.json names and load the folder's weights into it.

    CTC models have no generation settings, so generation_defaults is unused.
    """
    config = config_from_hf(raw, str(folder / "config.json"))
    head = head_of(raw, str(folder / "config.json"))
    with skip_init():
        model = Wav2Vec2ForCTC(config) if head == "ctc" else Wav2Vec2Model(config)
    state = rename_legacy(read_weights(folder))
    rules = key_map(config, _upstream_prefix(config, head, state))
    # Checkpoints saved without SpecAugment's embedding still load; transformers would initialise it randomly.
    load_into(model, state, rules, str(folder), optional={MASK_EMBEDDING})
    return model.eval()


def _upstream_prefix(config: Wav2Vec2Config, head: str, state: dict[str, StoredTensor]) -> str:
    # A CTC model keeps the trunk under "wav2vec2." / "hubert."; base checkpoints come with the prefix
    # (saved from a head or pretraining model) or without it (saved from the base model itself).
    prefix = PREFIXES[config.model_type]
    if head == "ctc" or any(key.startswith(prefix) for key in state):
        return prefix
    return ""


def save(model: Wav2Vec2Model | Wav2Vec2ForCTC, folder: Path) -> None:
    """Write config.json and model.safetensors that transformers loads."""
    folder.mkdir(parents=True, exist_ok=True)
    head = "ctc" if isinstance(model, Wav2Vec2ForCTC) else "base"
    config = model.config
    (folder / "config.json").write_text(json.dumps(config_to_hf(config, head), indent=2) + "\n")
    upstream = PREFIXES[config.model_type] if head == "ctc" else ""
    save_weights(model, key_map(config, upstream), folder / "model.safetensors")
