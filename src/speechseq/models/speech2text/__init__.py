"""fairseq S2T (transformers' Speech2TextForConditionalGeneration)."""

from .config import Speech2TextConfig
from .model import Speech2TextModel

__all__ = ["Speech2TextConfig", "Speech2TextModel"]
