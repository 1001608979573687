"""speechseq: speech recognition and translation with encoder-decoder speech models."""

from .api import load_feature_extractor, load_model, load_processor, load_tokenizer
from .errors import AudioError, CheckpointError, InputError, NumericalError, SpeechSeqError, TokenizerError

__version__ = "0.1.0"


def load_audio(path, sampling_rate: int = 16000):
    """Decode an audio or video file to a mono float32 waveform at sampling_rate (see speechseq.audio.io)."""
    from .audio.io import load_audio as load

    return load(path, sampling_rate)


def __getattr__(name: str):
    # Model classes load on first use, so that `import speechseq` stays light.
    if name == "SpeechEncoderDecoder":
        from .models.speech_encoder_decoder import SpeechEncoderDecoderModel

        return SpeechEncoderDecoderModel
    if name in ("Transcriber", "Segment"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'speechseq' has no attribute {name!r}")


__all__ = [
    "AudioError",
    "CheckpointError",
    "InputError",
    "NumericalError",
    "SpeechEncoderDecoder",
    "Segment",
    "SpeechSeqError",
    "TokenizerError",
    "Transcriber",
    "load_audio",
    "load_feature_extractor",
    "load_model",
    "load_processor",
    "load_tokenizer",
]
