"""Logits processors with transformers' semantics, built once per search from GenerationOptions.

Each processor is called as processor(tokens, scores, length) with tokens (N, L) the sequences so far
(decoder start included), scores (N, V) float32, and length = L; it returns the processed scores. The
scores are the chain's own (`apply_processors` takes them over from the search), so processors that mask
a few entries write into them in place instead of copying a (rows x vocabulary) tensor each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputError
from .options import GenerationOptions

Processor = Callable[[Tensor, Tensor, int], Tensor]
NEG_INF = float("-inf")


def repetition_penalty(penalty: float) -> Processor:
    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        seen = scores.gather(1, tokens)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return scores.scatter(1, tokens, seen)

    return apply


def no_repeat_ngram(size: int) -> Processor:
    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        if length + 1 < size:
            return scores
        for row, sequence in enumerate(tokens.tolist()):
            tail = tuple(sequence[length - size + 1 :])
            banned = [
                sequence[i + size - 1]
                for i in range(length - size + 1)
                if tuple(sequence[i : i + size - 1]) == tail
            ]
            if banned:
                scores[row, banned] = NEG_INF
        return scores

    return apply


def bad_words(bad_words_ids: list, eos_ids: list[int], vocab_size: int) -> Processor:
    if not isinstance(bad_words_ids, list) or not all(isinstance(s, list) and s for s in bad_words_ids):
        raise InputError(
            f"bad_words_ids must be a list of non-empty lists of token ids, got {bad_words_ids!r}"
        )
    sequences = [s for s in bad_words_ids if not (len(s) == 1 and s[0] in eos_ids)]
    out_of_range = [t for s in sequences for t in s if not 0 <= t < vocab_size]
    if out_of_range:
        raise InputError(
            f"bad_words_ids holds ids outside the vocabulary (size {vocab_size}): {out_of_range}"
        )
    single = [s[0] for s in sequences if len(s) == 1]
    multi = [s for s in sequences if len(s) > 1]

    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        scores[:, single] = NEG_INF
        for sequence in multi:
            prefix = sequence[:-1]
            if len(prefix) > length:
                continue
            match = (tokens[:, -len(prefix) :] == tokens.new_tensor(prefix)).all(dim=1)
            scores[match, sequence[-1]] = NEG_INF
        return scores

    return apply


def suppress(ids: list[int], when: Callable[[int], bool] = lambda length: True) -> Processor:
    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        if not when(length) or not ids:
            return scores
        scores[:, ids] = NEG_INF
        return scores

    return apply


def force(token_id: int, when: Callable[[int], bool]) -> Processor:
    """At the lengths `when` selects, every score becomes -inf except token_id, which becomes 0."""

    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        if not when(length):
            return scores
        forced = torch.full_like(scores, NEG_INF)
        forced[:, token_id] = 0
        return forced

    return apply


def temperature(value: float) -> Processor:
    return lambda tokens, scores, length: scores / value


def top_k(k: int, keep: int) -> Processor:
    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        kth = torch.topk(scores, min(max(k, keep), scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, NEG_INF)

    return apply


def top_p(p: float, keep: int) -> Processor:
    def apply(tokens: Tensor, scores: Tensor, length: int) -> Tensor:
        sorted_scores, order = torch.sort(scores, descending=False)
        remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - p)
        remove[..., -keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)

    return apply


def build_processors(o: GenerationOptions, vocab_size: int, prompt_length: int) -> list[Processor]:
    """Return the processor chain in transformers' order (penalties, constraints, forcing, then warpers)."""
    chain: list[Processor] = []
    eos = o.eos_ids
    if o.repetition_penalty != 1.0:
        chain.append(repetition_penalty(o.repetition_penalty))
    if o.no_repeat_ngram_size > 0:
        chain.append(no_repeat_ngram(o.no_repeat_ngram_size))
    if o.bad_words_ids is not None:
        chain.append(bad_words(o.bad_words_ids, eos, vocab_size))
    if o.min_length > 0 and eos:
        chain.append(suppress(eos, lambda length: length < o.min_length))
    if o.min_new_tokens and eos:
        chain.append(suppress(eos, lambda length: length - prompt_length < o.min_new_tokens))
    if o.forced_bos_token_id is not None:
        chain.append(force(o.forced_bos_token_id, lambda length: length == 1))
    if o.forced_eos_token_id is not None:
        chain.append(force(o.forced_eos_token_id, lambda length: length == o.max_length - 1))
    if o.suppress_tokens:
        chain.append(suppress(list(o.suppress_tokens)))
    if o.begin_suppress_tokens:
        begin = prompt_length if o.forced_bos_token_id is None else prompt_length + 1
        chain.append(suppress(list(o.begin_suppress_tokens), lambda length: length == begin))
    if o.do_sample:
        keep = 1 if o.num_beams == 1 else max(2, len(eos) + 1)
        if o.temperature != 1.0:
            chain.append(temperature(o.temperature))
        if o.top_k:
            chain.append(top_k(o.top_k, keep))
        if o.top_p < 1.0:
            chain.append(top_p(o.top_p, keep))
    return chain


def apply_processors(chain: list[Processor], tokens: Tensor, scores: Tensor) -> Tensor:
    """Run the chain on scores (N, V), which it takes over: they may be changed in place."""
    length = tokens.shape[1]
    for processor in chain:
        scores = processor(tokens, scores, length)
    return scores
