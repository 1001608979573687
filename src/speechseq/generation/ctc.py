"""Greedy CTC search: the best label of every frame, collapsed to text by the tokenizer, with times in seconds.

The collapse follows transformers' Wav2Vec2CTCTokenizer: repeats are grouped, then blanks dropped (so "A _ A"
is "AA"); with skip_special_tokens every special token, the blank included, is removed *before* grouping, so
"A _ A" becomes "A". transformers' ASR pipeline decodes CTC output with skip_special_tokens=False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor


class CTCTokenizer(Protocol):
    """What the search needs from a tokenizer (speechseq.text.ctc_vocab.Wav2Vec2CTCTokenizer has it)."""

    def decode_with_offsets(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Return an object with `text`, `char_offsets` and `word_offsets` (frame indices, end exclusive)."""
        ...


@dataclass
class TimedText:
    """A piece of text and the stretch of audio it was read from."""

    text: str
    start: float  # seconds
    end: float  # seconds, exclusive


@dataclass
class CTCTranscript:
    """The text of one clip with the time of every emitted token and word."""

    text: str
    tokens: list[TimedText]
    words: list[TimedText]


def greedy_ctc(scores: Tensor, lengths: Tensor | None = None) -> list[Tensor]:
    """Return the best label of every valid frame, one 1-D tensor per item.

    Args:
        scores: Log-probabilities or logits (B, T, V); both give the same argmax.
        lengths: Valid frames per item (B,); None means all T frames.
    """
    best = scores.argmax(dim=-1)
    if lengths is None:
        return list(best)
    return [row[:length] for row, length in zip(best, lengths.tolist(), strict=True)]


def ctc_transcripts(
    frame_ids: list[Tensor],
    tokenizer: CTCTokenizer,
    inputs_to_logits_ratio: int,
    sampling_rate: int,
    skip_special_tokens: bool = False,
) -> list[CTCTranscript]:
    """Collapse each item's frame labels to text and convert token and word offsets to seconds.

    Args:
        frame_ids: Best label per frame, as greedy_ctc returns them.
        tokenizer: Collapses frame labels to text and reports the frames of each character and word.
        inputs_to_logits_ratio: Input samples per output frame.
        sampling_rate: Input samples per second.
        skip_special_tokens: Remove special tokens, the blank included, before grouping repeats.
    """

    def timed(piece: dict, key: str) -> TimedText:
        # Multiply before dividing, as transformers' pipeline does, so that the floats agree.
        start = piece["start_offset"] * inputs_to_logits_ratio / sampling_rate
        return TimedText(piece[key], start, piece["end_offset"] * inputs_to_logits_ratio / sampling_rate)

    transcripts = []
    for ids in frame_ids:
        decoded = tokenizer.decode_with_offsets(ids, skip_special_tokens=skip_special_tokens)
        tokens = [timed(piece, "char") for piece in decoded.char_offsets]
        words = [timed(piece, "word") for piece in decoded.word_offsets]
        transcripts.append(CTCTranscript(decoded.text, tokens, words))
    return transcripts
