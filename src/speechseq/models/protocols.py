"""The surface that searches in speechseq.generation see. Models implement it; searches import only this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


@dataclass
class EncoderOutput:
    """Encoder states and which of them are padding."""

    hidden: Tensor  # (B, S, D)
    padding_mask: Tensor | None  # (B, S), True = pad; None when nothing is padded


class DecoderState(Protocol):
    """Everything a decoder carries between steps (cross-attention memory, self-attention cache)."""

    def reorder(self, index: Tensor) -> None:
        """Make row i hold what row index[i] held (beam search); index stays within each batch item."""


class Seq2SeqModel(Protocol):
    """An encoder-decoder that searches drive one step at a time."""

    def encode(self, inputs: Tensor, attention_mask: Tensor | None) -> EncoderOutput: ...

    def start_decoding(self, encoded: EncoderOutput, repeat: int, max_length: int) -> DecoderState:
        """Prepare decoding of every batch row `repeat` times (beams, returned sequences) for max_length steps."""
        ...

    def step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed tokens (N, t) after those already fed; return next-token logits (N, V) of the last position."""
        ...
