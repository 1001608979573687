"""Write a tiny random Speech2Text checkpoint (model, tokenizer, feature extractor) and a test recording.

It is saved by transformers itself, exactly as a hub checkpoint is laid out, so the README's commands and
the end-to-end tests can run without network access. Needs the dev extra (transformers, sentencepiece).

    python scripts/make_tiny_checkpoint.py demo            # -> demo/model/, demo/tone.wav
    python scripts/make_tiny_checkpoint.py demo --multilingual
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

WORDS = [
    "the",
    "a",
    "speech",
    "model",
    "hears",
    "words",
    "and",
    "writes",
    "them",
    "down",
    "quickly",
    "while",
    "people",
    "talk",
    "about",
    "it",
]
LANGS = ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]


def _train_tokenizer(folder: Path, multilingual: bool) -> int:
    """Train a small sentencepiece BPE model and write vocab.json in fairseq order; return the vocab size."""
    import sentencepiece as spm

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12))) for _ in range(300)]
    (folder / "corpus.txt").write_text("\n".join(corpus), encoding="utf-8")
    options = dict(
        input=str(folder / "corpus.txt"),
        model_prefix=str(folder / "spm"),
        vocab_size=80,
        model_type="bpe",
        minloglevel=2,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
    )
    if multilingual:
        options["user_defined_symbols"] = [f"<lang:{code}>" for code in LANGS]
    spm.SentencePieceTrainer.train(**options)
    (folder / "corpus.txt").unlink()
    model = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    vocab = {model.id_to_piece(i): i for i in range(model.get_piece_size())}
    vocab.update({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3})
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "spm.model").rename(folder / "sentencepiece.bpe.model")
    (folder / "spm.vocab").unlink()
    return len(vocab)


def make_checkpoint(folder: Path, multilingual: bool = False, seed: int = 0) -> Path:
    """Create folder/ with config.json, model.safetensors, tokenizer and preprocessor files."""
    from transformers import (
        Speech2TextConfig,
        Speech2TextFeatureExtractor,
        Speech2TextForConditionalGeneration,
        Speech2TextTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _train_tokenizer(folder, multilingual)
    tokenizer = Speech2TextTokenizer(
        str(folder / "vocab.json"),
        str(folder / "sentencepiece.bpe.model"),
        do_lower_case=True,
        lang_codes="mustc" if multilingual else None,
    )
    tokenizer.save_pretrained(folder)
    Speech2TextFeatureExtractor().save_pretrained(folder)
    torch.manual_seed(seed)
    config = Speech2TextConfig(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        conv_channels=48,
        max_source_positions=3000,
        max_target_positions=200,
        tie_word_embeddings=False,
    )
    model = Speech2TextForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(
            20.0
        )  # confident random predictions, so decoding is not decided by near-ties
        model.lm_head.weight[2].mul_(0.55)  # and eos competes with the other tokens
        for layer in model.model.decoder.layers:
            layer.encoder_attn.v_proj.weight.mul_(4.0)  # let the audio steer the text
    model.generation_config.max_length = 40
    model.generation_config.num_beams = 3
    model.save_pretrained(folder)
    return folder


def make_recording(path: Path, seconds: float = 2.0, rate: int = 16000, seed: int = 0) -> Path:
    """Write a mono wav of two tones and a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * (330 + 50 * seed) * t) + noise
    sf.write(path, wave.astype(np.float32), rate)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write model/ and tone.wav")
    parser.add_argument(
        "--multilingual", action="store_true", help="a MuST-C style tokenizer with <lang:xx> codes"
    )
    args = parser.parse_args()
    make_checkpoint(args.folder / "model", args.multilingual)
    make_recording(args.folder / "tone.wav")
    print(f"wrote {args.folder / 'model'} and {args.folder / 'tone.wav'}")


if __name__ == "__main__":
    main()
