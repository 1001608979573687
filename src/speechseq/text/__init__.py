"""Tokenizers of the speech models, identical in ids and text to transformers' classes."""

from .base import AddedToken, Tokenizer
from .bpe import Speech2Text2Tokenizer
from .ctc_vocab import CTCDecoding, Wav2Vec2CTCTokenizer
from .loading import load_tokenizer
from .sentencepiece import Speech2TextTokenizer

__all__ = [
    "AddedToken",
    "CTCDecoding",
    "Speech2Text2Tokenizer",
    "Speech2TextTokenizer",
    "Tokenizer",
    "Wav2Vec2CTCTokenizer",
    "load_tokenizer",
]
