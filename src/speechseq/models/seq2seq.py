"""What every encoder-decoder family shares: forward with labels, step-wise decoding state, generate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..nn.cache import KVCache
from ..nn.transformer import MemoryKV
from ..training.losses import out_of_range
from .protocols import EncoderOutput


@dataclass
class Seq2SeqOutput:
    """Result of a teacher-forced forward pass."""

    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None  # mean cross-entropy over labels != -100
    encoder_last_hidden_state: Tensor | None = None  # (B, S, D)


@dataclass
class DecoderCacheState:
    """Cross-attention memory and a growing self-attention cache."""

    memory: MemoryKV
    cache: KVCache

    def reorder(self, index: Tensor) -> None:
        # Cross-attention memory is the same for all rows of one batch item, so only the cache moves.
        self.cache.reorder(index)


def shift_tokens_right(labels: Tensor, pad_token_id: int | None, start_token_id: int | None) -> Tensor:
    """Make decoder inputs from labels: prepend the start token, drop the last label, -100 -> pad."""
    if start_token_id is None:
        raise InputError("decoder_start_token_id is not set in the config; it is needed to shift labels")
    if pad_token_id is None:
        raise InputError("pad_token_id is not set in the config; it is needed to shift labels")
    shifted = labels.new_full(labels.shape, start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class Seq2SeqMixin:
    """Shared behaviour of encoder-decoder models.

    A family provides: `encode(inputs, attention_mask) -> EncoderOutput`, a `decoder` (TransformerDecoder),
    an `lm_head`, `self.generation_defaults` (dict) and `self.special_tokens` (dict with pad/eos/bos/decoder_start).
    """

    decoder: nn.Module
    lm_head: nn.Module
    task = "seq2seq"  # what the model's output is for: transcribe and classify check it

    compiled_step = None  # a CompiledStep once compile_decoder() has run

    def compile_decoder(self) -> None:
        """Run every later one-token decoder step as a compiled graph (CPU, float32; models/compiled.py).

        The decoder's weights are frozen into the graphs when they are compiled; a later change to them is
        noticed when decoding starts, and the step is compiled again.
        """
        from .compiled import CompiledStep, check_compilable

        check_compilable(self)
        self.compiled_step = CompiledStep(self)

    def start_decoding(self, encoded: EncoderOutput, repeat: int, max_length: int) -> DecoderCacheState:
        if self.compiled_step is not None and not self.compiled_step.is_current():
            self.compile_decoder()  # checked again: the weights may have moved to another device or dtype
        memory = self.decoder.build_memory(encoded.hidden, encoded.padding_mask)
        if repeat > 1:
            memory = memory.repeat(repeat)
        rows = encoded.hidden.shape[0] * repeat
        return DecoderCacheState(memory, self.decoder.new_cache(rows, max_length, encoded.hidden))

    def step(self, tokens: Tensor, state: DecoderCacheState) -> Tensor:
        if self.compiled_step is not None and self.compiled_step.takes(tokens) and not self.training:
            return self.compiled_step(tokens, state)
        return self.eager_step(tokens, state)

    def eager_step(self, tokens: Tensor, state: DecoderCacheState) -> Tensor:
        """One decoder step in eager mode (what `step` runs when nothing is compiled)."""
        hidden = self.decoder(tokens, state.memory, state.cache)
        return self.lm_head(hidden[:, -1])

    def decode(
        self, decoder_input_ids: Tensor, encoded: EncoderOutput, decoder_attention_mask: Tensor | None
    ):
        """Teacher-forced decoder pass; returns logits (B, T, V)."""
        memory = self.decoder.build_memory(encoded.hidden, encoded.padding_mask)
        padding = None if decoder_attention_mask is None else decoder_attention_mask == 0
        return self.lm_head(self.decoder(decoder_input_ids, memory, padding_mask=padding))

    def run(self, inputs, attention_mask, decoder_input_ids, labels, decoder_attention_mask) -> Seq2SeqOutput:
        """Forward pass shared by the families' forward(): shift labels, encode, decode, loss."""
        if inputs is None:
            raise InputError("no audio features given: pass input_features (or input_values)")
        vocab = self.lm_head.out_features
        for name, ids, ignored in (("labels", labels, -100), ("decoder_input_ids", decoder_input_ids, None)):
            bad = None if ids is None else out_of_range(ids, vocab, ignored)
            if bad is not None:
                raise InputError(f"{name} hold id {bad}, but the decoder vocabulary has {vocab} tokens")
        if decoder_input_ids is None:
            if labels is None:
                raise InputError("pass decoder_input_ids or labels to run the decoder")
            decoder_input_ids = shift_tokens_right(
                labels, self.special_tokens["pad_token_id"], self.special_tokens["decoder_start_token_id"]
            )
        encoded = self.encode(inputs, attention_mask)
        logits = self.decode(decoder_input_ids, encoded, decoder_attention_mask)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100
            )
        return Seq2SeqOutput(logits=logits, loss=loss, encoder_last_hidden_state=encoded.hidden)

    def save_pretrained(self, folder) -> None:
        """Write config.json, model.safetensors and generation_config.json in transformers' layout."""
        from pathlib import Path

        from .registry import get_family

        get_family(self.model_type, type(self).__name__).save(self, Path(folder))

    @torch.inference_mode()
    def generate(self, inputs: Tensor, attention_mask: Tensor | None = None, **options) -> Tensor:
        """Generate token ids (B * num_return_sequences, L), starting with the decoder start token.

        Options follow transformers' generate (num_beams, max_new_tokens, max_length, min_new_tokens,
        length_penalty, early_stopping, no_repeat_ngram_size, repetition_penalty, forced_bos_token_id,
        bad_words_ids, num_return_sequences, do_sample, temperature, top_k, top_p, ...); defaults come from the
        checkpoint's generation_config.json or config.json.
        """
        from ..generation import generate  # deferred: models must not depend on generation at import time

        return generate(self, inputs, attention_mask, self.generation_defaults, self.special_tokens, options)
