"""TvltFeatureExtractor: parity with transformers 4.40.2 (oracle), the original-release mode, robustness."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from transformers import TvltFeatureExtractor as ReferenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from tvlt import BatchFeature, TvltFeatureExtractor

ATOL = 1e-4  # issue 3 acceptance: audio_values within 1e-4 of the reference


@pytest.fixture(scope="module")
def reference() -> ReferenceFeatureExtractor:
    return ReferenceFeatureExtractor()


@pytest.fixture(scope="module")
def wav16k(media_dir) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(media_dir / "K0m1tO3Ybyc_2.wav", dtype="float32")
    assert audio.ndim == 1 and rate == 16000
    return audio, rate


@pytest.fixture(scope="module")
def wav44k(wav16k) -> np.ndarray:
    audio, rate = wav16k
    return AF.resample(torch.from_numpy(audio), rate, 44100).numpy()


def _random(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).uniform(-1, 1, n)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- parity (hf)
def test_mel_filters_match_reference_bank():
    ours = TvltFeatureExtractor().mel_filters(torch.device("cpu"), torch.float64).numpy()
    ref = mel_filter_bank(
        num_frequency_bins=1025, num_mel_filters=128, min_frequency=0.0, max_frequency=22050.0,
        sampling_rate=44100, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    assert ours.shape == ref.shape == (1025, 128)
    np.testing.assert_allclose(ours, ref, atol=2e-7)


@pytest.mark.parametrize("stft_dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["random", "quiet_random", "real"])
def test_parity_with_reference(reference, wav44k, case, stft_dtype):
    audio = {"random": _random(93680), "quiet_random": _random(50000, seed=1, scale=0.01), "real": wav44k}[case]
    ref = reference(audio, sampling_rate=44100, return_tensors="np")
    ours = TvltFeatureExtractor(stft_dtype=stft_dtype)(audio, sampling_rate=44100, return_tensors="np")
    assert ours["audio_values"].shape == ref["audio_values"].shape
    assert ours["audio_values"].dtype == np.float32
    np.testing.assert_allclose(ours["audio_values"], ref["audio_values"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(ours["audio_mask"], ref["audio_mask"])
    assert ours["audio_mask"].dtype == ref["audio_mask"].dtype


def test_parity_reference_example_shape(reference):
    # REFERENCE.md A.2: 93,680 samples -> 182 frames, padded to 192, 96 audio patches
    ours = TvltFeatureExtractor()(_random(93680), sampling_rate=44100, return_tensors="pt")
    assert ours.audio_values.shape == (1, 1, 192, 128)
    assert ours.audio_mask.shape == (1, 96) and ours.audio_mask.sum().item() == 96
    assert torch.all(ours.audio_values[0, 0, 182:] == 0.0)  # padding_value 0.0 after the 182 real frames


def test_parity_batch_of_unequal_clips(reference, wav44k):
    clips = [_random(30000, seed=2), wav44k, _random(9000, seed=3)]
    ref = reference(clips, sampling_rate=44100, return_tensors="np")
    ours = TvltFeatureExtractor()(clips, sampling_rate=44100, return_tensors="np")
    assert ours["audio_values"].shape == ref["audio_values"].shape == (3, 1, 432, 128)
    np.testing.assert_allclose(ours["audio_values"], ref["audio_values"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(ours["audio_mask"], ref["audio_mask"])
    assert ours["audio_mask"].sum(1).tolist() == [32.0, 216.0, 16.0]


def test_torch_input_matches_numpy_and_returns_torch():
    audio = _random(20000, seed=4)
    fe = TvltFeatureExtractor()
    out_np = fe(audio, sampling_rate=44100, return_tensors="np")
    out_pt = fe(torch.from_numpy(audio), sampling_rate=44100, return_tensors="pt")
    assert isinstance(out_pt, BatchFeature) and isinstance(out_pt.audio_values, torch.Tensor)
    np.testing.assert_array_equal(out_pt.audio_values.numpy(), out_np["audio_values"])
    assert isinstance(fe(audio, sampling_rate=44100)["audio_values"], np.ndarray)  # None -> numpy, as the HF port


# ------------------------------------------------------------------------------------------ acceptance, 16 kHz
@pytest.mark.parametrize("mode", ["hf", "original"])
def test_native_16khz_clip_gives_432_frames_and_216_patches(wav16k, mode):
    audio, rate = wav16k
    out = TvltFeatureExtractor(mode=mode)(audio, sampling_rate=rate, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 432, 128)
    assert out.audio_mask.shape == (1, 216)
    assert out.audio_mask.sum().item() == 216


# ------------------------------------------------------------------------------------------- original mode
def _original_oracle(audio: np.ndarray) -> np.ndarray:
    """The original release's recipe re-derived from REFERENCE.md B.3 with transformers' numpy audio utilities
    (librosa-equivalent: zero centre padding, last frame kept), then -1 padding by 16 - T % 16 and a 1024 cap."""
    y = audio.astype(np.float64) - audio.mean()
    filters = mel_filter_bank(
        num_frequency_bins=1025, num_mel_filters=128, min_frequency=0.0, max_frequency=22050.0,
        sampling_rate=44100, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    db = spectrogram(
        y, window_function(2048, "hann"), frame_length=2048, hop_length=512, power=2.0,
        mel_filters=filters, log_mel="dB", db_range=80.0, center=True, pad_mode="constant",
    )  # fmt: skip  (128, frames)
    values = (np.clip((db.T - 20.0) / 40.0, -2.0, 0.0) + 1.0).astype(np.float32)
    pad = 16 - values.shape[0] % 16
    values = np.concatenate([values, -np.ones((pad, 128), np.float32)])[:1024]
    return values[None, None]


@pytest.mark.parametrize("n", [40000, 15872])  # 15872 samples -> 32 frames: a whole extra patch of -1
def test_original_mode_matches_recipe(n):
    audio = _random(n, seed=5) + 0.3  # DC offset: removed by the original recipe
    out = TvltFeatureExtractor(mode="original")(audio, sampling_rate=44100, return_tensors="np")
    expected = _original_oracle(audio)
    assert out["audio_values"].shape == expected.shape
    np.testing.assert_allclose(out["audio_values"], expected, atol=ATOL, rtol=0)
    frames = 1 + n // 512
    assert out["audio_mask"].sum() == -(-frames // 16) * 8
    if n == 15872:
        assert out["audio_values"].shape[2] == 48 and out["audio_mask"].sum() == 16


def test_original_mode_caps_at_1024_frames_and_pads_batch_with_minus_one():
    fe = TvltFeatureExtractor(mode="original")
    assert fe.padding_value == -1.0 and fe.spectrogram_length == 1024
    long, short = _random(44100 * 13, seed=6), _random(10000, seed=7)
    out = fe([long, short], sampling_rate=44100, return_tensors="pt")
    assert out.audio_values.shape == (2, 1, 1024, 128)
    assert out.audio_mask.sum(1).tolist() == [512.0, 16.0]
    assert torch.all(out.audio_values[1, 0, 32:] == -1.0)


def test_hf_mode_caps_at_2048_frames():
    out = TvltFeatureExtractor()(_random(512 * 2100, seed=8), sampling_rate=44100, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 2048, 128)
    assert out.audio_mask.sum().item() == 1024


# ------------------------------------------------------------------------------------------------ robustness
@pytest.mark.parametrize("rate", [16000, 22050, 48000])
def test_other_sampling_rates_are_resampled(rate):
    audio = _random(rate, seed=9, scale=0.5)  # 1 s
    fe = TvltFeatureExtractor()
    out = fe(audio, sampling_rate=rate, return_tensors="pt")
    by_hand = fe(AF.resample(torch.from_numpy(audio), rate, 44100), sampling_rate=44100, return_tensors="pt")
    torch.testing.assert_close(out.audio_values, by_hand.audio_values)
    assert out.audio_values.shape == (1, 1, 96, 128)  # 44100 samples -> 86 frames -> 6 time patches
    assert out.audio_mask.sum().item() == 48


def test_missing_sampling_rate_warns():
    with pytest.warns(UserWarning, match="no sampling_rate"):
        out = TvltFeatureExtractor()(_random(10000), return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 32, 128)


def test_2d_array_and_list_are_batches_of_mono_clips():
    fe = TvltFeatureExtractor()
    batch = np.stack([_random(20000, seed=10), _random(20000, seed=11)])
    out_2d = fe(batch, sampling_rate=44100, return_tensors="pt")
    out_list = fe(list(batch), sampling_rate=44100, return_tensors="pt")
    one = fe(batch[1], sampling_rate=44100, return_tensors="pt")
    assert out_2d.audio_values.shape == (2, 1, 48, 128)
    torch.testing.assert_close(out_2d.audio_values, out_list.audio_values)
    torch.testing.assert_close(out_2d.audio_values[1:], one.audio_values)


@pytest.mark.parametrize("layout", ["first", "last"])
def test_multichannel_clip_is_averaged_to_mono(layout):
    stereo = np.stack([_random(20000, seed=12), _random(20000, seed=13)])  # (C, N)
    fe = TvltFeatureExtractor()
    given = stereo if layout == "first" else stereo.T
    out = fe(given, sampling_rate=44100, return_tensors="pt", channels=layout)
    mono = fe(stereo.mean(0), sampling_rate=44100, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 48, 128)
    torch.testing.assert_close(out.audio_values, mono.audio_values)


@pytest.mark.parametrize(
    "dtype,scale,offset", [(np.int16, 32768.0, 0.0), (np.int32, 2.0**31, 0.0), (np.uint8, 128.0, 128.0)]
)
def test_integer_pcm_is_scaled(dtype, scale, offset):
    info = np.iinfo(dtype)
    pcm = np.random.default_rng(14).integers(info.min, info.max, 20000, endpoint=True).astype(dtype)
    fe = TvltFeatureExtractor()
    out = fe(pcm, sampling_rate=44100, return_tensors="pt")
    floats = fe((pcm.astype(np.float64) - offset) / scale, sampling_rate=44100, return_tensors="pt")
    torch.testing.assert_close(out.audio_values, floats.audio_values, atol=1e-5, rtol=0)
    torch_out = fe(torch.from_numpy(pcm.astype(np.int16)) if dtype == np.int16 else torch.from_numpy(pcm),
                   sampling_rate=44100, return_tensors="pt")  # fmt: skip
    torch.testing.assert_close(torch_out.audio_values, out.audio_values)


@pytest.mark.parametrize("mode", ["hf", "original"])
def test_silence_is_finite_and_exactly_minus_one(mode):
    out = TvltFeatureExtractor(mode=mode)(np.zeros(30000, np.float32), sampling_rate=44100, return_tensors="pt")
    values = out.audio_values[0, 0, : 1 + 30000 // 512 - (mode == "hf")]
    assert torch.isfinite(out.audio_values).all()
    assert torch.all(values == -1.0)


def test_audio_shorter_than_one_patch():
    fe = TvltFeatureExtractor()
    out = fe(_random(600), sampling_rate=44100, return_tensors="pt")  # 1 frame -> one (padded) patch
    assert out.audio_values.shape == (1, 1, 16, 128) and out.audio_mask.sum().item() == 8
    with pytest.raises(ValueError, match="too short for one spectrogram frame"):
        fe(_random(100), sampling_rate=44100)
    out = TvltFeatureExtractor(mode="original")(_random(100), sampling_rate=44100, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 16, 128) and out.audio_mask.sum().item() == 8


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 3, 1000), np.float32), "accepted audio"),
        (np.zeros((5000, 2), np.float32), r"ambiguous: a batch of 5000 clips .* Pass channels='last' \(N, C\)"),
        (np.zeros((5000, 32), np.float32), "one clip of 32 channels"),  # many channels: still not 5000 clips
        (np.zeros((64, 64), np.float32), "ambiguous"),
        (np.float32(0.5), "accepted audio"),
        ([np.zeros((2, 1000), np.float32)], "channels='first' or 'last'"),
        (np.array([0.1, np.nan] * 1000, np.float32), r"audio: waveform contains 1000 NaN or infinite"),
        ([_random(3000), np.full(3000, 1e17, np.float32)], r"audio\[1\]: sample magnitude 1e\+17 is not a waveform"),
        (np.concatenate([_random(3000), [3.0e38]]).astype(np.float32), "sample magnitude 3e\\+38"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(1000, bool), "real numbers"),
    ],
)
def test_bad_audio_raises_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        TvltFeatureExtractor()(bad, sampling_rate=44100)


def test_loud_but_usable_float_audio_warns_once_per_source(caplog):
    fe = TvltFeatureExtractor()
    loud = [_random(4000, scale=3.0), _random(4000, seed=1, scale=30000.0)]
    with caplog.at_level("WARNING", logger="tvlt.audio"):
        out = fe(loud, sampling_rate=44100, return_tensors="pt")
        fe(loud, sampling_rate=44100, return_tensors="pt")
    assert torch.isfinite(out.audio_values).all()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and "audio[0]: float waveform peaks at 3" in warned[0] and "audio[1]" in warned[1]


@pytest.mark.parametrize("rate,expected", [(16000, (160, 441)), (192000, (640, 147)), (16001, (41, 113))])
def test_resampling_kernel_is_bounded_for_any_rate(rate, expected):
    from tvlt.audio import resample, resampling_ratio

    assert resampling_ratio(rate, 44100) == expected
    # 16001 Hz is co-prime with 44.1 kHz: the exact kernel would hold 44100 x 16013 weights (2.8 GB)
    y = resample(torch.from_numpy(_random(2 * rate)), rate, 44100)
    assert abs(y.shape[0] - 2 * 44100) <= 1  # 2 s in, 2 s out (the approximation is off by 7e-6 at 16001 Hz)
    out = TvltFeatureExtractor()(_random(2 * rate), sampling_rate=rate, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 176, 128) and torch.isfinite(out.audio_values).all()


def test_constructor_validation_and_collate_attributes():
    fe = TvltFeatureExtractor()
    assert (fe.padding_value, fe.patch_size, fe.freq_len, fe.hop_length) == (0.0, [16, 16], 8, 512)
    with pytest.raises(ValueError, match="mode"):
        TvltFeatureExtractor(mode="librosa")
    with pytest.raises(ValueError, match="num_channels"):
        TvltFeatureExtractor(num_channels=2)



def test_port_arguments_accepted_with_their_meaning(reference, caplog, tmp_path):
    """Constructor fields of the port (num_audio_channels, chunk_length, hop_length) and mask_audio / resample are
    accepted; those without effect in the port have none here either and say so once."""
    kwargs = dict(spectrogram_length=2048, feature_size=128, num_audio_channels=1, hop_length=512, chunk_length=30,
                  sampling_rate=44100)
    fe = TvltFeatureExtractor(**kwargs)
    assert all(getattr(fe, k) == v == getattr(ReferenceFeatureExtractor(**kwargs), k) for k, v in kwargs.items())
    assert {k: json.loads(fe.to_json_string())[k] for k in kwargs} == kwargs
    audio = _random(9000)
    plain = fe(audio, sampling_rate=44100, return_tensors="np")
    with caplog.at_level(logging.WARNING, logger="tvlt.processing_utils"):
        masked = fe(audio, sampling_rate=44100, return_tensors="np", mask_audio=True, resample=True)
        fe(audio, sampling_rate=44100, mask_audio=True)
    ref = reference(audio, sampling_rate=44100, return_tensors="np", mask_audio=True)
    np.testing.assert_array_equal(masked["audio_values"], plain["audio_values"])
    assert np.abs(masked["audio_values"] - ref["audio_values"]).max() <= 1e-4
    assert sum("mask_audio has no effect" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="hop_length=256 contradicts"):
        TvltFeatureExtractor(hop_length=256)
    files = fe.save_pretrained(tmp_path)  # the list of files written, as the port
    assert [f.name for f in files] == ["preprocessor_config.json"]
    assert TvltFeatureExtractor.from_pretrained(tmp_path).chunk_length == 30
    fe.to_json_file(tmp_path / "fe.json")
    assert TvltFeatureExtractor.from_json_file(tmp_path / "fe.json").to_dict() == fe.to_dict()


@pytest.mark.parametrize(
    "options",
    [
        dict(padding="longest"),
        dict(padding=True, pad_to_multiple_of=16, return_tensors="np"),
        dict(padding="max_length", max_length=300, return_tensors="pt"),
        dict(padding="max_length", max_length=100, truncation=True, return_tensors="np"),
        dict(padding="max_length", max_length=100, truncation=True, pad_to_multiple_of=48),
        dict(padding=False),
    ],
)
def test_pad_matches_the_port(reference, options):
    rng = np.random.default_rng(3)
    sequences = [rng.uniform(-1, 1, (n, 128)).astype(np.float32) for n in (120, 250, 77)]
    ours = TvltFeatureExtractor().pad({"audio_values": sequences}, **options)
    ref = reference.pad({"audio_values": sequences}, **options)
    assert sorted(ours) == sorted(ref) == ["attention_mask", "audio_values"]
    for key in ref:
        a, b = ours[key], ref[key]
        assert type(a) is type(b), key
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            assert np.asarray(x).dtype == np.asarray(y).dtype
    with pytest.raises(ValueError):
        TvltFeatureExtractor().pad({"audio_values": sequences}, padding="max_length")
    with pytest.raises(ValueError):
        TvltFeatureExtractor().pad({"audio_values": sequences}, truncation=True, max_length=10)


def test_save_and_load_round_trip(tmp_path, reference):
    fe = TvltFeatureExtractor(mode="original", spectrogram_length=512)
    fe.save_pretrained(tmp_path / "ours")
    loaded = TvltFeatureExtractor.from_pretrained(tmp_path / "ours")
    assert loaded.to_dict() == fe.to_dict()
    reference.save_pretrained(tmp_path / "hf")  # the HF port's file: bookkeeping keys ignored
    from_hf = TvltFeatureExtractor.from_pretrained(tmp_path / "hf")
    assert from_hf.to_dict() == TvltFeatureExtractor().to_dict()
    (tmp_path / "extra").mkdir()  # unknown keys are kept as attributes (the port's policy), logged once
    (tmp_path / "extra" / "preprocessor_config.json").write_text('{"feature_size": 128, "n_ftt": 1024}')
    loaded = TvltFeatureExtractor.from_pretrained(tmp_path / "extra")
    assert loaded.n_ftt == 1024 and loaded.n_fft == 2048 and loaded.to_dict()["n_ftt"] == 1024
    with pytest.raises(FileNotFoundError):
        TvltFeatureExtractor.from_pretrained(tmp_path / "missing")


def test_no_warning_when_rate_given():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = TvltFeatureExtractor()(_random(5000), sampling_rate=44100, return_tensors="pt")
    assert out.audio_mask.sum().item() == 8


def test_mask_from_values_masks_all_minus_one_patches():
    # 2 s of quiet noise (peak below 20 dB, so the 80 dB floor sits below -60 dB), then 1 s of silence: the silent
    # time patches are all -1 and masked by the value rule
    audio = np.concatenate([_random(88200, seed=15, scale=0.01), np.zeros(44100, np.float32)])
    length_only = TvltFeatureExtractor(mode="original")(audio, sampling_rate=44100, return_tensors="pt")
    by_value = TvltFeatureExtractor(mode="original", mask_from_values=True)(audio, sampling_rate=44100,
                                                                            return_tensors="pt")  # fmt: skip
    values = by_value.audio_values[0, 0]
    all_minus_one = torch.stack([(values[t * 16 : (t + 1) * 16] == -1).all() for t in range(values.shape[0] // 16)])
    assert length_only.audio_mask.sum().item() == 17 * 8  # 1 + 132300 // 512 = 259 frames -> 17 time patches
    assert all_minus_one.sum().item() >= 4  # the silent second holds several whole -1 time patches
    expected = length_only.audio_mask[0].reshape(-1, 8) * (~all_minus_one)[:, None]
    torch.testing.assert_close(by_value.audio_mask[0], expected.flatten())


@pytest.mark.parametrize("mode", ["hf", "original"])
def test_batched_stft_path_matches_clip_by_clip(mode):
    # the path GPU inputs take (one STFT over zero-padded clips), checked on CPU against one clip at a time
    fe = TvltFeatureExtractor(mode=mode)
    clips = [torch.from_numpy(_random(n, seed=n)) for n in (30000, 9000, 700)]
    batched = fe._log_mel_batch(clips)
    for clip, spec in zip(clips, batched):
        torch.testing.assert_close(spec, fe._log_mel_batch([clip])[0], atol=1e-5, rtol=0)
    assert [s.shape[0] for s in batched] == [30000 // 512 + (mode == "original"), 9000 // 512 + (mode == "original"),
                                             1 + (mode == "original")]  # fmt: skip


@pytest.mark.parametrize(("mode", "samples", "frames", "patches"), [
    ("hf", 512 * 32, 32, 16),  # N // 512 = 32 frames: two whole time patches, no padding
    ("hf", 512 * 33, 48, 24),  # 33 frames: a third, partly filled patch counts
    ("original", 512 * 32, 48, 24),  # 1 + N // 512 = 33 frames, padded by 16 - 33 % 16 = 15
    ("original", 512 * 31, 48, 16),  # 32 frames: a whole extra patch of -1, masked (not counted)
])
def test_clip_features_are_the_call_values_with_the_true_patch_count(mode, samples, frames, patches):
    fe = TvltFeatureExtractor(mode=mode)
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype(np.float32)
    values, count = fe.clip_features(wave, 44100)
    out = fe(wave, sampling_rate=44100, return_tensors="pt")
    assert values.shape == (1, frames, 128) and count == patches
    assert torch.equal(values, out["audio_values"][0]) and count == int(out["audio_mask"][0].sum())
