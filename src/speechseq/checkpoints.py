"""Read checkpoint weights safely and load them through a key map with a readable report of what does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .keymap import KeyMap

SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
PT_SINGLE, PT_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def read_json(path: Path) -> dict:
    """Read a JSON object, naming the file in every error."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def weight_files(folder: Path) -> list[Path]:
    """Return the weight files of a checkpoint: safetensors first, pickled .bin only when no safetensors exist."""
    for single, index in ((SAFE_SINGLE, SAFE_INDEX), (PT_SINGLE, PT_INDEX)):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            shards = sorted(set(read_json(folder / index).get("weight_map", {}).values()))
            missing = [name for name in shards if not (folder / name).is_file()]
            if missing or not shards:
                raise CheckpointError(
                    f"{folder / index} names shards that are missing: {missing or 'none listed'}"
                )
            return [folder / name for name in shards]
    raise CheckpointError(
        f"no weights in {folder}: expected {SAFE_SINGLE}, {SAFE_INDEX}, {PT_SINGLE} or {PT_INDEX}"
    )


def read_weights(folder: Path) -> dict[str, Tensor]:
    """Read every tensor of a checkpoint folder into one dict (CPU)."""
    state: dict[str, Tensor] = {}
    for path in weight_files(folder):
        state.update(_read_file(path))
    return state


def _read_file(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # Pickled checkpoints may carry code; weights_only refuses anything but tensors and plain containers.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read weights from {path}: {error}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def load_into(model: nn.Module, state: dict[str, Tensor], key_map: KeyMap, source: str, optional=()) -> None:
    """Rename upstream weights with key_map and copy them into model, or raise listing every misfit.

    Args:
        model: The freshly built model.
        state: Upstream tensors by upstream name.
        key_map: Upstream <-> our names.
        source: The checkpoint folder, for messages.
        optional: Our parameter names that may be absent (tied heads).
    """
    ours = model.state_dict()
    renamed, unexpected = {}, []
    for key, tensor in state.items():
        if key_map.ignored(key):
            continue
        name = key_map.to_ours(key)
        (unexpected.append(key) if name is None or name not in ours else renamed.__setitem__(name, tensor))
    missing = [key_map.to_upstream(n) or n for n in ours if n not in renamed and n not in optional]
    shapes = [
        f"{key_map.to_upstream(n) or n}: checkpoint {tuple(t.shape)}, config expects {tuple(ours[n].shape)}"
        for n, t in renamed.items()
        if tuple(t.shape) != tuple(ours[n].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(_misfit_report(source, missing, unexpected, shapes))
    with torch.no_grad():
        for name, tensor in renamed.items():
            ours[name].copy_(tensor)


def _misfit_report(source: str, missing: list, unexpected: list, shapes: list) -> str:
    def section(title: str, items: list) -> str:
        shown = "\n    ".join(items[:12]) + (
            f"\n    ... and {len(items) - 12} more" if len(items) > 12 else ""
        )
        return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

    return (
        f"weights in {source} do not fit its config.json"
        + section("missing from the checkpoint", missing)
        + section("in the checkpoint but not in the model", unexpected)
        + section("shape mismatch", shapes)
    )


def save_weights(model: nn.Module, key_map: KeyMap, path: Path, skip=()) -> None:
    """Write the model's weights under upstream names to a safetensors file (shared tensors written once)."""
    from safetensors.torch import save_file

    state = {}
    for name, tensor in model.state_dict().items():
        if name in skip:
            continue
        upstream = key_map.to_upstream(name)
        if upstream is None:
            raise CheckpointError(f"no upstream name for parameter {name}; the key map is incomplete")
        state[upstream] = tensor.detach().contiguous().cpu()
    save_file(state, str(path), metadata={"format": "pt"})
