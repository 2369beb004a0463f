"""TvltProcessor and BatchFeature: parity with transformers 4.40.2 (oracle), strict arguments, JSON save/load."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from transformers import TvltFeatureExtractor as ReferenceFeatureExtractor
from transformers import TvltImageProcessor as ReferenceImageProcessor
from transformers import TvltProcessor as ReferenceProcessor

from tvlt import BatchFeature, TvltFeatureExtractor, TvltImageProcessor, TvltProcessor

ONE_LEVEL = 2 / 255 + 1e-6


@pytest.fixture(scope="module")
def reference() -> ReferenceProcessor:
    return ReferenceProcessor(ReferenceImageProcessor(), ReferenceFeatureExtractor())


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (2, 180, 240, 3), dtype=np.uint8)
    mixed = rng.integers(0, 256, (3, 300, 260, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, 30000).astype(np.float32)
    return video, mixed, audio


def test_parity_with_reference_processor(reference):
    video, mixed, audio = _inputs()
    ref = reference(images=video, audio=audio, images_mixed=mixed, sampling_rate=44100, return_tensors="np")
    ours = TvltProcessor.create()(
        images=video, audio=audio, images_mixed=mixed, sampling_rate=44100, return_tensors="np"
    )
    assert list(ours) == list(ref) == [
        "audio_values", "audio_mask", "pixel_values", "pixel_mask", "pixel_values_mixed", "pixel_mask_mixed",
    ]  # fmt: skip
    np.testing.assert_allclose(ours["audio_values"], ref["audio_values"], atol=1e-4, rtol=0)
    for key in ("audio_mask", "pixel_mask", "pixel_mask_mixed"):
        np.testing.assert_array_equal(ours[key], ref[key])
    for key in ("pixel_values", "pixel_values_mixed"):
        assert ours[key].shape == ref[key].shape
        assert np.abs(ours[key] - ref[key]).max() <= ONE_LEVEL


def test_single_modality_outputs():
    video, _, audio = _inputs(1)
    processor = TvltProcessor.create()
    assert list(processor(audio=audio, sampling_rate=44100)) == ["audio_values", "audio_mask"]
    out = processor(images=torch.from_numpy(video), return_tensors="pt")
    assert list(out) == ["pixel_values", "pixel_mask"]
    assert out.pixel_values.shape == (1, 2, 3, 224, 224) and out.pixel_mask.sum().item() == 392


def test_port_arguments_are_accepted_and_typos_rejected(reference):
    """The documented processor(..., mask_pixel=True, mask_audio=True) works (no effect, in the port either);
    per-call image settings reach the image processor with the port's meaning; an unknown name raises."""
    video, _, audio = _inputs(2)
    processor = TvltProcessor.create()
    plain = processor(images=video, audio=audio, sampling_rate=44100, return_tensors="np")
    masked = processor(images=video, audio=audio, sampling_rate=44100, mask_pixel=True, mask_audio=True,
                       return_tensors="np")
    for key in plain:
        np.testing.assert_array_equal(masked[key], plain[key])
    ours = processor(images=video, do_normalize=False, return_tensors="np")
    ref = reference(images=video, do_normalize=False, return_tensors="np")
    assert np.abs(ours["pixel_values"] - ref["pixel_values"]).max() <= 1 / 255 + 1e-6
    with pytest.raises(TypeError, match="retrun_tensors"):
        processor(images=video, audio=audio, sampling_rate=44100, retrun_tensors="pt")


def test_argument_errors():
    video, _, audio = _inputs(3)
    processor = TvltProcessor.create()
    with pytest.raises(ValueError, match="at least one of images, audio"):
        processor()
    with pytest.raises(TypeError, match="sampling_rate was given without audio"):
        processor(images=video, sampling_rate=16000)
    with pytest.raises(TypeError, match="given without audio"):
        processor(images=video, channels="first")
    out = processor(images=video, audio=np.stack([audio, audio]), channels="first", sampling_rate=44100,
                    num_frames=1, return_tensors="pt")  # fmt: skip
    assert out.audio_values.shape == (1, 1, 64, 128) and out.pixel_values.shape == (1, 1, 3, 224, 224)
    with pytest.raises(ValueError, match="mode"):
        TvltProcessor(TvltImageProcessor(mode="original"), TvltFeatureExtractor())
    with pytest.raises(TypeError, match="feature_extractor must be"):
        TvltProcessor(TvltImageProcessor(), ReferenceFeatureExtractor())
    with pytest.raises(ValueError, match="unknown processor setting"):
        TvltProcessor.create(n_mels=64)


def test_original_mode_processor():
    video, _, audio = _inputs(4)
    processor = TvltProcessor.create(mode="original")
    assert processor.mode == "original"
    assert processor.feature_extractor.padding_value == -1.0 and processor.image_processor.resample == "bicubic"
    out = processor(images=video, audio=audio, sampling_rate=44100, return_tensors="pt")
    assert out.audio_values.shape == (1, 1, 64, 128)  # 1 + 30000 // 512 = 59 frames, padded with -1 to 64
    assert torch.all(out.audio_values[0, 0, 59:] == -1.0)


def test_save_and_load(tmp_path, reference):
    processor = TvltProcessor.create(mode="original", num_frames=4, spectrogram_length=512)
    [file] = processor.save_pretrained(tmp_path / "ours")  # the list of files written, as the port
    saved = json.loads(file.read_text())
    assert set(saved) == {"processor_class", "image_processor", "feature_extractor"}
    loaded = TvltProcessor.from_pretrained(tmp_path / "ours")
    assert loaded.to_dict() == processor.to_dict()
    assert TvltFeatureExtractor.from_pretrained(tmp_path / "ours").spectrogram_length == 512
    assert TvltImageProcessor.from_pretrained(tmp_path / "ours").num_frames == 4
    overridden = TvltProcessor.from_pretrained(tmp_path / "ours", num_frames=2)
    assert overridden.image_processor.num_frames == 2

    reference.save_pretrained(tmp_path / "hf")  # the HF port writes the feature extractor's keys only
    from_hf = TvltProcessor.from_pretrained(tmp_path / "hf")
    assert from_hf.to_dict() == TvltProcessor.create().to_dict()

    bad = json.loads(file.read_text())
    bad["feature_extractor"]["hop_length"] = 256  # derived value that disagrees with the settings
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "preprocessor_config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="hop_length=256 disagrees"):
        TvltProcessor.from_pretrained(tmp_path / "bad")


# ----------------------------------------------------------------------------------------------- BatchFeature
def test_batch_feature_conversion_and_to():
    batch = BatchFeature({"audio": np.ones((2, 3), np.float32), "mask": np.ones((2, 3), np.int64)}, tensor_type="pt")
    assert isinstance(batch.audio, torch.Tensor) and batch.mask.dtype == torch.int64
    moved = batch.to("cpu", dtype=torch.float16)
    assert moved is batch and batch.audio.dtype == torch.float16 and batch.mask.dtype == torch.int64
    batch.convert_to_tensors("np")
    assert isinstance(batch["audio"], np.ndarray) and batch["audio"].dtype == np.float16
    restored = pickle.loads(pickle.dumps(batch))
    np.testing.assert_array_equal(restored.mask, batch.mask)
    with pytest.raises(AttributeError, match="no field 'pixel_values'"):
        _ = batch.pixel_values
    with pytest.raises(ValueError, match="return_tensors"):
        BatchFeature({"x": np.zeros(2)}, tensor_type="tf")
