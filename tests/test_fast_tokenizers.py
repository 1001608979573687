"""Tokenizers of the text decoders: TokenizersTokenizer (tokenizer.json) against transformers' fast tokenizers
(BERT, GPT-2, MBart-50), and the sentencepiece MBart50Tokenizer against transformers 4.50.3 golden outputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import speechseq
from speechseq.errors import InputError, TokenizerError
from speechseq.text.fast import TokenizersTokenizer
from speechseq.text.mbart50 import MBart50Tokenizer

pytest.importorskip("transformers")

MBART50_FIXTURES = Path(__file__).parent / "fixtures" / "mbart50_tokenizer"

WORDS = ["the", "a", "speech", "model", "hears", "words", "and", "writes", "them", "down", "quickly"]
WORDS += ["while", "people", "talk", "about", "it"]
TEXTS = [
    "the speech model hears",
    "The Speech MODELS hear, words.",
    "  spaced    out\ttext here ",
    "zebra <mask> [MASK] de_DE unknown",
    "",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(8)) + rng.choice([" .", " ,", "!"]) for _ in range(200)]


def _bert(folder):
    from transformers import AutoTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing", ",", ".", "!"]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)


def _gpt2(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet)
    backend.train_from_iterator(_corpus(), trainer)
    folder.mkdir()
    backend.model.save(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)


def _mbart50(folder):
    import sentencepiece as spm
    from transformers import MBart50Tokenizer

    folder.mkdir()
    (folder / "corpus.txt").write_text("\n".join(_corpus()))
    prefix = str(folder / "sp")
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"),
        model_prefix=prefix,
        vocab_size=40,
        model_type="unigram",
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    # transformers 5 reads sentencepiece files only with protobuf installed; the pieces and scores suffice.
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    MBart50Tokenizer(vocab=pieces, src_lang="en_XX", tgt_lang="de_DE").save_pretrained(folder)


MAKERS = {"bert": _bert, "gpt2": _gpt2, "mbart50": _mbart50}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    for name, make in MAKERS.items():
        make(root / name)
    return {name: root / name for name in MAKERS}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_ids_tokens_and_text_match_transformers(folders, name):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(folders[name])
    ours = speechseq.load_tokenizer(folders[name])
    assert isinstance(ours, TokenizersTokenizer)
    assert (len(ours), ours.vocab_size, ours.all_special_ids) == (len(hf), hf.vocab_size, hf.all_special_ids)
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text)
        assert ours.tokenize(text) == hf.tokenize(text)
        ids = [*hf.encode(text), hf.pad_token_id or 0, 3]
        for skip in (False, True):
            for clean in (None, True):
                want = hf.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == want
    if hf.pad_token is None:
        return  # GPT-2 has no padding token, so it cannot pad a batch
    batch = ours(TEXTS[:3], padding=True, return_tensors="pt")
    want = hf(TEXTS[:3], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == want["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == want["attention_mask"].tolist()
    # Truncation keeps the post-processor's special tokens; max_length padding leaves longer rows whole.
    for options in (
        dict(truncation=True, max_length=4),
        dict(truncation=True, max_length=1),
        dict(padding="max_length", max_length=9),
        dict(padding="max_length", truncation=True, max_length=6),
    ):
        want = {key: hf(TEXTS, **options)[key] for key in ("input_ids", "attention_mask")}
        assert ours(TEXTS, **options) == want, options


def test_mbart50_languages(folders):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(folders["mbart50"])
    ours = speechseq.load_tokenizer(folders["mbart50"])
    assert ours.lang_code_to_id == hf.lang_code_to_id
    hf.src_lang = ours.src_lang = "fr_XX"
    assert ours.encode(TEXTS[0]) == hf.encode(TEXTS[0])
    with pytest.raises(InputError, match="unknown src_lang"):
        ours.src_lang = "xx_YY"


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_save_pretrained_round_trip(folders, tmp_path, name):
    from transformers import AutoTokenizer

    ours = speechseq.load_tokenizer(folders[name])
    ours.save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == AutoTokenizer.from_pretrained(folders[name]).__class__.__name__
    again = speechseq.load_tokenizer(tmp_path)
    for text in TEXTS:
        assert again.encode(text) == hf.encode(text) == ours.encode(text)


def test_encoder_decoder_folder_without_tokenizer_config(folders, tmp_path):
    # The tokenizer follows config.json's decoder section when tokenizer_config.json names no class.
    (tmp_path / "tokenizer.json").write_bytes((folders["gpt2"] / "tokenizer.json").read_bytes())
    config = {
        "model_type": "speech-encoder-decoder",
        "encoder": {"model_type": "wav2vec2"},
        "decoder": {"model_type": "gpt2"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert isinstance(speechseq.load_tokenizer(tmp_path), TokenizersTokenizer)


def test_bad_tokenizer_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        speechseq.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(TokenizerError, match="BertTokenizer"):
        speechseq.load_tokenizer(tmp_path)


def test_mbart50_sentencepiece_matches_transformers_4_50():
    # scripts/make_mbart50_tokenizer_fixtures.py: a folder without tokenizer.json, as the xls-r checkpoints ship.
    expected = json.loads((MBART50_FIXTURES / "expected.json").read_text())
    ours = speechseq.load_tokenizer(MBART50_FIXTURES)
    assert isinstance(ours, MBart50Tokenizer)
    assert (ours.vocab_size, len(ours), ours.all_special_ids) == (
        expected["vocab_size"],
        expected["length"],
        expected["all_special_ids"],
    )
    assert ours.lang_code_to_id == expected["lang_code_to_id"]
    assert [ours.tokenize(text) for text in expected["sentences"]] == expected["tokens"]
    assert [ours.encode(text) for text in expected["sentences"]] == expected["ids"]
    assert [ours.decode(ids) for ids in expected["id_lists"]] == expected["decoded"]
    assert ours.batch_decode(expected["id_lists"], skip_special_tokens=True) == expected["decoded_skip"]
    ours.src_lang = "fr_XX"
    assert [ours.encode(text) for text in expected["sentences"]] == expected["ids_fr_XX"]


def test_mbart50_sentencepiece_save_round_trip(tmp_path):
    ours = speechseq.load_tokenizer(MBART50_FIXTURES)
    ours.save_pretrained(tmp_path)
    again = speechseq.load_tokenizer(tmp_path)
    assert isinstance(again, MBart50Tokenizer) and again.tgt_lang == "de_DE"
    expected = json.loads((MBART50_FIXTURES / "expected.json").read_text())
    assert [again.encode(text) for text in expected["sentences"]] == expected["ids"]
    assert again.all_special_ids == expected["all_special_ids"]
