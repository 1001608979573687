"""The models on a CUDA GPU against transformers on the same GPU: float32 parity of logits and generated ids,
float16 / bfloat16 generation, and the device handling of the pipeline and the command line.

Skipped where torch sees no GPU (CI has none). On a machine with one: `python -m pytest tests/test_cuda.py -q`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_decoders import audio, make_sed, relative_error
from hf_models import make_s2t, random_features
from hf_wav2vec2 import make_model as make_wav2vec2
from hf_wav2vec2 import random_batch

import speechseq

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytest.importorskip("transformers")

CUDA = torch.device("cuda")
HALF = [torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 products would make float32 parity depend on rounding luck; the oracle runs without them too."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _s2t(folder, dtype=torch.float32):
    hf = make_s2t(folder, sharpen=3.0).to(CUDA, dtype)
    ours = speechseq.load_model(folder, device="cuda", dtype=dtype)
    features, mask = random_features([150, 111, 67])
    return hf, ours, features.to(CUDA, dtype), mask.to(CUDA)


def test_speech2text_float32_matches_transformers_on_gpu(tmp_path):
    hf, ours, features, mask = _s2t(tmp_path)
    assert next(ours.parameters()).device.type == "cuda"
    labels = torch.randint(4, hf.config.vocab_size, (3, 9), device=CUDA)
    with torch.no_grad():
        expected = hf(input_features=features, attention_mask=mask, labels=labels)
        actual = ours(input_features=features, attention_mask=mask, labels=labels)
    assert actual.logits.device.type == "cuda"
    assert relative_error(expected.logits, actual.logits) < 1e-4
    assert torch.allclose(expected.loss, actual.loss, rtol=1e-5)
    for options in (dict(num_beams=1), dict(num_beams=4), dict(num_beams=4, num_return_sequences=2)):
        want = hf.generate(features, attention_mask=mask, max_new_tokens=20, **options)
        got = ours.generate(features, attention_mask=mask, max_new_tokens=20, **options)
        assert got.device.type == "cuda"
        assert got.tolist() == want.tolist(), options
    assert len({tuple(row) for row in want.tolist()}) > 1  # rows decode differently: the ids are not trivial


def _token_logprobs(model, features, mask, ids, eos: int) -> torch.Tensor:
    """Per-token log-probabilities of ids (B, L) under the model, zero after each row's first eos."""
    with torch.no_grad():
        logits = model(input_features=features, attention_mask=mask, decoder_input_ids=ids[:, :-1]).logits
    chosen = logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    ended = (ids[:, 1:-1] == eos).cumsum(1) > 0  # positions after an eos are padding
    return chosen.masked_fill(torch.nn.functional.pad(ended, (1, 0)), 0.0)


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_speech2text_half_precision_on_gpu(tmp_path, dtype):
    """Half precision rounds differently in each library, so ids may part at a near-tie, and only there."""
    hf, ours, features, mask = _s2t(tmp_path, dtype)
    exact = speechseq.load_model(tmp_path, device="cuda")  # the float32 reference
    features32 = features.float()
    assert next(ours.parameters()).dtype == dtype
    start = torch.full((3, 1), hf.config.decoder_start_token_id, device=CUDA)
    with torch.no_grad():
        reference = exact(input_features=features32, attention_mask=mask, decoder_input_ids=start).logits
        expected = hf(input_features=features, attention_mask=mask, decoder_input_ids=start).logits
        actual = ours(input_features=features, attention_mask=mask, decoder_input_ids=start).logits
    assert actual.dtype == dtype and torch.isfinite(actual).all()
    # Our rounding error is of the size of transformers' own.
    assert relative_error(reference, actual.float()) <= 2 * relative_error(reference, expected.float()) + 1e-3
    eos = hf.config.eos_token_id
    want = hf.generate(features, attention_mask=mask, max_new_tokens=12, num_beams=1)
    got = ours.generate(features, attention_mask=mask, max_new_tokens=12, num_beams=1)
    for row in range(3):
        parted = [
            i for i, (a, b) in enumerate(zip(got[row].tolist(), want[row].tolist(), strict=False)) if a != b
        ]
        if parted:  # the two tokens were all but tied in float32
            both = torch.stack([got[row, : parted[0] + 1], want[row, : parted[0] + 1]])
            scores = _token_logprobs(exact, features32[[row, row]], mask[[row, row]], both, eos)[:, -1]
            assert abs(float(scores[0] - scores[1])) < 0.1, (row, parted[0], scores.tolist())
    # Beam search: ours finds sequences that score, in float32, as well as transformers' (per token).
    want = hf.generate(features, attention_mask=mask, max_new_tokens=12, num_beams=4)
    got = ours.generate(features, attention_mask=mask, max_new_tokens=12, num_beams=4)
    mine = _token_logprobs(exact, features32, mask, got, eos).sum(1) / got.shape[1]
    theirs = _token_logprobs(exact, features32, mask, want, eos).sum(1) / want.shape[1]
    assert (mine >= theirs - 0.1).all(), (mine.tolist(), theirs.tolist())


