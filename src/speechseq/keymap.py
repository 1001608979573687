"""Checkpoint key maps written as data: ordered (upstream template, our template) prefix pairs.

A template is a dotted prefix where `{i}` stands for a layer number, e.g.
("model.encoder.layers.{i}.fc1.", "encoder.stack.layers.{i}.ffn.fc1."). The same rules rename in both
directions, so loading and saving cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)"))


def _fill(template: str, numbers: tuple[str, ...]) -> str:
    for number in numbers:
        template = template.replace("{i}", number, 1)
    return template


@dataclass
class KeyMap:
    """Prefix renames between an upstream state dict and ours."""

    rules: list[tuple[str, str]]
    ignore: list[str] = field(default_factory=list)  # upstream regexes of keys that are derived, never loaded

    def to_ours(self, key: str) -> str | None:
        """Return our name for an upstream key, or None when no rule matches."""
        return self._rename(key, 0, 1)

    def to_upstream(self, key: str) -> str | None:
        """Return the upstream name of one of our keys, or None when no rule matches."""
        return self._rename(key, 1, 0)

    def ignored(self, key: str) -> bool:
        return any(re.search(pattern, key) for pattern in self.ignore)

    def _rename(self, key: str, source: int, target: int) -> str | None:
        for rule in self.rules:
            match = _compile(rule[source]).match(key)
            if match:
                return _fill(rule[target], match.groups()) + key[match.end() :]
        return None


def decoder_layer_rules(upstream: str, ours: str) -> list[tuple[str, str]]:
    """Rules for BART-style decoder layers (self_attn, encoder_attn, fc1/fc2 and their norms)."""
    up, us = f"{upstream}layers.{{i}}.", f"{ours}layers.{{i}}."
    return [
        (f"{up}self_attn.", f"{us}self_attn."),
        (f"{up}self_attn_layer_norm.", f"{us}self_attn_block.norm."),
        (f"{up}encoder_attn.", f"{us}cross_attn."),
        (f"{up}encoder_attn_layer_norm.", f"{us}cross_attn_block.norm."),
        (f"{up}fc1.", f"{us}ffn.fc1."),
        (f"{up}fc2.", f"{us}ffn.fc2."),
        (f"{up}final_layer_norm.", f"{us}ffn_block.norm."),
    ]


def encoder_layer_rules(upstream: str, ours: str) -> list[tuple[str, str]]:
    """Rules for BART-style encoder layers (self_attn, fc1/fc2 and their norms)."""
    return [rule for rule in decoder_layer_rules(upstream, ours) if "encoder_attn" not in rule[0]]
