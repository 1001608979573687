"""Write the Speech2Text2 model parity fixtures in tests/fixtures/s2t2_model/.

Needs transformers 4.50.3: Speech2Text2 is gone from transformers 5, and 4.51 to 4.57 cannot build it (the
deprecated positional embedding lost its table). Run it in a separate environment, e.g.

    python3 -m venv /tmp/venv450
    /tmp/venv450/bin/pip install torch==2.13.0 transformers==4.50.3 sentencepiece safetensors
    /tmp/venv450/bin/python scripts/make_s2t2_fixtures.py

It writes two tiny random checkpoints, saved by transformers itself:

* decoder/  a Speech2Text2ForCausalLM, and decoder_expected.safetensors with its logits for padded token
  inputs over random encoder states (tests of the decoder alone); decoder_default_config.json holds
  Speech2Text2Config's defaults;
* sed/      a SpeechEncoderDecoderModel laid out like facebook/s2t-wav2vec2-large-en-de (stable-layer-norm
  wav2vec2 encoder with conv bias, Speech2Text2 decoder narrower than the encoder, so enc_to_dec_proj;
  generation settings in the decoder section, no generation_config.json), with its feature extractor and
  the fastBPE tokenizer of tests/fixtures/s2t2_tokenizer; sed_expected.safetensors and sed_expected.json
  hold waveforms, logits, loss, and greedy / beam-search ids and texts.

The decoder's lm_head is untied (tie_word_embeddings false in the decoder section), as in the converted
fairseq checkpoints; see ARCHITECTURES.md section 8.4 for why transformers >= 4.50 would tie it otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    Speech2Text2Config,
    Speech2Text2ForCausalLM,
    Speech2Text2Tokenizer,
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
)

REQUIRED_VERSION = "4.50.3"
ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUT = ROOT / "s2t2_model"
TOKENIZER = ROOT / "s2t2_tokenizer"
VOCAB = 45  # the fixture tokenizer's vocabulary
DECODER = dict(
    vocab_size=VOCAB,
    d_model=16,
    decoder_layers=2,
    decoder_attention_heads=4,
    decoder_ffn_dim=32,
    max_target_positions=48,
    tie_word_embeddings=False,
)
ENCODER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 2, 2),
    conv_kernel=(10, 3, 3),
    conv_bias=True,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=4,
)
# What facebook/s2t-wav2vec2-large-en-de keeps in its decoder section (smaller, so that tests stay fast).
DECODER_GENERATION = dict(max_length=16, num_beams=3, early_stopping=True)
SAMPLES = [900, 650, 333]
SHARPEN = 6.0


def _randomise(model: torch.nn.Module, widen: str | tuple[str, ...]) -> None:
    """Spread norms and biases away from their init values, so that mixing them up shows in the outputs.

    Weights whose names start with `widen` (the decoder's) grow 10x: at init_std 0.02 a random decoder
    repeats one token whatever it hears, and the generation tests need outputs that follow the audio.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if (
                name.startswith(widen)
                and name.endswith("weight")
                and "norm" not in name
                and "lm_head" not in name
            ):
                param.mul_(10.0)
            if "layer_norm" in name and name.endswith("weight"):
                param.add_(torch.randn_like(param) * 0.1)
            elif name.endswith("bias"):
                param.normal_(0, 0.05)
            elif "encoder_attn.v_proj" in name or "encoder_attn.out_proj" in name:
                param.mul_(4.0)  # let the encoder steer the decoder, so batch rows decode differently


def write_decoder() -> None:
    """A standalone Speech2Text2ForCausalLM and its logits for padded inputs over random encoder states."""
    torch.manual_seed(0)
    model = Speech2Text2ForCausalLM(Speech2Text2Config(**DECODER)).eval()
    _randomise(model, widen="model.")
    model.save_pretrained(OUT / "decoder", safe_serialization=True)
    tokens = torch.randint(4, VOCAB, (3, 9))
    tokens[0, 0] = 2  # decoder start
    tokens[1, 6:] = 1  # right padding: padding-aware positions give the pads the zero row
    tokens[2, :2] = 1  # left padding shifts the positions of what follows
    encoder_hidden = torch.randn(3, 11, DECODER["d_model"])
    encoder_mask = torch.ones(3, 11, dtype=torch.long)
    encoder_mask[1, 7:] = 0
    with torch.no_grad():
        logits = model(
            input_ids=tokens, encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask
        )
    tensors = dict(
        tokens=tokens, encoder_hidden=encoder_hidden, encoder_mask=encoder_mask, logits=logits.logits
    )
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / "decoder_expected.safetensors"))
    # transformers' defaults, to check the Speech2Text2 preset against.
    defaults = Speech2Text2Config().to_dict()
    (OUT / "decoder_default_config.json").write_text(json.dumps(defaults, indent=2, sort_keys=True) + "\n")


