"""Tests for speechseq.audio.features: parity with transformers' feature extractors, edge cases, configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechseq.audio import (
    SeamlessM4TFeatureExtractor,
    Speech2TextFeatureExtractor,
    Wav2Vec2FeatureExtractor,
    kaldi_fbank,
    load_feature_extractor,
    num_fbank_frames,
)
from speechseq.errors import AudioError, CheckpointError, InputError

OURS = {
    "Speech2TextFeatureExtractor": Speech2TextFeatureExtractor,
    "SeamlessM4TFeatureExtractor": SeamlessM4TFeatureExtractor,
    "Wav2Vec2FeatureExtractor": Wav2Vec2FeatureExtractor,
}


def _clip(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.05 * rng.standard_normal(t.shape[0]) + 0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


CLIPS = [_clip(1.0, 0), _clip(0.73, 1), _clip(1.37, 2)]


def _reference(name: str, config: dict):
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, name)(**config)


def _assert_parity(ours: dict, theirs, feature_key: str) -> None:
    """Same keys, shapes and dtypes; features within 1e-4 on valid frames and identical on padded ones."""
    assert set(ours) == set(theirs.keys())
    for key in ours:
        assert ours[key].shape == theirs[key].shape and ours[key].dtype == theirs[key].dtype, key
    if "attention_mask" in ours:
        assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    diff = (ours[feature_key] - theirs[feature_key]).abs()
    assert float(diff.max()) <= 1e-4
    if "attention_mask" in ours and ours["attention_mask"].shape == ours[feature_key].shape[:2]:
        padded = ours["attention_mask"] == 0  # unstacked outputs: whole padded frames/samples
        assert torch.equal(ours[feature_key][padded], theirs[feature_key][padded])


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"normalize_vars": False},
        {"normalize_means": False},
        {"padding_value": 1.0},
        {"do_ceptral_normalize": False, "padding_value": -1.0},
        {"num_mel_bins": 40, "feature_size": 40},
        {"sampling_rate": 8000},
    ],
)
def test_speech2text_matches_transformers(config):
    reference = _reference("Speech2TextFeatureExtractor", config)
    rate = config.get("sampling_rate", 16000)
    clips = CLIPS if rate == 16000 else [_clip(1.0, 3, rate), _clip(0.5, 4, rate)]
    theirs = reference(clips, sampling_rate=rate, padding=True, return_tensors="pt")
    ours = Speech2TextFeatureExtractor(**config)(clips, sampling_rate=rate)
    _assert_parity(ours, theirs, "input_features")
    assert ours["input_features"].shape[-1] == config.get("num_mel_bins", 80)


def test_steady_tone_matches_transformers():
    # A steady tone leaves some mel bins nearly constant (std ~1e-2), where CMVN's 1 / std magnifies any
    # rounding difference in the fbank, e.g. from another FFT library or another order of float64 steps.
    t = np.arange(42237) / 16000
    noise = np.random.default_rng(0).standard_normal(t.shape[0])
    tone = (0.9 * np.sin(2 * np.pi * 4512.7 * t) + 1e-5 * noise).astype(np.float32)
    theirs = _reference("Speech2TextFeatureExtractor", {})(tone, sampling_rate=16000, return_tensors="pt")
    _assert_parity(Speech2TextFeatureExtractor()(tone, sampling_rate=16000), theirs, "input_features")


@pytest.mark.parametrize(
    ("config", "call"),
    [
        ({}, {}),
        ({"padding_value": 1}, {}),  # facebook/w2v-bert-2.0 pads with 1
        ({"stride": 3}, {}),
        ({}, {"do_normalize_per_mel_bins": False}),
        ({}, {"pad_to_multiple_of": None}),
    ],
)
def test_seamless_matches_transformers(config, call):
    reference = _reference("SeamlessM4TFeatureExtractor", config)
    theirs = reference(CLIPS, sampling_rate=16000, padding=True, return_tensors="pt", **call)
    ours = SeamlessM4TFeatureExtractor(**config)(CLIPS, sampling_rate=16000, **call)
    _assert_parity(ours, theirs, "input_features")


@pytest.mark.parametrize("padding", [True, False])
def test_seamless_single_clip_matches_transformers(padding):
    reference = _reference("SeamlessM4TFeatureExtractor", {})
    theirs = reference(CLIPS[1], sampling_rate=16000, padding=padding, return_tensors="pt")
    ours = SeamlessM4TFeatureExtractor()(CLIPS[1], sampling_rate=16000, padding=padding)
    _assert_parity(ours, theirs, "input_features")


@pytest.mark.parametrize(
    ("config", "call"),
    [
        ({}, {}),  # no mask: statistics include the padding (wav2vec2-base-960h)
        ({"return_attention_mask": True}, {}),
        ({"do_normalize": False}, {}),
        ({"return_attention_mask": True, "padding_value": 0.5}, {}),
        ({}, {"return_attention_mask": True}),
    ],
)
def test_wav2vec2_matches_transformers(config, call):
    reference = _reference("Wav2Vec2FeatureExtractor", config)
    theirs = reference(CLIPS, sampling_rate=16000, padding="longest", return_tensors="pt", **call)
    ours = Wav2Vec2FeatureExtractor(**config)(CLIPS, sampling_rate=16000, **call)
    _assert_parity(ours, theirs, "input_values")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_silent_clip_is_finite_where_transformers_is_not():
    silence = np.zeros(16000, np.float32)
    ours = Speech2TextFeatureExtractor()([silence, CLIPS[0]], sampling_rate=16000)["input_features"]
    assert bool(torch.isfinite(ours).all()) and float(ours[0].abs().max()) == 0.0
    reference = _reference("Speech2TextFeatureExtractor", {})
    theirs = reference(silence, sampling_rate=16000, return_tensors="pt")["input_features"]
    assert not bool(torch.isfinite(theirs).all())  # the documented deviation: std 0 gives inf/NaN there


def test_frame_counts_and_minimum_length():
    extractor = Speech2TextFeatureExtractor()
    out = extractor([np.full(400, 0.1, np.float32), CLIPS[0]], sampling_rate=16000)
    assert out["attention_mask"].sum(1).tolist() == [1, 98]
    assert num_fbank_frames(torch.tensor([0, 399, 400, 559, 560, 16000])).tolist() == [0, 0, 1, 1, 2, 98]
    for cls in (Speech2TextFeatureExtractor, SeamlessM4TFeatureExtractor):
        with pytest.raises(AudioError, match=r"audio\[1\] has 399 samples.*400"):
            cls()([CLIPS[0], np.zeros(399, np.float32)])


def test_padding_does_not_change_valid_frames():
    for extractor in (Speech2TextFeatureExtractor(), SeamlessM4TFeatureExtractor()):
        batch = extractor(CLIPS)
        alone = extractor(CLIPS[1])
        frames = alone["input_features"].shape[1]
        assert torch.equal(batch["input_features"][1, :frames], alone["input_features"][0])


def test_block_size_does_not_change_features(monkeypatch):
    import speechseq.audio.fbank as fbank

    waveforms = torch.from_numpy(np.stack([CLIPS[0], np.resize(CLIPS[1], 16000)]))
    whole = kaldi_fbank(waveforms)
    monkeypatch.setattr(fbank, "_BLOCK_FRAMES", 12)  # 98 frames per clip: 9 blocks, the last one partial
    assert torch.equal(kaldi_fbank(waveforms), whole)


def test_thread_count_does_not_change_features():
    threads = torch.get_num_threads()
    extractors = (Speech2TextFeatureExtractor(), SeamlessM4TFeatureExtractor(), Wav2Vec2FeatureExtractor())
    try:
        torch.set_num_threads(1)
        alone = [extractor(CLIPS) for extractor in extractors]
        torch.set_num_threads(3)
        for extractor, expected in zip(extractors, alone, strict=True):
            out = extractor(CLIPS)
            assert all(torch.equal(out[key], expected[key]) for key in expected)
    finally:
        torch.set_num_threads(threads)


def test_dither_follows_torch_seed():
    extractor = Speech2TextFeatureExtractor(dither=1.0)
    torch.manual_seed(0)
    first = extractor(CLIPS)["input_features"]
    torch.manual_seed(0)
    assert torch.equal(extractor(CLIPS)["input_features"], first)
    assert not torch.equal(extractor(CLIPS)["input_features"], first)


def test_torch_and_numpy_inputs_agree():
    extractor = Speech2TextFeatureExtractor()
    from_numpy = extractor(CLIPS)["input_features"]
    from_torch = extractor([torch.from_numpy(clip) for clip in CLIPS], device="cpu")["input_features"]
    assert torch.equal(from_numpy, from_torch)


def test_bad_calls_raise_clear_errors():
    extractor = Speech2TextFeatureExtractor()
    with pytest.raises(AudioError, match="int16"):
        extractor((CLIPS[0] * 32767).astype(np.int16))
    with pytest.raises(AudioError, match="44100"):
        extractor(CLIPS[0], sampling_rate=44100)
    with pytest.raises(AudioError, match="downmix"):
        extractor(np.stack([CLIPS[0], CLIPS[0]]))
    with pytest.raises(InputError, match="padding=True"):
        extractor(CLIPS, padding=False)
    with pytest.raises(InputError, match="padding"):
        Wav2Vec2FeatureExtractor()(CLIPS, padding="max_length")
    with pytest.raises(InputError, match="pad_to_multiple_of"):
        SeamlessM4TFeatureExtractor()(CLIPS, pad_to_multiple_of=0)
    with pytest.raises(InputError, match="device"):
        extractor(CLIPS, device="nonsense")


def test_kaldi_fbank_shapes_and_input_left_alone():
    waveforms = torch.from_numpy(np.stack([CLIPS[0], CLIPS[0]])).double()
    before = waveforms.clone()
    features = kaldi_fbank(waveforms)
    assert features.shape == (2, 98, 80) and features.dtype == torch.float32
    assert torch.equal(waveforms, before)
    assert kaldi_fbank(torch.zeros(1, 399)).shape == (1, 0, 80)
    dithered = Speech2TextFeatureExtractor(dither=1.0)(CLIPS[0])["input_features"]
    assert bool(torch.isfinite(dithered).all()) and dithered.shape == (1, 98, 80)


def test_config_keys_types_and_defaults():
    old_hub_config = {"feature_size": 80, "num_mel_bins": 80, "padding_value": 0, "do_normalize": True}
    extractor = Speech2TextFeatureExtractor.from_dict(
        {**old_hub_config, "norm_means": True, "norm_vars": True}
    )
    assert extractor.padding_value == 0.0 and isinstance(extractor.padding_value, float)
    for bad in (
        {"num_mel_bins": "80"},
        {"normalize_vars": "yes"},
        {"padding_value": None},
        {"sampling_rate": 1.5},
    ):
        with pytest.raises(InputError, match=next(iter(bad))):
            Speech2TextFeatureExtractor.from_dict(bad)
    with pytest.raises(InputError, match="padding_side"):
        Wav2Vec2FeatureExtractor(padding_side="left")
    with pytest.raises(InputError, match="Wav2Vec2FeatureExtractor"):
        Speech2TextFeatureExtractor.from_dict({"feature_extractor_type": "Wav2Vec2FeatureExtractor"})


@pytest.mark.parametrize("name", list(OURS))
def test_save_pretrained_round_trips_through_transformers(tmp_path, name):
    config = {"padding_value": 1.0} if name != "Wav2Vec2FeatureExtractor" else {"return_attention_mask": True}
    ours = OURS[name](**config)
    ours.save_pretrained(tmp_path / "ours")
    theirs = type(_reference(name, {})).from_pretrained(tmp_path / "ours")
    assert type(theirs).__name__ == name
    assert {key: theirs.to_dict()[key] for key in ours.to_dict()} == ours.to_dict()
    theirs.save_pretrained(tmp_path / "theirs")
    assert load_feature_extractor(tmp_path / "theirs") == ours
    assert OURS[name].from_pretrained(tmp_path / "theirs") == ours


def test_load_feature_extractor_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        load_feature_extractor(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    for content in ('{"feature_extractor_type": "WhisperFeatureExtractor"}', "{}", "[1, 2]", "{not json"):
        path.write_text(content)
        with pytest.raises(CheckpointError, match=str(path)):
            load_feature_extractor(tmp_path)
    path.write_text(
        json.dumps({"feature_extractor_type": "Speech2TextFeatureExtractor", "num_mel_bins": "80"})
    )
    with pytest.raises(CheckpointError, match="num_mel_bins"):
        load_feature_extractor(tmp_path)
