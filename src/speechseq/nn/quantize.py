"""Dynamic int8 quantization of linear layers, for CPU inference."""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of model in place by a dynamically quantized int8 layer; return model.

    Weights become int8 with one symmetric scale per output channel. Activations are quantized on each call
    from their own range and outputs are float32 (fbgemm's dynamic linear, what torch's quantize_dynamic
    builds with per_channel_dynamic_qconfig). A head tied to the embedding gets its own int8 copy; the
    embedding itself stays float32. CPU only.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, _quantized(child))
    return model


def _quantized(linear: nn.Linear) -> nn.Module:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    weight = linear.weight.detach().float()
    scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    bias = None if linear.bias is None else linear.bias.detach().float()
    with warnings.catch_warnings():
        # Quantized tensors are deprecated in favour of torchao (pytorch/pytorch#184982), but fbgemm's dynamic
        # linear still takes its weight as one; the warning would only tell the user what this module does.
        warnings.simplefilter("ignore", UserWarning)
        int8_weight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        layer = DynamicLinear(linear.in_features, linear.out_features, dtype=torch.qint8)
        layer.set_weight_bias(int8_weight, bias)
    return layer
