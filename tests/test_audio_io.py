"""Tests for speechseq.audio.io: decoding files (soundfile and PyAV), bad files, and waveform checks."""

from __future__ import annotations

import math
import struct
import zlib

import av
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from speechseq.audio import load_audio, validate_waveform
from speechseq.audio.io import collect_waveforms, pad_waveforms
from speechseq.errors import AudioError, InputError


def _tone(seconds: float, rate: int, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _write_aac(path, samples: np.ndarray, rate: int) -> None:
    """Encode (channels, N) float32 samples as AAC in an mp4/m4a container with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo" if samples.shape[0] == 2 else "mono")
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def _write_video(path, soundtrack: np.ndarray | None = None, rate: int = 16000) -> None:
    """Write a tiny mpeg4 video, with a mono AAC soundtrack if one is given."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        packets = []
        if soundtrack is not None:
            audio = container.add_stream("aac", rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray(soundtrack[None], format="fltp", layout="mono")
            frame.sample_rate = rate
            packets += [*audio.encode(frame), *audio.encode(None)]
        for _ in range(3):
            packets += video.encode(
                av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            )
        for packet in [*packets, *video.encode(None)]:
            container.mux(packet)


def _png_bytes() -> bytes:
    """A valid 1x1 grey PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def test_wav_at_target_rate_is_returned_unchanged(tmp_path):
    samples = _tone(0.5, 16000)
    sf.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    loaded = load_audio(tmp_path / "a.wav")
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    np.testing.assert_array_equal(loaded, samples)


def test_stereo_flac_is_averaged_and_resampled(tmp_path):
    left, right = _tone(1.0, 44100, 440.0), _tone(1.0, 44100, 1000.0)
    sf.write(tmp_path / "s.flac", np.stack([left, right], axis=1), 44100, subtype="PCM_24")
    loaded = load_audio(str(tmp_path / "s.flac"), sampling_rate=16000)
    assert loaded.shape == (math.ceil(44100 * 16000 / 44100),) and loaded.dtype == np.float32
    decoded, _ = sf.read(tmp_path / "s.flac", dtype="float32")
    expected = soxr.resample(decoded.mean(axis=1), 44100, 16000, quality="HQ")
    np.testing.assert_allclose(loaded, expected, atol=1e-6)


def test_matches_transformers_soundfile_loader(tmp_path):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    sf.write(tmp_path / "s.flac", np.stack([_tone(0.7, 22050), _tone(0.7, 22050, 300.0)], axis=1), 22050)
    expected = audio_utils.load_audio(str(tmp_path / "s.flac"), sampling_rate=16000, backend="soundfile")
    np.testing.assert_array_equal(load_audio(tmp_path / "s.flac"), expected)


@pytest.mark.parametrize("suffix", ["ogg", "mp3"])
def test_compressed_formats_decode_with_soundfile(tmp_path, suffix):
    sf.write(tmp_path / f"a.{suffix}", _tone(1.0, 16000), 16000)
    loaded = load_audio(tmp_path / f"a.{suffix}")
    assert loaded.ndim == 1 and abs(loaded.shape[0] - 16000) < 1200
    assert 0.2 < float(np.sqrt(np.mean(loaded**2))) < 0.4  # a 0.4-amplitude sine has RMS 0.28


def test_m4a_falls_back_to_pyav(tmp_path):
    samples = np.stack([_tone(1.0, 22050), _tone(1.0, 22050)])
    _write_aac(tmp_path / "a.m4a", samples, 22050)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(tmp_path / "a.m4a"))
    loaded = load_audio(tmp_path / "a.m4a")
    # AAC adds encoder priming (about 1-2 codec frames), so the length is only approximate.
    assert loaded.dtype == np.float32 and loaded.ndim == 1 and 16000 <= loaded.shape[0] < 18500
    assert 0.2 < float(np.sqrt(np.mean(loaded**2))) < 0.4


def test_video_soundtrack_is_extracted(tmp_path):
    _write_video(tmp_path / "clip.mp4", _tone(0.5, 16000))
    loaded = load_audio(tmp_path / "clip.mp4")
    assert loaded.ndim == 1 and 8000 <= loaded.shape[0] < 10500
    assert 0.2 < float(np.sqrt(np.mean(loaded**2))) < 0.4


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_files(folder):
    """Yield (name, path) pairs of files load_audio must reject."""
    yield "missing", folder / "missing.wav"
    (folder / "dir.wav").mkdir()
    yield "folder", folder / "dir.wav"
    (folder / "empty.wav").write_bytes(b"")
    yield "empty", folder / "empty.wav"
    sf.write(folder / "zero.wav", np.zeros(0, np.float32), 16000)
    yield "zero samples", folder / "zero.wav"
    (folder / "notes.txt").write_text("not audio\n" * 20)
    yield "text", folder / "notes.txt"
    (folder / "image.png").write_bytes(_png_bytes())
    yield "image", folder / "image.png"
    _write_video(folder / "video.mp4")
    yield "video without audio", folder / "video.mp4"
    for suffix in ("wav", "flac", "ogg"):
        sf.write(folder / f"cut.{suffix}", _tone(1.0, 16000), 16000)
        _truncate(folder / f"cut.{suffix}")
        yield f"truncated {suffix}", folder / f"cut.{suffix}"
    _write_aac(folder / "cut.m4a", _tone(1.0, 16000)[None], 16000)
    _truncate(folder / "cut.m4a")
    yield "truncated m4a", folder / "cut.m4a"


def test_bad_files_raise_audio_error_naming_the_path(tmp_path):
    for name, path in _bad_files(tmp_path):
        with pytest.raises(AudioError) as error:
            load_audio(path)
        assert str(path) in str(error.value), name


def test_streamed_bad_files_raise_audio_error_naming_the_path(tmp_path):
    # Long inputs are read block by block (audio/stream.py); a truncated file must not become a short transcript.
    from speechseq.audio.stream import stream_audio

    for name, path in _bad_files(tmp_path):
        with pytest.raises(AudioError) as error:
            list(stream_audio(path, 16000))
        assert str(path) in str(error.value), name


def test_nan_samples_are_refused_with_their_time(tmp_path):
    from speechseq.audio.stream import stream_audio

    samples = _tone(3.0, 16000)
    samples[40000] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    for read in (
        lambda p: load_audio(p),
        lambda p: list(stream_audio(p, 16000)),
        lambda p: load_audio(p, 8000),
    ):
        with pytest.raises(
            AudioError, match=r"nan.wav holds NaN or infinite samples \(the first at 2.500 s\)"
        ):
            read(tmp_path / "nan.wav")


def test_bad_arguments_raise_input_error(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(0.1, 16000), 16000)
    with pytest.raises(InputError):
        load_audio(tmp_path / "a.wav", sampling_rate=0)
    with pytest.raises(InputError):
        load_audio(12345)


def test_validate_waveform_accepts_numpy_and_torch_floats():
    samples = _tone(0.1, 16000)
    from_numpy = validate_waveform(samples.astype(np.float64), 16000, 16000, "audio")
    from_torch = validate_waveform(torch.from_numpy(samples), None, 16000, "audio")
    assert from_numpy.dtype == from_torch.dtype == torch.float32
    torch.testing.assert_close(from_numpy, from_torch)


@pytest.mark.parametrize(
    ("waveform", "needles"),
    [
        ((np.ones(100) * 1000).astype(np.int16), ["int16", "32768"]),
        (torch.ones(100, dtype=torch.int32), ["int32", "2147483648"]),
        (np.zeros((2, 100), np.float32), ["(2, 100)", "downmix", "list"]),
        (np.float32(0.5), ["0-d"]),
        (np.zeros(0, np.float32), ["empty"]),
        (np.array([0.0, np.nan, 0.0], np.float32), ["NaN", "sample 1"]),
        (torch.tensor([0.0, 0.0, float("inf")]), ["infinite", "sample 2"]),
        (np.zeros(4, np.complex64), ["complex64"]),
    ],
)
def test_validate_waveform_rejects_bad_arrays(waveform, needles):
    with pytest.raises(AudioError) as error:
        validate_waveform(waveform, 16000, 16000, "audio[3]")
    message = str(error.value)
    assert "audio[3]" in message
    for needle in needles:
        assert needle in message


def test_validate_waveform_rejects_a_mismatched_rate():
    with pytest.raises(AudioError) as error:
        validate_waveform(np.zeros(100, np.float32), 44100, 16000, "audio")
    assert "44100" in str(error.value) and "16000" in str(error.value) and "load_audio" in str(error.value)


def test_validate_waveform_rejects_non_arrays():
    with pytest.raises(InputError, match="load_audio"):
        validate_waveform("speech.wav", 16000, 16000, "audio")
    with pytest.raises(InputError):
        collect_waveforms([], 16000, 16000)
    with pytest.raises(InputError, match="list of numbers"):
        collect_waveforms([0.0, 0.1], 16000, 16000)


def test_pad_waveforms_pads_right_and_checks_lengths():
    batch, lengths = pad_waveforms([torch.ones(3), torch.ones(5)], padding=True, fill=-1.0)
    assert batch.tolist() == [[1, 1, 1, -1, -1], [1, 1, 1, 1, 1]] and lengths.tolist() == [3, 5]
    with pytest.raises(InputError, match="padding=True"):
        pad_waveforms([torch.ones(3), torch.ones(5)], padding=False)
