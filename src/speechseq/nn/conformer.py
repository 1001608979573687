"""Conformer blocks (Gulati et al. 2020) as fairseq2's w2v-BERT 2.0 builds them, and its length adapter.

Layer order: half-step FFN -> self-attention with relative or rotary positions -> convolution module ->
half-step FFN -> LayerNorm. The convolution module's depthwise convolution is causal (left padding only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.functional import glu, pad

from .activations import get_activation
from .attention import MultiHeadAttention
from .feedforward import FeedForward
from .masks import key_mask, lengths_to_padding_mask
from .relative import RelativeSelfAttention, build_position_scheme, position_table


@dataclass(frozen=True)
class ConformerSpec:
    """Sizes and options shared by the layers of one conformer stack."""

    d_model: int  # model width
    num_heads: int  # attention heads
    ffn_dim: int  # inner width of both feed-forward blocks
    activation: str = "swish"  # FFN and convolution-module activation
    kernel_size: int = 31  # depthwise convolution kernel (odd)
    position: str | None = "relative_key"  # "relative_key", "relative", "rotary" or None
    left_positions: int = 64  # relative_key: farthest distance to the left that keeps its own embedding
    right_positions: int = 8  # relative_key: the same to the right
    rotary_base: float = 10000.0  # rotary: frequency base
    dropout: float = 0.0  # on the stack input and after each FFN
    attention_dropout: float = 0.0  # on attention probabilities and on the attention output
    activation_dropout: float = 0.0  # after the FFN activation
    conv_dropout: float = 0.0  # at the end of the convolution module
    layerdrop: float = 0.0  # probability of skipping a layer in training
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm


class ConvModule(nn.Module):
    """LayerNorm -> pointwise conv + GLU -> causal depthwise conv -> LayerNorm -> activation -> pointwise conv."""

    def __init__(self, d_model: int, kernel_size: int, activation: str, dropout: float, eps: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"the depthwise convolution kernel must be odd, got {kernel_size}")
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=False)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=False)
        self.depthwise_norm = nn.LayerNorm(d_model, eps=eps)
        self.activation = get_activation(activation)
        self.pointwise_out = nn.Conv1d(d_model, d_model, kernel_size=1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Map hidden (B, T, D) to (B, T, D); padded frames (padding_mask True) are zeroed first."""
        hidden = self.norm(hidden)
        if padding_mask is not None:
            # Zero padding so that it cannot leak into valid frames through the convolution.
            hidden = hidden.masked_fill(padding_mask[..., None], 0.0)
        hidden = glu(self.pointwise_in(hidden.transpose(1, 2)), dim=1)
        # Causal: frame t sees frames t-K+1 .. t, so all the padding goes on the left.
        hidden = self.depthwise(pad(hidden, (self.depthwise.kernel_size[0] - 1, 0)))
        hidden = self.activation(self.depthwise_norm(hidden.transpose(1, 2)))
        hidden = self.pointwise_out(hidden.transpose(1, 2))
        return self.dropout(hidden).transpose(1, 2)


class ConformerLayer(nn.Module):
    """One conformer block; the two FFNs each add half a residual (Gulati et al. 2020, eq. 1)."""

    def __init__(self, spec: ConformerSpec):
        super().__init__()
        d, eps = spec.d_model, spec.layer_norm_eps
        self.ffn1_norm = nn.LayerNorm(d, eps=eps)
        self.ffn1 = FeedForward(d, spec.ffn_dim, spec.activation, spec.activation_dropout)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        scheme = build_position_scheme(
            spec.position, d, spec.num_heads, spec.left_positions, spec.right_positions
        )
        self.self_attn = RelativeSelfAttention(d, spec.num_heads, scheme, spec.attention_dropout)
        self.conv = ConvModule(d, spec.kernel_size, spec.activation, spec.conv_dropout, eps)
        self.ffn2_norm = nn.LayerNorm(d, eps=eps)
        self.ffn2 = FeedForward(d, spec.ffn_dim, spec.activation, spec.activation_dropout)
        self.final_norm = nn.LayerNorm(d, eps=eps)
        self.ffn_dropout = nn.Dropout(spec.dropout)
        self.attn_dropout = nn.Dropout(spec.attention_dropout)

    def forward(
        self, hidden: Tensor, keep: Tensor | None, padding_mask: Tensor | None, table: Tensor | None
    ) -> Tensor:
        """Encode hidden (B, T, D); keep is the (B, 1, 1, T) key mask, table the shared position table."""
        hidden = hidden + 0.5 * self.ffn_dropout(self.ffn1(self.ffn1_norm(hidden)))
        hidden = hidden + self.attn_dropout(self.self_attn(self.attn_norm(hidden), keep, table))
        hidden = hidden + self.conv(hidden, padding_mask)
        hidden = hidden + 0.5 * self.ffn_dropout(self.ffn2(self.ffn2_norm(hidden)))
        return self.final_norm(hidden)