@pytest.mark.parametrize(
    "encoder, decoder", [("wav2vec2", "bert"), ("hubert", "gpt2"), ("wav2vec2_bert", "mbart")]
)
def test_speech_encoder_decoder_on_gpu(tmp_path, encoder, decoder):
    hf = make_sed(tmp_path, encoder, decoder).to(CUDA)
    ours = speechseq.load_model(tmp_path, device="cuda")
    inputs, mask = (t.to(CUDA) for t in audio(encoder))
    with torch.no_grad():
        expected = hf(inputs, attention_mask=mask, decoder_input_ids=torch.full((3, 4), 5, device=CUDA))
        actual = ours(inputs, attention_mask=mask, decoder_input_ids=torch.full((3, 4), 5, device=CUDA))
    assert relative_error(expected.logits, actual.logits) < 1e-4
    for beams in (1, 3):
        want = hf.generate(inputs, attention_mask=mask, max_new_tokens=10, num_beams=beams)
        assert ours.generate(inputs, attention_mask=mask, max_new_tokens=10, num_beams=beams).tolist() == (
            want.tolist()
        )


@pytest.mark.parametrize("variant", ["group_post_ln", "adapter_stable_odd_pos", "hubert_batch_norm_stable"])
def test_ctc_encoders_on_gpu(tmp_path, variant):
    hf = make_wav2vec2(tmp_path, variant).to(CUDA)
    ours = speechseq.load_model(tmp_path, device="cuda")
    values, mask = (t.to(CUDA) for t in random_batch())
    with torch.no_grad():
        expected = hf(values, attention_mask=mask).logits
        actual = ours(values, attention_mask=mask).logits
    assert relative_error(expected, actual) < 1e-4


@pytest.mark.parametrize("head", ["ctc", "xvector"])
def test_wav2vec2_bert_heads_on_gpu(tmp_path, head):
    from test_wav2vec2_bert import features, make_model

    hf = make_model(tmp_path, head).to(CUDA)
    ours = speechseq.load_model(tmp_path, device="cuda")
    values, mask = (t.to(CUDA) for t in features())
    with torch.no_grad():
        expected = hf(values, attention_mask=mask)
        actual = ours(values, attention_mask=mask)
    assert relative_error(expected.logits, actual.logits) < 1e-4
    if head == "xvector":
        assert relative_error(expected.embeddings, actual.embeddings) < 1e-4


def test_transcriber_and_cli_on_gpu(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from make_tiny_checkpoint import make_checkpoint, make_recording

    from speechseq.cli import main
    from speechseq.pipeline import Transcriber

    model = make_checkpoint(tmp_path / "model")
    clips = [make_recording(tmp_path / f"{i}.wav", seconds=1.0 + i, seed=i) for i in range(3)]
    on_cpu = [s.text for s in Transcriber(model, batch_size=2, max_new_tokens=8).transcribe(clips)]
    on_gpu = [
        s.text for s in Transcriber(model, device="cuda", batch_size=2, max_new_tokens=8).transcribe(clips)
    ]
    assert on_gpu == on_cpu and all(on_gpu)
    half = Transcriber(model, device="cuda", dtype="float16", batch_size=2, max_new_tokens=8)
    assert all(
        s.text
        for s in half.transcribe([(0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)])
    )
    capsys.readouterr()
    code = main(
        ["transcribe", *map(str, clips), "--model", str(model), "--device", "cuda", "--max-new-tokens", "8"]
    )
    assert code in (0, None)
    assert capsys.readouterr().out.splitlines() == on_cpu
