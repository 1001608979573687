"""A one-token step of a TransformerDecoder's layers as one native call (decoder_step.c).

Built once per decoding run (per MemoryKV) from the layers' tensors: ctypes structs that point into the
weights, the cross-attention keys and values, and a work area. `step` returns None where the native step does
not apply (no kernel, training or gradients, not CPU float32, an activation it lacks, weights or memory laid
out otherwise, more than MAX_ROWS rows); the decoder then runs its torch layers, which give the same values
to float32 rounding.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_double, c_long, c_void_p

import torch
from torch import Tensor, nn

from . import native
from .cache import KVCache
from .transformer import MemoryKV

_ACTIVATIONS = {"relu": 0, "gelu": 1, "gelu_tanh": 2, "silu": 3}  # decoder_step.c's enum


class _Linear(Structure):
    _fields_ = [("w", c_void_p), ("b", c_void_p), ("n", c_long), ("k", c_long)]


class _Layer(Structure):
    _fields_ = [
        ("norm_w", c_void_p * 3),
        ("norm_b", c_void_p * 3),
        *((name, _Linear) for name in ("q", "k", "v", "o", "cross_q", "cross_o", "fc1", "fc2")),
        ("memory_k", c_void_p),
        ("memory_v", c_void_p),
        ("k_strides", c_long * 3),
        ("v_strides", c_long * 3),
    ]


class _Decoder(Structure):
    _fields_ = [
        *((name, c_long) for name in ("layers", "d", "heads", "ffn", "rows", "norm_first", "activation")),
        ("eps", c_double),
        ("layer", POINTER(_Layer)),
        ("memory_len", c_long),
        ("group", c_long),
        ("memory_keep", c_void_p),
        ("work", c_void_p),
    ]


def _activation(module: nn.Module) -> int | None:
    if type(module) is nn.ReLU:
        return _ACTIVATIONS["relu"]
    if type(module) is nn.GELU:
        return _ACTIVATIONS["gelu" if module.approximate == "none" else "gelu_tanh"]
    if type(module) is nn.SiLU:
        return _ACTIVATIONS["silu"]
    return None


def _float32_cpu(tensor: Tensor) -> bool:
    return tensor.dtype is torch.float32 and tensor.is_cpu


def _linear(layer: nn.Module) -> _Linear | None:
    if not isinstance(layer, nn.Linear):  # int8 layers (torch.ao's dynamic Linear), among others
        return None
    weight, bias = layer.weight, layer.bias
    if not (_float32_cpu(weight) and weight.is_contiguous()):
        return None
    if bias is not None and not (_float32_cpu(bias) and bias.is_contiguous()):
        return None
    out_features, in_features = weight.shape
    return _Linear(weight.data_ptr(), None if bias is None else bias.data_ptr(), out_features, in_features)


def _norm(norm: nn.Module) -> tuple[int, int] | None:
    if not isinstance(norm, nn.LayerNorm):
        return None
    weight, bias = norm.weight, norm.bias
    if (
        weight is None
        or bias is None
        or not all(_float32_cpu(t) and t.is_contiguous() for t in (weight, bias))
    ):
        return None
    return weight.data_ptr(), bias.data_ptr()


def _memory_tensor(tensor: Tensor, rows: int, heads: int, length: int, head_dim: int) -> bool:
    return (
        _float32_cpu(tensor)
        and tuple(tensor.shape) == (rows, heads, length, head_dim)
        and (tensor.stride(3) == 1 or head_dim == 1)
    )


class NativeStep:
    """The native step of one decoding run: its structs, and the tensors of its own that they point into.

    It lives on the MemoryKV it was built for (`memory.native`), whose keys and values it points into, and
    holds no reference back to it: no cycle, so a run's memory is freed when the run ends, not at the next
    garbage collection.
    """

    def __init__(self, decoder: nn.Module, memory: MemoryKV, activation: int):
        spec, layers = decoder.spec, decoder.layers
        self.heads, self.head_dim = spec.num_heads, spec.d_model // spec.num_heads
        memory_rows, _, length, _ = memory.keys[0].shape
        self.rows = memory_rows * memory.group
        self.structs = (_Layer * len(layers))()
        self.needs_grad = any(p.requires_grad for p in decoder.parameters())
        mask = memory.mask
        self.keep = None if mask is None else mask.reshape(memory_rows, length).to(torch.uint8).contiguous()
        self.work = torch.empty(self.rows * (5 * spec.d_model + spec.ffn_dim))
        self.decoder = _Decoder(
            len(layers),
            spec.d_model,
            spec.num_heads,
            spec.ffn_dim,
            self.rows,
            int(spec.norm_first),
            activation,
            spec.layer_norm_eps,
            self.structs,
            length,
            memory.group,
            None if self.keep is None else self.keep.data_ptr(),
            self.work.data_ptr(),
        )

    @staticmethod
    def build(decoder: nn.Module, memory: MemoryKV) -> NativeStep | None:
        """The step for this decoder and memory, or None where the native step does not apply."""
        spec, layers = decoder.spec, decoder.layers
        if native._load() is None or len(layers) == 0:  # loading sets native._step as well
            return None
        if not memory.keys or spec.d_model % spec.num_heads:
            return None
        activation = _activation(layers[0].ffn.activation)
        if activation is None or any(_activation(layer.ffn.activation) != activation for layer in layers):
            return None
        if memory.mask is not None and memory.mask.shape[1:3] != (1, 1):
            return None
        step = NativeStep(decoder, memory, activation)
        if step.rows > native.MAX_ROWS:
            return None
        memory_rows, _, length, _ = memory.keys[0].shape
        for index, layer in enumerate(layers):
            parts = {
                "q": layer.self_attn.q_proj,
                "k": layer.self_attn.k_proj,
                "v": layer.self_attn.v_proj,
                "o": layer.self_attn.out_proj,
                "cross_q": layer.cross_attn.q_proj,
                "cross_o": layer.cross_attn.out_proj,
                "fc1": layer.ffn.fc1,
                "fc2": layer.ffn.fc2,
            }
            struct = step.structs[index]
            for name, module in parts.items():
                linear = _linear(module)
                if linear is None:
                    return None
                setattr(struct, name, linear)
            for block, residual in enumerate(
                (layer.self_attn_block, layer.cross_attn_block, layer.ffn_block)
            ):
                norm = _norm(residual.norm)
                if norm is None or residual.norm.eps != spec.layer_norm_eps:
                    return None
                struct.norm_w[block], struct.norm_b[block] = norm
            keys, values = memory.keys[index], memory.values[index]
            for tensor in (keys, values):
                if not _memory_tensor(tensor, memory_rows, step.heads, length, step.head_dim):
                    return None
            struct.memory_k, struct.memory_v = keys.data_ptr(), values.data_ptr()
            struct.k_strides[:] = keys.stride()[:3]
            struct.v_strides[:] = values.stride()[:3]
        return step

    def __call__(self, hidden: Tensor, cache: KVCache) -> Tensor | None:
        """Run the layers on hidden (rows, 1, D) in place and return it; None where this step cannot."""
        if hidden.shape[0] != self.rows or (self.needs_grad and torch.is_grad_enabled()):
            return None
        if not (_float32_cpu(hidden) and hidden.is_contiguous()):
            return None
        buffer, origin = cache.native_buffers(1)
        layers, heads, head_dim = self.decoder.layers, self.heads, self.head_dim
        if (
            not _float32_cpu(buffer)
            or buffer.shape[1:4] != (layers, self.rows, heads)
            or buffer.shape[5] != head_dim
        ):
            return None
        native._step(
            ctypes.addressof(self.decoder),
            hidden.data_ptr(),
            buffer.data_ptr(),
            buffer.shape[4],
            None if origin is None else origin.data_ptr(),
            cache.length,
            native._threads(),
        )
        return hidden


def step(decoder: nn.Module, memory: MemoryKV, hidden: Tensor, cache: KVCache) -> Tensor | None:
    """Run decoder's layers natively on hidden (rows, 1, D), writing the cache; None where it does not apply."""
    if memory.native is None:
        memory.native = NativeStep.build(decoder, memory) or False
    return memory.native(hidden, cache) if memory.native else None
