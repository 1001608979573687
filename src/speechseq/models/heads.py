"""Task heads over a speech encoder: CTC, utterance and frame classification, x-vectors (transformers' semantics).

The heads are family-agnostic. An encoder hands them `EncoderStates`; `build_head` reads the head fields of a
config by their transformers names (vocab_size, id2label, use_weighted_layer_sum, classifier_proj_size,
tdnn_*, xvector_output_dim, final_dropout, pad_token_id, ctc_loss_reduction, ctc_zero_infinity), which the
Wav2Vec2, HuBERT and Wav2Vec2-BERT configs share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..training.losses import am_softmax_loss, classification_loss, ctc_loss, frame_classification_loss

HEAD_KINDS = ("ctc", "sequence_classification", "frame_classification", "xvector")


@dataclass
class EncoderStates:
    """What an encoder hands to a head."""

    hidden: Tensor  # (B, T, D) final output
    padding_mask: Tensor | None  # (B, T) True = pad, at the rate of `hidden`; None when nothing is padded
    layers: list[Tensor] | None = None  # input of the first layer and every layer's output, for weighted sums
    # (B,) output frames of each item by transformers' length rule, from its valid input frames (all of them
    # without a mask). Heads count frames with it as transformers does, also where an adapter's real output
    # is shorter or longer, and over the pre-adapter states a weighted layer sum reads. None: hidden's length.
    lengths: Tensor | None = None


def rule_lengths(states: EncoderStates, frames: int) -> Tensor:
    """Frames per item that transformers counts, capped at the `frames` there are."""
    lengths = (
        states.lengths if states.lengths is not None else valid_lengths(states.padding_mask, states.hidden)
    )
    return lengths.clamp(max=frames)


@dataclass
class HeadOutput:
    """A head's result; `loss` is set when labels were given."""

    logits: Tensor  # CTC / frame: (B, T, C); utterance: (B, C); x-vector: (B, E)
    loss: Tensor | None = None
    embeddings: Tensor | None = None  # x-vector speaker embeddings (B, E)


