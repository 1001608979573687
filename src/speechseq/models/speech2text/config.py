"""Speech2Text configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Speech2TextConfig:
    """Sizes and options of a fairseq S2T model; defaults are transformers' (the s2t-small shape)."""

    vocab_size: int = 10000  # output vocabulary
    d_model: int = 256  # model width
    encoder_layers: int = 12  # encoder depth
    encoder_ffn_dim: int = 2048  # encoder FFN inner width
    encoder_attention_heads: int = 4  # encoder heads
    decoder_layers: int = 6  # decoder depth
    decoder_ffn_dim: int = 2048  # decoder FFN inner width
    decoder_attention_heads: int = 4  # decoder heads
    activation_function: str = "relu"  # FFN activation
    dropout: float = 0.1  # residual and embedding dropout
    attention_dropout: float = 0.0  # attention-probability dropout
    activation_dropout: float = 0.0  # dropout after the FFN activation
    scale_embedding: bool = True  # multiply embeddings by sqrt(d_model)
    pad_token_id: int = 1  # padding id; also the padding index of the position tables
    bos_token_id: int = 0  # <s>
    eos_token_id: int = 2  # </s>
    decoder_start_token_id: int = 2  # fairseq starts decoding from </s>
    max_source_positions: int = 6000  # initial encoder position table size
    max_target_positions: int = 1024  # initial decoder position table size
    num_conv_layers: int = 2  # stride-2 conv layers in the subsampler
    conv_kernel_sizes: tuple[int, ...] = (5, 5)  # kernel of each conv layer
    conv_channels: int = 1024  # conv output channels before GLU (all but the last layer)
    input_feat_per_channel: int = 80  # mel bins
    input_channels: int = 1  # feature channels
    tie_word_embeddings: bool = True  # lm_head shares the decoder embedding
    extra: dict = field(
        default_factory=dict, compare=False
    )  # the rest of config.json, kept for save_pretrained

    def __post_init__(self):
        if len(self.conv_kernel_sizes) != self.num_conv_layers:
            raise ValueError(
                f"conv_kernel_sizes has {len(self.conv_kernel_sizes)} entries but num_conv_layers is {self.num_conv_layers}"
            )
        for name, heads in (
            ("encoder", self.encoder_attention_heads),
            ("decoder", self.decoder_attention_heads),
        ):
            if self.d_model % heads != 0:
                raise ValueError(f"d_model {self.d_model} is not divisible by {name}_attention_heads {heads}")
