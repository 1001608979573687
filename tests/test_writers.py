"""Output formats: txt, json, srt, vtt and tsv parse back to the segments; existing files are kept."""

from __future__ import annotations

import json
import re

import pytest

from speechseq.errors import InputError
from speechseq.pipeline import Segment, Word
from speechseq.writers import FORMATTERS, full_text, output_path, write_transcript

SEGMENTS = [
    Segment("talk.wav", 0, 0.5, 2.25, "hello there", [Word("hello", 0.5, 1.0), Word("there", 1.2, 2.25)]),
    Segment("talk.wav", 0, 3661.0015, 3662.5, "an hour --> later\tand more"),
    Segment("talk.wav", 0, 3700.0, 3701.0, ""),  # silence: no cue
]
_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def _seconds(groups) -> float:
    hours, minutes, seconds, millis = map(int, groups)
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_cues(text: str, separator: str) -> list[tuple[float, float, str]]:
    """A strict SubRip/WebVTT reader: blocks separated by one blank line, a time line, then text."""
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        if separator == ",":
            assert lines.pop(0).isdigit()
        match = _CUE.fullmatch(lines[0])
        assert match and separator in lines[0], lines[0]
        assert lines[1:] and all(lines[1:])
        cues.append((_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), "\n".join(lines[1:])))
    return cues


def test_srt_parses_and_numbers_cues():
    text = FORMATTERS["srt"](SEGMENTS)
    cues = parse_cues(text, ",")
    assert [c[2] for c in cues] == ["hello there", "an hour --> later\tand more"]
    assert cues[0][:2] == (0.5, 2.25) and cues[1][:2] == (3661.002, 3662.5)
    assert text.startswith("1\n00:00:00,500 --> 00:00:02,250\n") and "\n2\n01:01:01,002" in text


def test_vtt_parses():
    text = FORMATTERS["vtt"](SEGMENTS)
    header, _, body = text.partition("\n\n")
    assert header == "WEBVTT"
    cues = parse_cues(body, ".")
    assert [c[:2] for c in cues] == [(0.5, 2.25), (3661.002, 3662.5)]
    assert "-->" not in cues[1][2]  # the arrow would end the cue's text in a WebVTT reader


def test_tsv_json_and_txt():
    rows = FORMATTERS["tsv"](SEGMENTS).splitlines()
    assert rows == [
        "start\tend\ttext",
        "500\t2250\thello there",
        "3661002\t3662500\tan hour --> later and more",
    ]
    document = json.loads(FORMATTERS["json"](SEGMENTS))
    assert document["file"] == "talk.wav" and document["text"] == full_text(SEGMENTS)
    assert document["segments"][0]["words"][1] == {"text": "there", "start": 1.2, "end": 2.25}
    assert "words" not in document["segments"][1]
    assert FORMATTERS["txt"](SEGMENTS) == "hello there\nan hour --> later\tand more\n"


def test_paths_and_overwrite(tmp_path):
    assert output_path("/data/a.b.wav", "srt") == output_path("/data/a.b.wav", "srt", "/data")
    assert output_path("x/talk.wav", "vtt", tmp_path) == tmp_path / "talk.vtt"
    path = write_transcript(SEGMENTS, tmp_path / "sub" / "talk.srt", "srt")
    path.write_text("keep me")
    with pytest.raises(InputError, match="--overwrite"):
        write_transcript(SEGMENTS, path, "srt")
    assert path.read_text() == "keep me"
    write_transcript(SEGMENTS, path, "srt", overwrite=True)
    assert parse_cues(path.read_text(), ",")
    with pytest.raises(InputError, match="unknown output format"):
        write_transcript(SEGMENTS, tmp_path / "t.doc", "doc")
