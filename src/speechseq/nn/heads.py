"""Output heads that turn decoder states into vocabulary logits."""

from __future__ import annotations

from torch import Tensor, nn

from .activations import get_activation


class TransformHead(nn.Module):
    """Dense -> activation -> LayerNorm, then the vocabulary projection (BERT's masked-LM prediction head).

    Args:
        d_model: Width of the decoder states.
        vocab_size: Output vocabulary.
        activation: Activation name of the transform.
        layer_norm_eps: Epsilon of the transform's LayerNorm.
    """

    def __init__(self, d_model: int, vocab_size: int, activation: str, layer_norm_eps: float):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.activation = get_activation(activation)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.projection = nn.Linear(d_model, vocab_size)

    @property
    def out_features(self) -> int:
        return self.projection.out_features

    def forward(self, hidden: Tensor) -> Tensor:
        """Return logits (..., V) for hidden states (..., D)."""
        return self.projection(self.norm(self.activation(self.dense(hidden))))