def _sed_model() -> SpeechEncoderDecoderModel:
    torch.manual_seed(1)
    decoder = Speech2Text2Config(**DECODER, **DECODER_GENERATION)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(Wav2Vec2Config(**ENCODER), decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id, config.bos_token_id = 2, 1, 2, 0
    model = SpeechEncoderDecoderModel(config).eval()
    _randomise(model, widen=("decoder.", "enc_to_dec_proj."))
    with torch.no_grad():
        model.decoder.lm_head.weight.mul_(SHARPEN)  # spread the logits: no near-tie decides a generated token
    return model


def _save_sed(model: SpeechEncoderDecoderModel, extractor, tokenizer) -> None:
    folder = OUT / "sed"
    model.save_pretrained(folder, safe_serialization=True)
    # 2021 checkpoints keep their generation settings in config.json.
    (folder / "generation_config.json").unlink(missing_ok=True)
    extractor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _clip(samples: int, hertz: float, generator: torch.Generator) -> torch.Tensor:
    """A tone in noise; clips of different pitch give encoder states that differ beyond normalisation."""
    time = torch.arange(samples) / 16000
    return torch.sin(2 * torch.pi * hertz * time) + 0.3 * torch.randn(samples, generator=generator)


def write_sed() -> None:
    """The tiny wav2vec2 + Speech2Text2 model, with its processor files and expected outputs."""
    model = _sed_model()
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    tokenizer = Speech2Text2Tokenizer(
        str(TOKENIZER / "vocab.json"), merges_file=str(TOKENIZER / "merges.txt")
    )
    _save_sed(model, extractor, tokenizer)
    generator = torch.Generator().manual_seed(2)
    audio = [_clip(n, 300.0 * (i + 1), generator) for i, n in enumerate(SAMPLES)]
    inputs = extractor([a.numpy() for a in audio], sampling_rate=16000, padding=True, return_tensors="pt")
    labels = torch.randint(4, VOCAB, (3, 7), generator=generator)
    labels[1, 5:] = -100
    with torch.no_grad():
        out = model(inputs.input_values, attention_mask=inputs.attention_mask, labels=labels)
        options, generated = _generations(model, inputs.input_values, inputs.attention_mask)
    tensors = dict(
        input_values=inputs.input_values,
        attention_mask=inputs.attention_mask,
        labels=labels,
        logits=out.logits,
        loss=out.loss,
        encoder_hidden=out.encoder_last_hidden_state,
        **generated,
    )
    for i, clip in enumerate(audio):
        tensors[f"audio{i}"] = clip
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / "sed_expected.safetensors"))
    texts = tokenizer.batch_decode(generated["default"], skip_special_tokens=True)
    expected = dict(options=options, default_texts=texts, transformers_version=transformers.__version__)
    (OUT / "sed_expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def _generations(model, inputs, mask) -> tuple[dict, dict]:
    """Greedy and beam ids with an eos that ends rows at different steps, and ids with the checkpoint defaults."""
    ids = model.generate(inputs, attention_mask=mask, max_new_tokens=8, eos_token_id=None, pad_token_id=1)
    options = dict(max_new_tokens=12, eos_token_id=int(ids[0, 3]))
    return options, dict(
        greedy=model.generate(inputs, attention_mask=mask, num_beams=1, **options),
        beam=model.generate(inputs, attention_mask=mask, num_beams=3, **options),
        default=model.generate(inputs, attention_mask=mask),
    )


def main() -> None:
    if transformers.__version__ != REQUIRED_VERSION:
        raise SystemExit(f"needs transformers {REQUIRED_VERSION}, found {transformers.__version__}")
    transformers.logging.set_verbosity_error()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    write_decoder()
    write_sed()
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
