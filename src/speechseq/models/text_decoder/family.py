"""Load a pretrained decoder-only checkpoint as a cross-attending TextDecoder (the warm start of an encoder-decoder)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...checkpoints import StoredTensor, copy_weight, read_json, read_weights
from .checkpoint import KEY_MAPS, config_from_hf, from_loadable, to_loadable
from .config import TextDecoderConfig
from .model import TextDecoder


@dataclass
class LoadReport:
    """What a lenient load found, in the checkpoint's (transformers') names."""

    missing: list[str] = field(default_factory=list)  # weights the checkpoint lacks: newly initialised
    unexpected: list[str] = field(default_factory=list)  # checkpoint weights the model has no place for
    mismatched: list[str] = field(default_factory=list)  # same name, other shape: newly initialised


def load_pretrained(folder: Path) -> tuple[TextDecoder, LoadReport]:
    """Load a decoder checkpoint (Speech2Text2, MBart, BERT, GPT-2 causal LM or base model) with cross-attention.

    Weights the checkpoint lacks, typically the cross-attention of a model trained without it, are initialised
    the way transformers initialises them (normal(0, init_std/initializer_range), zero biases, unit norms) and
    listed in the report under transformers' names; checkpoint weights without a place are listed too.
    """
    raw = read_json(folder / "config.json")
    decoder = TextDecoder(config_from_hf(raw, str(folder / "config.json")))
    missing, report = _fill(decoder, read_weights(folder))
    _init_new(decoder, missing, raw.get("init_std", raw.get("initializer_range", 0.02)))
    report.missing = _upstream_names(decoder, missing)
    return decoder.eval(), report


def _fill(decoder: TextDecoder, state: dict[str, StoredTensor]) -> tuple[list[str], LoadReport]:
    """Copy the weights that fit; return our names of the parameters left unfilled, and the misfits."""
    key_map = KEY_MAPS[decoder.config.flavour]
    state = to_loadable(decoder.config.flavour, state)
    tied = {decoder.head_name} if decoder.config.tie_word_embeddings else set()
    for name in tied:  # the embedding wins over a stored head, as transformers ties after loading
        state.pop(key_map.to_upstream(name), None)
    ours, report, filled = decoder.state_dict(), LoadReport(), set()
    with torch.no_grad():
        for key, tensor in state.items():
            name = None if key_map.ignored(key) else key_map.to_ours(key)
            if name not in ours:
                report.unexpected += [] if key_map.ignored(key) else [key]
            elif ours[name].shape != tensor.shape:
                report.mismatched.append(
                    f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(ours[name].shape)}"
                )
            else:
                copy_weight(ours[name], tensor)
                filled.add(name)
    return [n for n in ours if n not in filled and n not in tied], report


def _upstream_names(decoder: TextDecoder, names: list[str]) -> list[str]:
    key_map = KEY_MAPS[decoder.config.flavour]
    params = decoder.state_dict()
    upstream = from_loadable(decoder.config.flavour, {key_map.to_upstream(n) or n: params[n] for n in names})
    return sorted(upstream)


def _init_new(decoder: TextDecoder, names: list[str], std: float) -> None:
    params = dict(decoder.named_parameters())
    with torch.no_grad():
        for name in names:
            param = params[name]
            if name.endswith("bias"):
                param.zero_()
            elif "norm" in name.rsplit(".", 2)[-2]:
                param.fill_(1.0)
            else:
                param.normal_(0.0, _std(decoder.config, name, std))


def _std(config: TextDecoderConfig, name: str, std: float) -> float:
    # GPT-2 scales every c_proj weight by 1/sqrt(2 * n_layer) (transformers' GPT2PreTrainedModel._init_weights).
    if config.flavour == "gpt2" and name.endswith(("out_proj.weight", "fc2.weight")):
        return std / math.sqrt(2 * config.num_layers)
    return std
