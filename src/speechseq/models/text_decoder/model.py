"""A cross-attending text decoder: embeddings, decoder layers and a vocabulary head, in four upstream layouts."""

from __future__ import annotations

from torch import Tensor, nn

from ...nn.cache import KVCache
from ...nn.decoder import TransformerDecoder
from ...nn.embeddings import LearnedPositions
from ...nn.heads import TransformHead
from ...nn.positions import SinusoidalPositions
from ...nn.transformer import LayerSpec, MemoryKV
from .config import TextDecoderConfig


def _layer_spec(config: TextDecoderConfig) -> LayerSpec:
    return LayerSpec(
        d_model=config.d_model,
        num_heads=config.num_heads,
        ffn_dim=config.ffn_dim,
        activation=config.activation,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        norm_first=config.norm_first,
        layer_norm_eps=config.layer_norm_eps,
    )


def _positions(config: TextDecoderConfig) -> nn.Module:
    if config.sinusoidal_positions:
        return SinusoidalPositions(config.max_positions, config.d_model, config.pad_token_id)
    return LearnedPositions(config.max_positions, config.d_model, config.position_offset, config.token_types)


class TextDecoder(nn.Module):
    """transformers' Speech2Text2ForCausalLM, MBartForCausalLM, BertLMHeadModel or GPT2LMHeadModel with
    cross-attention, as one TransformerDecoder and a head; the config's flags select the layout.

    Called like TransformerDecoder (tokens, memory, cache) -> hidden states, so an encoder-decoder uses it as
    its decoder; `lm_head` turns hidden states into logits.
    """

    def __init__(self, config: TextDecoderConfig):
        super().__init__()
        self.config = config
        self.stack = TransformerDecoder(
            config.vocab_size,
            _layer_spec(config),
            config.num_layers,
            _positions(config),
            config.pad_token_id,
            config.scale_embedding,
            embedding_norm=config.embedding_norm,
            final_norm=config.final_norm,
        )
        if config.embedding_dropout != config.dropout:  # GPT-2's embd_pdrop may differ from its resid_pdrop
            self.stack.dropout = nn.Dropout(config.embedding_dropout)
        if config.head_transform:
            self.lm_head = TransformHead(
                config.d_model, config.vocab_size, config.activation, config.layer_norm_eps
            )
        else:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.tie_head()

    @property
    def projection(self) -> nn.Linear:
        """The layer of the head that maps to the vocabulary (the one tied to the token embedding)."""
        return self.lm_head.projection if isinstance(self.lm_head, TransformHead) else self.lm_head

    @property
    def head_name(self) -> str:
        """State-dict name of the projection weight (absent from checkpoints whose head is tied)."""
        return "lm_head.projection.weight" if self.config.head_transform else "lm_head.weight"

    @property
    def max_length(self) -> int | None:
        """Longest token sequence the positions allow, None when unlimited (sinusoids grow)."""
        return None if self.config.sinusoidal_positions else self.config.max_positions

    def tie_head(self) -> None:
        """Share the token embedding with the vocabulary projection."""
        self.projection.weight = self.stack.embed_tokens.weight

    def build_memory(self, memory: Tensor, padding_mask: Tensor | None) -> MemoryKV:
        """Precompute every layer's cross-attention keys/values from encoder states (B, S, D)."""
        return self.stack.build_memory(memory, padding_mask)

    def new_cache(self, batch_size: int, max_length: int, like: Tensor) -> KVCache:
        """Preallocate a self-attention cache for batch_size rows and max_length steps."""
        return self.stack.new_cache(batch_size, max_length, like)

    def forward(
        self,
        tokens: Tensor,
        memory: MemoryKV,
        cache: KVCache | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Decode tokens (B, T) to hidden states (B, T, D); see TransformerDecoder.forward."""
        return self.stack(tokens, memory, cache, padding_mask)

    def logits(
        self,
        tokens: Tensor,
        encoder_hidden: Tensor,
        encoder_padding_mask: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced pass: logits (B, T, V) for tokens (B, T) over encoder states (B, S, D).

        Args:
            tokens: Decoder input ids, (B, T).
            encoder_hidden: States to cross-attend to, (B, S, D).
            encoder_padding_mask: True at padded encoder states, (B, S).
            padding_mask: True at padded decoder tokens, (B, T).
        """
        memory = self.build_memory(encoder_hidden, encoder_padding_mask)
        return self.lm_head(self(tokens, memory, padding_mask=padding_mask))
