"""Transcriber: voice-activity regions, maximum length, CTC strided chunks, bounded memory, mixed folders."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechseq.cli import main
from speechseq.pipeline import Transcriber, expand_inputs, transcripts
from speechseq.segments import VadOptions, fixed_regions, speech_regions, strided_chunks

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).parent))
from hf_wav2vec2 import make_ctc_checkpoint  # noqa: E402
from make_tiny_checkpoint import make_checkpoint, make_recording  # noqa: E402

RATE = 16000
# Speech regions (seconds) of the long test file; the rest is faint noise.
KNOWN = [(1.0, 3.5), (5.2, 6.0), (8.0, 31.0), (32.5, 33.1), (35.0, 38.7)]


def voiced(samples: int, seed: int) -> np.ndarray:
    """A vowel-like buzz: harmonics of a wavering 110-140 Hz pitch with a 4 Hz syllable rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    pitch = 110 + 30 * rng.random() + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 16))
    return (0.25 * buzz * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def long_recording(seconds: float = 40.0, known=KNOWN, seed: int = 0) -> np.ndarray:
    audio = 0.003 * np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32)
    for index, (start, end) in enumerate(known):
        first, last = int(start * RATE), int(end * RATE)
        audio[first:last] += voiced(last - first, seed=index)
    return audio


def blocks(audio: np.ndarray, size: int = RATE):
    return (audio[i : i + size] for i in range(0, len(audio), size))


@pytest.fixture(scope="module")
def s2t(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("s2t") / "model")


def _matches_known(segments, known=KNOWN, tolerance=0.3) -> None:
    """Every segment lies inside one known region, and the pieces of each region cover it to `tolerance`."""
    for start, end in known:
        inside = [s for s in segments if s.start > start - tolerance and s.end < end + tolerance]
        assert inside, (start, end)
        assert abs(inside[0].start - start) <= tolerance and abs(inside[-1].end - end) <= tolerance
        assert all(
            b.start == a.end for a, b in zip(inside, inside[1:], strict=False)
        )  # split pieces are contiguous
    assert sum(len([s for s in segments if a - 0.3 < s.start and s.end < b + 0.3]) for a, b in known) == len(
        segments
    )


def test_speech_regions_find_known_boundaries():
    regions = list(speech_regions(blocks(long_recording()), RATE))
    _matches_known(regions)
    errors = [abs(r.start - a) for r in regions for a, _ in KNOWN if abs(r.start - a) < 0.3]
    errors += [abs(r.end - b) for r in regions for _, b in KNOWN if abs(r.end - b) < 0.3]
    assert max(errors) <= 0.05  # measured: 0.01 s at most on this file
    assert all(len(r.audio) <= 20 * RATE for r in regions)
    for region in regions:  # a region's samples are the input's samples at its offset
        first = round(region.offset * RATE)
        np.testing.assert_array_equal(region.audio, long_recording()[first : first + len(region.audio)])


def test_long_speech_is_split_at_the_maximum_length():
    regions = list(
        speech_regions(blocks(long_recording(70, [(1.0, 69.0)])), RATE, VadOptions(max_region_s=10))
    )
    assert len(regions) >= 7 and all(len(r.audio) <= 10 * RATE for r in regions)
    assert all(b.start == a.end for a, b in zip(regions, regions[1:], strict=False))
    assert abs(regions[0].start - 1.0) < 0.3 and abs(regions[-1].end - 69.0) < 0.3


def test_fixed_regions_cover_the_stream_once():
    audio = np.arange(10 * RATE + 123, dtype=np.float32)
    regions = list(fixed_regions(blocks(audio, 7000), RATE, 3.0))
    np.testing.assert_array_equal(np.concatenate([r.audio for r in regions]), audio)
    assert [r.start for r in regions] == [0.0, 3.0, 6.0, 9.0]


