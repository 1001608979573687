"""Text decoders: transformers config.json and state-dict layouts <-> ours, one entry per upstream family.

Names are relative to the causal-LM class (Speech2Text2ForCausalLM, MBartForCausalLM, BertLMHeadModel,
GPT2LMHeadModel); inside a SpeechEncoderDecoderModel they carry a further `decoder.` prefix.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from ...errors import CheckpointError
from ...keymap import KeyMap, decoder_layer_rules
from .config import FLAVOURS, TextDecoderConfig

ARCHITECTURES = {
    "speech_to_text_2": "Speech2Text2ForCausalLM",
    "mbart": "MBartForCausalLM",
    "bert": "BertLMHeadModel",
    "gpt2": "GPT2LMHeadModel",
}
# The module every upstream weight lives under, added when a base-model checkpoint (BertModel, GPT2Model) lacks it.
BASE_PREFIX = {
    "speech_to_text_2": "model.decoder.",
    "mbart": "model.decoder.",
    "bert": "bert.",
    "gpt2": "transformer.",
}

# Our config field <- upstream config.json key. Absent keys keep the flavour preset's default.
_TOKENS = {k: k for k in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")}
_BART_FIELDS = {
    "vocab_size": "vocab_size",
    "d_model": "d_model",
    "num_layers": "decoder_layers",
    "num_heads": "decoder_attention_heads",
    "ffn_dim": "decoder_ffn_dim",
    "activation": "activation_function",
    "dropout": "dropout",
    "embedding_dropout": "dropout",
    "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout",
    "scale_embedding": "scale_embedding",
    **_TOKENS,
}
HF_FIELDS = {
    "speech_to_text_2": {**_BART_FIELDS, "max_positions": "max_target_positions"},
    "mbart": {
        **_BART_FIELDS,
        "max_positions": "max_position_embeddings",
        "tie_word_embeddings": "tie_word_embeddings",
    },
    "bert": {
        "vocab_size": "vocab_size",
        "d_model": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "ffn_dim": "intermediate_size",
        "activation": "hidden_act",
        "dropout": "hidden_dropout_prob",
        "embedding_dropout": "hidden_dropout_prob",
        "attention_dropout": "attention_probs_dropout_prob",
        "layer_norm_eps": "layer_norm_eps",
        "max_positions": "max_position_embeddings",
        "token_types": "type_vocab_size",
        "tie_word_embeddings": "tie_word_embeddings",
        **_TOKENS,
    },
    "gpt2": {
        "vocab_size": "vocab_size",
        "d_model": "n_embd",
        "num_layers": "n_layer",
        "num_heads": "n_head",
        "ffn_dim": "n_inner",
        "activation": "activation_function",
        "dropout": "resid_pdrop",
        "embedding_dropout": "embd_pdrop",
        "attention_dropout": "attn_pdrop",
        "layer_norm_eps": "layer_norm_epsilon",
        "max_positions": "n_positions",
        "tie_word_embeddings": "tie_word_embeddings",
        **_TOKENS,
    },
}
# What transformers leaves out of a checkpoint whose head is tied to the token embedding (the tie's targets).
TIED_KEYS = {
    "speech_to_text_2": ("lm_head.weight",),
    "mbart": ("lm_head.weight",),
    "bert": ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"),
    "gpt2": ("lm_head.weight",),
}
# Upstream options whose other values change the computation in ways we do not model.
_REQUIRED = {
    "bert": {"position_embedding_type": "absolute"},
    "gpt2": {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False},
}


def _bart_rules(prefix: str) -> list[tuple[str, str]]:
    return [
        (f"{prefix}embed_tokens.", "stack.embed_tokens."),
        (f"{prefix}embed_positions.", "stack.positions."),
        (f"{prefix}layernorm_embedding.", "stack.embedding_norm."),
        *decoder_layer_rules(prefix, "stack."),
        (f"{prefix}layer_norm.", "stack.final_norm."),
        ("lm_head.", "lm_head."),
    ]


def _bert_rules() -> list[tuple[str, str]]:
    up, us = "bert.encoder.layer.{i}.", "stack.layers.{i}."
    rules = [
        ("bert.embeddings.word_embeddings.", "stack.embed_tokens."),
        # Before the position rule, which would otherwise claim stack.positions.token_types when saving.
        ("bert.embeddings.token_type_embeddings.", "stack.positions.token_types."),
        ("bert.embeddings.position_embeddings.", "stack.positions."),
        ("bert.embeddings.LayerNorm.", "stack.embedding_norm."),
    ]
    for upstream, ours in (("attention.", "self_attn"), ("crossattention.", "cross_attn")):
        rules += [(f"{up}{upstream}self.{name}.", f"{us}{ours}.{proj}_proj.") for name, proj in _QKV]
        rules += [(f"{up}{upstream}output.dense.", f"{us}{ours}.out_proj.")]
        rules += [(f"{up}{upstream}output.LayerNorm.", f"{us}{ours}_block.norm.")]
    return rules + [
        (f"{up}intermediate.dense.", f"{us}ffn.fc1."),
        (f"{up}output.dense.", f"{us}ffn.fc2."),
        (f"{up}output.LayerNorm.", f"{us}ffn_block.norm."),
        ("cls.predictions.transform.dense.", "lm_head.dense."),
        ("cls.predictions.transform.LayerNorm.", "lm_head.norm."),
        ("cls.predictions.decoder.", "lm_head.projection."),
    ]


_QKV = (("query", "q"), ("key", "k"), ("value", "v"))


def _gpt2_rules() -> list[tuple[str, str]]:
    # attn.{q,k,v} and crossattention.{k,v} are the fused c_attn weights after _split_gpt2 (Conv1D -> Linear).
    up, us = "transformer.h.{i}.", "stack.layers.{i}."
    return [
        ("transformer.wte.", "stack.embed_tokens."),
        ("transformer.wpe.", "stack.positions."),
        (f"{up}ln_1.", f"{us}self_attn_block.norm."),
        *[(f"{up}attn.{p}.", f"{us}self_attn.{p}_proj.") for p in "qkv"],
        (f"{up}attn.c_proj.", f"{us}self_attn.out_proj."),
        (f"{up}ln_cross_attn.", f"{us}cross_attn_block.norm."),
        (f"{up}crossattention.q_attn.", f"{us}cross_attn.q_proj."),
        *[(f"{up}crossattention.{p}.", f"{us}cross_attn.{p}_proj.") for p in "kv"],
        (f"{up}crossattention.c_proj.", f"{us}cross_attn.out_proj."),
        (f"{up}ln_2.", f"{us}ffn_block.norm."),
        (f"{up}mlp.c_fc.", f"{us}ffn.fc1."),
        (f"{up}mlp.c_proj.", f"{us}ffn.fc2."),
        ("transformer.ln_f.", "stack.final_norm."),
        ("lm_head.", "lm_head."),
    ]


KEY_MAPS = {
    # Releases up to 4.50 stored the sinusoid table as a parameter; it is recomputed, never loaded.
    "speech_to_text_2": KeyMap(_bart_rules("model.decoder."), ignore=[r"embed_positions\.weights$"]),
    "mbart": KeyMap(_bart_rules("model.decoder.")),
    # cls.predictions.bias is the head bias only while tied to ...decoder.bias (to_loadable moves it there);
    # old releases stored position_ids.
    "bert": KeyMap(_bert_rules(), ignore=[r"cls\.predictions\.bias$", r"embeddings\.position_ids$"]),
    # Old GPT-2 checkpoints store the causal-mask buffers attn.bias / attn.masked_bias.
    "gpt2": KeyMap(_gpt2_rules(), ignore=[r"\.(attn|crossattention)\.(masked_)?bias$"]),
}


def config_from_hf(raw: dict, path: str = "config.json") -> TextDecoderConfig:
    """Build our decoder config from a transformers decoder config.json dict (or a SED `decoder` section)."""
    flavour = raw.get("model_type")
    if flavour not in FLAVOURS:
        raise CheckpointError(
            f"{path}: decoder model_type {flavour!r} is not supported; supported: {list(FLAVOURS)}"
        )
    for key, wanted in _REQUIRED.get(flavour, {}).items():
        if raw.get(key, wanted) != wanted:
            raise CheckpointError(f"{path}: {flavour} decoders with {key}={raw[key]!r} are not supported")
    values = {ours: raw[up] for ours, up in HF_FIELDS[flavour].items() if up in raw}
    values = {k: v for k, v in values.items() if v is not None or k in _TOKENS}
    if flavour == "gpt2":
        values.setdefault("ffn_dim", 4 * values.get("d_model", 768))
    if isinstance(values.get("eos_token_id"), list):
        values["eos_token_id"] = values["eos_token_id"][0]
    extra = {k: v for k, v in raw.items() if k not in set(HF_FIELDS[flavour].values())}
    try:
        return getattr(TextDecoderConfig, flavour)(**values, extra=extra)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid {flavour} decoder config: {error}") from error


def config_to_hf(config: TextDecoderConfig) -> dict:
    """Return a decoder config.json dict that transformers' causal-LM class builds with cross-attention."""
    raw = {k: v for k, v in config.extra.items() if k != "transformers_version"}
    raw.update({up: getattr(config, ours) for ours, up in HF_FIELDS[config.flavour].items()})
    raw.update(model_type=config.flavour, architectures=[ARCHITECTURES[config.flavour]])
    raw.update(is_decoder=True, add_cross_attention=True, tie_word_embeddings=config.tie_word_embeddings)
    return raw


