"""Speech2Text assembly: conv subsampler + pre-LN transformer encoder, pre-LN cross-attending decoder, LM head."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...nn.decoder import TransformerDecoder
from ...nn.linear import Linear
from ...nn.masks import lengths_to_padding_mask
from ...nn.positions import SinusoidalPositions
from ...nn.subsampling import Conv1dSubsampler
from ...nn.transformer import LayerSpec, TransformerEncoder
from ..protocols import EncoderOutput
from ..seq2seq import Seq2SeqMixin, Seq2SeqOutput
from .config import Speech2TextConfig


def _layer_spec(config: Speech2TextConfig, side: str) -> LayerSpec:
    return LayerSpec(
        d_model=config.d_model,
        num_heads=getattr(config, f"{side}_attention_heads"),
        ffn_dim=getattr(config, f"{side}_ffn_dim"),
        activation=config.activation_function,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        norm_first=True,
    )


class Speech2TextEncoder(nn.Module):
    """Subsample fbank frames 2^n times, add padding-aware sinusoidal positions, run the encoder stack."""

    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        in_channels = config.input_feat_per_channel * config.input_channels
        self.conv = Conv1dSubsampler(
            in_channels, config.conv_channels, config.d_model, config.conv_kernel_sizes
        )
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.positions = SinusoidalPositions(config.max_source_positions, config.d_model, config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.stack = TransformerEncoder(_layer_spec(config, "encoder"), config.encoder_layers)
        self.in_features = in_channels

    def forward(self, features: Tensor, attention_mask: Tensor | None) -> EncoderOutput:
        """Encode features (B, T, F) with an optional (B, T) attention mask (1 = valid frame)."""
        hidden = self.conv(features) * self.embed_scale
        padding_mask = None
        if attention_mask is not None:
            lengths = self.conv.output_lengths(attention_mask.sum(-1))
            padding_mask = lengths_to_padding_mask(lengths, hidden.shape[1])
        # transformers numbers frames from the frame padding mask fed as "token ids" with padding_idx = pad_token_id.
        ids = (
            padding_mask.long()
            if padding_mask is not None
            else hidden.new_zeros(hidden.shape[:2], dtype=torch.long)
        )
        hidden = self.dropout(hidden + self.positions(ids).to(hidden.dtype))
        return EncoderOutput(self.stack(hidden, padding_mask), padding_mask)


class Speech2TextModel(Seq2SeqMixin, nn.Module):
    """transformers' Speech2TextForConditionalGeneration, for ASR and speech translation."""

    main_input_name = "input_features"
    model_type = "speech_to_text"

    def __init__(self, config: Speech2TextConfig, generation_defaults: dict | None = None):
        super().__init__()
        self.config = config
        self.encoder = Speech2TextEncoder(config)
        positions = SinusoidalPositions(config.max_target_positions, config.d_model, config.pad_token_id)
        self.decoder = TransformerDecoder(
            config.vocab_size,
            _layer_spec(config, "decoder"),
            config.decoder_layers,
            positions,
            config.pad_token_id,
            config.scale_embedding,
        )
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            # Share the head's weight, stored column-major (nn/linear.py), with the embedding's initial values:
            # every decoding step reads all of the head but only one embedding row per sequence.
            with torch.no_grad():
                self.lm_head.weight.copy_(self.decoder.embed_tokens.weight)
            self.decoder.embed_tokens.weight = self.lm_head.weight
        self.generation_defaults = dict(generation_defaults or {})
        self.special_tokens = {
            "pad_token_id": config.pad_token_id,
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id,
            "decoder_start_token_id": config.decoder_start_token_id,
        }

    def encode(self, inputs: Tensor, attention_mask: Tensor | None) -> EncoderOutput:
        _check_features(inputs, attention_mask, self.encoder.in_features)
        dtype = next(self.parameters()).dtype
        return self.encoder(inputs.to(dtype), attention_mask)

    def forward(
        self,
        input_features: Tensor | None = None,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        labels: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced pass: logits (B, T, V), and the loss when labels (-100 = ignore) are given."""
        return self.run(input_features, attention_mask, decoder_input_ids, labels, decoder_attention_mask)


def _check_features(features: Tensor, attention_mask: Tensor | None, num_features: int) -> None:
    if not isinstance(features, Tensor):
        raise InputError(
            f"input_features must be a torch tensor (B, T, {num_features}), got {type(features).__name__}"
        )
    if features.dim() != 3 or features.shape[-1] != num_features:
        raise InputError(
            f"input_features must have shape (B, T, {num_features}), got {tuple(features.shape)}"
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise InputError(f"input_features is empty: shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise InputError(f"input_features must be floating point, got {features.dtype}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(features.shape[:2]):
        raise InputError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_features {tuple(features.shape[:2])}"
        )