def test_vad_memory_does_not_grow_with_length():
    def peak(seconds: int) -> int:
        stream = (long_recording(10, [(1, 4), (5, 9)], seed=i) for i in range(seconds // 10))
        tracemalloc.start()
        for _ in speech_regions((b for chunk in stream for b in blocks(chunk)), RATE):
            pass
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    short, long = peak(60), peak(300)
    assert long < 1.2 * short + 200_000, (short, long)


def test_strided_chunks_keep_every_sample_once():
    audio = np.arange(10_000, dtype=np.float32)
    chunks = strided_chunks(audio, 3000, 500)
    kept = np.concatenate([c[left : len(c) - right] for c, left, right in chunks])
    np.testing.assert_array_equal(kept, audio)
    assert chunks[0][1] == 0 and chunks[-1][2] == 0


@pytest.mark.parametrize("with_mask", [False, True], ids=["one_by_one", "batched"])
def test_ctc_chunking_matches_transformers_pipeline(tmp_path, with_mask):
    from transformers import pipeline

    folder = make_ctc_checkpoint(tmp_path / "model", with_mask=with_mask)
    audio = np.asarray(sf.read(make_recording(tmp_path / "clip.wav", seconds=4.3), dtype="float32")[0])
    expected = pipeline("automatic-speech-recognition", model=str(folder))(
        audio.copy(), chunk_length_s=1.0, stride_length_s=0.2
    )
    transcriber = Transcriber(folder, vad=False, chunk_length_s=1.0, stride_length_s=0.2)
    (segment,) = transcriber.transcribe(audio)
    assert segment.text == expected["text"].strip() and segment.text
    assert segment.words and all(0 <= w.start < w.end <= 4.3 for w in segment.words)
    assert [w.text for w in segment.words] == segment.text.split()


def test_ctc_word_times_are_absolute(tmp_path):
    folder = make_ctc_checkpoint(tmp_path / "model")
    audio = long_recording(12, [(1.0, 3.0), (7.0, 9.5)])
    segments = list(Transcriber(folder, vad=True, chunk_length_s=1.0).transcribe(("talk", audio)))
    _matches_known(segments, [(1.0, 3.0), (7.0, 9.5)])
    for segment in segments:
        assert segment.words and segment.source == "talk"
        assert all(segment.start - 0.25 <= w.start <= w.end <= segment.end + 0.25 for w in segment.words)


def test_seq2seq_long_file_segments(s2t, tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, long_recording(), RATE)
    transcriber = Transcriber(s2t, batch_size=4, max_new_tokens=4)
    segments = list(transcriber.transcribe(path))
    _matches_known(segments)
    assert all(s.end - s.start <= 20 for s in segments) and all(s.text for s in segments)
    # The same regions decoded one by one give the same text: batching changes nothing.
    alone = Transcriber(s2t, batch_size=1, max_new_tokens=4)
    assert [s.text for s in alone.transcribe(path)] == [s.text for s in segments]


def test_resampled_stream_finds_the_same_regions(s2t, tmp_path):
    path = tmp_path / "long8k.wav"
    audio = long_recording()
    sf.write(path, audio[::2], RATE // 2)
    segments = list(Transcriber(s2t, max_new_tokens=2).transcribe(path))
    _matches_known(segments)


def test_inputs_folders_arrays_and_manifests(s2t, tmp_path):
    good = make_recording(tmp_path / "a.wav", seconds=1.0)
    (tmp_path / "notes.txt").write_text("not audio")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "x"}\n')
    sources = expand_inputs([tmp_path, manifest, np.zeros(10, np.float32), ("named", torch.zeros(800))])
    assert [s.name for s in sources] == [str(good), str(good), "array2", "named"]
    groups = list(transcripts(Transcriber(s2t, max_new_tokens=2).transcribe(sources)))
    assert [g[0].item for g in groups] == [0, 1, 2, 3]
    assert groups[0][0].text == groups[1][0].text and groups[0][0].error is None
    assert "array2: audio[0] has 10 samples" in groups[2][0].error and groups[3][0].error is None


def test_folder_with_broken_files(s2t, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seconds in [("a.wav", 1.2), ("c.wav", 0.8)]:
        make_recording(folder / name, seconds=seconds)
    sf.write(folder / "long.wav", long_recording(), RATE)
    (folder / "b.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (folder / "empty.flac").write_bytes(b"")
    truncated = (folder / "a.wav").read_bytes()
    (folder / "d.wav").write_bytes(truncated[: len(truncated) // 2])
    out = tmp_path / "out"
    argv = ["transcribe", str(folder), "--model", str(s2t), "--max-new-tokens", "3", "--output-dir", str(out)]
    assert main([*argv, "--output-format", "srt"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in ("b.wav", "empty.flac", "d.wav"))
    assert "a.wav" not in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.srt", "c.srt", "long.srt"]
    cues = (out / "long.srt").read_text().strip().split("\n\n")
    assert len(cues) == len(list(Transcriber(s2t, max_new_tokens=3).transcribe(folder / "long.wav")))
    assert main([*argv, "--output-format", "srt"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--output-format", "srt", "--overwrite"]) == 2


def test_bad_region_settings_are_refused(s2t):
    from speechseq.errors import InputError

    refused = {
        "vad must be True, False or None": dict(vad="on"),
        "max_region_s must be > 0": dict(max_region_s=0),
        "max_region_s must be a number": dict(max_region_s="20"),
        "chunk_length_s must be a number of seconds > 0": dict(chunk_length_s=-1.0),
        "less than half of chunk_length_s": dict(chunk_length_s=2.0, stride_length_s=1.0),
    }
    for message, options in refused.items():
        with pytest.raises(InputError, match=message):
            Transcriber(s2t, **options)
    with pytest.raises(InputError, match="VadOptions.aggressiveness must be 0, 1, 2 or 3"):
        VadOptions(aggressiveness=5)
    with pytest.raises(InputError, match="VadOptions.pad_s must be a number of seconds >= 0"):
        VadOptions(pad_s=-0.1)


def test_cli_version(capsys):
    import speechseq

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"speechseq {speechseq.__version__}"


def test_integer_tensors_are_refused_like_integer_arrays(s2t):
    samples = torch.full((16000,), 1000, dtype=torch.int16)  # was cast to float: samples of 1000.0
    for audio in (samples, ("clip", samples)):
        (segment,) = Transcriber(s2t, max_new_tokens=2).transcribe(audio)
        assert "got int16; divide by 32768" in segment.error
