"""A processor pairs a checkpoint's feature extractor (audio -> model inputs) with its tokenizer (ids <-> text)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

_TEXT_ONLY = ("add_special_tokens", "truncation", "max_length")  # processor options only the tokenizer takes
_SHARED = ("padding", "return_tensors")  # processor options both take


class Processor:
    """transformers-style processor: `processor(audio, sampling_rate=16000)` -> dict of tensors; decode text."""

    def __init__(self, feature_extractor, tokenizer):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    def __call__(self, audio=None, sampling_rate: int | None = None, text=None, **kwargs) -> dict:
        """Extract features from audio and/or tokenize text (returned as "labels" beside the features).

        As in transformers, `padding` and `return_tensors` apply to both, `add_special_tokens`, `truncation`
        and `max_length` to the text, and every other option to the feature extractor.
        """
        if audio is None and text is None:
            raise InputError("pass audio, text or both to the processor")
        text_options = {key: kwargs.pop(key) for key in _TEXT_ONLY if key in kwargs}
        text_options.update({key: kwargs[key] for key in _SHARED if key in kwargs})
        if audio is None:
            unused = sorted(set(kwargs) - set(_SHARED))
            if unused or sampling_rate is not None:
                raise InputError(
                    f"options {unused or ['sampling_rate']} apply to audio, but only text was given"
                )
            return self.tokenizer(text, **text_options)
        inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, **kwargs)
        if text is not None:
            inputs["labels"] = self.tokenizer(text, **text_options)["input_ids"]
        return inputs

    def decode(self, ids, skip_special_tokens: bool = False, **kwargs) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    def save_pretrained(self, folder) -> None:
        """Write the feature extractor's and the tokenizer's files to folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.feature_extractor.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
