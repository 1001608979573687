"""Beam search, vectorised over (batch x beam), with transformers' scoring and stopping rules.

Per step every item keeps the top 2K continuations (K beams, 2 = 1 + one eos id) of all beams. Continuations
that end in eos (or reach max_length) and rank within the first K may enter the item's pool of K finished
hypotheses, scored sum(log p) / generated_length ** length_penalty; the best K unfinished ones run on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.protocols import DecoderState, Seq2SeqModel
from .options import GenerationOptions
from .processors import Processor, apply_processors

_FAR = -1.0e9  # transformers' stand-in for "impossible"; kept identical so ties resolve the same way


def _gather(tensor: Tensor, index: Tensor) -> Tensor:
    """Pick along dim 1 (beams) of tensor (B, K, ...) with index (B, K')."""
    expanded = index.view(*index.shape, *([1] * (tensor.dim() - 2))).expand(*index.shape, *tensor.shape[2:])
    return tensor.gather(1, expanded)


class _Pool:
    """The K best finished hypotheses of each batch item."""

    def __init__(self, running: Tensor, num_beams: int):
        batch = running.shape[0]
        self.sequences = running.clone()
        self.scores = torch.full((batch, num_beams), _FAR, device=running.device)
        self.finished = torch.zeros((batch, num_beams), dtype=torch.bool, device=running.device)
        self.lengths = torch.zeros((batch, num_beams), dtype=torch.long, device=running.device)

    def add(self, candidates: Tensor, scores: Tensor, accepted: Tensor, length: int, num_beams: int) -> None:
        merged_scores = torch.cat((self.scores, scores), dim=1)
        best = torch.topk(merged_scores, k=num_beams)[1]
        self.sequences = _gather(torch.cat((self.sequences, candidates), dim=1), best)
        self.scores = _gather(merged_scores, best)
        self.finished = _gather(torch.cat((self.finished, accepted), dim=1), best)
        new_lengths = torch.full_like(accepted, length, dtype=torch.long)
        self.lengths = _gather(torch.cat((self.lengths, new_lengths), dim=1), best)


def beam_search(
    model: Seq2SeqModel, state: DecoderState, start: Tensor, o: GenerationOptions, chain: list[Processor]
) -> Tensor:
    """Return the best o.num_return_sequences hypotheses per item, (B * R, L), padded after eos."""
    K, prompt, device = o.num_beams, start.shape[1], start.device
    batch = start.shape[0] // K
    eos = torch.tensor(o.eos_ids, device=device)
    keep = max(2, 1 + len(o.eos_ids)) * K
    in_top_k = torch.arange(keep, device=device) < K
    fill = o.pad_token_id or (
        o.eos_ids[0] if o.eos_ids else -1
    )  # transformers' `pad or eos` quirk (pad 0 -> eos)
    running = torch.full((batch, K, o.max_length), fill, dtype=torch.long, device=device)
    running[:, :, :prompt] = start.view(batch, K, prompt)
    pool = _Pool(running, K)
    running_scores = torch.zeros((batch, K), device=device)
    running_scores[:, 1:] = _FAR
    improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * K
    length, feed = prompt, start
    while True:
        log_probs = model.step(feed, state).float().log_softmax(dim=-1)
        if chain:
            log_probs = apply_processors(chain, running.view(batch * K, -1)[:, :length], log_probs)
        vocab = log_probs.shape[-1]
        totals = (log_probs.view(batch, K, vocab) + running_scores[:, :, None]).view(batch, K * vocab)
        top_scores, top_index = torch.topk(totals, k=keep)
        source_beam, top_ids = top_index // vocab, top_index % vocab
        candidates = _gather(running, source_beam)
        candidates[:, :, length] = top_ids
        hits = torch.isin(top_ids, eos) | (length + 1 >= o.max_length)
        # Unfinished continuations run on.
        alive_scores = top_scores + hits.float() * _FAR
        chosen = torch.topk(alive_scores, k=K)[1]
        running, running_scores = _gather(candidates, chosen), _gather(alive_scores, chosen)
        state.reorder((_gather(source_beam, chosen) + offsets).flatten())
        # Finished continuations among the first K may enter the pool.
        accepted = hits & in_top_k[None, :]
        final = top_scores / ((length + 1 - prompt) ** o.length_penalty)
        full = pool.finished.all(dim=-1, keepdim=True) & (o.early_stopping is True)
        final = final + full.float() * _FAR + (~improvable).float() * _FAR + (~accepted) * _FAR
        pool.add(candidates, final, accepted, length + 1 - prompt, K)
        length += 1
        improvable = _still_improvable(improvable, running_scores, pool, length, prompt, o)
        open_beam = not (bool(pool.finished.all()) and o.early_stopping is True)
        if not (bool(improvable.any()) and open_beam and not bool(hits.all())):
            break
        feed = running[:, :, length - 1].reshape(-1, 1)
    R = o.num_return_sequences
    longest = prompt + int(pool.lengths[:, :R].max())
    return pool.sequences[:, :R, :longest].reshape(batch * R, longest)


def _still_improvable(
    improvable: Tensor, running_scores: Tensor, pool: _Pool, length: int, prompt: int, o
) -> Tensor:
    """Whether the best running beam could still beat the worst finished hypothesis (transformers' heuristic)."""
    if o.early_stopping == "never" and o.length_penalty > 0.0:
        best_length = o.max_length - prompt
    else:
        best_length = length - prompt
    best_running = running_scores[:, :1] / (best_length**o.length_penalty)
    worst_finished = torch.where(pool.finished, pool.scores.min(dim=1, keepdim=True)[0], _FAR)
    return improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