_CONV1D = re.compile(r"\.(attn|crossattention|mlp)\.\w+\.weight$")
_FUSED = re.compile(r"\.(attn|crossattention)\.c_attn\.(weight|bias)$")
_PARTS = {"attn": "qkv", "crossattention": "kv"}


def to_loadable(flavour: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Bring upstream decoder weights into the layout KEY_MAPS[flavour] names.

    Adds the base-model prefix a BertModel/GPT2Model checkpoint lacks, renames BERT's legacy LayerNorm
    gamma/beta, takes MBart's shared embedding as the decoder's, and turns GPT-2's Conv1D (in, out) weights
    into Linear (out, in) ones with c_attn split into its q/k/v parts.
    """
    prefix = BASE_PREFIX[flavour]
    heads = ("cls.", "lm_head.")
    if not any(key.startswith((prefix, *heads)) for key in state):
        state = {prefix + key: tensor for key, tensor in state.items()}
    if flavour == "bert":
        state = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k): v for k, v in state.items()}
        state = {re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k): v for k, v in state.items()}
        if "cls.predictions.bias" in state and "cls.predictions.decoder.bias" not in state:
            # Saved tied, the head bias is stored once, under the name it is tied from.
            state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    if flavour == "mbart" and "model.shared.weight" in state:
        # MBartForConditionalGeneration checkpoints may keep the token embedding only as the shared table.
        state = {"model.decoder.embed_tokens.weight": state["model.shared.weight"], **state}
        del state["model.shared.weight"]
    if (
        flavour == "speech_to_text_2"
        and "lm_head.weight" not in state
        and f"{prefix}embed_tokens.weight" in state
    ):
        # The head is untied (section 8.4); a checkpoint saved with a tied one stores only the embedding.
        state = {**state, "lm_head.weight": state[f"{prefix}embed_tokens.weight"]}
    return _split_gpt2(state) if flavour == "gpt2" else state


def from_loadable(flavour: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Invert to_loadable's layout change: GPT-2 fuses q/k/v back into c_attn (Linear -> Conv1D); BERT stores
    the head bias under both of its names, as a tied transformers model has it."""
    if flavour == "bert" and "cls.predictions.decoder.bias" in state:
        return {**state, "cls.predictions.bias": state["cls.predictions.decoder.bias"].clone()}
    return _fuse_gpt2(state) if flavour == "gpt2" else state


def _split_gpt2(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, tensor in state.items():
        tensor = tensor.t() if _CONV1D.search(key) else tensor
        fused = _FUSED.search(key)
        if fused is None:
            out[key] = tensor
            continue
        parts = _PARTS[fused[1]]
        for part, piece in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
            out[f"{key[: fused.start()]}.{fused[1]}.{part}.{fused[2]}"] = piece
    return out


def _fuse_gpt2(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out, fused = {}, {}
    for key, tensor in state.items():
        part = re.search(r"\.(attn|crossattention)\.([qkv])\.(weight|bias)$", key)
        if part is None:
            out[key] = tensor
        else:
            fused.setdefault(f"{key[: part.start()]}.{part[1]}.c_attn.{part[3]}", {})[part[2]] = tensor
    for key, parts in fused.items():
        kind = "attn" if ".attn.c_attn." in key else "crossattention"
        out[key] = torch.cat([parts[p] for p in _PARTS[kind]], dim=0)
    return {k: (v.t() if _CONV1D.search(k) else v).contiguous() for k, v in out.items()}
