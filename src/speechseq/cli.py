"""Command line: `speechseq transcribe AUDIO... --model M`, `speechseq eval --manifest F --model M` and
`speechseq classify AUDIO... --model M`. It parses, calls the library and formats; nothing else."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .errors import InputError, SpeechSeqError
from .writers import FORMATS

_DESCRIPTION = "Speech recognition and speech translation with encoder-decoder speech models."
_EXAMPLES = """examples:
  speechseq transcribe talk.wav --model facebook/s2t-small-librispeech-asr
  speechseq transcribe a.flac b.mp3 --model ./my-checkpoint --num-beams 5 --output-format json
  speechseq transcribe talk.wav --model facebook/s2t-medium-mustc-multilingual-st --task translate --tgt-lang fr
  speechseq transcribe lecture.mp3 recordings/ --model ./ckpt --output-format srt --output-dir subs/
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechseq", description=_DESCRIPTION)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"speechseq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_transcribe(commands)
    _add_eval(commands)
    _add_classify(commands)
    return parser


def _add_transcribe(commands) -> None:
    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe or translate audio files",
        description="Transcribe (or translate) audio and video files; prints one line per file, in order.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transcribe.add_argument(
        "audio",
        nargs="+",
        metavar="AUDIO",
        help="audio or video files (wav, flac, mp3, ogg, m4a, ...), folders of them, or manifests (.tsv/.jsonl)",
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
    transcribe.add_argument(
        "--batch-size", type=int, default=8, help="files or regions decoded together (default 8)"
    )
    _add_output(transcribe)
    _add_device(transcribe)


def _add_output(transcribe) -> None:
    transcribe.add_argument(
        "--output-format",
        choices=list(FORMATS),
        default="txt",
        help="txt or json go to stdout unless --output-dir is given (one line or row per input, in order; "
        "an input that fails gets an empty line or a row with its error); srt, vtt and tsv are written to "
        "--output-dir, or beside each input",
    )
    transcribe.add_argument("--output-dir", help="folder for one output file per input")
    transcribe.add_argument("--overwrite", action="store_true", help="replace existing output files")
    transcribe.add_argument(
        "--vad",
        choices=["auto", "on", "off"],
        default="auto",
        help="cut audio at voice activity: auto (inputs over 20 s, 60 s for CTC models), on, or off "
        "(fixed-length pieces)",
    )


def _add_device(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="dynamically quantize the linear layers (CPU only): faster, output may differ slightly",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the decoding step (CPU, float32, needs a C++ compiler): faster decoding after tens of "
        "seconds of compiling per batch shape",
    )


