"""SpeechEncoderDecoder: transformers config.json and state dict <-> ours.

Upstream keys are `encoder.` + the encoder's base-model keys, `decoder.` + the causal LM's keys and
`enc_to_dec_proj.`; each part is renamed by its own family's key map.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...errors import CheckpointError
from ..text_decoder import checkpoint as decoder_checkpoint
from .config import SpeechEncoderDecoderConfig
from .encoders import encoder_kind

MODEL_TYPE = "speech-encoder-decoder"
PARTS = ("encoder.", "decoder.", "enc_to_dec_proj.")
TOKENS = ("decoder_start_token_id", "pad_token_id", "bos_token_id", "eos_token_id")  # top-level ids


def config_from_hf(raw: dict, path: str = "config.json") -> SpeechEncoderDecoderConfig:
    """Build our config from a transformers SpeechEncoderDecoder config.json dict."""
    sections = {name: raw.get(name) for name in ("encoder", "decoder")}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise CheckpointError(f"{path}: a {MODEL_TYPE} config needs an `{name}` section (a JSON object)")
    encoder_raw, decoder_raw = sections["encoder"], sections["decoder"]
    _check_decoder_flags(decoder_raw, path)
    encoder_type = encoder_raw.get("model_type")
    encoder = encoder_kind(encoder_type, path).config_from_hf(encoder_raw, f"{path} (encoder)")
    decoder = decoder_checkpoint.config_from_hf(decoder_raw, f"{path} (decoder)")
    extra = {k: v for k, v in raw.items() if k not in ("encoder", "decoder", *TOKENS)}
    try:
        return SpeechEncoderDecoderConfig(
            encoder_type,
            encoder,
            decoder,
            **{key: raw.get(key) for key in TOKENS},
            cross_attention_hidden_size=decoder_raw.get("cross_attention_hidden_size"),
            extra=extra,
        )
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error


def _check_decoder_flags(decoder: dict, path: str) -> None:
    # BERT and GPT-2 build cross-attention only with add_cross_attention, and BERT is causal only with is_decoder.
    flags = {"bert": ("is_decoder", "add_cross_attention"), "gpt2": ("add_cross_attention",)}
    off = [flag for flag in flags.get(decoder.get("model_type"), ()) if not decoder.get(flag)]
    if off:
        raise CheckpointError(
            f"{path}: the {decoder.get('model_type')} decoder needs {', '.join(off)} = true to cross-attend to the audio"
        )


def config_to_hf(config: SpeechEncoderDecoderConfig) -> dict:
    """Return a config.json dict that transformers' SpeechEncoderDecoderConfig loads."""
    raw = {k: v for k, v in config.extra.items() if k != "transformers_version"}
    raw.update({key: getattr(config, key) for key in TOKENS if getattr(config, key) is not None})
    raw["encoder"] = config.kind.config_to_hf(config.encoder)
    raw["decoder"] = decoder_checkpoint.config_to_hf(config.decoder)
    if config.cross_attention_hidden_size is not None:
        raw["decoder"]["cross_attention_hidden_size"] = config.cross_attention_hidden_size
    raw.update(model_type=MODEL_TYPE, architectures=["SpeechEncoderDecoderModel"], is_encoder_decoder=True)
    raw["tie_word_embeddings"] = False  # transformers forces it at the top level
    return raw


def split_state(state: dict[str, Tensor], source: str) -> dict[str, dict[str, Tensor]]:
    """Split upstream weights into encoder, decoder and projection parts, keys without their prefix."""
    parts: dict[str, dict[str, Tensor]] = {prefix: {} for prefix in PARTS}
    stray = []
    for key, tensor in state.items():
        prefix = next((p for p in PARTS if key.startswith(p)), None)
        if prefix is None:
            stray.append(key)
        else:
            parts[prefix][key[len(prefix) :]] = tensor
    if stray:
        raise CheckpointError(f"weights in {source} that belong to no part of the model: {stray[:12]}")
    return parts


def upstream_state(model: nn.Module) -> dict[str, Tensor]:
    """Return the model's weights under transformers' names, the tied head left out as transformers does."""
    config = model.config
    encoder_map = config.kind.key_map(config.encoder)
    state = {f"encoder.{_upstream(encoder_map, n)}": t for n, t in model.encoder.state_dict().items()}
    flavour = config.decoder.flavour
    decoder_map = decoder_checkpoint.KEY_MAPS[flavour]
    decoder = {_upstream(decoder_map, n): t for n, t in model.decoder.state_dict().items()}
    decoder = decoder_checkpoint.from_loadable(flavour, decoder)
    tied = decoder_checkpoint.TIED_KEYS[flavour] if config.decoder.tie_word_embeddings else ()
    state.update({f"decoder.{k}": t for k, t in decoder.items() if k not in tied})
    if model.enc_to_dec_proj is not None:
        state.update({f"enc_to_dec_proj.{k}": t for k, t in model.enc_to_dec_proj.state_dict().items()})
    return {k: t.detach().contiguous().cpu() for k, t in state.items()}


def _upstream(key_map, name: str) -> str:
    upstream = key_map.to_upstream(name)
    if upstream is None:
        raise CheckpointError(f"no upstream name for parameter {name}; the key map is incomplete")
    return upstream