def valid_lengths(padding_mask: Tensor | None, hidden: Tensor) -> Tensor:
    """Return valid frames per item (B,) from a padding mask, or the full length when there is none."""
    if padding_mask is None:
        return torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long, device=hidden.device)
    return (~padding_mask).sum(dim=1)


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum of all layer states (SUPERB's learnable layer weighting)."""

    def __init__(self, num_states: int):
        super().__init__()
        self.weights = nn.Parameter(torch.full((num_states,), 1.0 / num_states))

    def forward(self, layers: list[Tensor] | None) -> Tensor:
        """Combine num_states tensors (B, T, D) into one (B, T, D)."""
        if layers is None or len(layers) != self.weights.shape[0]:
            found = "none" if layers is None else len(layers)
            raise ValueError(f"weighted layer sum expects {self.weights.shape[0]} layer states, got {found}")
        weights = nn.functional.softmax(self.weights, dim=-1)
        return (torch.stack(layers, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)


def _select(states: EncoderStates, layer_sum: WeightedLayerSum | None) -> Tensor:
    return states.hidden if layer_sum is None else layer_sum(states.layers)


def _check_classes(labels: Tensor, num_labels: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise InputError(
            f"labels must be class ids in [0, {num_labels - 1}], got values up to {int(labels.max())}"
        )


class CTCHead(nn.Module):
    """Dropout and a linear map to the vocabulary, for every frame; the blank is pad_token_id."""

    def __init__(
        self, d_model: int, vocab_size: int, dropout: float, blank: int, reduction: str, zero_infinity: bool
    ):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, vocab_size)
        self.blank, self.reduction, self.zero_infinity = blank, reduction, zero_infinity

    def forward(self, states: EncoderStates, labels: Tensor | None = None) -> HeadOutput:
        """Return logits (B, T, V) and, for labels (B, U) padded with -100, the CTC loss."""
        logits = self.proj(self.dropout(states.hidden))
        if labels is None:
            return HeadOutput(logits)
        if labels.numel() and int(labels.max()) >= self.proj.out_features:
            raise InputError(
                f"label values must be < vocab_size {self.proj.out_features}, got {int(labels.max())}"
            )
        # transformers counts frames by its length rule even without a mask (from every input frame).
        lengths = rule_lengths(states, logits.shape[1])
        loss = ctc_loss(logits, labels, lengths, self.blank, self.reduction, self.zero_infinity)
        return HeadOutput(logits, loss)


class SequenceClassificationHead(nn.Module):
    """Project every frame, average the valid frames, classify the utterance."""

    def __init__(self, d_model: int, proj_dim: int, num_labels: int, num_states: int | None):
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_states) if num_states else None
        self.projector = nn.Linear(d_model, proj_dim)
        self.classifier = nn.Linear(proj_dim, num_labels)

    def forward(self, states: EncoderStates, labels: Tensor | None = None) -> HeadOutput:
        """Return logits (B, C) and, for class ids (B,), the mean cross-entropy."""
        hidden = self.projector(_select(states, self.layer_sum))
        if states.padding_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            hidden = hidden.masked_fill(states.padding_mask[..., None], 0.0)
            pooled = hidden.sum(dim=1) / (~states.padding_mask).sum(dim=1, keepdim=True)
        logits = self.classifier(pooled)
        if labels is None:
            return HeadOutput(logits)
        _check_classes(labels, self.classifier.out_features)
        return HeadOutput(logits, classification_loss(logits, labels))


class FrameClassificationHead(nn.Module):
    """Classify every frame (speaker diarization style)."""

    def __init__(self, d_model: int, num_labels: int, num_states: int | None):
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_states) if num_states else None
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, states: EncoderStates, labels: Tensor | None = None) -> HeadOutput:
        """Return logits (B, T, C) and, for one-hot frame labels (B, T, C), the cross-entropy."""
        logits = self.classifier(_select(states, self.layer_sum))
        if labels is None:
            return HeadOutput(logits)
        if labels.shape[-1] != logits.shape[-1] or labels.numel() != logits.numel():
            raise InputError(
                f"frame labels must be one-hot with shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        return HeadOutput(logits, frame_classification_loss(logits, labels))


class XVectorHead(nn.Module):
    """TDNN layers, mean + std statistics pooling, then the embedding and its classifier (Snyder et al. 2018).

    The TDNN weights are stored as transformers stores them, one Linear (out, kernel * in) per layer, and used
    as a dilated convolution.
    """

    def __init__(
        self,
        d_model: int,
        tdnn_dims: tuple[int, ...],
        kernels: tuple[int, ...],
        dilations: tuple[int, ...],
        xvector_dim: int,
        num_labels: int,
        num_states: int | None,
    ):
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_states) if num_states else None
        self.projector = nn.Linear(d_model, tdnn_dims[0])
        inputs = (tdnn_dims[0], *tdnn_dims[:-1])
        self.tdnn = nn.ModuleList(
            nn.Linear(i * k, o) for i, o, k in zip(inputs, tdnn_dims, kernels, strict=True)
        )
        self.kernels, self.dilations = tuple(kernels), tuple(dilations)
        self.feature_extractor = nn.Linear(2 * tdnn_dims[-1], xvector_dim)
        self.classifier = nn.Linear(xvector_dim, xvector_dim)
        # The AM-softmax class directions: used by the loss only, never for the logits.
        self.objective_weight = nn.Parameter(torch.randn(xvector_dim, num_labels))

    def _tdnn(self, hidden: Tensor) -> Tensor:
        hidden = hidden.transpose(1, 2)
        for layer, kernel, dilation in zip(self.tdnn, self.kernels, self.dilations, strict=True):
            weight = layer.weight.view(layer.out_features, kernel, -1).transpose(1, 2)
            hidden = torch.relu(nn.functional.conv1d(hidden, weight, layer.bias, dilation=dilation))
        return hidden.transpose(1, 2)

    def pooled_lengths(self, lengths: Tensor) -> Tensor:
        """Frames pooled per item: L - k + 1 per layer, ignoring dilation as transformers does."""
        for kernel in self.kernels:
            lengths = lengths - kernel + 1
        return lengths

    def label_scores(self, logits: Tensor) -> Tensor:
        """Cosine of each item's logits (B, E) with each class direction: (B, C), the AM-softmax scores."""
        directions = nn.functional.normalize(self.objective_weight, dim=0)
        return nn.functional.normalize(logits, dim=1) @ directions.to(logits.dtype)

    def forward(self, states: EncoderStates, labels: Tensor | None = None) -> HeadOutput:
        """Return logits (B, E), embeddings (B, E) and, for speaker ids (B,), the AM-softmax loss."""
        hidden = _select(states, self.layer_sum)
        frames = hidden.shape[1] - sum(d * (k - 1) for k, d in zip(self.kernels, self.dilations, strict=True))
        # Without a mask every frame counts; with one, the rule's count, covering only the frames there are.
        lengths = self.pooled_lengths(rule_lengths(states, hidden.shape[1]))
        lengths = (
            lengths.clamp(max=frames) if states.padding_mask is not None else torch.full_like(lengths, frames)
        )
        if int(lengths.min()) < 2:
            raise InputError(
                f"audio too short for the x-vector head: {max(int(lengths.min()), 0)} frame(s) after the TDNN "
                "layers, and a standard deviation needs 2"
            )
        hidden = self._tdnn(self.projector(hidden))
        embeddings = self.feature_extractor(_mean_and_std(hidden, lengths))
        logits = self.classifier(embeddings)
        if labels is None:
            return HeadOutput(logits, embeddings=embeddings)
        _check_classes(labels, self.objective_weight.shape[1])
        return HeadOutput(logits, am_softmax_loss(logits, labels, self.objective_weight), embeddings)


