"""Self-attention with position terms: Shaw relative keys, Transformer-XL relative positions, rotary, or none.

Conformer encoders carry no absolute positions; each attention layer adds its own. The schemes differ in where
they act: rotary rotates the input of the query/key projections, the relative schemes add a bias to the
attention scores. A scheme is one small module per layer, injected into `RelativeSelfAttention`. Tables that
depend only on the sequence length (rotary angles, relative sinusoids) are built once per forward pass by
`position_table` and handed to every layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import scaled_dot_product_attention

POSITION_KINDS = ("relative_key", "relative", "rotary", None)


class PositionScheme(nn.Module):
    """No position terms: plain scaled dot-product attention. Subclasses override one or both hooks."""

    def rotate(self, hidden: Tensor, table: Tensor | None) -> Tensor:
        """Return the input of the query and key projections, (B, T, D)."""
        return hidden

    def score_bias(self, query: Tensor, table: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Return the query to score the keys with, (B, H, T, Dh), and an additive score bias (B, H, T, T)."""
        return query, None


class ShawRelativeKeys(PositionScheme):
    """Learned embeddings of clipped key-minus-query distances (Shaw et al. 2018), shared by all heads.

    Distances are clipped to [-left, right]: w2v-bert-2.0 looks 64 frames back and 8 ahead.
    """

    def __init__(self, head_dim: int, left: int, right: int):
        super().__init__()
        self.left, self.right = left, right
        self.distance_embedding = nn.Embedding(left + right + 1, head_dim)

    def score_bias(self, query: Tensor, table: Tensor | None) -> tuple[Tensor, Tensor]:
        length = query.shape[2]
        positions = torch.arange(length, device=query.device)
        distance = (positions[None, :] - positions[:, None]).clamp(-self.left, self.right) + self.left
        # Score each query against the left + right + 1 embeddings, then pick per key: the same dot products as
        # transformers' einsum over a (T, T, Dh) gathered table, without building that table.
        scores = query @ self.distance_embedding.weight.to(query.dtype).T
        bias = scores.gather(-1, distance.expand(*query.shape[:2], length, length))
        return query, bias * query.shape[-1] ** -0.5


class TransformerXLPositions(PositionScheme):
    """Projected sinusoids of query-minus-key distances with the u and v biases (Dai et al. 2019, sec. 3.3)."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = d_model // num_heads
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, head_dim))

    def score_bias(self, query: Tensor, table: Tensor | None) -> tuple[Tensor, Tensor]:
        if table is None:
            raise ValueError("Transformer-XL positions need the table from position_table('relative', ...)")
        length, head_dim = query.shape[2], query.shape[3]
        positions = self.linear_pos(table).unflatten(-1, (self.num_heads, head_dim)).permute(1, 2, 0)
        scores = (query + self.pos_bias_v[None, :, None, :]) @ positions
        # Row i of the table holds distance T-1-i; query i and key j are i - j apart. This is the "relative
        # shift" of Transformer-XL written as a gather.
        steps = torch.arange(length, device=query.device)
        index = (length - 1) - steps[:, None] + steps[None, :]
        bias = scores.gather(-1, index.expand(*query.shape[:2], length, length))
        return query + self.pos_bias_u[None, :, None, :], bias * head_dim**-0.5


class RotaryPositions(PositionScheme):
    """Rotary embeddings (Su et al. 2021) applied to the projections' input, per head, rotate-half convention.

    As in fairseq2's and transformers' conformers the rotation acts before the query/key projections, and
    values see the unrotated input.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads

    def rotate(self, hidden: Tensor, table: Tensor | None) -> Tensor:
        if table is None:
            raise ValueError("rotary positions need the table from position_table('rotary', ...)")
        cos, sin = table[0, :, None, :], table[1, :, None, :]
        heads = hidden.unflatten(-1, (self.num_heads, -1))
        half = heads.shape[-1] // 2
        first, second = heads[..., :half], heads[..., half:]
        rotated = heads * cos + torch.cat((-second, first), dim=-1) * sin
        return rotated.flatten(-2)


def build_position_scheme(
    kind: str | None, d_model: int, num_heads: int, left: int, right: int
) -> PositionScheme:
    """Return the per-layer scheme for a transformers `position_embeddings_type`."""
    if kind == "relative_key":
        return ShawRelativeKeys(d_model // num_heads, left, right)
    if kind == "relative":
        return TransformerXLPositions(d_model, num_heads)
    if kind == "rotary":
        return RotaryPositions(num_heads)
    if kind is None:
        return PositionScheme()
    raise ValueError(f"unknown position scheme {kind!r}; expected one of {POSITION_KINDS}")


def position_table(
    kind: str | None, length: int, width: int, like: Tensor, base: float = 10000.0
) -> Tensor | None:
    """Build the length-dependent table a scheme reads, once per forward pass.

    Args:
        kind: The scheme, as in `build_position_scheme`.
        length: Sequence length T.
        width: Head size for rotary, model width for relative.
        like: A tensor whose dtype and device the table takes.
        base: Rotary frequency base.

    Returns:
        Rotary: cos and sin, (2, T, Dh). Relative: sinusoids for distances T-1 down to 1-T, (2T-1, D).
        Otherwise None.
    """
    if kind == "rotary":
        inverse = 1.0 / (
            base ** (torch.arange(0, width, 2, dtype=torch.int64, device=like.device).float() / width)
        )
        angles = torch.arange(length, device=like.device).float()[:, None] * inverse
        angles = torch.cat((angles, angles), dim=-1)
        return torch.stack([angles.cos(), angles.sin()]).to(like.dtype)
    if kind == "relative":
        return relative_sinusoids(length, width, like.device).to(like.dtype)
    return None


def relative_sinusoids(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Interleaved sin/cos of distances T-1, ..., 1, 0, -1, ..., 1-T, (2T-1, dim) float32 (Transformer-XL)."""
    distances = torch.arange(length - 1, -length, -1, device=device).float()[:, None]
    frequencies = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() * -(math.log(10000.0) / dim)
    )
    table = torch.zeros(2 * length - 1, dim, device=device)
    table[:, 0::2] = torch.sin(distances * frequencies)
    table[:, 1::2] = torch.cos(distances * frequencies)
    return table


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention whose scores carry the terms of an injected position scheme.

    Scores are (Q K^T) / sqrt(Dh) plus the scheme's bias; padded keys get the dtype's lowest value, as
    transformers' additive masks do.
    """

    def __init__(self, d_model: int, num_heads: int, scheme: PositionScheme, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.positions = scheme

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, hidden: Tensor, keep: Tensor | None, table: Tensor | None = None) -> Tensor:
        """Attend over hidden (B, T, D).

        Args:
            hidden: Layer input, (B, T, D).
            keep: Keys that may be attended to, bool (B, 1, 1, T); None attends to all.
            table: The output of `position_table` for this scheme and length.
        """
        rotated = self.positions.rotate(hidden, table)
        query, key = self._split(self.q_proj(rotated)), self._split(self.k_proj(rotated))
        value = self._split(self.v_proj(hidden))
        query, bias = self.positions.score_bias(query, table)
        mask = keep
        if bias is not None:
            mask = bias if keep is None else bias.masked_fill(~keep, torch.finfo(bias.dtype).min)
        dropout = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).flatten(2))
