"""Write the MBart-50 sentencepiece tokenizer fixtures in tests/fixtures/mbart50_tokenizer/.

Needs transformers 4.50.3 (its sentencepiece-based MBart50Tokenizer): transformers 5 reads a lone
sentencepiece.bpe.model only with protobuf installed and then runs it as a tokenizers Unigram model. Run it in
the environment of scripts/make_s2t2_fixtures.py:

    /tmp/venv450/bin/python scripts/make_mbart50_tokenizer_fixtures.py

It trains a small unigram sentencepiece model (the kind MBart-50 ships as sentencepiece.bpe.model), saves
transformers' MBart50Tokenizer for it (no tokenizer.json, as in facebook/wav2vec2-xls-r-300m-en-to-15), and
records ids, tokens and decoded text in expected.json for tests/test_fast_tokenizers.py.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import sentencepiece as spm
import transformers
from transformers import MBart50Tokenizer

REQUIRED_VERSION = "4.50.3"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mbart50_tokenizer"
WORDS = ["the", "a", "speech", "model", "hears", "words", "and", "writes", "them", "down", "quickly"]
WORDS += ["while", "people", "talk", "about", "it"]
SENTENCES = [
    "the speech model hears",
    "The Speech MODELS hear, words.",
    "  spaced    out\ttext here ",
    "zebra <mask> de_DE unknown",
    "",
]
ID_LISTS = [[250, 5, 6, 7, 2, 1, 1], [2, 0, 9, 3, 12], []]  # 250 becomes a language id below


def _train(folder: Path) -> Path:
    rng = random.Random(0)
    corpus = [
        " ".join(rng.choice(WORDS) for _ in range(8)) + rng.choice([" .", " ,", "!"]) for _ in range(200)
    ]
    (folder / "corpus.txt").write_text("\n".join(corpus))
    prefix = str(folder / "sp")
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"),
        model_prefix=prefix,
        vocab_size=40,
        model_type="unigram",
        minloglevel=2,
    )
    return Path(prefix + ".model")


def _expected(tokenizer: MBart50Tokenizer) -> dict:
    de = tokenizer.lang_code_to_id["de_DE"]
    ids = [[de if i == 250 else i for i in row] for row in ID_LISTS]
    tokenizer.src_lang = "fr_XX"
    french = [tokenizer.encode(text) for text in SENTENCES]
    tokenizer.src_lang = "en_XX"
    return {
        "vocab_size": tokenizer.vocab_size,
        "length": len(tokenizer),
        "all_special_ids": tokenizer.all_special_ids,
        "lang_code_to_id": tokenizer.lang_code_to_id,
        "sentences": SENTENCES,
        "tokens": [tokenizer.tokenize(text) for text in SENTENCES],
        "ids": [tokenizer.encode(text) for text in SENTENCES],
        "ids_fr_XX": french,
        "id_lists": ids,
        "decoded": [tokenizer.decode(row) for row in ids],
        "decoded_skip": [tokenizer.decode(row, skip_special_tokens=True) for row in ids],
        "transformers_version": transformers.__version__,
    }


def main() -> None:
    if transformers.__version__ != REQUIRED_VERSION:
        raise SystemExit(f"needs transformers {REQUIRED_VERSION}, found {transformers.__version__}")
    shutil.rmtree(OUT, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = MBart50Tokenizer(str(_train(Path(scratch))), src_lang="en_XX", tgt_lang="de_DE")
        tokenizer.save_pretrained(OUT)
    (OUT / "expected.json").write_text(json.dumps(_expected(tokenizer), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
