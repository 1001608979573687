"""Convolutional front ends that shorten feature sequences."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

_SLICE_ELEMENTS = 2**20  # first-convolution outputs per slice of a batch: 4 MB of float32


class Conv1dSubsampler(nn.Module):
    """Strided Conv1d + GLU layers (fairseq S2T, the wav2vec2 adapter): each layer divides time by the stride
    and the GLU halves channels. Padding defaults to kernel // 2 (S2T); the wav2vec2 adapter always pads by 1.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int],
        stride: int = 2,
        padding: int | None = None,
    ):
        super().__init__()
        last = len(kernel_sizes) - 1
        self.conv_layers = nn.ModuleList(
            nn.Conv1d(
                in_channels if i == 0 else mid_channels // 2,
                mid_channels if i < last else out_channels * 2,
                kernel_size=k,
                stride=stride,
                padding=k // 2 if padding is None else padding,
            )
            for i, k in enumerate(kernel_sizes)
        )
        self.stride = stride

    def forward(self, features: Tensor) -> Tensor:
        """Map features (B, T, F) to hidden states (B, T', out_channels)."""
        # The first convolution's output is the widest tensor of the encoder (16 MB for 8 clips of 10 s in
        # s2t-small); a batch runs in slices of items that keep it near _SLICE_ELEMENTS. Items are independent.
        widest = self.conv_layers[0].out_channels * (features.shape[1] // self.stride + 1)
        step = max(1, _SLICE_ELEMENTS // widest)
        if features.shape[0] <= step:
            return self._run(features)
        return torch.cat([self._run(part) for part in features.split(step)])

    def _run(self, features: Tensor) -> Tensor:
        hidden = features.transpose(1, 2)
        for conv in self.conv_layers:
            hidden = nn.functional.glu(conv(hidden), dim=1)
        return hidden.transpose(1, 2)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Return frame counts after subsampling; transformers uses floor((L - 1) / stride) + 1 whatever the kernel."""
        for _ in self.conv_layers:
            lengths = torch.div(lengths - 1, self.stride, rounding_mode="floor") + 1
        return lengths
