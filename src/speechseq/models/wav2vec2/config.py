"""Wav2Vec2 / HuBERT configuration: one dataclass for both, since they share the trunk."""

from __future__ import annotations

from dataclasses import dataclass, field

MODEL_TYPES = ("wav2vec2", "hubert")


@dataclass(frozen=True)
class Wav2Vec2Config:
    """Sizes and options of a wav2vec 2.0 or HuBERT model; defaults are transformers' (the base shape)."""

    model_type: str = "wav2vec2"  # "wav2vec2" or "hubert": picks the checkpoint prefix and config.json layout
    vocab_size: int = 32  # CTC output labels, blank included
    hidden_size: int = 768  # transformer width
    num_hidden_layers: int = 12  # transformer depth
    num_attention_heads: int = 12  # attention heads
    intermediate_size: int = 3072  # FFN inner width
    hidden_act: str = "gelu"  # FFN activation
    hidden_dropout: float = 0.1  # residual dropout, and dropout before the first layer
    activation_dropout: float = 0.1  # dropout after the FFN activation
    attention_dropout: float = 0.1  # attention-probability dropout
    feat_proj_dropout: float = 0.0  # dropout after the feature projection
    final_dropout: float = 0.1  # dropout before the CTC head
    layer_norm_eps: float = 1e-5  # eps of the projection and transformer LayerNorms
    feat_extract_norm: str = "group"  # "group" (GroupNorm on conv 0) or "layer" (LayerNorm after every conv)
    feat_extract_activation: str = "gelu"  # activation of the convs and of the positional conv
    conv_dim: tuple[int, ...] = (512,) * 7  # output channels of each waveform conv
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)  # stride of each waveform conv
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)  # kernel of each waveform conv
    conv_bias: bool = False  # whether the waveform convs have biases
    num_conv_pos_embeddings: int = 128  # kernel of the positional conv
    num_conv_pos_embedding_groups: int = 16  # groups of the positional conv
    conv_pos_batch_norm: bool = False  # HuBERT only: BatchNorm1d + plain kernel instead of weight norm
    feat_proj_layer_norm: bool = True  # LayerNorm before the feature projection (optional in HuBERT only)
    do_stable_layer_norm: bool = False  # pre-LN layers + final LayerNorm (large/lv60) instead of post-LN
    mask_time_prob: float = 0.05  # SpecAugment time masking; > 0 means the checkpoint has masked_spec_embed
    mask_feature_prob: float = 0.0  # SpecAugment channel masking; > 0 also means masked_spec_embed
    ctc_loss_reduction: str = "sum"  # "sum", "mean" (per target length, then batch) or "none"
    ctc_zero_infinity: bool = False  # zero infinite CTC losses (targets longer than the input)
    pad_token_id: int = 0  # padding id, also the CTC blank
    bos_token_id: int = 1  # <s>
    eos_token_id: int = 2  # </s>
    add_adapter: bool = False  # wav2vec2 only: shorten the encoder output with strided conv+GLU layers
    adapter_kernel_size: int = 3  # kernel of each adapter conv
    adapter_stride: int = 2  # stride of each adapter conv
    num_adapter_layers: int = 3  # adapter conv layers
    output_hidden_size: int | None = None  # adapter width; None means hidden_size
    extra: dict = field(default_factory=dict, compare=False)  # the rest of config.json, kept for saving

    def __post_init__(self):
        if self.output_hidden_size is None:
            object.__setattr__(self, "output_hidden_size", self.hidden_size)
        self._check_model_type()
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ValueError(
                f"conv_dim, conv_stride and conv_kernel must have one entry per conv layer, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)} and {len(self.conv_kernel)}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        for name, divisor in (
            ("num_attention_heads", self.num_attention_heads),
            ("num_conv_pos_embedding_groups", self.num_conv_pos_embedding_groups),
        ):
            if self.hidden_size % divisor != 0:
                raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {name} {divisor}")
        if self.ctc_loss_reduction not in ("sum", "mean", "none"):
            raise ValueError(f"ctc_loss_reduction must be sum, mean or none, got {self.ctc_loss_reduction!r}")

    def _check_model_type(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "wav2vec2" and (self.conv_pos_batch_norm or not self.feat_proj_layer_norm):
            raise ValueError("conv_pos_batch_norm and feat_proj_layer_norm=False exist only in HuBERT")
        if self.model_type == "hubert" and self.add_adapter:
            raise ValueError("HuBERT has no adapter (add_adapter)")

    @property
    def has_mask_embedding(self) -> bool:
        """Whether the checkpoint carries masked_spec_embed (transformers creates it when a mask prob > 0)."""
        return self.mask_time_prob > 0 or self.mask_feature_prob > 0

    @property
    def output_width(self) -> int:
        """Width of the encoder output: the adapter's when there is one."""
        return self.output_hidden_size if self.add_adapter else self.hidden_size

    @classmethod
    def base(cls, **overrides) -> Wav2Vec2Config:
        """facebook/wav2vec2-base-960h: 12 post-LN layers of 768, group-norm feature encoder."""
        return cls(**overrides)

    @classmethod
    def large_lv60(cls, **overrides) -> Wav2Vec2Config:
        """facebook/wav2vec2-large-960h-lv60-self: 24 stable-LN layers of 1024, layer-norm convs with biases."""
        large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
        stable = dict(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True)
        return cls(**large, **stable, **overrides)

    @classmethod
    def hubert_large(cls, **overrides) -> Wav2Vec2Config:
        """facebook/hubert-large-ls960-ft: the large_lv60 shape as a HuBERT model."""
        return cls.large_lv60(model_type="hubert", **overrides)
