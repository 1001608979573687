"""SpeechEncoderDecoder assembly: any speech encoder, an optional width projection, any text decoder."""

from __future__ import annotations

from torch import Tensor, nn

from ...errors import InputError
from ..protocols import EncoderOutput
from ..seq2seq import DecoderCacheState, Seq2SeqMixin, Seq2SeqOutput
from ..text_decoder import TextDecoder
from .config import SpeechEncoderDecoderConfig


class SpeechEncoderDecoderModel(Seq2SeqMixin, nn.Module):
    """transformers' SpeechEncoderDecoderModel: e.g. wav2vec2 + Speech2Text2 (facebook/s2t-wav2vec2-large-en-de)
    or wav2vec2 with adapter + MBart (facebook/wav2vec2-xls-r-300m-en-to-15)."""

    model_type = "speech-encoder-decoder"

    def __init__(
        self,
        config: SpeechEncoderDecoderConfig,
        generation_defaults: dict | None = None,
        encoder: nn.Module | None = None,
        decoder: TextDecoder | None = None,
    ):
        """Build the model; pass pretrained encoder and decoder modules to use them instead of new ones."""
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else config.kind.build(config.encoder)
        self.enc_to_dec_proj = (
            nn.Linear(config.encoder_hidden_size, config.decoder.d_model) if config.has_projection else None
        )
        self.decoder = decoder if decoder is not None else TextDecoder(config.decoder)
        self.generation_defaults = dict(generation_defaults or {})
        # Training and generation use the top-level ids, never the decoder's own (as transformers does).
        self.special_tokens = {
            "pad_token_id": config.pad_token_id,
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id,
            "decoder_start_token_id": config.decoder_start_token_id,
        }

    @property
    def lm_head(self) -> nn.Module:
        """The decoder's vocabulary head (what Seq2SeqMixin and the searches call)."""
        return self.decoder.lm_head

    @property
    def main_input_name(self) -> str:
        """The feature extractor output the encoder reads: input_values (wav2vec2) or input_features."""
        return self.encoder.main_input_name

    def encode(self, inputs: Tensor, attention_mask: Tensor | None) -> EncoderOutput:
        """Encode audio inputs; the padding mask is at the encoder's output rate (adapter included)."""
        encoded = self.encoder.encode(inputs, attention_mask)
        if self.enc_to_dec_proj is None:
            return encoded
        return EncoderOutput(self.enc_to_dec_proj(encoded.hidden), encoded.padding_mask)

    def start_decoding(self, encoded: EncoderOutput, repeat: int, max_length: int) -> DecoderCacheState:
        limit = self.decoder.max_length
        if limit is not None and max_length > limit:
            raise InputError(
                f"max_length {max_length} exceeds the {limit} positions this decoder has learned; ask for fewer tokens"
            )
        return super().start_decoding(encoded, repeat, max_length)

    def forward(
        self,
        inputs: Tensor | None = None,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        labels: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        input_values: Tensor | None = None,
        input_features: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced pass: logits (B, T, V), and the loss when labels (-100 = ignore) are given.

        Audio comes as `inputs`, or by its feature extractor's name (input_values or input_features). Without
        decoder_input_ids, the labels shifted right behind decoder_start_token_id are the decoder input.
        """
        given = [x for x in (inputs, input_values, input_features) if x is not None]
        if len(given) > 1:
            raise InputError("pass the audio once: as inputs, input_values or input_features")
        audio = given[0] if given else None
        return self.run(audio, attention_mask, decoder_input_ids, labels, decoder_attention_mask)

    @classmethod
    def from_encoder_decoder_pretrained(cls, encoder, decoder, output_loading_info: bool = False, **tokens):
        """Warm-start from a pretrained speech encoder and a pretrained text decoder (paths or hub ids).

        The decoder gains cross-attention; weights its checkpoint lacks are initialised as transformers does
        and reported (logged, and returned with output_loading_info=True) under transformers' names.

        Args:
            encoder: Encoder checkpoint (wav2vec2, HuBERT or Wav2Vec2-BERT, base or CTC model).
            decoder: Decoder checkpoint (Speech2Text2, MBart, BERT or GPT-2).
            output_loading_info: Also return a WarmStartReport.
            **tokens: Top-level decoder_start_token_id, pad_token_id, bos_token_id, eos_token_id.
        """
        from .family import warm_start

        model, report = warm_start(encoder, decoder, tokens)
        return (model, report) if output_loading_info else model
