"""SpeechEncoderDecoder configuration: an encoder config, a decoder config and the shared token ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..text_decoder.config import TextDecoderConfig
from .encoders import EncoderKind, encoder_kind

# fairseq dictionaries: <s> 0, <pad> 1, </s> 2; decoding starts from </s>.
_FAIRSEQ_IDS = dict(decoder_start_token_id=2, pad_token_id=1, bos_token_id=0, eos_token_id=2)


@dataclass(frozen=True)
class SpeechEncoderDecoderConfig:
    """Any supported speech encoder + any text decoder, bridged by a width projection when transformers has one."""

    encoder_type: str  # encoder model_type: wav2vec2, hubert or wav2vec2-bert
    encoder: Any  # that family's config (Wav2Vec2Config, Wav2Vec2BertConfig)
    decoder: TextDecoderConfig  # the decoder's layout and sizes
    decoder_start_token_id: int | None = None  # first decoder input; also used to shift labels
    pad_token_id: int | None = None  # replaces -100 in shifted labels; pads finished rows in generation
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    cross_attention_hidden_size: int | None = (
        None  # decoder option: no projection, cross-attend to this width
    )
    extra: dict = field(default_factory=dict, compare=False)  # the rest of config.json, kept for saving

    def __post_init__(self):
        width, hidden = self.encoder_output_width, self.encoder_hidden_size
        if self.cross_attention_hidden_size is not None and self.cross_attention_hidden_size != hidden:
            raise ValueError(
                f"the decoder's cross_attention_hidden_size ({self.cross_attention_hidden_size}) must equal the "
                f"encoder's hidden_size ({hidden})"
            )
        if self.has_projection and width != hidden:
            # transformers builds Linear(hidden_size, d_model) but feeds it output_hidden_size-wide states.
            raise ValueError(
                f"the encoder outputs {width}-wide states, but transformers' enc_to_dec_proj takes its hidden_size "
                f"({hidden}); this encoder/decoder pair cannot run"
            )
        if not self.has_projection and width != self.decoder.d_model:
            raise ValueError(
                f"the encoder outputs {width}-wide states, but the decoder cross-attends to {self.decoder.d_model}"
            )

    @classmethod
    def s2t_wav2vec2_large_en_de(cls) -> SpeechEncoderDecoderConfig:
        """facebook/s2t-wav2vec2-large-en-de: wav2vec2 large-lv60 + 7-layer Speech2Text2 (ARCHITECTURES.md §11)."""
        from ..wav2vec2 import Wav2Vec2Config

        decoder = TextDecoderConfig.speech_to_text_2(vocab_size=10224, num_layers=7)
        return cls("wav2vec2", Wav2Vec2Config.large_lv60(), decoder, **_FAIRSEQ_IDS)

    @classmethod
    def xls_r_300m_en_to_15(cls) -> SpeechEncoderDecoderConfig:
        """facebook/wav2vec2-xls-r-300m-en-to-15: XLS-R 300m with a 3-layer adapter + the MBart-50 decoder.

        Sizes as ARCHITECTURES.md §11 lists them; the vocabulary (250054) and the decoder activation are marked
        unverified there.
        """
        from ..wav2vec2 import Wav2Vec2Config

        encoder = Wav2Vec2Config.large_lv60(add_adapter=True, num_adapter_layers=3, output_hidden_size=1024)
        decoder = TextDecoderConfig.mbart(vocab_size=250054, scale_embedding=True, activation="relu")
        return cls("wav2vec2", encoder, decoder, **_FAIRSEQ_IDS)

    @property
    def kind(self) -> EncoderKind:
        return encoder_kind(self.encoder_type, "config")

    @property
    def encoder_hidden_size(self) -> int:
        return getattr(self.encoder, self.kind.hidden_size)

    @property
    def encoder_output_width(self) -> int:
        return getattr(self.encoder, self.kind.output_width)

    @property
    def has_projection(self) -> bool:
        """transformers' rule for enc_to_dec_proj: the encoder's output_hidden_size (even without an adapter)
        differs from the decoder width and the decoder sets no cross_attention_hidden_size."""
        declared = getattr(self.encoder, self.kind.declared_width)
        return declared != self.decoder.d_model and self.cross_attention_hidden_size is None