class ConformerEncoder(nn.Module):
    """A stack of conformer layers; no final LayerNorm (each layer ends with its own)."""

    def __init__(self, spec: ConformerSpec, num_layers: int):
        super().__init__()
        self.spec = spec
        self.dropout = nn.Dropout(spec.dropout)
        self.layers = nn.ModuleList(ConformerLayer(spec) for _ in range(num_layers))

    def forward(
        self, hidden: Tensor, padding_mask: Tensor | None, keep_layers: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        """Encode hidden (B, T, D) whose padded frames are marked True in padding_mask (B, T).

        Returns:
            The output (B, T, D) and, with keep_layers, the input of the first layer followed by every layer's
            output (num_layers + 1 tensors, as transformers' hidden_states).
        """
        if padding_mask is not None:
            hidden = hidden.masked_fill(padding_mask[..., None], 0.0)
        hidden = self.dropout(hidden)
        spec = self.spec
        width = spec.d_model // spec.num_heads if spec.position == "rotary" else spec.d_model
        table = position_table(spec.position, hidden.shape[1], width, hidden, spec.rotary_base)
        keep = key_mask(padding_mask)
        states = [hidden] if keep_layers else None
        for layer in self.layers:
            if self.training and spec.layerdrop > 0 and float(torch.rand([])) < spec.layerdrop:
                continue  # LayerDrop (Fan et al. 2019)
            hidden = layer(hidden, keep, padding_mask, table)
            if states is not None:
                states.append(hidden)
        return hidden, states


class ConformerAdapterLayer(nn.Module):
    """Pool time by a strided conv + GLU on two branches, attend on one, add them, then a residual FFN."""

    def __init__(self, spec: ConformerSpec, kernel_size: int, stride: int, dropout: float):
        super().__init__()
        d, eps = spec.d_model, spec.layer_norm_eps
        self.residual_norm = nn.LayerNorm(d, eps=eps)
        self.residual_conv = nn.Conv1d(d, 2 * d, kernel_size, stride=stride, padding=stride // 2)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.attn_conv = nn.Conv1d(d, 2 * d, kernel_size, stride=stride, padding=stride // 2)
        self.self_attn = MultiHeadAttention(d, spec.num_heads, spec.attention_dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn = FeedForward(d, spec.ffn_dim, spec.activation, spec.activation_dropout)
        self.ffn_dropout = nn.Dropout(spec.dropout)

    def forward(self, hidden: Tensor, lengths: Tensor | None) -> Tensor:
        """Pool hidden (B, T, D) to (B, T', D); lengths (B,) are the valid frames after pooling."""
        residual = glu(self.residual_conv(self.residual_norm(hidden).transpose(1, 2)), dim=1).transpose(1, 2)
        hidden = glu(self.attn_conv(self.attn_norm(hidden).transpose(1, 2)), dim=1).transpose(1, 2)
        keep = None if lengths is None else key_mask(lengths_to_padding_mask(lengths, hidden.shape[1]))
        hidden = residual + self.attn_dropout(self.self_attn(hidden, mask=keep))
        return hidden + self.ffn_dropout(self.ffn(self.ffn_norm(hidden)))


class ConformerAdapter(nn.Module):
    """Optional projection to the adapter width, then layers that each pool time by `stride`.

    The strided convolutions see padded frames as they are (not zeroed), so the last valid frames of a padded
    clip differ slightly from the same clip alone; transformers behaves the same.
    """

    def __init__(self, in_dim: int, spec: ConformerSpec, num_layers: int, kernel_size: int, stride: int):
        super().__init__()
        d, eps = spec.d_model, spec.layer_norm_eps
        self.proj = nn.Linear(in_dim, d) if in_dim != d else None
        self.proj_norm = nn.LayerNorm(d, eps=eps) if in_dim != d else None
        self.layers = nn.ModuleList(
            ConformerAdapterLayer(spec, kernel_size, stride, spec.conv_dropout) for _ in range(num_layers)
        )
        self.kernel_size, self.stride, self.layerdrop = kernel_size, stride, spec.layerdrop

    def output_lengths(self, lengths: Tensor, num_layers: int | None = None) -> Tensor:
        """Apply L -> floor((L + 2 (k // 2) - k) / stride) + 1 per layer (transformers' rule, k//2 padding)."""
        padding = self.kernel_size // 2
        for _ in range(len(self.layers) if num_layers is None else num_layers):
            lengths = (
                torch.div(lengths + 2 * padding - self.kernel_size, self.stride, rounding_mode="floor") + 1
            )
        return lengths

    def forward(self, hidden: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Pool hidden (B, T, D_in) with valid lengths (B,) (None: nothing padded); return both at the new rate."""
        if self.proj is not None and self.proj_norm is not None:
            hidden = self.proj_norm(self.proj(hidden))
        for layer in self.layers:
            lengths = None if lengths is None else self.output_lengths(lengths, 1)
            if self.training and self.layerdrop > 0 and float(torch.rand([])) <= self.layerdrop:
                continue  # LayerDrop, as transformers applies it to adapter layers too
            hidden = layer(hidden, lengths)
        return hidden, lengths
