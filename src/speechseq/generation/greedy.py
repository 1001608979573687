"""Greedy search and multinomial sampling (transformers' _sample), one token per row per step."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.protocols import DecoderState, Seq2SeqModel
from .options import GenerationOptions
from .processors import Processor, apply_processors


def greedy_search(
    model: Seq2SeqModel,
    state: DecoderState,
    start: Tensor,
    options: GenerationOptions,
    chain: list[Processor],
) -> Tensor:
    """Extend start tokens (N, 1) until every row ends with eos or max_length is reached.

    Finished rows are padded with pad_token_id. With options.do_sample, tokens are drawn from the processed
    distribution with torch.multinomial (seed torch for reproducible draws).
    """
    rows = start.shape[0]
    tokens = start.new_full((rows, options.max_length), options.pad_token_id)
    tokens[:, : start.shape[1]] = start
    length = start.shape[1]
    eos = torch.tensor(options.eos_ids, device=start.device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=start.device)
    feed = start
    while length < options.max_length:
        logits = model.step(feed, state).float()
        scores = apply_processors(chain, tokens[:, :length], logits) if chain else logits
        if options.do_sample:
            following = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)
        else:
            following = scores.argmax(dim=-1)
        if eos.numel():
            following = torch.where(unfinished, following, options.pad_token_id)
            unfinished &= ~torch.isin(following, eos)
        tokens[:, length] = following
        length += 1
        feed = following[:, None]
        if eos.numel() and not bool(unfinished.any()):
            break
    return tokens[:, :length]
