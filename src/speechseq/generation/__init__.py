"""Searches over any speechseq Seq2SeqModel: greedy, sampling and beam search with logits processors."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import check_finite
from ..models.protocols import Seq2SeqModel
from .beam import beam_search
from .greedy import greedy_search
from .options import GenerationOptions, check_token_ids, resolve_options
from .processors import build_processors

__all__ = ["GenerationOptions", "generate", "resolve_options"]


def generate(
    model: Seq2SeqModel,
    inputs: Tensor,
    attention_mask: Tensor | None,
    defaults: dict,
    special_tokens: dict,
    user: dict,
) -> Tensor:
    """Encode inputs once and run the search the options select; return token ids (B * R, L)."""
    options = resolve_options(defaults, special_tokens, user)
    probe_vocab = model.lm_head.out_features if hasattr(model, "lm_head") else None
    check_token_ids(options, probe_vocab)
    encoded = model.encode(inputs, attention_mask)
    check_finite(encoded.hidden, "the encoder output", encoded.padding_mask)
    batch = encoded.hidden.shape[0]
    repeat = options.num_beams if options.num_beams > 1 else options.num_return_sequences
    state = model.start_decoding(encoded, repeat, options.max_length)
    start = torch.full(
        (batch * repeat, 1), options.decoder_start_token_id, dtype=torch.long, device=inputs.device
    )
    chain = build_processors(options, probe_vocab, prompt_length=1)
    if options.num_beams > 1:
        return beam_search(model, state, start, options, chain)
    return greedy_search(model, state, start, options, chain)
