"""Strided convolutions that turn raw waveform samples into frames (the wav2vec 2.0 feature encoder)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .activations import get_activation

NORMS = ("group", "layer")


class _ConvLayer(nn.Module):
    """Conv1d without padding, an optional normalisation, then the activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        bias: bool,
        norm: nn.Module | None,
        act: str,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=kernel, stride=stride, bias=bias)
        self.norm = norm
        self.activation = get_activation(act)

    def forward(self, hidden: Tensor) -> Tensor:
        hidden = self.conv(hidden)
        if isinstance(self.norm, nn.LayerNorm):
            # LayerNorm normalises the channels of each frame, so channels go last for it.
            hidden = self.norm(hidden.transpose(1, 2)).transpose(1, 2)
        elif self.norm is not None:
            hidden = self.norm(hidden)
        return self.activation(hidden)


def _norm(kind: str, index: int, channels: int) -> nn.Module | None:
    if kind == "layer":
        return nn.LayerNorm(channels)
    # "group": one group per channel, first layer only (fairseq's mode="default"). Its statistics run over
    # the whole padded row, which is why such models are fed unmasked, zero-padded batches.
    return nn.GroupNorm(channels, channels) if index == 0 else None


class WaveformEncoder(nn.Module):
    """A stack of strided Conv1d layers over raw samples (B, N) -> frames (B, T, C).

    Args:
        channels: Output channels of each layer.
        kernels: Kernel size of each layer.
        strides: Stride of each layer.
        norm: "group" (GroupNorm on the first layer only) or "layer" (LayerNorm over channels after every conv).
        bias: Whether the convolutions have biases.
        activation: Activation name applied after every layer.
    """

    def __init__(
        self,
        channels: Sequence[int],
        kernels: Sequence[int],
        strides: Sequence[int],
        norm: str = "group",
        bias: bool = False,
        activation: str = "gelu",
    ):
        super().__init__()
        if not len(channels) == len(kernels) == len(strides):
            raise ValueError(
                f"channels, kernels and strides differ in length: {channels}, {kernels}, {strides}"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        inputs = (1, *channels[:-1])
        self.layers = nn.ModuleList(
            _ConvLayer(i, o, k, s, bias, _norm(norm, index, o), activation)
            for index, (i, o, k, s) in enumerate(zip(inputs, channels, kernels, strides, strict=True))
        )
        self.kernels, self.strides = tuple(kernels), tuple(strides)

    def forward(self, waveform: Tensor) -> Tensor:
        """Map samples (B, N) to frames (B, T, C), T = output_lengths(N)."""
        hidden = waveform[:, None]
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden.transpose(1, 2)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Return frame counts for sample counts: L -> floor((L - k) / s) + 1 per layer (no padding)."""
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    @property
    def receptive_field(self) -> int:
        """Samples one output frame spans (the fewest samples that give a frame)."""
        span, step = 1, 1
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            span, step = span + (kernel - 1) * step, step * stride
        return span

    @property
    def stride(self) -> int:
        """Samples per output frame (transformers' inputs_to_logits_ratio)."""
        product = 1
        for stride in self.strides:
            product *= stride
        return product
