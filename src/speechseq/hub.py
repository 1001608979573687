"""Resolve a local folder or a Hugging Face hub id to a local folder of checkpoint files."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

# Files speechseq may read from a checkpoint; weights of other frameworks (tf, flax, onnx) are never fetched.
_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.bin",
    "*.model",
    "*.txt",
    "*.safetensors.index.json",
    "*.bin.index.json",
]


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """Return a local folder holding the checkpoint named by a path or hub id.

    A path that exists is used as it is. Anything else is taken as a hub id and resolved with
    huggingface_hub, which honours HF_HUB_OFFLINE and the local cache (HF_HOME / HF_HUB_CACHE).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a checkpoint folder holding config.json")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not name.strip():
        raise CheckpointError(f"checkpoint folder {name!r} does not exist")
    return _snapshot(name)


def _snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError as error:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(
            f"cannot resolve hub id {repo_id!r}: huggingface_hub is not installed"
        ) from error
    try:
        # Prefer safetensors: .bin files are only fetched when no safetensors exist (checked after listing).
        folder = Path(
            snapshot_download(
                repo_id, allow_patterns=_PATTERNS, ignore_patterns=["*.bin", "*.bin.index.json"]
            )
        )
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo_id, allow_patterns=_PATTERNS))
    except HFValidationError as error:
        raise CheckpointError(f"{repo_id!r} is neither an existing folder nor a valid hub id") from error
    except Exception as error:  # network, missing repo, offline without cache: all become one clear message
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
        raise CheckpointError(
            f"cannot find checkpoint {repo_id!r} locally or on the hub{hint}: {error}"
        ) from error
    return folder
