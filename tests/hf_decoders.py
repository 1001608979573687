"""Tiny random transformers text decoders and speech encoder-decoders for the parity tests (transformers 5.x)."""

from __future__ import annotations

import torch

VOCAB = 60
WIDTH = 24  # decoder width; encoders are wider (a projection) unless their adapter outputs WIDTH
# flavour -> (config class, causal-LM class, tiny config)
DECODERS = {
    "mbart": (
        "MBartConfig",
        "MBartForCausalLM",
        dict(
            d_model=WIDTH,
            decoder_layers=2,
            decoder_attention_heads=4,
            decoder_ffn_dim=40,
            scale_embedding=True,
        ),
    ),
    "bert": (
        "BertConfig",
        "BertLMHeadModel",
        dict(hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40),
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(n_embd=WIDTH, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=2),
    ),
}
POSITIONS = {"mbart": "max_position_embeddings", "bert": "max_position_embeddings", "gpt2": "n_positions"}
_CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3))
_TRUNK = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40)
_STABLE = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
_POS = dict(num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
ENCODERS = {
    # facebook/s2t-wav2vec2-large-en-de's encoder: stable layer norm, conv bias; wider than the decoder.
    "wav2vec2": ("Wav2Vec2Config", dict(**_TRUNK, **_CONV, **_STABLE, **_POS)),
    # facebook/wav2vec2-xls-r-300m-en-to-15's: an adapter whose width equals the decoder's (no projection).
    "wav2vec2_adapter": (
        "Wav2Vec2Config",
        dict(
            **_TRUNK,
            **_CONV,
            **_STABLE,
            **_POS,
            add_adapter=True,
            num_adapter_layers=2,
            output_hidden_size=WIDTH,
        ),
    ),
    "hubert": ("HubertConfig", dict(**_TRUNK, **_CONV, **_POS)),
    "wav2vec2_bert": (
        "Wav2Vec2BertConfig",
        dict(**_TRUNK, conv_depthwise_kernel_size=5, add_adapter=True, num_adapter_layers=1),
    ),
}


def decoder_config(flavour: str, **overrides):
    """Return the transformers config of a tiny cross-attending decoder."""
    import transformers

    config_class, _, tiny = DECODERS[flavour]
    options = {"vocab_size": VOCAB, POSITIONS[flavour]: 64, **tiny, **overrides}
    if flavour != "mbart":
        options = {"is_decoder": True, "add_cross_attention": True, **options}
    return getattr(transformers, config_class)(**options)


def make_decoder(flavour: str, folder=None, seed: int = 0, **overrides):
    """Create (and save, when folder is given) a perturbed transformers causal LM in eval mode."""
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, DECODERS[flavour][1])(decoder_config(flavour, **overrides)).eval()
    perturb(model)
    if folder is not None:
        model.save_pretrained(folder)
    return model


def make_sed(folder, encoder: str, decoder: str, seed: int = 0, decoder_options=None, **top):
    """Create, save and return a transformers SpeechEncoderDecoderModel whose generations follow the audio."""
    import transformers

    torch.manual_seed(seed)
    encoder_class, encoder_options = ENCODERS[encoder]
    top = {"decoder_start_token_id": 2, "pad_token_id": 1, "eos_token_id": 2, **top}
    config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        getattr(transformers, encoder_class)(**encoder_options),
        decoder_config(decoder, **(decoder_options or {})),
        **top,
    )
    model = transformers.SpeechEncoderDecoderModel(config).eval()
    perturb(model, widen=("decoder.", "enc_to_dec_proj."))
    model.save_pretrained(folder)
    return model


def perturb(model, widen: tuple[str, ...] = ()) -> None:
    """Move norms and biases off their init values; grow the weights under `widen` 10x.

    At initializer_range 0.02 a random decoder repeats one token whatever it hears; wider weights and a
    sharper head make generations follow the audio and keep near-ties from deciding a token.
    """
    embeddings = ("embed", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
            elif "norm" in name.lower() or ".ln_" in name:
                param.add_(torch.randn_like(param) * 0.2)
            elif name.startswith(widen) and not any(part in name for part in embeddings):
                param.mul_(10.0)
            elif widen and any(
                part in name for part in ("embed_tokens", "wte", "word_embeddings", "lm_head")
            ):
                param.mul_(8.0)


def audio(encoder: str, lengths=(1200, 800, 517), seed: int = 0):
    """Return padded inputs and an attention mask for an encoder: samples, or stacked fbank frames."""
    generator = torch.Generator().manual_seed(seed)
    frames = encoder == "wav2vec2_bert"
    lengths = [n // 40 for n in lengths] if frames else list(lengths)
    shape = (len(lengths), max(lengths), 160) if frames else (len(lengths), max(lengths))
    inputs = torch.zeros(shape)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        # Rows differ as wholes (offset, scale), so that each decodes to its own tokens.
        inputs[row, :length] = torch.randn(length, *shape[2:], generator=generator) * (1 + row) + row
        mask[row, :length] = 1
    return inputs, mask


def relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected - actual).abs().max() / expected.abs().max())
