"""Build tiny random transformers models, save them as checkpoints, and hand both to tests."""

from __future__ import annotations

import torch

TINY_S2T = dict(
    vocab_size=97,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    conv_channels=48,
    input_feat_per_channel=80,
    max_source_positions=300,
    max_target_positions=80,
)


def make_s2t(folder, seed: int = 0, sharpen: float = 1.0, safe: bool = True, **overrides):
    """Create, save and return a random transformers Speech2TextForConditionalGeneration in eval mode.

    Args:
        sharpen: Scale of the output projection; > 1 spreads the logits so that no near-tie decides a token.
    """
    from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration

    torch.manual_seed(seed)
    config = Speech2TextConfig(**{**TINY_S2T, **overrides})
    model = Speech2TextForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                param.add_(torch.randn_like(param) * 0.1)
            elif name.endswith("bias"):
                param.normal_(0, 0.05)
            elif "encoder_attn.v_proj" in name or "encoder_attn.out_proj" in name:
                param.mul_(4.0)  # let the audio steer the decoder, so batch rows decode differently
        if sharpen != 1.0:
            if config.tie_word_embeddings:
                model.model.decoder.embed_tokens.weight.mul_(sharpen)
            else:
                model.lm_head.weight.mul_(sharpen)
    model.save_pretrained(folder)
    if not safe:
        # transformers 5 always writes safetensors; older releases wrote the whole state dict with torch.save.
        from pathlib import Path

        Path(folder, "model.safetensors").unlink()
        torch.save(model.state_dict(), Path(folder, "pytorch_model.bin"))
    return model


def random_features(lengths, num_features: int = 80, seed: int = 0):
    """Return padded features (B, T, F) and an attention mask for clips of the given frame counts."""
    generator = torch.Generator().manual_seed(seed)
    batch, longest = len(lengths), max(lengths)
    features = torch.zeros(batch, longest, num_features)
    mask = torch.zeros(batch, longest, dtype=torch.long)
    for row, length in enumerate(lengths):
        # A per-clip mean makes clips differ as wholes, so the decoder output depends on which clip it hears.
        offset = 2 * torch.randn(num_features, generator=generator)
        features[row, :length] = torch.randn(length, num_features, generator=generator) + offset
        mask[row, :length] = 1
    return features, mask
