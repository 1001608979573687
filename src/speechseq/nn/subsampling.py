"""Convolutional front ends that shorten feature sequences."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .masks import halve_lengths


class Conv1dSubsampler(nn.Module):
    """Stride-2 Conv1d + GLU layers (fairseq S2T): each layer halves time and the GLU halves channels."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_sizes: Sequence[int]):
        super().__init__()
        last = len(kernel_sizes) - 1
        self.conv_layers = nn.ModuleList(
            nn.Conv1d(
                in_channels if i == 0 else mid_channels // 2,
                mid_channels if i < last else out_channels * 2,
                kernel_size=k,
                stride=2,
                padding=k // 2,
            )
            for i, k in enumerate(kernel_sizes)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Map features (B, T, F) to hidden states (B, T', out_channels)."""
        hidden = features.transpose(1, 2)
        for conv in self.conv_layers:
            hidden = nn.functional.glu(conv(hidden), dim=1)
        return hidden.transpose(1, 2)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Return frame counts after subsampling; transformers uses floor((L - 1) / 2) + 1 whatever the kernel."""
        return halve_lengths(lengths, len(self.conv_layers))
