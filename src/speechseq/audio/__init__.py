"""Audio input: file decoding, waveform checks and the feature extractors that feed the models."""

from .features import (
    SeamlessM4TFeatureExtractor,
    Speech2TextFeatureExtractor,
    Wav2Vec2FeatureExtractor,
    kaldi_fbank,
    load_feature_extractor,
    num_fbank_frames,
)
from .io import PreprocessorConfig, load_audio, validate_waveform

__all__ = [
    "PreprocessorConfig",
    "SeamlessM4TFeatureExtractor",
    "Speech2TextFeatureExtractor",
    "Wav2Vec2FeatureExtractor",
    "kaldi_fbank",
    "load_audio",
    "load_feature_extractor",
    "num_fbank_frames",
    "validate_waveform",
]
