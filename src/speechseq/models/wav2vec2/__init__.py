"""wav2vec 2.0 and HuBERT (transformers' Wav2Vec2Model / Wav2Vec2ForCTC, HubertModel / HubertForCTC)."""

from .config import Wav2Vec2Config
from .heads import Wav2Vec2ForCTC, Wav2Vec2Model
from .model import Wav2Vec2Encoder

__all__ = ["Wav2Vec2Config", "Wav2Vec2Encoder", "Wav2Vec2ForCTC", "Wav2Vec2Model"]
