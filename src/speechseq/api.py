"""Entry points: load a model, feature extractor or processor from a folder or hub id."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoints import read_json
from .errors import CheckpointError, InputError
from .hub import resolve_checkpoint
from .models.registry import get_family

# Generation keys that legacy config.json files carry (transformers reads them when generation_config.json is absent).
_GENERATION_KEYS = (
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "early_stopping",
    "length_penalty",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "num_return_sequences",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
)
_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def load_model(name_or_path, device=None, dtype=None, compile: bool = False) -> nn.Module:
    """Load the model a checkpoint's config.json names (model_type), with its weights, in eval mode.

    Args:
        name_or_path: A local checkpoint folder or a Hugging Face hub id.
        device: Where to put the model ("cpu", "cuda", torch.device); default CPU.
        dtype: "float32" (default), "float16", "bfloat16", a torch dtype, or "int8": float32 with every
            linear layer dynamically quantized to int8 (CPU only; about 4x less weight memory to read).
        compile: Run the decoding steps of an encoder-decoder as compiled graphs (torch inductor; CPU,
            float32, a C++ compiler on PATH). Each new batch shape compiles first, tens of seconds on a small
            CPU; README, Performance.
    """
    if device is not None:
        check_device(device)
    folder = resolve_checkpoint(name_or_path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json; is it a transformers checkpoint folder?")
    raw = read_json(config_path)
    family = get_family(raw.get("model_type"), str(config_path))
    model = family.load(folder, raw, generation_defaults(folder, raw))
    model = _quantize(model, device) if dtype == "int8" else model.to(device=device, dtype=_dtype(dtype))
    if compile:
        if not hasattr(model, "compile_decoder"):
            raise InputError(
                f"compile speeds up the decoding loop of encoder-decoder models; {raw.get('model_type')} "
                "has none"
            )
        model.compile_decoder()
    return model


def check_device(device, name: str = "device") -> None:
    """Refuse a device torch cannot parse or this machine lacks, with a message naming `name` (an option)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"{name} {device!r} is not a device torch knows (cpu, cuda, cuda:1, ...)") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{name} {device}: this torch build or machine has no CUDA GPU")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{name} {device}: MPS is not available on this machine")


def _quantize(model: nn.Module, device) -> nn.Module:
    if device is not None and torch.device(device).type != "cpu":
        raise InputError(f"dtype='int8' (dynamic quantization) runs on CPU only, not on {device}")
    from .nn.quantize import quantize_linear_layers

    return quantize_linear_layers(model)


def generation_defaults(folder: Path, raw: dict) -> dict:
    """Return generation defaults as transformers finds them: generation_config.json, else config.json."""
    path = folder / "generation_config.json"
    if path.is_file():
        return read_json(path)
    found = {key: raw[key] for key in _GENERATION_KEYS if raw.get(key) is not None}
    decoder = raw.get("decoder") if isinstance(raw.get("decoder"), dict) else {}
    for key in _GENERATION_KEYS:
        if key not in found and decoder.get(key) is not None:
            found[key] = decoder[key]
    return found


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES) + ['int8']}")
    return _DTYPES[dtype]


def load_feature_extractor(name_or_path):
    """Load the feature extractor described by a checkpoint's preprocessor_config.json."""
    from .audio.features import load_feature_extractor as load

    return load(resolve_checkpoint(name_or_path))


def load_tokenizer(name_or_path):
    """Load the tokenizer of a checkpoint folder or hub id."""
    from .text.loading import load_tokenizer as load

    return load(resolve_checkpoint(name_or_path))


def load_processor(name_or_path):
    """Load the feature extractor and tokenizer of a checkpoint as one Processor."""
    from .processor import Processor

    folder = resolve_checkpoint(name_or_path)
    return Processor(load_feature_extractor(folder), load_tokenizer(folder))
