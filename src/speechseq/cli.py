"""Command line: `speechseq transcribe AUDIO... --model M` and `speechseq classify AUDIO... --model M`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import InputError, SpeechSeqError

_DESCRIPTION = "Speech recognition and speech translation with encoder-decoder speech models."
_EXAMPLES = """examples:
  speechseq transcribe talk.wav --model facebook/s2t-small-librispeech-asr
  speechseq transcribe a.flac b.mp3 --model ./my-checkpoint --num-beams 5 --output-format json
  speechseq transcribe talk.wav --model facebook/s2t-medium-mustc-multilingual-st --task translate --tgt-lang fr
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechseq", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe or translate audio files",
        description="Transcribe (or translate) audio and video files; prints one line per file, in order.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transcribe.add_argument(
        "audio", nargs="+", metavar="AUDIO", help="audio or video files (wav, flac, mp3, ogg, m4a, ...)"
    )
    transcribe.add_argument("--model", required=True, help="checkpoint folder or Hugging Face hub id")
    transcribe.add_argument(
        "--task",
        choices=["transcribe", "translate"],
        default="transcribe",
        help="translate forces the target-language token of multilingual models",
    )
    transcribe.add_argument("--tgt-lang", help="target language code for --task translate (e.g. fr, de)")
    transcribe.add_argument("--num-beams", type=int, help="beam size (default: the checkpoint's)")
    transcribe.add_argument(
        "--max-new-tokens", type=int, help="longest output in tokens (default: the checkpoint's)"
    )
    transcribe.add_argument("--batch-size", type=int, default=8, help="files decoded together (default 8)")
    transcribe.add_argument(
        "--output-format", choices=["txt", "json"], default="txt", help="txt: one line per file; json"
    )
    transcribe.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    transcribe.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    _add_classify(commands)
    return parser


def _add_classify(commands) -> None:
    classify = commands.add_parser(
        "classify",
        help="label audio files with a classification model",
        description="Classify audio files with an utterance, frame or x-vector classification checkpoint; "
        "prints a JSON list with one object per file, in input order.",
        epilog="examples:\n  speechseq classify a.wav b.flac --model ./w2v-bert-emotion --top-k 3\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    classify.add_argument("audio", nargs="+", metavar="AUDIO", help="audio or video files")
    classify.add_argument("--model", required=True, help="checkpoint folder or Hugging Face hub id")
    classify.add_argument("--top-k", type=int, default=5, help="labels reported per file (default 5)")
    classify.add_argument("--batch-size", type=int, default=8, help="files run together (default 8)")
    classify.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    classify.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _classify(args) if args.command == "classify" else _transcribe(args)
    except SpeechSeqError as error:
        print(f"speechseq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _transcribe(args) -> int:
    from .transcribe import transcribe_files

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.task == "translate" and not args.tgt_lang:
        raise InputError("--task translate needs --tgt-lang (for example --tgt-lang fr)")
    options = {}
    if args.num_beams is not None:
        options["num_beams"] = args.num_beams
    if args.max_new_tokens is not None:
        options["max_new_tokens"] = args.max_new_tokens
    results = transcribe_files(
        args.audio,
        args.model,
        batch_size=args.batch_size,
        tgt_lang=args.tgt_lang if args.task == "translate" else None,
        device=args.device,
        dtype=args.dtype,
        **options,
    )
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"speechseq: error: {result.error}", file=sys.stderr)
    good = [r for r in results if not r.error]
    if args.output_format == "json":
        print(json.dumps([{"file": r.file, "text": r.text} for r in good], ensure_ascii=False, indent=2))
    else:
        for result in good:
            print(result.text)
    return 2 if failed else 0


def _classify(args) -> int:
    from .classify import classify_files

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    results = classify_files(
        args.audio,
        args.model,
        batch_size=args.batch_size,
        top_k=args.top_k,
        device=args.device,
        dtype=args.dtype,
    )
    for result in results:
        if result.error:
            print(f"speechseq: error: {result.error}", file=sys.stderr)
    print(json.dumps([r.to_json() for r in results if not r.error], ensure_ascii=False, indent=2))
    return 2 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
