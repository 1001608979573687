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
