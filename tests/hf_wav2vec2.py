"""Build tiny random transformers Wav2Vec2 / HuBERT models and CTC checkpoints for the tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=40,
    conv_dim=(16, 16, 24),
    conv_stride=(5, 2, 2),
    conv_kernel=(10, 3, 3),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=4,
    vocab_size=32,
)
# Named variants: transformers class stem and config overrides.
VARIANTS = {
    "group_post_ln": ("Wav2Vec2", {}),
    "layer_stable_ln": (
        "Wav2Vec2",
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    ),
    "adapter_proj": ("Wav2Vec2", dict(add_adapter=True, output_hidden_size=24, num_adapter_layers=2)),
    "adapter_stable_odd_pos": (
        "Wav2Vec2",
        dict(
            add_adapter=True,
            num_adapter_layers=1,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
            num_conv_pos_embeddings=7,
            hidden_act="relu",
            feat_extract_activation="gelu_new",
        ),
    ),
    "hubert": ("Hubert", {}),
    "hubert_batch_norm_stable": (
        "Hubert",
        dict(
            conv_pos_batch_norm=True,
            feat_proj_layer_norm=False,
            do_stable_layer_norm=True,
            mask_time_prob=0.0,
        ),
    ),
}
# facebook/wav2vec2-base-960h's vocabulary.
LETTERS = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def make_model(folder, variant: str, head: str = "ctc", seed: int = 0, **overrides):
    """Create, perturb, save and return a transformers model (head "ctc", "base" or "pretraining") in eval mode."""
    import transformers

    stem, options = VARIANTS[variant]
    torch.manual_seed(seed)
    config = getattr(transformers, f"{stem}Config")(**{**TINY, **options, **overrides})
    suffix = {"ctc": "ForCTC", "base": "Model", "pretraining": "ForPreTraining"}[head]
    model = getattr(transformers, f"{stem}{suffix}")(config).eval()
    _perturb(model)
    model.save_pretrained(folder)
    return model


def _perturb(model) -> None:
    # Random norms, biases and running statistics, so that a misplaced or missing one changes the outputs.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
            elif "norm" in name and name.endswith("weight"):
                param.add_(torch.randn_like(param) * 0.2)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
        if hasattr(model, "lm_head"):
            model.lm_head.weight.mul_(8.0)  # confident labels, so argmax is not decided by rounding


def random_batch(lengths=(1600, 1203, 640), seed: int = 0):
    """Return zero-padded waveforms (B, N) and their attention mask (B, N)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        values[row, :length] = torch.randn(length, generator=generator)
        mask[row, :length] = 1
    return values, mask


def write_vocab(folder) -> Path:
    """Write the LibriSpeech letter vocab.json to folder and return its path."""
    path = Path(folder) / "vocab.json"
    path.write_text(json.dumps({token: index for index, token in enumerate(LETTERS)}), encoding="utf-8")
    return path


def make_ctc_checkpoint(
    folder, variant: str = "layer_stable_ln", with_mask: bool = True, seed: int = 0
) -> Path:
    """Save a tiny CTC model, Wav2Vec2CTCTokenizer and Wav2Vec2FeatureExtractor the way a hub checkpoint is laid out."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = make_model(folder, variant, seed=seed)
    with torch.no_grad():
        # Favour blanks and word delimiters, so that the text has repeats across blanks and several words.
        model.lm_head.bias[0] += 2.5
        model.lm_head.bias[4] += 1.3
    model.save_pretrained(folder)
    Wav2Vec2CTCTokenizer(str(write_vocab(folder))).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=with_mask).save_pretrained(folder)
    return folder
