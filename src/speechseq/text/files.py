"""Reading and writing the files of a tokenizer folder, with errors that name the file and folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import TokenizerError

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
# Named special-token keys in transformers' order; all_special_tokens and new ids follow this order.
SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_ADDED_TOKEN_FIELDS = ("content", "special", "lstrip", "rstrip", "single_word", "normalized")


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, raising TokenizerError that names the file and its folder."""
    if not path.is_file():
        raise TokenizerError(f"{what} file {path.name!r} not found in {str(path.parent)!r}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerError(
            f"cannot read {what} file {path.name!r} in {str(path.parent)!r}: {error}"
        ) from error


def write_json(path: Path, data: Any, **options: Any) -> None:
    """Write JSON as transformers does (UTF-8, trailing newline)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, **options) + "\n")


def token_content(value: Any) -> str | None:
    """Return the text of a special token given as a string or as a serialised AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def read_tokenizer_config(folder: Path) -> dict[str, Any]:
    """Read the settings transformers would load from a tokenizer folder.

    tokenizer_config.json is read first; when it has no `added_tokens_decoder` the legacy files
    special_tokens_map.json and added_tokens.json are merged in, as transformers does.
    """
    config = read_json(folder / CONFIG_FILE, "tokenizer config") if (folder / CONFIG_FILE).is_file() else {}
    if not isinstance(config, dict):
        raise TokenizerError(f"{CONFIG_FILE} in {str(folder)!r} does not hold a JSON object")
    added = {int(i): _token_fields(t) for i, t in config.get("added_tokens_decoder", {}).items()}
    if not added and (folder / SPECIAL_TOKENS_FILE).is_file():
        special_map = read_json(folder / SPECIAL_TOKENS_FILE, "special tokens map")
        if not isinstance(special_map, dict):
            raise TokenizerError(f"{SPECIAL_TOKENS_FILE} in {str(folder)!r} does not hold a JSON object")
        config.update({key: value for key, value in special_map.items() if value is not None})
    if not added and (folder / ADDED_TOKENS_FILE).is_file():
        named = {token_content(config.get(key)) for key in SPECIAL_TOKEN_KEYS}
        named |= set(extra_tokens(config))
        for content, index in read_json(folder / ADDED_TOKENS_FILE, "added tokens").items():
            special = content in named
            added[int(index)] = {"content": content, "special": special, "normalized": not special}
    config["added_tokens_decoder"] = added
    return config


def _token_fields(token: Any) -> dict[str, Any]:
    if isinstance(token, str):
        return {"content": token}
    return {key: token[key] for key in _ADDED_TOKEN_FIELDS if key in token}


def extra_tokens(config: dict[str, Any]) -> list[str]:
    """Return the extra special tokens of a config (5.x extra_special_tokens, 4.x additional_special_tokens)."""
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    return [token_content(token) for token in extra] if isinstance(extra, list) else []


def require_files(folder: Path, names: Iterable[str]) -> list[Path]:
    """Return folder/name for each name, raising TokenizerError that lists every missing file."""
    paths = [folder / name for name in names]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise TokenizerError(f"tokenizer file(s) {', '.join(missing)} not found in {str(folder)!r}")
    return paths


def common_options(config: dict[str, Any], token_keys: Iterable[str]) -> dict[str, Any]:
    """Pick the settings every tokenizer takes from a config read by read_tokenizer_config.

    Args:
        config: The merged tokenizer settings.
        token_keys: The special-token keys (e.g. "bos_token") the tokenizer class takes.

    Returns:
        Keyword options: the special tokens present, extra_special_tokens, added_tokens (id -> AddedToken
        fields), model_max_length and clean_up_tokenization_spaces.
    """
    return {
        **{key: token_content(config[key]) for key in token_keys if key in config},
        "extra_special_tokens": extra_tokens(config),
        "added_tokens": config.get("added_tokens_decoder") or {},
        "model_max_length": config.get("model_max_length"),
        "clean_up_tokenization_spaces": bool(config.get("clean_up_tokenization_spaces", False)),
    }
