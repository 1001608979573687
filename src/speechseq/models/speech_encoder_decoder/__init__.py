"""SpeechEncoderDecoder: a wav2vec2 / HuBERT / Wav2Vec2-BERT encoder with a Speech2Text2, MBart, BERT or GPT-2 decoder."""

from .config import SpeechEncoderDecoderConfig
from .model import SpeechEncoderDecoderModel

__all__ = ["SpeechEncoderDecoderConfig", "SpeechEncoderDecoderModel"]
