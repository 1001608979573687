"""Parity of speechseq's tokenizers with transformers (5.x for S2T and CTC, 4.50.3 fixtures for S2T2)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from speechseq.errors import InputError, TokenizerError
from speechseq.text import Speech2Text2Tokenizer, Speech2TextTokenizer, Wav2Vec2CTCTokenizer, load_tokenizer

transformers = pytest.importorskip("transformers")

LANGS = ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]
WORDS = ["the", "a", "speech", "model", "reads", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
WORDS += ["and", "translation", "of", "data", "is", "sound", "it"]
SENTENCES = [
    "the quick brown fox",
    "a speech model reads the data.",
    "",
    "   spaced   out  ",
    "unknown chars: héllo wörld 日本 ñ 42!",
    "tags <lang:fr> inside </s> text <s>",
    "<unk><pad>glued",
    "It Is UPPER case",
]
FIXTURES = Path(__file__).parent / "fixtures" / "s2t2_tokenizer"


def _corpus(size: int = 400) -> list[str]:
    rng = random.Random(0)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12))) + rng.choice([".", "", "?", ","])
        for _ in range(size)
    ]


def _train_spm(folder: Path, multilingual: bool) -> Path:
    """Train a tiny BPE model and write vocab.json in fairseq order (<s> <pad> </s> <unk>, then pieces)."""
    folder.mkdir()
    (folder / "corpus.txt").write_text("\n".join(_corpus()), encoding="utf-8")
    options = dict(input=str(folder / "corpus.txt"), model_prefix=str(folder / "m"), vocab_size=120)
    options.update(model_type="bpe", minloglevel=2)
    if multilingual:  # fairseq ids in the model itself, so the <lang:xx> ids of spm and vocab.json coincide
        options.update(
            bos_id=0, pad_id=1, eos_id=2, unk_id=3, user_defined_symbols=[f"<lang:{x}>" for x in LANGS]
        )
    spm.SentencePieceTrainer.train(**options)
    model = spm.SentencePieceProcessor(model_file=str(folder / "m.model"))
    pieces = [
        model.id_to_piece(i)
        for i in range(model.get_piece_size())
        if not model.is_control(i) and not model.is_unknown(i)
    ]
    if not multilingual:  # a fairseq dictionary is ordered by frequency, not by spm id; leave some pieces out
        random.Random(1).shuffle(pieces)
        pieces = pieces[:-5]
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", *pieces])}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.move(folder / "m.model", folder / "sentencepiece.bpe.model")
    return folder


@pytest.fixture(scope="module")
def spm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    return {"mono": _train_spm(root / "mono", False), "multi": _train_spm(root / "multi", True)}


def _pair(folder: Path, **options):
    files = (str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
    ours = {
        ("extra_special_tokens" if k == "additional_special_tokens" else k): v for k, v in options.items()
    }
    return transformers.Speech2TextTokenizer(*files, **options), Speech2TextTokenizer(*files, **ours)


def _random_ids(rng: random.Random, size: int, count: int = 60, length: int = 14) -> list[list[int]]:
    return [[rng.randrange(0, size + 3) for _ in range(rng.randrange(0, length))] for _ in range(count)]


S2T_SETTINGS = [
    ("mono", {}),
    ("mono", {"do_upper_case": True}),
    ("multi", {"lang_codes": "mustc"}),
    ("multi", {"lang_codes": "mustc", "tgt_lang": "de", "additional_special_tokens": ["<extra>"]}),
]


@pytest.mark.parametrize(("kind", "options"), S2T_SETTINGS)
def test_s2t_encode_matches_transformers(spm_folders, kind, options):
    theirs, ours = _pair(spm_folders[kind], **options)
    ours_batch = ours(SENTENCES, padding=True)
    assert ours_batch == dict(theirs(SENTENCES, padding=True))
    assert ours(SENTENCES) == dict(theirs(SENTENCES))
    for text in SENTENCES:
        assert ours(text) == dict(theirs(text))
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    tensors = ours(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(tensors["input_ids"], torch.tensor(ours_batch["input_ids"]))


CALL_OPTIONS = [
    dict(padding="do_not_pad"),
    dict(padding="longest"),
    dict(padding="max_length", max_length=12),  # rows longer than 12 stay as they are
    dict(truncation=True, max_length=3),
    dict(truncation=True, max_length=1),  # only room for eos: the text is cut to nothing
    dict(truncation="longest_first", max_length=5, padding="max_length"),
    dict(truncation=True, max_length=4, add_special_tokens=False),
]


@pytest.mark.parametrize("options", CALL_OPTIONS, ids=str)
def test_padding_and_truncation_match_transformers(spm_folders, options):
    theirs, ours = _pair(spm_folders["multi"], lang_codes="mustc", tgt_lang="de")
    texts = [*SENTENCES, ""]
    assert ours(texts, **options) == {k: v for k, v in theirs(texts, **options).items()}


def test_bad_padding_options_are_named(spm_folders):
    _, ours = _pair(spm_folders["mono"])
    with pytest.raises(InputError, match="padding must be"):
        ours(SENTENCES, padding="yes")
    with pytest.raises(InputError, match="needs max_length"):
        ours(SENTENCES, padding="max_length")


def test_s2t_do_lower_case(spm_folders):
    # transformers 5 no longer lower-cases for do_lower_case (4.x did); we do, so compare on lower-cased text.
    theirs, ours = _pair(spm_folders["mono"], do_lower_case=True)
    for text in SENTENCES:
        assert ours.encode(text) == theirs.encode(text.lower())


@pytest.mark.parametrize(("kind", "options"), S2T_SETTINGS)
def test_s2t_decode_matches_transformers(spm_folders, kind, options):
    theirs, ours = _pair(spm_folders[kind], **options)
    rng = random.Random(0)
    special = [2, 0, 1, 3, 4, 5, len(theirs)]
    sequences = _random_ids(rng, len(theirs)) + [[2, 4 + i, 20, 30, 2, 1, 1] for i in range(8)] + [special]
    for skip in (False, True):
        for ids in sequences:
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(
                ids, skip_special_tokens=skip
            ), ids
        padded = np.array([(row + [1] * 14)[:14] for row in sequences])
        expected = theirs.batch_decode(padded.tolist(), skip_special_tokens=skip)
        assert ours.batch_decode(torch.from_numpy(padded), skip_special_tokens=skip) == expected
        assert ours.batch_decode(padded, skip_special_tokens=skip) == expected
        assert ours.decode(torch.tensor(sequences[0]), skip) == ours.decode(np.array(sequences[0]), skip)
    for clean in (False, True):
        ids = ours.encode("it is a dog , is it ? the fox 's data")
        assert ours.decode(ids, clean_up_tokenization_spaces=clean) == theirs.decode(
            ids, clean_up_tokenization_spaces=clean
        )


def test_s2t_properties_match_transformers(spm_folders):
    theirs, ours = _pair(spm_folders["multi"], lang_codes="mustc", additional_special_tokens=["<new>"])
    for name in (
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
        "unk_token_id",
        "vocab_size",
        "all_special_ids",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
    assert ours.lang_code_to_id == theirs.lang_code_to_id == {lang: 4 + i for i, lang in enumerate(LANGS)}
    tokens = ["<s>", "▁the", "zzz", "<new>", "<lang:es>"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    ids = list(range(-1, len(theirs) + 2))
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, True) == theirs.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    assert ours.convert_ids_to_tokens(5) == theirs.convert_ids_to_tokens(5)


def test_s2t_tgt_lang_switching(spm_folders):
    theirs, ours = _pair(spm_folders["multi"], lang_codes="mustc")
    assert ours.tgt_lang == theirs.tgt_lang == "pt"
    for lang in LANGS:
        theirs.tgt_lang = ours.tgt_lang = lang
        assert ours.prefix_tokens == theirs.prefix_tokens == [ours.lang_code_to_id[lang]]
        assert ours(SENTENCES, padding=True) == dict(theirs(SENTENCES, padding=True))
    with pytest.raises(InputError, match="pt, fr, ru"):
        ours.tgt_lang = "xx"
    mono = Speech2TextTokenizer.from_pretrained(spm_folders["mono"])
    assert mono.tgt_lang is None and mono.encode("a") == [*mono.encode("a", False), 2]
    with pytest.raises(InputError):
        mono.tgt_lang = "fr"


def test_s2t_save_round_trip(spm_folders, tmp_path):
    theirs, ours = _pair(
        spm_folders["multi"], lang_codes="mustc", tgt_lang="it", additional_special_tokens=["<x>"]
    )
    folder = tmp_path  # already holds a file of the user's, which saving must leave alone
    (folder / "config.json").write_text('{"keep": 1}')
    ours.save_pretrained(folder)
    assert (folder / "config.json").read_text() == '{"keep": 1}'
    assert {"vocab.json", "sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in folder.iterdir()
    }
    reloaded_theirs = transformers.AutoTokenizer.from_pretrained(folder)
    reloaded_ours = load_tokenizer(folder)
    assert isinstance(reloaded_ours, Speech2TextTokenizer)
    assert reloaded_theirs.tgt_lang == reloaded_ours.tgt_lang == "it"
    ids = _random_ids(random.Random(2), len(theirs), count=20)
    for tokenizer in (reloaded_theirs, reloaded_ours):
        assert tokenizer.all_special_ids == theirs.all_special_ids
        assert tokenizer(SENTENCES)["input_ids"] == theirs(SENTENCES)["input_ids"]
        assert tokenizer.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(
            ids, skip_special_tokens=True
        )
    theirs.save_pretrained(tmp_path / "hf")  # and the other way round: transformers writes, we read
    from_hf = Speech2TextTokenizer.from_pretrained(tmp_path / "hf")
    assert from_hf.tgt_lang == "it" and from_hf(SENTENCES) == dict(theirs(SENTENCES))
    assert from_hf.added_tokens == ours.added_tokens


def test_missing_and_broken_files(spm_folders, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(spm_folders["mono"] / "vocab.json", folder)
    with pytest.raises(TokenizerError, match=r"sentencepiece\.bpe\.model.*partial"):
        Speech2TextTokenizer.from_pretrained(folder)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json.*vocab\.json"):
        load_tokenizer(tmp_path / "empty")
    (folder / "vocab.json").write_text("{not json")
    shutil.copy(spm_folders["mono"] / "sentencepiece.bpe.model", folder)
    with pytest.raises(TokenizerError, match=r"vocab\.json.*partial"):
        load_tokenizer(folder)
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "WhisperTokenizer"}')
    with pytest.raises(TokenizerError, match="WhisperTokenizer.*supported"):
        load_tokenizer(folder)
    with pytest.raises(InputError, match="batch_decode"):
        Wav2Vec2CTCTokenizer(_ctc_vocab(tmp_path)).decode([[1, 2]])


def test_added_token_split_matches_transformers_trie(spm_folders):
    _, ours = _pair(spm_folders["multi"], lang_codes="mustc")
    trie = transformers.tokenization_python.Trie([token.content for token in ours.added_tokens.values()])
    fragments = [t[:k] for t in ours.all_special_tokens for k in range(1, len(t) + 1)] + ["a", " ", ">"]
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(fragments) for _ in range(rng.randrange(0, 8)))
        assert ours._split_on_added(text) == trie.split(text), text


# ----- Wav2Vec2CTCTokenizer -----
LIBRISPEECH = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVKXJQZ'"]


def _ctc_vocab(folder: Path, vocab: dict | None = None) -> Path:
    path = folder / "ctc_vocab" / "vocab.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(vocab or {c: i for i, c in enumerate(LIBRISPEECH)}), encoding="utf-8")
    return path


def _ctc_pair(path: Path, **options):
    return transformers.Wav2Vec2CTCTokenizer(str(path), **options), Wav2Vec2CTCTokenizer(path, **options)


def _offsets(output) -> tuple:
    return output.text, output.char_offsets, output.word_offsets


def _ctc_frames(rng: random.Random, count: int = 80) -> list[list[int]]:
    """Frame-level CTC outputs: mostly blanks, repeats, delimiters, some specials and out-of-vocab ids."""
    choices = [0] * 6 + [4] * 3 + list(range(5, 31)) + [1, 2, 3, 40]
    rows = []
    for _ in range(count):
        row = []
        for _ in range(rng.randrange(0, 16)):
            row += [rng.choice(choices)] * rng.randrange(1, 4)
        rows.append(row)
    return rows


@pytest.mark.parametrize("options", [{}, {"do_lower_case": True}, {"replace_word_delimiter_char": "_"}])
def test_ctc_decode_and_offsets_match_transformers(tmp_path, options):
    theirs, ours = _ctc_pair(_ctc_vocab(tmp_path), **options)
    rows = _ctc_frames(random.Random(0)) + [[0, 7, 7, 0, 7, 4, 4, 0, 4, 6, 1, 6, 5, 0, 0, 2]]
    for skip in (False, True):
        for ids in rows:
            out = theirs.decode(
                ids, skip_special_tokens=skip, output_char_offsets=True, output_word_offsets=True
            )
            assert _offsets(ours.decode_with_offsets(ids, skip_special_tokens=skip)) == _offsets(out)
            assert ours.decode(ids, skip) == theirs.decode(ids, skip_special_tokens=skip)
            assert ours.decode(ids, skip, group_tokens=False) == theirs.decode(
                ids, skip_special_tokens=skip, group_tokens=False
            )
        padded = torch.tensor([(row + [0] * 48)[:48] for row in rows])
        assert ours.batch_decode(padded, skip) == theirs.batch_decode(padded, skip_special_tokens=skip)
    if not options:  # the worked example of ARCHITECTURES.md section 4.11: blanks are skipped before grouping
        assert (ours.decode(rows[-1]), ours.decode(rows[-1], True)) == ("AA  T<s>TE</s>", "A TE")


def test_ctc_encode_and_properties_match_transformers(tmp_path):
    for options in ({}, {"do_lower_case": True}):
        theirs, ours = _ctc_pair(_ctc_vocab(tmp_path), **options)
        texts = ["HELLO WORLD", "hello world", "  TWO  SPACES ", "A|B", "X <unk> Y<s>Z", "IT'S 42 É", ""]
        assert ours(texts, padding=True) == dict(theirs(texts, padding=True))
        for name in [
            "pad_token_id",
            "unk_token_id",
            "word_delimiter_token_id",
            "vocab_size",
            "all_special_ids",
        ]:
            assert getattr(ours, name) == getattr(theirs, name), name
        assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
        ids = list(range(-1, 35))
        assert ours.convert_ids_to_tokens(ids, True) == theirs.convert_ids_to_tokens(
            ids, skip_special_tokens=True
        )


def test_ctc_save_round_trip_and_nested_vocab(tmp_path):
    nested = {
        "eng": {c: i for i, c in enumerate(LIBRISPEECH)},
        "deu": {c: i for i, c in enumerate([*LIBRISPEECH[:5], *"ÄÖÜSSCH"])},
    }
    path = _ctc_vocab(tmp_path, nested)
    theirs, ours = _ctc_pair(path, target_lang="eng")
    theirs.set_target_lang("deu")
    ours.set_target_lang("deu")
    assert ours("ÄÖ SCH") == dict(theirs("ÄÖ SCH"))
    assert ours.decode([5, 5, 0, 6, 4, 9]) == theirs.decode([5, 5, 0, 6, 4, 9])
    with pytest.raises(InputError, match="eng, deu"):
        ours.set_target_lang("fra")
    with pytest.raises(InputError, match="target_lang"):
        Wav2Vec2CTCTokenizer(path)
    ours.save_pretrained(tmp_path / "saved")
    for reloaded in (
        transformers.AutoTokenizer.from_pretrained(tmp_path / "saved"),
        load_tokenizer(tmp_path / "saved"),
    ):
        assert reloaded.target_lang == "deu"
        assert reloaded("ÄÖ SCH")["input_ids"] == ours("ÄÖ SCH")["input_ids"]
        assert reloaded.all_special_ids == ours.all_special_ids
    theirs.save_pretrained(tmp_path / "hf")
    from_hf = load_tokenizer(tmp_path / "hf")
    assert isinstance(from_hf, Wav2Vec2CTCTokenizer)
    assert from_hf.added_tokens == load_tokenizer(tmp_path / "saved").added_tokens


# ----- Speech2Text2Tokenizer (expected values written by transformers 4.50.3, see scripts/) -----
@pytest.fixture(scope="module")
def s2t2_expected():
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


def test_s2t2_matches_transformers_450(s2t2_expected, tmp_path):
    assert s2t2_expected["transformers_version"] == "4.50.3"
    for case in s2t2_expected["encode"]:
        ours = Speech2Text2Tokenizer(
            FIXTURES / "vocab.json", FIXTURES / "merges.txt", do_lower_case=case["do_lower_case"]
        )
        assert ours.tokenize(case["text"]) == case["tokens"], case["text"]
        assert ours(case["text"])["input_ids"] == case["input_ids"], case["text"]
    ours = Speech2Text2Tokenizer(FIXTURES / "vocab.json", FIXTURES / "merges.txt")
    assert (ours.vocab_size, len(ours), ours.all_special_ids) == (
        s2t2_expected["vocab_size"],
        s2t2_expected["len"],
        s2t2_expected["all_special_ids"],
    )
    for case in s2t2_expected["decode"]:
        text = ours.decode(case["ids"], case["skip_special_tokens"], case["clean_up_tokenization_spaces"])
        assert text == case["text"], case
    merges = tmp_path / "merges.txt"
    merges.write_text((FIXTURES / "merges.txt").read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")
    for case in s2t2_expected["encode_merges_without_final_newline"]:
        quirk = Speech2Text2Tokenizer(FIXTURES / "vocab.json", merges, do_lower_case=case["do_lower_case"])
        assert quirk(case["text"])["input_ids"] == case["input_ids"], case["text"]


def test_s2t2_loading_and_saving(s2t2_expected, tmp_path):
    folder = tmp_path / "hf450"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / name, folder)
    config = {**s2t2_expected["saved_tokenizer_config"], "clean_up_tokenization_spaces": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    loaded = load_tokenizer(folder)
    assert isinstance(loaded, Speech2Text2Tokenizer) and loaded.clean_up_tokenization_spaces
    assert loaded.decode(loaded.encode("hello world , isn't it ?")) == "hello world, isn't it?"
    loaded.save_pretrained(tmp_path / "again")
    again = load_tokenizer(tmp_path / "again")
    assert again.bpe_ranks == loaded.bpe_ranks and again.get_vocab() == loaded.get_vocab()
    (folder / "merges.txt").unlink()
    (folder / "tokenizer_config.json").unlink()
    decode_only = load_tokenizer(folder)  # vocab.json alone reads as a CTC vocabulary without a config
    assert isinstance(decode_only, Wav2Vec2CTCTokenizer)
    decode_only = Speech2Text2Tokenizer.from_pretrained(folder)
    assert decode_only.decode([4, 17, 11, 2], skip_special_tokens=True) == "the mat"
    with pytest.raises(TokenizerError, match="merges.txt"):
        decode_only.encode("the mat")


def test_load_tokenizer_picks_class_from_files(spm_folders, tmp_path):
    assert isinstance(load_tokenizer(spm_folders["mono"]), Speech2TextTokenizer)
    folder = tmp_path / "s2t2"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURES / name, folder)
    assert isinstance(load_tokenizer(folder), Speech2Text2Tokenizer)
    (folder / "merges.txt").unlink()
    (folder / "config.json").write_text('{"model_type": "speech_to_text_2"}')
    assert isinstance(load_tokenizer(folder), Speech2Text2Tokenizer)
