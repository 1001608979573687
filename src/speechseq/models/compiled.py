"""An opt-in compiled decoder step: torch.compile (inductor) with frozen, prepacked weights, on CPU.

One decoding step is one graph: the self-attention cache is passed whole with its write position as a tensor
(nn.cache.CacheView), so every step of a search runs the same compiled code. Inductor freezes the decoder's
weights into constants and picks, per matrix, its own few-row product kernels or MKL's by timing both
(max-autotune), and fuses the element-wise work between the products. The encoder stays in eager mode: its
products are large, where MKL is already fast.

A graph is compiled for each number of decoder rows (batch x beams, up to MAX_ROWS), cache length and
padding layout it meets, which takes tens of seconds on a small CPU; the encoder length is a dynamic dimension and costs no
recompilation.
"""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import Tensor, nn
from torch._dynamo import config as dynamo_config
from torch._inductor import config as inductor_config

from ..errors import InputError
from ..nn.cache import CacheView
from ..nn.transformer import MemoryKV

# Decoder rows up to which the compiled step runs; beyond, eager products are as fast (bench/run.py --compile:
# 40 rows, 5 beams x 8 clips, took 3.9 s compiled against 2.9 s eager).
MAX_ROWS = 8
_GRAPH_LIMIT = 64  # compiled graphs per process (dynamo's default limit, 8, is reached by 2 models)
_BUILDS = itertools.count()
# Inductor options for these graphs only (the global config is left as it is).
_OPTIONS = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}


def check_compilable(model: nn.Module) -> None:
    """Refuse what the compiled step is not built or tested for, before any work."""
    import shutil

    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        _ = torch._dynamo.exc.FailOnRecompileLimitHit, dynamo_config.recompile_limit
    except (ImportError, AttributeError) as error:
        raise InputError(f"compile needs torch 2.7 or later (this is {torch.__version__})") from error
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
        raise InputError("compile is built for float32 weights; this model is quantized to int8")
    weight = next(model.decoder.parameters())
    if weight.device.type != "cpu":
        raise InputError(f"compile is built for CPU decoding; the model is on {weight.device}")
    if weight.dtype != torch.float32:
        raise InputError(f"compile is built for float32 weights, not {weight.dtype}")
    compiler = get_cpp_compiler()
    if shutil.which(compiler) is None:
        raise InputError(f"compile needs a C++ compiler for torch inductor ({compiler!r} is not on PATH)")


class CompiledStep:
    """model.step for one new token per row, run as a compiled graph; the model calls it from `step` for up to
    MAX_ROWS rows."""

    def __init__(self, model: nn.Module):
        self.model = model
        # A module, not a bound method, so that inductor sees the weights as module attributes it may freeze.
        # Graphs hold frozen copies of the weights, and dynamo would hand a new CompiledStep around the same
        # (since changed) modules the old graphs. Each passes its own build number, on which they specialise.
        self._build = next(_BUILDS)
        self._run = torch.compile(_Step(model.decoder, model.lm_head), dynamic=False, fullgraph=True)
        self._weights = self._fingerprint()
        self._exhausted = False  # set once the process holds _GRAPH_LIMIT graphs

    def _parameters(self) -> list[Tensor]:
        return [*self.model.decoder.parameters(), *self.model.lm_head.parameters()]

    def _fingerprint(self) -> list[tuple]:
        # Frozen weights are copies: a change to the model's (training, .to(), load_state_dict) makes them stale.
        return [(p.data_ptr(), p._version, p.dtype, p.device) for p in self._parameters()]

    def is_current(self) -> bool:
        """Whether the weights are still those the graphs were compiled with."""
        return self._fingerprint() == self._weights

    def takes(self, tokens: Tensor) -> bool:
        """Whether this step runs compiled: one new token per row, at most MAX_ROWS rows."""
        return tokens.shape[1] == 1 and tokens.shape[0] <= MAX_ROWS and not self._exhausted

    def __call__(self, tokens: Tensor, state) -> Tensor:
        memory = state.memory
        for tensor in (*memory.keys, *memory.values):
            torch._dynamo.maybe_mark_dynamic(tensor, 2)  # the encoder length
        if memory.mask is not None:
            torch._dynamo.maybe_mark_dynamic(memory.mask, 3)
        cache = state.cache.view()
        tokens = tokens.contiguous()  # a beam search feeds a strided column; one layout, one graph
        try:
            # Options are read when a call compiles. Graphs of every model and shape count against one limit.
            with inductor_config.patch(_OPTIONS), dynamo_config.patch(recompile_limit=_GRAPH_LIMIT):
                logits = self._run(
                    tokens,
                    cache.past,
                    cache.keys,
                    cache.values,
                    memory.keys,
                    memory.values,
                    memory.mask,
                    memory.group,
                    self._build,
                )
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            # Nothing ran: the step is taken eagerly, as are all later ones of this model.
            warnings.warn(
                f"speechseq: {_GRAPH_LIMIT} compiled decoder graphs exist in this process (models x batch "
                "shapes); this model decodes eagerly from now on",
                stacklevel=2,
            )
            self._exhausted = True
            return self.model.eager_step(tokens, state)
        state.cache.advance(tokens.shape[1])
        return logits


class _Step(nn.Module):
    def __init__(self, decoder: nn.Module, head: nn.Module):
        super().__init__()
        self.decoder, self.head = decoder, head

    def forward(
        self, tokens, position, keys, values, memory_keys, memory_values, memory_mask, group: int, build: int
    ) -> Tensor:
        if build < 0:  # the graph is specialised on `build` (see CompiledStep.__init__)
            raise ValueError(f"build numbers count up from 0, got {build}")
        cache = CacheView(keys, values, position)
        memory = MemoryKV(memory_keys, memory_values, memory_mask, group)
        return self.head(self.decoder(tokens, memory, cache)[:, -1])
