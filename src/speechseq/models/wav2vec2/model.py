"""Wav2Vec2 / HuBERT trunk: waveform convs -> projection -> conv positions + transformer -> optional adapter.

`Wav2Vec2Encoder` is transformers' Wav2Vec2Model / HubertModel and is what encoder-decoder models embed;
heads.py wraps it as a base model and as a CTC model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from ...nn.activations import get_activation
from ...nn.masks import lengths_to_padding_mask
from ...nn.positions import ConvPositions
from ...nn.subsampling import Conv1dSubsampler
from ...nn.transformer import LayerSpec, TransformerEncoder
from ...nn.waveform import WaveformEncoder
from ..protocols import EncoderOutput
from .config import Wav2Vec2Config


def _layer_spec(config: Wav2Vec2Config) -> LayerSpec:
    # hidden_dropout is transformers' residual dropout after attention and its output_dropout after the FFN.
    return LayerSpec(
        d_model=config.hidden_size,
        num_heads=config.num_attention_heads,
        ffn_dim=config.intermediate_size,
        activation=config.hidden_act,
        dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        norm_first=config.do_stable_layer_norm,
        layer_norm_eps=config.layer_norm_eps,
    )


def _projection(config: Wav2Vec2Config) -> nn.Sequential:
    width = config.conv_dim[-1]
    norm = [("norm", nn.LayerNorm(width, eps=config.layer_norm_eps))] if config.feat_proj_layer_norm else []
    linear = ("linear", nn.Linear(width, config.hidden_size))
    return nn.Sequential(OrderedDict([*norm, linear, ("dropout", nn.Dropout(config.feat_proj_dropout))]))


class ContextEncoder(nn.Module):
    """Add convolutional positions, then run the transformer: post-LN, or pre-LN with a final LayerNorm."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.positions = ConvPositions(
            config.hidden_size,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
            get_activation(config.feat_extract_activation),
            batch_norm=config.conv_pos_batch_norm,
        )
        stable = config.do_stable_layer_norm
        # Post-LN stacks normalise their input once; stable (pre-LN) stacks normalise their output instead.
        self.input_norm = None if stable else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.stack = TransformerEncoder(_layer_spec(config), config.num_hidden_layers, final_norm=stable)

    def forward(self, hidden: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Encode projected frames (B, T, D); padded frames (padding_mask True) are zeroed and never attended."""
        if padding_mask is not None:
            # As transformers: zero padded frames so that the positional conv sees silence beyond each clip.
            hidden = hidden.masked_fill(padding_mask[..., None], 0.0)
        hidden = hidden + self.positions(hidden)
        if self.input_norm is not None:
            hidden = self.input_norm(hidden)
        return self.stack(self.dropout(hidden), padding_mask)


class Adapter(nn.Module):
    """Optional width projection, then strided Conv1d+GLU layers that shorten the output for a text decoder."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        width, out = config.hidden_size, config.output_hidden_size
        self.proj = nn.Linear(width, out) if out != width else None
        self.proj_norm = nn.LayerNorm(out) if out != width else None
        kernels = (config.adapter_kernel_size,) * config.num_adapter_layers
        self.convs = Conv1dSubsampler(out, 2 * out, out, kernels, stride=config.adapter_stride, padding=1)

    def forward(self, hidden: Tensor) -> Tensor:
        if self.proj is not None and self.proj_norm is not None:
            hidden = self.proj_norm(self.proj(hidden))
        return self.convs(hidden)


class Wav2Vec2Encoder(nn.Module):
    """Raw samples (B, N) -> encoder states (B, S, D): the trunk shared by wav2vec 2.0 and HuBERT."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.frontend = WaveformEncoder(
            config.conv_dim,
            config.conv_kernel,
            config.conv_stride,
            config.feat_extract_norm,
            config.conv_bias,
            config.feat_extract_activation,
        )
        self.projection = _projection(config)
        # Used only by SpecAugment in training; kept so that saving reproduces the checkpoint.
        self.masked_spec_embed = (
            nn.Parameter(torch.zeros(config.hidden_size)) if config.has_mask_embedding else None
        )
        self.context = ContextEncoder(config)
        self.adapter = Adapter(config) if config.add_adapter else None

    @property
    def stride(self) -> int:
        """Input samples per output frame."""
        if self.adapter is None:
            return self.frontend.stride
        return self.frontend.stride * self.adapter.convs.stride ** len(self.adapter.convs.conv_layers)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Return encoder frames for sample counts (B,), by transformers' length formulas."""
        lengths = self.frontend.output_lengths(lengths)
        return lengths if self.adapter is None else self.adapter.convs.output_lengths(lengths)

    def forward(self, waveform: Tensor, attention_mask: Tensor | None) -> EncoderOutput:
        """Encode samples (B, N); attention_mask (B, N) marks valid samples (1) of right-padded clips."""
        hidden = self.projection(self.frontend(waveform))
        padding_mask = None
        if attention_mask is not None:
            frames = self.frontend.output_lengths(attention_mask.sum(-1))
            padding_mask = lengths_to_padding_mask(frames, hidden.shape[1])
        hidden = self.context(hidden, padding_mask)
        if self.adapter is None:
            return EncoderOutput(hidden, padding_mask)
        # The adapter runs over padded frames as well (as in transformers); only the mask is recomputed.
        hidden = self.adapter(hidden)
        if attention_mask is not None:
            padding_mask = lengths_to_padding_mask(
                self.output_lengths(attention_mask.sum(-1)), hidden.shape[1]
            )
        return EncoderOutput(hidden, padding_mask)
