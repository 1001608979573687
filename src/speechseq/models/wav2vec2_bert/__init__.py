"""Wav2Vec2-BERT (w2v-bert-2.0): conformer encoder on stacked fbank frames, with CTC and classification heads."""

from .config import Wav2Vec2BertConfig
from .model import Wav2Vec2BertEncoder, Wav2Vec2BertModel, Wav2Vec2BertOutput

__all__ = ["Wav2Vec2BertConfig", "Wav2Vec2BertEncoder", "Wav2Vec2BertModel", "Wav2Vec2BertOutput"]
