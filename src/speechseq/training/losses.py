"""Training losses, kept out of the models so that mixes (CE + CTC) never touch a model's forward."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError


def out_of_range(ids: Tensor, size: int, ignore_index: int | None = None) -> int | None:
    """The first bad value of ids outside 0..size-1 (ignore_index aside): the smallest if negative, else the
    largest; None when every id is in range."""
    kept = ids if ignore_index is None else ids[ids != ignore_index]
    if not kept.numel():
        return None
    low, high = int(kept.min()), int(kept.max())
    return low if low < 0 else high if high >= size else None


def _check_labels(labels: Tensor, classes: int, what: str, ignore_index: int | None = None) -> None:
    """Refuse label ids outside 0..classes-1 (but ignore_index), naming them, before the loss indexes with them."""
    bad = out_of_range(labels, classes, ignore_index)
    if bad is not None:
        raise InputError(f"labels hold {bad}, not one of the {classes} {what} (0 to {classes - 1})")


def ctc_loss(
    logits: Tensor,
    labels: Tensor,
    logit_lengths: Tensor,
    blank: int,
    reduction: str = "mean",
    zero_infinity: bool = False,
    ignore_index: int = -100,
) -> Tensor:
    """CTC loss with transformers' conventions (`ForCTCLoss`).

    Args:
        logits: Frame scores (B, T, V); log-softmax is taken in float32 (ctc_loss has no half kernels).
        labels: Targets (B, U), right-padded with ignore_index or the blank id (a target never holds the blank).
        logit_lengths: Valid frames per item (B,).
        blank: The blank id (transformers uses pad_token_id).
        reduction: "mean" (each loss divided by its target length, then averaged), "sum" or "none".
        zero_infinity: Replace infinite losses (targets that cannot fit the frames) and their gradients by 0.
        ignore_index: Label value of padding.

    Returns:
        The reduced loss, or per-item losses (B,) for reduction "none".
    """
    labels = labels.to(logits.device)
    _check_labels(labels, logits.shape[-1], "vocabulary ids", ignore_index)
    keep = (labels != ignore_index) & (labels != blank)
    log_probs = nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    # cuDNN's CTC kernel accepts only some inputs and rounds differently; transformers turns it off too.
    with torch.backends.cudnn.flags(enabled=False):
        return nn.functional.ctc_loss(
            log_probs,
            labels.masked_select(keep),
            logit_lengths,
            keep.sum(-1),
            blank=blank,
            reduction=reduction,
            zero_infinity=zero_infinity,
        )


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of utterance logits (B, C) against class ids (B,), as transformers' classifiers."""
    _check_labels(labels, logits.shape[-1], "classes", -100)
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1).to(logits.device))


def frame_classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of frame logits (B, T, C) against one-hot frame labels (B, T, C), padded frames included.

    transformers' AudioFrameClassification takes the argmax of each label row as the class and does not mask
    padded frames; this keeps both choices so that losses agree.
    """
    classes = logits.shape[-1]
    targets = labels.reshape(-1, classes).argmax(dim=1).to(logits.device)
    return nn.functional.cross_entropy(logits.reshape(-1, classes), targets)


def am_softmax_loss(
    embeddings: Tensor, labels: Tensor, weight: Tensor, scale: float = 30.0, margin: float = 0.4
) -> Tensor:
    """Additive-margin softmax loss (Wang et al. 2018), transformers' AMSoftmaxLoss of the x-vector heads.

    Args:
        embeddings: Utterance vectors (B, E); transformers passes the x-vector head's logits.
        labels: Speaker ids (B,).
        weight: Class directions (E, C); columns are L2-normalised here.
        scale: Multiplier of the cosines (s).
        margin: Subtracted from the cosine of the true class (m).
    """
    labels = labels.flatten().to(embeddings.device)
    _check_labels(labels, weight.shape[1], "speakers")
    cosines = nn.functional.normalize(embeddings, dim=1) @ nn.functional.normalize(weight, dim=0)
    onehot = nn.functional.one_hot(labels, weight.shape[1]).bool()
    return nn.functional.cross_entropy(scale * torch.where(onehot, cosines - margin, cosines), labels)
