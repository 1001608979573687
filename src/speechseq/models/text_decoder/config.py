"""Configuration of a cross-attending text decoder (Speech2Text2, MBart, BERT or GPT-2 layout)."""

from __future__ import annotations

from dataclasses import dataclass, field

FLAVOURS = ("speech_to_text_2", "mbart", "bert", "gpt2")


@dataclass(frozen=True)
class TextDecoderConfig:
    """Sizes and layout of one decoder; the presets give each upstream family's defaults."""

    flavour: str  # upstream family (its transformers model_type): speech_to_text_2, mbart, bert or gpt2
    vocab_size: int  # output vocabulary
    d_model: int  # model width
    num_layers: int  # decoder layers
    num_heads: int  # attention heads
    ffn_dim: int  # FFN inner width
    activation: str = "relu"  # FFN activation (and BERT's head transform)
    dropout: float = 0.1  # residual dropout
    embedding_dropout: float = 0.1  # dropout after the embeddings (GPT-2's embd_pdrop may differ)
    attention_dropout: float = 0.0  # attention-probability dropout
    activation_dropout: float = 0.0  # dropout after the FFN activation
    norm_first: bool = True  # pre-LN (MBart, GPT-2) or post-LN (Speech2Text2, BERT)
    layer_norm_eps: float = 1e-5  # every LayerNorm's epsilon
    scale_embedding: bool = False  # multiply token embeddings by sqrt(d_model)
    sinusoidal_positions: bool = False  # fairseq padding-aware sinusoids instead of a learned table
    max_positions: int = 1024  # learned table size (initial sinusoid table size)
    position_offset: int = 0  # unused leading rows of the learned table (MBart: 2)
    token_types: int = 0  # BERT token-type table size (type 0 is added everywhere), 0 for none
    embedding_norm: bool = False  # LayerNorm after the embeddings (MBart, BERT)
    final_norm: bool = False  # LayerNorm after the last layer (MBart, GPT-2)
    head_transform: bool = False  # BERT's dense + activation + LayerNorm before the vocabulary projection
    tie_word_embeddings: bool = True  # the vocabulary projection shares the token embedding
    pad_token_id: int | None = None  # padding id (padding index of embedding and sinusoids)
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    extra: dict = field(default_factory=dict, compare=False)  # the rest of config.json, kept for saving

    def __post_init__(self):
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown decoder flavour {self.flavour!r}; expected one of {FLAVOURS}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.sinusoidal_positions and self.pad_token_id is None:
            raise ValueError("sinusoidal positions need pad_token_id (their padding index)")

    @classmethod
    def speech_to_text_2(cls, **sizes) -> TextDecoderConfig:
        """Speech2Text2 (fairseq transformer decoder): post-LN, scaled embeddings, padding-aware sinusoids."""
        defaults = dict(vocab_size=10000, d_model=256, num_layers=6, num_heads=4, ffn_dim=2048)
        layout = dict(norm_first=False, scale_embedding=True, sinusoidal_positions=True, pad_token_id=1)
        layout.update(bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=False)
        return cls("speech_to_text_2", **{**defaults, **layout, **sizes})

    @classmethod
    def mbart(cls, **sizes) -> TextDecoderConfig:
        """MBart decoder: pre-LN, learned positions offset by 2, embedding LayerNorm, final LayerNorm."""
        defaults = dict(vocab_size=50265, d_model=1024, num_layers=12, num_heads=16, ffn_dim=4096)
        layout = dict(activation="gelu", position_offset=2, embedding_norm=True, final_norm=True)
        layout.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return cls("mbart", **{**defaults, **layout, **sizes})

    @classmethod
    def bert(cls, **sizes) -> TextDecoderConfig:
        """BERT as a decoder: post-LN, word + position + token-type embeddings with LayerNorm, MLM head."""
        defaults = dict(
            vocab_size=30522, d_model=768, num_layers=12, num_heads=12, ffn_dim=3072, max_positions=512
        )
        layout = dict(activation="gelu", attention_dropout=0.1, norm_first=False, layer_norm_eps=1e-12)
        layout.update(token_types=2, embedding_norm=True, head_transform=True, pad_token_id=0)
        return cls("bert", **{**defaults, **layout, **sizes})

    @classmethod
    def gpt2(cls, **sizes) -> TextDecoderConfig:
        """GPT-2 with cross-attention: pre-LN, learned positions, final LayerNorm, tied head."""
        defaults = dict(vocab_size=50257, d_model=768, num_layers=12, num_heads=12, ffn_dim=3072)
        layout = dict(activation="gelu_new", attention_dropout=0.1, final_norm=True)
        layout.update(bos_token_id=50256, eos_token_id=50256)
        return cls("gpt2", **{**defaults, **layout, **sizes})
