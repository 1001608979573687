"""Wav2Vec2-BERT configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...nn.relative import POSITION_KINDS
from ..heads import HEAD_KINDS


def _default_labels() -> dict[int, str]:
    return {0: "LABEL_0", 1: "LABEL_1"}


@dataclass(frozen=True)
class Wav2Vec2BertConfig:
    """Sizes and options of a Wav2Vec2-BERT model and its head; defaults are transformers' (w2v-bert-2.0 shape)."""

    d_model: int = 1024  # conformer width (hidden_size)
    num_layers: int = 24  # conformer layers
    num_heads: int = 16  # attention heads, in the conformer and the adapter
    ffn_dim: int = 4096  # FFN inner width, also of the adapter and the intermediate FFN
    input_dim: int = 160  # width of an input frame: two stacked 80-bin fbank frames
    activation: str = "swish"  # FFN and convolution-module activation
    position: str | None = "relative_key"  # position scheme: relative_key, relative, rotary or None
    left_max_position_embeddings: int = 64  # relative_key: left clipping distance
    right_max_position_embeddings: int = 8  # relative_key: right clipping distance
    rotary_embedding_base: int = 10000  # rotary: frequency base
    conv_depthwise_kernel_size: int = 31  # depthwise convolution kernel (odd)
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm
    hidden_dropout: float = 0.0  # on the stack input and FFN outputs
    activation_dropout: float = 0.0  # after FFN activations
    attention_dropout: float = 0.0  # on attention probabilities and outputs
    feat_proj_dropout: float = 0.0  # after the input projection
    conformer_conv_dropout: float = 0.1  # end of the convolution module; adapter attention output
    layerdrop: float = 0.1  # probability of skipping a layer in training
    final_dropout: float = 0.1  # before the CTC projection
    mask_time_prob: float = 0.05  # > 0 (or mask_feature_prob > 0): the checkpoint has masked_spec_embed
    mask_feature_prob: float = 0.0  # see mask_time_prob
    add_adapter: bool = False  # pool time with the conformer adapter after the encoder
    adapter_kernel_size: int = 3  # adapter convolution kernel
    adapter_stride: int = 2  # adapter pooling factor per layer
    num_adapter_layers: int = 1  # adapter layers
    adapter_act: str = "relu"  # adapter FFN activation
    use_intermediate_ffn_before_adapter: bool = False  # half-step ReLU FFN between encoder and adapter
    output_hidden_size: int | None = None  # adapter width; None means d_model
    head: str | None = None  # "ctc", "sequence_classification", "frame_classification", "xvector" or None
    vocab_size: int | None = None  # CTC vocabulary
    pad_token_id: int = 0  # CTC blank
    ctc_loss_reduction: str = "sum"  # "sum", "mean" or "none"
    ctc_zero_infinity: bool = False  # zero infinite CTC losses
    id2label: dict[int, str] = field(default_factory=_default_labels)  # class names of classification heads
    use_weighted_layer_sum: bool = False  # classification heads read a learned mix of all layer states
    classifier_proj_size: int = 768  # utterance classification: projection before pooling
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)  # x-vector TDNN widths
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)  # x-vector TDNN kernels
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)  # x-vector TDNN dilations
    xvector_output_dim: int = 512  # x-vector embedding width
    extra: dict = field(default_factory=dict, compare=False)  # the rest of config.json, kept for saving

    @classmethod
    def w2v_bert_2(cls) -> Wav2Vec2BertConfig:
        """facebook/w2v-bert-2.0: the pretrained encoder, no head."""
        return cls()

    @classmethod
    def w2v_bert_2_ctc(cls, vocab_size: int) -> Wav2Vec2BertConfig:
        """The usual CTC fine-tune of w2v-bert-2.0 (hf-audio/wav2vec2-bert-CV16-en): one adapter layer."""
        return cls(head="ctc", vocab_size=vocab_size, add_adapter=True, mask_time_prob=0.0)

    @property
    def adapter_width(self) -> int:
        """Width of the adapter and of the encoder output when there is an adapter."""
        return self.output_hidden_size or self.d_model

    @property
    def output_width(self) -> int:
        """Width of the encoder output (after the adapter, if any)."""
        return self.adapter_width if self.add_adapter else self.d_model

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def __post_init__(self):
        for name, width in (("d_model", self.d_model), ("output_hidden_size", self.adapter_width)):
            if width % self.num_heads != 0:
                raise ValueError(f"{name} {width} is not divisible by num_heads {self.num_heads}")
        if self.position not in POSITION_KINDS:
            raise ValueError(f"position_embeddings_type {self.position!r} is not one of {POSITION_KINDS}")
        if self.conv_depthwise_kernel_size % 2 == 0:
            raise ValueError(f"conv_depthwise_kernel_size must be odd, got {self.conv_depthwise_kernel_size}")
        if self.use_intermediate_ffn_before_adapter and not self.add_adapter:
            raise ValueError("use_intermediate_ffn_before_adapter needs add_adapter")
        self._check_head()

    def _check_head(self) -> None:
        if self.head not in (*HEAD_KINDS, None):
            raise ValueError(f"head {self.head!r} is not one of {HEAD_KINDS}")
        if self.head == "ctc" and not self.vocab_size:
            raise ValueError("a CTC head needs vocab_size")
        if self.head in ("sequence_classification", "frame_classification") and self.add_adapter:
            raise ValueError(f"the {self.head} head does not support the adapter (add_adapter)")
        if self.ctc_loss_reduction not in ("sum", "mean", "none"):
            raise ValueError(f"ctc_loss_reduction must be sum, mean or none, got {self.ctc_loss_reduction!r}")
        if not len(self.tdnn_dim) == len(self.tdnn_kernel) == len(self.tdnn_dilation):
            raise ValueError("tdnn_dim, tdnn_kernel and tdnn_dilation must have the same length")
        if self.head and self.head != "ctc" and not self.id2label:
            raise ValueError("a classification head needs at least one label in id2label")
