"""Write the Speech2Text2Tokenizer parity fixtures in tests/fixtures/s2t2_tokenizer/.

Needs transformers 4.50.3: Speech2Text2 is gone from transformers 5 and its tokenizer is only
importable from 4.11 to 4.57. Run it in a separate environment, e.g.

    python3 -m venv /tmp/venv450
    /tmp/venv450/bin/pip install torch==2.13.0 transformers==4.50.3 sentencepiece
    /tmp/venv450/bin/python scripts/make_s2t2_tokenizer_fixtures.py

It learns a few dozen fastBPE merges over a toy corpus, writes vocab.json and merges.txt in fairseq's
format, and records what transformers' tokenizer makes of a set of sentences and id sequences in
expected.json. tests/test_tokenizers.py checks speechseq's Speech2Text2Tokenizer against that file.
"""

from __future__ import annotations

import collections
import json
import random
import tempfile
from pathlib import Path

import transformers
from transformers import Speech2Text2Tokenizer

REQUIRED_VERSION = "4.50.3"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "s2t2_tokenizer"
NUM_MERGES = 40
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq dictionary order: ids 0..3
CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "hello world , hello there .",
    "the speech model reads the sentence",
    "it's the cat's hat , isn't it ?",
    "we're reading and speaking",
    "the reader reads ! the speaker speaks",
]
SENTENCES = [
    "the cat sat on the mat",
    "hello world , hello there .",
    "The Cat SAT on THE mat",
    "zebra quokka unknown words",
    "it's the cat's hat , isn't it ?",
    "  spaced    out\ttext \n here ",
    "a b c x",
    "the </s> cat <s> sat",
    "hello<unk>world",
    "",
    "reading speaking reader speaker",
]


def learn_merges(corpus: list[str], num_merges: int) -> list[tuple[tuple[str, str], int]]:
    """Learn fastBPE merges: words as characters with </w> on the last, merge the most frequent pair."""
    words = collections.Counter(word for line in corpus for word in line.split())
    splits = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges = []
    for _ in range(num_merges):
        pairs: collections.Counter = collections.Counter()
        for word, count in words.items():
            symbols = splits[word]
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best, count = max(pairs.items(), key=lambda item: (item[1], item[0]))
        merges.append((best, count))
        for word, symbols in splits.items():
            splits[word] = merge_pair(symbols, best)
    return merges


def merge_pair(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def build_vocab(tokenizer: Speech2Text2Tokenizer, corpus: list[str]) -> dict[str, int]:
    """Fairseq dictionary of the BPE pieces of the corpus, most frequent first; a few rare ones left out for <unk>."""
    counts = collections.Counter(piece for line in corpus for piece in tokenizer.tokenize(line))
    pieces = [piece for piece, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    pieces += ["z@@", "q@@", "x"]  # pieces no corpus word produces, so decoding shows them
    kept = [piece for i, piece in enumerate(pieces) if i % 11 != 10]  # drop every 11th piece
    return {token: i for i, token in enumerate(SPECIALS + kept)}


def write_files(folder: Path, merges: list[tuple[tuple[str, str], int]], vocab: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{left} {right} {count}\n" for (left, right), count in merges]
    (folder / "merges.txt").write_text("".join(lines), encoding="utf-8")
    (folder / "vocab.json").write_text(
        json.dumps(vocab, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def encode_cases(folder: Path, merges_file: Path) -> list[dict]:
    cases = []
    for do_lower_case in (False, True):
        tokenizer = Speech2Text2Tokenizer(
            str(folder / "vocab.json"), merges_file=str(merges_file), do_lower_case=do_lower_case
        )
        for text in SENTENCES:
            encoded = tokenizer(text)
            tokens = tokenizer.tokenize(text)
            cases.append(
                {
                    "text": text,
                    "do_lower_case": do_lower_case,
                    "tokens": tokens,
                    "input_ids": encoded["input_ids"],
                }
            )
    return cases


def decode_cases(tokenizer: Speech2Text2Tokenizer) -> list[dict]:
    rng = random.Random(0)
    size = len(tokenizer)
    sequences = [[], [2], [2, 0, 1, 3], [tokenizer.convert_tokens_to_ids("the"), 2, 1, 1]]
    sequences += [[rng.randrange(0, size + 3) for _ in range(rng.randrange(1, 14))] for _ in range(40)]
    cases = []
    for ids in sequences:
        for skip in (False, True):
            for clean in (False, True):
                text = tokenizer.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                cases.append(
                    {
                        "ids": ids,
                        "skip_special_tokens": skip,
                        "clean_up_tokenization_spaces": clean,
                        "text": text,
                    }
                )
    return cases


def main() -> None:
    if transformers.__version__ != REQUIRED_VERSION:
        raise SystemExit(f"needs transformers {REQUIRED_VERSION}, found {transformers.__version__}")
    merges = learn_merges(CORPUS, NUM_MERGES)
    with tempfile.TemporaryDirectory() as tmp:
        # A placeholder vocabulary is enough to produce the corpus pieces the real one is built from.
        write_files(Path(tmp), merges, {token: i for i, token in enumerate(SPECIALS)})
        pieces_tokenizer = Speech2Text2Tokenizer(
            str(Path(tmp) / "vocab.json"), merges_file=str(Path(tmp) / "merges.txt")
        )
        vocab = build_vocab(pieces_tokenizer, CORPUS)
    write_files(OUT, merges, vocab)
    tokenizer = Speech2Text2Tokenizer(str(OUT / "vocab.json"), merges_file=str(OUT / "merges.txt"))
    with tempfile.TemporaryDirectory() as tmp:
        # transformers drops the text after the last "\n" of merges.txt: without a final newline the last merge is lost.
        no_newline = Path(tmp) / "merges.txt"
        no_newline.write_text((OUT / "merges.txt").read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")
        quirk = encode_cases(OUT, no_newline)
        tokenizer.save_pretrained(tmp)
        saved_config = json.loads((Path(tmp) / "tokenizer_config.json").read_text(encoding="utf-8"))
    expected = {
        "transformers_version": transformers.__version__,
        "vocab_size": tokenizer.vocab_size,
        "len": len(tokenizer),
        "all_special_ids": tokenizer.all_special_ids,
        "encode": encode_cases(OUT, OUT / "merges.txt"),
        "encode_merges_without_final_newline": quirk,
        "decode": decode_cases(tokenizer),
        "saved_tokenizer_config": saved_config,
    }
    (OUT / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {OUT} ({len(merges)} merges, {len(vocab)} tokens)")


if __name__ == "__main__":
    main()
