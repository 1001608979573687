"""Exceptions raised by speechseq. Every user-facing failure is a SpeechSeqError with a message naming the problem."""


class SpeechSeqError(Exception):
    """Base class of every error speechseq raises on bad input, files or checkpoints."""


class AudioError(SpeechSeqError):
    """An audio file or array cannot be used (missing, empty, undecodable, wrong shape or rate)."""


class CheckpointError(SpeechSeqError):
    """A checkpoint folder, config or weight file is missing or does not fit the model."""


class TokenizerError(SpeechSeqError):
    """A tokenizer file is missing or unreadable."""


class InputError(SpeechSeqError):
    """Arguments given to a model, processor or search are invalid."""


class NumericalError(SpeechSeqError):
    """A model produced NaN or infinite values: weights that are not finite, or a float16 overflow."""


def check_finite(values, what: str, padding=None) -> None:
    """Raise NumericalError naming `what` when values (B, T, ...) hold NaN or infinity, instead of decoding them.

    `padding` (B, T), True at padded frames, leaves those frames out: only real frames are decoded.
    """
    import torch

    finite = torch.isfinite(values)
    if padding is not None:
        finite |= padding.view(*padding.shape, *[1] * (values.dim() - 2))
    bad = ~finite.flatten(1).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise NumericalError(
            f"{what} holds NaN or infinite values (batch row(s) {rows}): the checkpoint's weights are not "
            "finite, or float16 overflowed (try float32); decoding them would give empty or garbage text"
        )
