"""Cross-attending text decoders in the layouts of Speech2Text2, MBart, BERT and GPT-2."""

from .config import TextDecoderConfig
from .model import TextDecoder

__all__ = ["TextDecoder", "TextDecoderConfig"]
