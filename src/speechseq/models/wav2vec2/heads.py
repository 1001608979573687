"""Models over the Wav2Vec2 / HuBERT trunk: the base model (encoder states) and the CTC model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...training.losses import ctc_loss
from ..protocols import EncoderOutput
from .config import Wav2Vec2Config
from .model import Wav2Vec2Encoder


@dataclass
class BaseOutput:
    """Encoder states of a base model."""

    last_hidden_state: Tensor  # (B, S, D)
    padding_mask: Tensor | None  # (B, S), True = pad; None without an attention mask


@dataclass
class CTCOutput:
    """Frame scores of a CTC model."""

    logits: Tensor  # (B, S, V), padded frames included
    lengths: Tensor  # (B,) valid frames
    loss: Tensor | None = None  # CTC loss when labels are given


class _Wav2Vec2Base(nn.Module):
    """Checks inputs, runs the trunk and saves; subclasses add the head."""

    main_input_name = "input_values"

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = config
        self.encoder = Wav2Vec2Encoder(config)

    @property
    def model_type(self) -> str:
        return self.config.model_type

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per output frame, adapter strides included (transformers' config value leaves them out)."""
        return self.encoder.stride

    def encode(self, inputs: Tensor, attention_mask: Tensor | None) -> EncoderOutput:
        """Encode raw samples (B, N), with an optional (B, N) mask of valid samples."""
        _check_waveform(inputs, attention_mask, self.encoder)
        dtype = next(self.parameters()).dtype
        return self.encoder(inputs.to(dtype), attention_mask)

    def save_pretrained(self, folder) -> None:
        """Write config.json and model.safetensors in transformers' layout."""
        from pathlib import Path

        from .family import save

        save(self, Path(folder))


class Wav2Vec2Model(_Wav2Vec2Base):
    """transformers' Wav2Vec2Model / HubertModel: encoder states, no head."""

    task = None

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> BaseOutput:
        encoded = self.encode(input_values, attention_mask)
        return BaseOutput(encoded.hidden, encoded.padding_mask)


class Wav2Vec2ForCTC(_Wav2Vec2Base):
    """transformers' Wav2Vec2ForCTC / HubertForCTC: a linear CTC head over every encoder frame."""

    task = "ctc"

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.ctc_head = nn.Linear(config.output_width, config.vocab_size)

    def forward(
        self, input_values: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None
    ) -> CTCOutput:
        """Return logits (B, S, V), valid frames (B,), and the CTC loss when labels (B, U) are given.

        Labels are right-padded with -100 (or the pad id); the loss follows config.ctc_loss_reduction and
        config.ctc_zero_infinity, with the pad id as blank, as in transformers.
        """
        if labels is not None and int(labels.max()) >= self.config.vocab_size:
            raise InputError(f"labels must be < vocab_size {self.config.vocab_size}, got {int(labels.max())}")
        logits = self.ctc_head(self.dropout(self.encode(input_values, attention_mask).hidden))
        lengths = self.encoder.output_lengths(_sample_lengths(input_values, attention_mask)).long()
        loss = None
        if labels is not None:
            config = self.config
            loss = ctc_loss(
                logits,
                labels,
                lengths,
                config.pad_token_id,
                config.ctc_loss_reduction,
                config.ctc_zero_infinity,
            )
        return CTCOutput(logits, lengths, loss)


def _sample_lengths(waveform: Tensor, attention_mask: Tensor | None) -> Tensor:
    if attention_mask is not None:
        return attention_mask.sum(-1)
    return torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long, device=waveform.device)


def _check_waveform(waveform: Tensor, attention_mask: Tensor | None, encoder: Wav2Vec2Encoder) -> None:
    if not isinstance(waveform, Tensor) or waveform.dim() != 2 or not waveform.is_floating_point():
        shape = tuple(waveform.shape) if isinstance(waveform, Tensor) else type(waveform).__name__
        raise InputError(f"input_values must be a float tensor of samples (B, N), got {shape}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(waveform.shape):
        raise InputError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_values {tuple(waveform.shape)}"
        )
    if waveform.shape[0] == 0 or waveform.shape[1] == 0:
        raise InputError(f"input_values is empty: shape {tuple(waveform.shape)}")
    samples = _sample_lengths(waveform, attention_mask)
    short = (encoder.frontend.output_lengths(samples) < 1).nonzero().flatten().tolist()
    if short:
        counts = [int(samples[i]) for i in short]
        raise InputError(
            f"clip(s) {short} have {counts} samples; the feature encoder needs at least "
            f"{encoder.frontend.receptive_field} for one frame"
        )
