"""A token decoder that cross-attends to encoder memory: embeddings, decoder layers, optional norms."""

from __future__ import annotations

import math

from torch import Tensor, nn

from . import native_decoder
from .cache import KVCache
from .transformer import DecoderLayer, LayerSpec, MemoryKV, build_memory, self_attention_mask


class TransformerDecoder(nn.Module):
    """Token embedding (scaled) + positions (+ optional embedding norm), N decoder layers, optional final norm.

    `positions` is any module called as positions(tokens, past_length) -> (B, T, D): padding-aware sinusoids
    (S2T, Speech2Text2) and learned tables (MBart, BERT, GPT-2) plug in here.
    """

    def __init__(
        self,
        vocab_size: int,
        spec: LayerSpec,
        num_layers: int,
        positions: nn.Module,
        pad_token_id: int | None,
        scale_embedding: bool,
        embedding_norm: bool = False,
        final_norm: bool = True,
    ):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, spec.d_model, padding_idx=pad_token_id)
        self.embed_scale = math.sqrt(spec.d_model) if scale_embedding else 1.0
        self.positions = positions
        self.embedding_norm = nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps) if embedding_norm else None
        self.dropout = nn.Dropout(spec.dropout)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps) if final_norm else None
        self.spec = spec

    def build_memory(self, memory: Tensor, padding_mask: Tensor | None) -> MemoryKV:
        """Precompute every layer's cross-attention keys/values from encoder output (B, S, D)."""
        return build_memory(self.layers, memory, padding_mask)

    def new_cache(self, batch_size: int, max_length: int, like: Tensor) -> KVCache:
        """Preallocate a self-attention cache for batch_size rows and max_length steps."""
        self.positions.reserve(max_length)  # a compiled step cannot grow (or check) positions as it goes
        heads = self.spec.num_heads
        return KVCache(len(self.layers), batch_size, heads, self.spec.d_model // heads, max_length, like)

    def forward(
        self,
        tokens: Tensor,
        memory: MemoryKV,
        cache: KVCache | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Decode tokens (B, T) to hidden states (B, T, D).

        Args:
            tokens: Token ids, (B, T); with a cache, the tokens after the cached ones.
            memory: Cross-attention keys/values from `build_memory`.
            cache: Self-attention cache, advanced by T on return.
            padding_mask: Decoder padding (True = pad), (B, T); full-sequence mode only.
        """
        past = cache.past if cache is not None else 0
        hidden = self.embed_tokens(tokens) * self.embed_scale + self.positions(tokens, past)
        if self.embedding_norm is not None:
            hidden = self.embedding_norm(hidden)
        hidden = self.dropout(hidden)
        mask = (
            None if cache is not None else self_attention_mask(padding_mask, tokens.shape[1], tokens.device)
        )
        stepped = None
        if isinstance(cache, KVCache) and tokens.shape[1] == 1 and not self.training:
            # One token per row: every layer in one native call, where it applies (nn/native_decoder.py).
            stepped = native_decoder.step(self, memory, hidden.contiguous(), cache)
        if stepped is not None:
            hidden = stepped
        else:
            for index, layer in enumerate(self.layers):
                hidden = layer(hidden, memory, index, mask, cache)
        if cache is not None:
            cache.advance(tokens.shape[1])
        return hidden if self.final_norm is None else self.final_norm(hidden)
