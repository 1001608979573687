"""A Linear layer whose weight lies in memory in the order that a decoding step reads fastest."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# A product of 2 to _FEW_ROWS rows (beams, a small batch) by a weight of at least _PACKED_ELEMENTS entries
# runs on a copy of the weight that oneDNN has laid out for it: 1.1-3x faster than MKL there on the benchmark
# CPU (README, Performance). One row stays on MKL (faster for it), and so do small weights (oneDNN's call
# costs ~20 us more: 30 against 10 us for 256 x 256).
_FEW_ROWS = 64
_PACKED_ELEMENTS = 2**19
_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Linear(nn.Linear):
    """nn.Linear whose weight is stored transposed when the layer has at least as many outputs as inputs.

    A decoding step multiplies one row, or a few, by every weight matrix, so its cost is reading the weights.
    MKL reads them 1.4-2x faster when their rows in memory are long: stored (in, out) for a wide layer, as
    here, and (out, in) as usual for a narrow one such as the FFN's second projection (README, Performance).
    Products of many rows (the encoder) run at the same speed either way. `weight` keeps its (out, in)
    shape, name and values, so state dicts, checkpoints and F.linear see no difference.

    Without gradients, a few-row product by a large float32 weight on CPU uses a oneDNN-packed copy of the
    weight, made on first use and made again whenever the weight changes (see `_FEW_ROWS`).
    """

    _packed: tuple[tuple[int, int], Tensor] | None = None  # ((weight version, address), packed weight)

    def forward(self, hidden: Tensor) -> Tensor:
        rows = hidden.numel() // max(1, hidden.shape[-1])
        if 1 < rows <= _FEW_ROWS and self._packable(hidden):
            return torch.ops.mkldnn._linear_pointwise(
                hidden, self._packed_weight(), self.bias, "none", [], ""
            )
        return super().forward(hidden)

    def _packable(self, hidden: Tensor) -> bool:
        weight = self.weight
        return (
            _ONEDNN
            and weight.numel() >= _PACKED_ELEMENTS
            and not torch.is_grad_enabled()
            and hidden.device.type == "cpu"
            and hidden.dtype == weight.dtype == torch.float32
        )

    def _packed_weight(self) -> Tensor:
        key = (self.weight._version, self.weight.data_ptr())
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), 8))
        return self._packed[1]

    def reset_parameters(self) -> None:
        # nn.Linear.__init__ allocates the weight (out, in) and then calls this: lay a wide weight out column by
        # column (strides (1, out)) first, so that it is initialised in place, or left for a checkpoint under
        # checkpoints.skip_init, without a copy.
        if self.out_features >= self.in_features and not self.weight.t().is_contiguous():
            self.weight = nn.Parameter(self.weight.new_empty(self.in_features, self.out_features).t())
        super().reset_parameters()
