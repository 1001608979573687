"""Load, save and warm-start SpeechEncoderDecoder checkpoints in transformers' layout."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ...checkpoints import StoredTensor, load_into, read_json, read_weights, skip_init
from ...errors import CheckpointError, InputError
from ...hub import resolve_checkpoint
from ...keymap import KeyMap
from ..text_decoder import TextDecoder
from ..text_decoder import checkpoint as decoder_checkpoint
from ..text_decoder.family import load_pretrained as load_decoder
from .checkpoint import TOKENS, config_from_hf, config_to_hf, split_state, upstream_state
from .config import SpeechEncoderDecoderConfig
from .encoders import EncoderKind, encoder_kind
from .model import SpeechEncoderDecoderModel

logger = logging.getLogger("speechseq")
_IDENTITY = KeyMap([("", "")])


def load(folder: Path, raw: dict, generation_defaults: dict) -> SpeechEncoderDecoderModel:
    """Build the model for config.json `raw` and load the folder's weights into it."""
    config = config_from_hf(raw, str(folder / "config.json"))
    with skip_init():
        model = SpeechEncoderDecoderModel(config, generation_defaults)
    parts = split_state(read_weights(folder), str(folder))
    kind = config.kind
    encoder_state = kind.prepare(parts["encoder."])
    load_into(
        model.encoder, encoder_state, kind.key_map(config.encoder), f"{folder} (encoder)", kind.optional
    )
    _load_decoder(model.decoder, parts["decoder."], f"{folder} (decoder)")
    if model.enc_to_dec_proj is not None or parts["enc_to_dec_proj."]:
        target = model.enc_to_dec_proj if model.enc_to_dec_proj is not None else nn.Module()
        load_into(target, parts["enc_to_dec_proj."], _IDENTITY, f"{folder} (enc_to_dec_proj)")
    return model.eval()


def _load_decoder(decoder: TextDecoder, state: dict[str, StoredTensor], source: str) -> None:
    flavour = decoder.config.flavour
    key_map = decoder_checkpoint.KEY_MAPS[flavour]
    state = decoder_checkpoint.to_loadable(flavour, state)
    optional = set()
    if decoder.config.tie_word_embeddings:
        # transformers ties the head to the embedding after loading, so the embedding wins over a stored head.
        state.pop(key_map.to_upstream(decoder.head_name), None)
        optional = {decoder.head_name}
    load_into(decoder, state, key_map, source, optional=optional)


def save(model: SpeechEncoderDecoderModel, folder: Path) -> None:
    """Write config.json, model.safetensors and generation_config.json that transformers loads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2) + "\n")
    save_file(upstream_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if model.generation_defaults:
        (folder / "generation_config.json").write_text(json.dumps(model.generation_defaults, indent=2) + "\n")


@dataclass
class WarmStartReport:
    """What from_encoder_decoder_pretrained took from the checkpoints and what it initialised anew."""

    decoder_missing: list[str] = field(default_factory=list)  # transformers' names in the decoder checkpoint
    decoder_unexpected: list[str] = field(default_factory=list)  # decoder checkpoint weights left unused
    decoder_mismatched: list[str] = field(default_factory=list)  # same name, other shape: initialised anew
    encoder_unused: list[str] = field(default_factory=list)  # encoder checkpoint weights outside the trunk
    projection: list[str] = field(default_factory=list)  # enc_to_dec_proj weights, when the widths differ

    @property
    def newly_initialized(self) -> list[str]:
        """Every weight of the encoder-decoder that is not pretrained, under the saved model's names."""
        return [f"decoder.{name}" for name in self.decoder_missing] + self.projection


def warm_start(encoder_path, decoder_path, tokens: dict) -> tuple[SpeechEncoderDecoderModel, WarmStartReport]:
    """Build an encoder-decoder from a pretrained speech encoder and a pretrained text decoder."""
    unknown = sorted(set(tokens) - set(TOKENS))
    if unknown:
        raise InputError(f"unknown option(s) {unknown}; from_encoder_decoder_pretrained takes {list(TOKENS)}")
    encoder_type, encoder_config, encoder, unused = _load_encoder(resolve_checkpoint(encoder_path))
    decoder, decoder_report = load_decoder(resolve_checkpoint(decoder_path))
    try:
        config = SpeechEncoderDecoderConfig(encoder_type, encoder_config, decoder.config, **tokens)
    except ValueError as error:
        raise CheckpointError(f"{encoder_path} + {decoder_path}: {error}") from error
    model = SpeechEncoderDecoderModel(config, _decoder_generation_defaults(decoder), encoder, decoder)
    report = WarmStartReport(
        decoder_report.missing, decoder_report.unexpected, decoder_report.mismatched, unused
    )
    if model.enc_to_dec_proj is not None:
        with torch.no_grad():
            model.enc_to_dec_proj.weight.normal_(0.0, 0.02)
            model.enc_to_dec_proj.bias.zero_()
        report.projection = ["enc_to_dec_proj.bias", "enc_to_dec_proj.weight"]
    if report.newly_initialized:
        logger.warning(
            "newly initialised from %s + %s: %s", encoder_path, decoder_path, report.newly_initialized
        )
    return model.eval(), report


def _load_encoder(folder: Path) -> tuple[str, object, nn.Module, list[str]]:
    """Load the trunk of a speech encoder checkpoint (base, CTC or pretraining model) as a headless base model."""
    raw = read_json(folder / "config.json")
    encoder_type = raw.get("model_type")
    kind: EncoderKind = encoder_kind(encoder_type, str(folder / "config.json"))
    config = kind.config_from_hf(raw, str(folder / "config.json"))
    with skip_init():
        encoder = kind.build(config)
    state = kind.prepare(read_weights(folder))
    prefix = kind.base_prefix(config)
    unused = []
    if any(key.startswith(prefix) for key in state):
        unused = sorted(key for key in state if not key.startswith(prefix))
        state = {key[len(prefix) :]: tensor for key, tensor in state.items() if key.startswith(prefix)}
    load_into(encoder, state, kind.key_map(config), str(folder), kind.optional)
    return encoder_type, config, encoder.eval(), unused


def _decoder_generation_defaults(decoder: TextDecoder) -> dict:
    # transformers fills token ids the top level leaves unset from the decoder config (from_model_config).
    return {key: getattr(decoder.config, key) for key in TOKENS if getattr(decoder.config, key) is not None}