def _mean_and_std(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Concatenate the mean and the unbiased std over the first lengths[b] frames: (B, T, D) -> (B, 2D)."""
    keep = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None])[..., None]
    count = lengths[:, None].to(hidden.dtype)
    mean = hidden.masked_fill(~keep, 0.0).sum(dim=1) / count
    squares = (hidden - mean[:, None]).masked_fill(~keep, 0.0).square().sum(dim=1)
    return torch.cat([mean, (squares / (count - 1)).sqrt()], dim=-1)


def build_head(kind: str | None, config, d_model: int, num_states: int) -> nn.Module | None:
    """Build the head `kind` names from a config's transformers-named head fields.

    Args:
        kind: One of HEAD_KINDS, or None for no head.
        config: A family config with the head fields listed in the module docstring.
        d_model: Width of the encoder output the head reads.
        num_states: Number of layer states, for heads with use_weighted_layer_sum.
    """
    if kind is None:
        return None
    weighted = num_states if getattr(config, "use_weighted_layer_sum", False) else None
    num_labels = len(getattr(config, "id2label", {}))
    if kind == "ctc":
        return CTCHead(
            d_model,
            config.vocab_size,
            config.final_dropout,
            config.pad_token_id,
            config.ctc_loss_reduction,
            config.ctc_zero_infinity,
        )
    if kind == "sequence_classification":
        return SequenceClassificationHead(d_model, config.classifier_proj_size, num_labels, weighted)
    if kind == "frame_classification":
        return FrameClassificationHead(d_model, num_labels, weighted)
    if kind == "xvector":
        return XVectorHead(
            d_model,
            config.tdnn_dim,
            config.tdnn_kernel,
            config.tdnn_dilation,
            config.xvector_output_dim,
            num_labels,
            weighted,
        )
    raise ValueError(f"unknown head {kind!r}; expected one of {HEAD_KINDS}")
