"""speechseq: speech recognition and translation with encoder-decoder speech models."""

from .api import load_feature_extractor, load_model, load_processor, load_tokenizer
from .errors import AudioError, CheckpointError, InputError, SpeechSeqError, TokenizerError

__version__ = "0.1.0"


def load_audio(path, sampling_rate: int = 16000):
    """Decode an audio or video file to a mono float32 waveform at sampling_rate (see speechseq.audio.io)."""
    from .audio.io import load_audio as load

    return load(path, sampling_rate)


__all__ = [
    "AudioError",
    "CheckpointError",
    "InputError",
    "SpeechSeqError",
    "TokenizerError",
    "load_audio",
    "load_feature_extractor",
    "load_model",
    "load_processor",
    "load_tokenizer",
]