def _add_eval(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="score a model on a manifest (WER/CER or BLEU)",
        description="Transcribe a manifest (fairseq S2T TSV or JSON lines) and score it: WER and CER for "
        "ASR, BLEU for translation. Prints a summary and writes one JSON line per utterance.",
        epilog="examples:\n  speechseq eval --manifest dev.tsv --model ./ckpt --normalizer basic\n"
        "  speechseq eval --manifest tst.jsonl --model ./st --task translate --tgt-lang fr\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("--manifest", required=True, help="fairseq S2T .tsv or .jsonl manifest")
    evaluate.add_argument("--model", required=True, help="checkpoint folder or Hugging Face hub id")
    evaluate.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    evaluate.add_argument("--tgt-lang", help="target language code for --task translate")
    evaluate.add_argument(
        "--metric",
        choices=["auto", "wer", "bleu"],
        default="auto",
        help="auto: BLEU for --task translate, else WER and CER",
    )
    evaluate.add_argument(
        "--normalizer",
        choices=["basic", "none"],
        default="basic",
        help="basic: lower-case, no punctuation (default); none: compare texts as they are",
    )
    evaluate.add_argument("--results", help="per-utterance JSON lines (default MANIFEST_STEM.eval.jsonl)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    evaluate.add_argument("--num-beams", type=int, help="beam size (default: the checkpoint's)")
    evaluate.add_argument(
        "--max-new-tokens", type=int, help="longest output in tokens (default: the checkpoint's)"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="utterances decoded together")
    _add_device(evaluate)


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
        from .api import check_device

        check_device(getattr(args, "device", "cpu"), "--device")  # before any file is read or model loaded
        commands = {"classify": _classify, "eval": _evaluate, "transcribe": _transcribe}
        return commands[args.command](args)
    except SpeechSeqError as error:
        print(f"speechseq: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as Unix tools do
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout so that its flush at exit is silent
        return 141
    except (OSError, UnicodeDecodeError) as error:
        # A file or folder the user named cannot be read or written (or is not text where text was due).
        print(f"speechseq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _transcribe(args) -> int:
    from .pipeline import expand_inputs, transcripts
    from .writers import full_text, output_path, write_transcript

    to_stdout = args.output_dir is None and args.output_format in ("txt", "json")
    transcriber = _transcriber(args)
    sources = expand_inputs(args.audio)
    paths = [] if to_stdout else [output_path(s.name, args.output_format, args.output_dir) for s in sources]
    clashing = sorted({str(p) for p in paths if paths.count(p) > 1})
    if clashing:
        raise InputError(
            f"several inputs would write {clashing[0]} (inputs with the same name stem); "
            "transcribe them into different --output-dir folders"
        )
    if not args.overwrite:
        taken = [p for p in paths if p.exists()]
        if taken:
            raise InputError(f"{taken[0]} already exists (and {len(taken) - 1} more); pass --overwrite")
    failed, rows = 0, []
    for group in transcripts(transcriber.transcribe(sources)):
        error = next((segment.error for segment in group if segment.error), None)
        if error:
            failed += 1
            print(f"speechseq: error: {error}", file=sys.stderr)
            # On stdout every input keeps its place: an empty txt line, a json row with the error.
            if to_stdout and args.output_format == "json":
                rows.append({"file": group[0].source, "error": error})
            elif to_stdout:
                print(flush=True)
        elif not to_stdout:
            path = output_path(group[0].source, args.output_format, args.output_dir)
            write_transcript(group, path, args.output_format, args.overwrite)
        elif args.output_format == "json":
            rows.append({"file": group[0].source, "text": full_text(group)})
        else:
            print(full_text(group), flush=True)
    if to_stdout and args.output_format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    return 2 if failed else 0


def _transcriber(args):
    from .pipeline import Transcriber

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.task == "translate" and not args.tgt_lang:
        raise InputError("--task translate needs --tgt-lang (for example --tgt-lang fr)")
    if args.quantize and args.dtype != "float32":
        raise InputError(f"--quantize {args.quantize} quantizes a float32 model; drop --dtype {args.dtype}")
    max_new_tokens = getattr(args, "max_new_tokens", None)
    if max_new_tokens is not None and max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    options = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
    return Transcriber(
        args.model,
        device=args.device,
        dtype=args.quantize or args.dtype,
        batch_size=args.batch_size,
        num_beams=args.num_beams,
        task=args.task,
        tgt_lang=args.tgt_lang if args.task == "translate" else None,
        vad={"auto": None, "on": True, "off": False}[getattr(args, "vad", "auto")],
        progress=sys.stderr.isatty(),
        compile=args.compile,
        **options,
    )


def _evaluate(args) -> int:
    from pathlib import Path

    from .evaluate import evaluate, read_manifest

    results = Path(args.results or f"{Path(args.manifest).stem}.eval.jsonl")
    if results.is_dir() or not results.parent.is_dir():  # found now, not after the whole manifest is decoded
        raise InputError(f"--results {results}: not a file in an existing folder")
    if results.exists() and not args.overwrite:
        raise InputError(f"{results} already exists; pass --overwrite to replace it")
    sources = read_manifest(args.manifest)
    metric = args.metric if args.metric != "auto" else ("bleu" if args.task == "translate" else "wer")
    transcriber = _transcriber(args)
    scores = evaluate(transcriber.transcribe(sources), sources, metric, args.normalizer)
    with results.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in scores.rows)
    for row in scores.rows:
        if row["error"]:
            print(f"speechseq: error: {row['error']}", file=sys.stderr)
    summary = ", ".join(
        f"{name.upper()} {value:.2f}" if name == "bleu" else f"{name.upper()} {100 * value:.2f}%"
        for name, value in scores.scores.items()
    )
    scored = len(scores.rows) - scores.failed
    print(f"{summary} on {scored} utterances ({scores.failed} failed); per utterance: {results}")
    return 2 if scores.failed else 0


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
