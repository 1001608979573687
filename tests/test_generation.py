"""Generated ids identical to transformers' generate for greedy, beam search and sampling."""

from __future__ import annotations

import json

import pytest
import torch
from hf_models import make_s2t, random_features

import speechseq
from speechseq.errors import InputError

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2t")
    # A scaled head spreads the logits so that no near-tie decides a token.
    hf = make_s2t(folder, sharpen=20.0, tie_word_embeddings=False)
    return hf, speechseq.load_model(folder)


@pytest.fixture(scope="module")
def inputs():
    return {1: random_features([133], seed=1), 3: random_features([150, 97, 63], seed=2)}


def _stop_token(hf, features, mask) -> int:
    """Pick a token greedy decoding emits mid-way, to use as eos so rows end at different steps."""
    ids = hf.generate(features, attention_mask=mask, max_new_tokens=12, eos_token_id=None, pad_token_id=1)
    return int(ids[0, 6])


CASES = {
    "greedy": dict(num_beams=1),
    "beam5": dict(num_beams=5),
    "beam5_penalties": dict(
        num_beams=5,
        length_penalty=0.6,
        early_stopping=True,
        min_new_tokens=4,
        no_repeat_ngram_size=2,
        forced_bos_token_id=11,
    ),
    "beam5_never_long": dict(num_beams=5, early_stopping="never", length_penalty=1.4, repetition_penalty=1.3),
    "beam4_return3": dict(num_beams=4, num_return_sequences=3, bad_words_ids=[[5], [9, 10]]),
    "greedy_constraints": dict(
        num_beams=1,
        repetition_penalty=1.5,
        no_repeat_ngram_size=3,
        min_length=6,
        forced_bos_token_id=7,
        forced_eos_token_id=None,
    ),
    # min_new_tokens, even 0, takes precedence over min_length (eos may come before step 12).
    "greedy_min_new_tokens_wins": dict(num_beams=1, min_new_tokens=0, min_length=12),
    "beam3_min_new_tokens_wins": dict(num_beams=3, min_new_tokens=2, min_length=12),
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_ids_identical(models, inputs, case, batch):
    hf, ours = models
    features, mask = inputs[batch]
    options = dict(CASES[case], max_new_tokens=24, eos_token_id=_stop_token(hf, features, mask))
    expected = hf.generate(features, attention_mask=mask, **options)
    actual = ours.generate(features, attention_mask=mask, **options)
    assert actual.dtype == torch.long
    assert actual.tolist() == expected.tolist()


def test_rows_end_at_different_steps(models, inputs):
    hf, ours = models
    features, mask = inputs[3]
    stop = _stop_token(hf, features, mask)
    ids = ours.generate(features, attention_mask=mask, max_new_tokens=24, eos_token_id=stop)
    ends = [(row == stop).nonzero().flatten().tolist()[:1] for row in ids]
    assert ends[0] and ends[0][0] < ids.shape[1] - 1, "the check needs a row that stops early"
    assert (ids[0, ends[0][0] + 1 :] == 1).all()  # padded after eos


@pytest.mark.parametrize("options", [dict(top_k=10, temperature=0.7), dict(top_p=0.8, top_k=0), dict()])
def test_sampling_identical_with_same_seed(models, inputs, options):
    hf, ours = models
    features, mask = inputs[3]
    torch.manual_seed(7)
    expected = hf.generate(features, attention_mask=mask, do_sample=True, max_new_tokens=16, **options)
    torch.manual_seed(7)
    actual = ours.generate(features, attention_mask=mask, do_sample=True, max_new_tokens=16, **options)
    assert actual.tolist() == expected.tolist()


def test_sampling_several_sequences(models, inputs):
    hf, ours = models
    features, mask = inputs[1]
    torch.manual_seed(3)
    expected = hf.generate(
        features, attention_mask=mask, do_sample=True, num_return_sequences=3, max_new_tokens=10
    )
    torch.manual_seed(3)
    actual = ours.generate(
        features, attention_mask=mask, do_sample=True, num_return_sequences=3, max_new_tokens=10
    )
    assert actual.tolist() == expected.tolist()


def test_defaults_from_legacy_config_keys(tmp_path, inputs):
    hf = make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    (tmp_path / "generation_config.json").unlink(missing_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_beams=3, max_length=9, early_stopping=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = speechseq.load_model(tmp_path)
    features, mask = inputs[3]
    expected = hf.generate(features, attention_mask=mask, num_beams=3, max_length=9, early_stopping=True)
    actual = ours.generate(features, attention_mask=mask)
    assert actual.tolist() == expected.tolist()


def test_bad_options(models, inputs):
    _, ours = models
    features, mask = inputs[1]
    with pytest.raises(InputError, match="unknown generation option"):
        ours.generate(features, num_beam=5)
    with pytest.raises(InputError, match="num_return_sequences"):
        ours.generate(features, num_beams=2, num_return_sequences=3)
    with pytest.raises(InputError, match="bad_words_ids"):
        ours.generate(features, bad_words_ids=[[100000]])
    vocab = ours.lm_head.out_features
    refused = {
        "num_beams must be an integer": dict(num_beams=2.5),
        "max_new_tokens must be an integer": dict(max_new_tokens="10"),
        f"decoder_start_token_id {vocab} is not a token id": dict(decoder_start_token_id=vocab),
        "forced_bos_token_id -5 is not a token id": dict(forced_bos_token_id=-5),
        f"suppress_tokens {vocab + 3} is not a token id": dict(suppress_tokens=[1, vocab + 3]),
        "suppress_tokens must be token ids": dict(suppress_tokens="abc"),
        f"eos_token_id {vocab} is not a token id": dict(eos_token_id=[2, vocab]),
    }
    for message, options in refused.items():
        with pytest.raises(InputError, match=message):
            ours.generate(features, **options)
    labels = torch.tensor([[5, 7, vocab]])
    with pytest.raises(InputError, match=f"labels hold id {vocab}, but the decoder vocabulary has {vocab}"):
        ours(features[:1], labels=labels)
    with pytest.raises(InputError, match="decoder_input_ids hold id -1"):
        ours(features[:1], decoder_input_ids=torch.tensor([[2, -1]]))


def test_unset_length_gives_twenty_new_tokens(tmp_path, inputs):
    hf = make_s2t(tmp_path, sharpen=20.0, tie_word_embeddings=False)
    ours = speechseq.load_model(tmp_path)
    features, mask = inputs[3]
    for options in (dict(), dict(num_beams=3), dict(forced_eos_token_id=5)):
        expected = hf.generate(features, attention_mask=mask, **options)
        actual = ours.generate(features, attention_mask=mask, **options)
        assert actual.tolist() == expected.tolist()
        assert actual.shape[1] == 21


@pytest.mark.parametrize("forced", ["forced_bos_token_id", "forced_eos_token_id"])
def test_forced_token_that_is_suppressed_is_refused(models, inputs, forced):
    _, ours = models
    features, mask = inputs[1]
    # transformers refuses it too: every logit would be -inf at the forced step.
    with pytest.raises(InputError, match=f"{forced} \\[11\\] is also in suppress_tokens"):
        ours.generate(features, attention_mask=mask, suppress_tokens=[3, 11], **{forced: 11})


def test_non_finite_weights_are_an_error_not_empty_text(tmp_path, inputs):
    from speechseq.errors import NumericalError

    make_s2t(tmp_path)
    model = speechseq.load_model(tmp_path)
    features, mask = inputs[1]
    with torch.no_grad():
        model.encoder.stack.layers[0].ffn.fc1.weight[0, 0] = float("nan")
    with pytest.raises(NumericalError, match="encoder output holds NaN"):
        model.generate(features, attention_mask=mask)
