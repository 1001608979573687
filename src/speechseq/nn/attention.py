"""Multi-head attention on scaled_dot_product_attention, for self- and cross-attention, with an optional cache."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.functional import scaled_dot_product_attention

from .cache import CacheView, KVCache
from .linear import Linear


class MultiHeadAttention(nn.Module):
    """BART-style attention: q/k/v/out projections, head_dim ** -0.5 scaling.

    Masks are boolean keep-masks broadcastable to (B, H, T, S) (True = attend), as SDPA takes them.
    """

    def __init__(
        self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True, kv_dim: int | None = None
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        kv_dim = kv_dim or d_model
        self.q_proj = Linear(d_model, d_model, bias=bias)
        self.k_proj = Linear(kv_dim, d_model, bias=bias)
        self.v_proj = Linear(kv_dim, d_model, bias=bias)
        self.out_proj = Linear(d_model, d_model, bias=bias)

    def _split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Project source states (B, S, D) to keys and values (B, H, S, Dh)."""
        return self._split(self.k_proj(source)), self._split(self.v_proj(source))

    def attend(
        self, hidden: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        """Attend from hidden (B, T, D) over keys/values (B, H, S, Dh); return (B, T, D)."""
        query = self._split(self.q_proj(hidden))
        dropout = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def forward(
        self,
        hidden: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | CacheView | None = None,
        layer: int = 0,
    ) -> Tensor:
        """Self-attention over hidden (B, T, D). With a cache, new keys/values are appended after the cached ones."""
        keys, values = self.project_kv(hidden)
        if cache is not None:
            keys, values = cache.update(layer, keys, values)
            mask, is_causal = cache.mask(hidden.shape[1]), False
        return self.attend(hidden, keys, values, mask, is_causal)
