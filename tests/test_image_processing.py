"""TvltImageProcessor: parity with transformers 4.40.2 (oracle), the original-release mode, robustness."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from transformers import TvltImageProcessor as ReferenceImageProcessor

from tvlt import TvltImageProcessor

ONE_LEVEL = 2 / 255 + 1e-6  # one 8-bit level in [-1, 1] units (mean = std = 0.5)


@pytest.fixture(scope="module")
def reference() -> ReferenceImageProcessor:
    return ReferenceImageProcessor()


def _video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (F, H, W, 3): noise frames and smooth gradient frames (resampling differences show on both)."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    gradient = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // (height + width)], -1)
    video[1::2] = gradient.astype(np.uint8)
    return video


def _value(level: float) -> float:
    return (level / 255 - 0.5) / 0.5


# ----------------------------------------------------------------------------------------------- parity (hf)
@pytest.mark.parametrize("size", [(480, 640), (225, 301), (720, 406)])
@pytest.mark.parametrize("kind", ["numpy", "torch", "torch_channels_first", "pil"])
def test_parity_with_reference(reference, size, kind):
    video = _video(2, *size)
    ref = reference(video, return_tensors="np")
    given = {
        "numpy": video,
        "torch": torch.from_numpy(video),
        "torch_channels_first": torch.from_numpy(video).permute(0, 3, 1, 2),
        "pil": [PIL.Image.fromarray(frame) for frame in video],
    }[kind]
    ours = TvltImageProcessor()(given, return_tensors="np")
    assert ours["pixel_values"].shape == ref["pixel_values"].shape == (1, 2, 3, 224, 224)
    assert ours["pixel_values"].dtype == np.float32
    diff = np.abs(ours["pixel_values"] - ref["pixel_values"])
    assert diff.max() <= ONE_LEVEL
    assert (diff > 1e-6).mean() < 0.01  # almost every value is identical
    np.testing.assert_array_equal(ours["pixel_mask"], ref["pixel_mask"])
    assert ours["pixel_mask"].dtype == ref["pixel_mask"].dtype == np.int64


@pytest.mark.parametrize("name", ["K0m1tO3Ybyc_2.mp4", "mg7Q4o9bNN0_7s-12s.mp4"])  # 126x126 (upscaled), 480x360
def test_parity_on_real_frames(reference, media_dir, name):
    import decord

    reader = decord.VideoReader(str(media_dir / name))
    frames = reader.get_batch(np.linspace(0, len(reader), 4, endpoint=False).astype(int).tolist()).asnumpy()
    ref = reference(frames, return_tensors="np")
    ours = TvltImageProcessor()(torch.from_numpy(frames), return_tensors="pt")
    assert ours.pixel_values.shape == (1, 4, 3, 224, 224)
    assert np.abs(ours.pixel_values.numpy() - ref["pixel_values"]).max() <= ONE_LEVEL
    np.testing.assert_array_equal(ours.pixel_mask.numpy(), ref["pixel_mask"])


def test_upscaled_noise_is_within_one_level_but_for_rare_values(reference):
    # torchvision's uint8 antialias kernel and PIL's round their fixed-point sums differently: on upscaled pure noise
    # about 1 value in 10^6 is 2 levels apart (measured: 2 of 3,010,560), never more; real frames match to 1 level.
    video = np.random.default_rng(11).integers(0, 256, (4, 200, 200, 3), dtype=np.uint8)
    diff = np.abs(TvltImageProcessor()(video, return_tensors="np")["pixel_values"]
                  - reference(video, return_tensors="np")["pixel_values"])  # fmt: skip
    assert diff.max() <= 2 * ONE_LEVEL
    assert (diff > ONE_LEVEL).mean() <= 1e-5


def test_parity_5d_batch_and_single_image(reference):
    batch = np.stack([_video(3, 240, 320, seed=1), _video(3, 240, 320, seed=2)])
    ref, ours = reference(batch, return_tensors="np"), TvltImageProcessor()(batch, return_tensors="np")
    assert ours["pixel_values"].shape == (2, 3, 3, 224, 224)
    assert np.abs(ours["pixel_values"] - ref["pixel_values"]).max() <= ONE_LEVEL
    image = _video(1, 300, 200, seed=3)[0]
    ref, ours = reference(image, return_tensors="np"), TvltImageProcessor()(image, return_tensors="np")
    assert ours["pixel_values"].shape == (1, 1, 3, 224, 224) and ours["pixel_mask"].sum() == 196
    assert np.abs(ours["pixel_values"] - ref["pixel_values"]).max() <= ONE_LEVEL
    ref_mixed = reference(image, is_mixed=True, return_tensors="np")
    ours_mixed = TvltImageProcessor()(image, is_mixed=True, return_tensors="np")
    assert sorted(ours_mixed) == sorted(ref_mixed) == ["pixel_mask_mixed", "pixel_values_mixed"]


# ------------------------------------------------------------------------------------------------ robustness
def test_video_forms_agree():
    video = _video(4, 120, 160, seed=4)
    ip = TvltImageProcessor()
    expected = ip(video, return_tensors="pt").pixel_values
    for given in (
        torch.from_numpy(video),
        torch.from_numpy(video).permute(0, 3, 1, 2),
        list(video),
        [torch.from_numpy(f).permute(2, 0, 1) for f in video],
        video[None],
        [video],
    ):
        torch.testing.assert_close(ip(given, return_tensors="pt").pixel_values, expected)


def test_mixed_frame_counts_are_padded_and_masked():
    ip = TvltImageProcessor()
    image, video = _video(1, 100, 120, seed=5)[0], _video(8, 100, 120, seed=6)
    out = ip([image, video], return_tensors="pt")
    assert out.pixel_values.shape == (2, 8, 3, 224, 224)
    assert out.pixel_mask.shape == (2, 8 * 196)
    assert out.pixel_mask.sum(1).tolist() == [196, 1568]
    assert torch.all(out.pixel_values[0, 1:] == 0.0)  # padding_value in hf mode
    torch.testing.assert_close(out.pixel_values[0, :1], ip(image, return_tensors="pt").pixel_values[0])
    out_original = TvltImageProcessor(mode="original")([image, video], return_tensors="pt")
    assert torch.all(out_original.pixel_values[0, 1:] == -1.0)


def test_frames_over_limit_subsample_or_error():
    levels = np.arange(20) * 10
    video = np.broadcast_to(levels[:, None, None, None], (20, 32, 32, 3)).astype(np.uint8)
    ip = TvltImageProcessor()
    out = ip(video, return_tensors="pt")
    assert out.pixel_values.shape == (1, 8, 3, 224, 224)
    picked = [0, 2, 5, 7, 10, 12, 15, 17]  # linspace(0, 20, 8, endpoint=False) floored
    expected = torch.tensor([_value(10 * i) for i in picked])
    torch.testing.assert_close(out.pixel_values[0, :, 0, 0, 0], expected)
    out4 = ip(video, num_frames=4, return_tensors="pt")
    assert out4.pixel_values.shape[1] == 4 and out4.pixel_mask.sum().item() == 4 * 196
    with pytest.raises(ValueError, match="20 frames, more than num_frames=8"):
        TvltImageProcessor(frames_over_limit="error")(video)
    with pytest.raises(ValueError, match="more than num_frames"):
        ip(video, frames_over_limit="error")


def test_grayscale_and_rgba_become_rgb():
    rgb = _video(2, 64, 64, seed=7)
    gray = rgb[..., 0]
    ip = TvltImageProcessor()
    as_rgb = ip(np.repeat(gray[..., None], 3, -1), return_tensors="pt").pixel_values
    torch.testing.assert_close(ip(gray[..., None], return_tensors="pt").pixel_values, as_rgb)  # (F, H, W, 1)
    torch.testing.assert_close(ip([PIL.Image.fromarray(g) for g in gray], return_tensors="pt").pixel_values, as_rgb)
    single = ip(gray[0], return_tensors="pt").pixel_values  # (H, W): one grayscale image
    assert single.shape == (1, 1, 3, 224, 224)
    rgba = np.concatenate([rgb, np.full((2, 64, 64, 1), 7, np.uint8)], -1)
    torch.testing.assert_close(ip(rgba, return_tensors="pt").pixel_values, ip(rgb, return_tensors="pt").pixel_values)
    pil_rgba = [PIL.Image.fromarray(f, mode="RGBA") for f in rgba]
    assert ip(pil_rgba, return_tensors="pt").pixel_values.shape == (1, 2, 3, 224, 224)


def test_patches_per_frame_follow_the_crop_size():
    ip = TvltImageProcessor(size={"shortest_edge": 160}, crop_size={"height": 160, "width": 128})
    assert ip.patches_per_frame == 10 * 8
    out = ip(_video(2, 200, 300, seed=8), return_tensors="pt")
    assert out.pixel_values.shape == (1, 2, 3, 160, 128)
    assert out.pixel_mask.shape == (1, 160) and out.pixel_mask.sum().item() == 160
    default = TvltImageProcessor()
    assert (default.patches_per_frame, default.num_frames, default.padding_value) == (196, 8, 0.0)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 2, 2, 8, 8, 3), np.uint8), "accepted images/videos"),
        (np.zeros((4, 8, 8, 5), np.uint8), "cannot find the channel axis"),
        (np.zeros((8, 8, 2), np.uint8), "cannot find the channel axis"),
        ([], "empty list"),
        ([["not an image"]], "accepted images/videos"),
        (np.zeros(5, np.uint8), "accepted images/videos"),
    ],
)
def test_bad_images_raise_value_error(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TvltImageProcessor()(bad)


def test_unsupported_options_are_rejected():
    with pytest.raises(ValueError, match="frames_over_limit"):
        TvltImageProcessor(frames_over_limit="drop")
    with pytest.raises(ValueError, match="lanczos"):
        TvltImageProcessor(resample=1)



@pytest.mark.parametrize(
    "overrides",
    [dict(do_normalize=False), dict(image_mean=0, image_std=1), dict(image_mean=[0.4, 0.5, 0.6], image_std=0.25),
     dict(do_rescale=False, do_normalize=False), dict(size={"shortest_edge": 112}, crop_size={"height": 96, "width": 96})],
)
def test_per_call_settings_match_the_port(reference, overrides):
    video = _video(2, 180, 240, seed=5)
    ref = reference(video, return_tensors="np", **overrides)
    ours = TvltImageProcessor()(video, return_tensors="np", **overrides)
    rescale = 1.0 if overrides.get("do_rescale", True) is False else 1 / 255
    std = min(np.atleast_1d(overrides.get("image_std", 0.5))) if overrides.get("do_normalize", True) else 1.0
    one_level = rescale / std  # one 8-bit level in output units (resampling differs by at most one, see above)
    assert ours["pixel_values"].shape == ref["pixel_values"].shape
    assert np.abs(ours["pixel_values"] - ref["pixel_values"]).max() <= one_level + 1e-6
    assert TvltImageProcessor().do_normalize is True  # a per-call setting does not change the processor


def test_port_arguments_accepted(reference, caplog, tmp_path):
    """mask_pixel and init_mask_generator have no effect in the port either: accepted, noted once; the argument
    list of preprocess() is _valid_processor_keys, as the port's image-processor contract has it."""
    import inspect
    import json
    import logging

    video = _video(2, 64, 80)
    with caplog.at_level(logging.WARNING, logger="tvlt.processing_utils"):
        processor = TvltImageProcessor(init_mask_generator=False)
        masked = processor(video, mask_pixel=True, return_tensors="np")
        processor(video, mask_pixel=True)
    np.testing.assert_array_equal(masked["pixel_values"], processor(video, return_tensors="np")["pixel_values"])
    assert sum("mask_pixel has no effect" in r.getMessage() for r in caplog.records) == 1
    arguments = inspect.getfullargspec(processor.preprocess).args[1:]
    assert sorted(arguments) == sorted(processor._valid_processor_keys)
    settings = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3, do_normalize=True, do_resize=True,
                    size={"shortest_edge": 18}, do_center_crop=True, crop_size={"height": 18, "width": 18})
    processor = TvltImageProcessor(**settings)
    assert {k: json.loads(processor.to_json_string())[k] for k in settings} == settings
    [file] = processor.save_pretrained(tmp_path)
    assert TvltImageProcessor.from_pretrained(tmp_path).to_dict() == processor.to_dict()
    processor.to_json_file(tmp_path / "ip.json")
    assert TvltImageProcessor.from_json_file(tmp_path / "ip.json").to_dict() == processor.to_dict()
    with pytest.raises(ValueError, match="data_format"):
        processor(video, data_format="channels_last")


# ------------------------------------------------------------------------------------------- original mode
def _original_frame_oracle(frame: np.ndarray) -> torch.Tensor:
    """REFERENCE.md B.4 re-derived with plain torch: square centre crop (start ceil((long - short) / 2)),
    bicubic interpolation without antialiasing, clamp, round to uint8, then (x / 255 - 0.5) / 0.5."""
    x = torch.from_numpy(frame).permute(2, 0, 1).float()[None]
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = math.ceil((h - side) / 2), math.ceil((w - side) / 2)
    x = x[..., top : top + side, left : left + side]
    x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 255).round()
    return (x[0] / 255 - 0.5) / 0.5


@pytest.mark.parametrize("size", [(481, 640), (300, 201)])
def test_original_mode_square_crop_and_bicubic(size):
    video = _video(2, *size, seed=9)
    video[video < 31] = 31  # no dark border to crop
    out = TvltImageProcessor(mode="original")(video, return_tensors="pt")
    assert out.pixel_values.shape == (1, 2, 3, 224, 224)
    for i in range(2):
        torch.testing.assert_close(out.pixel_values[0, i], _original_frame_oracle(video[i]), atol=1e-6, rtol=0)


def test_original_mode_crops_dark_borders():
    inner = _video(2, 100, 150, seed=10)
    inner[inner < 31] = 31
    framed = np.zeros((2, 140, 190, 3), np.uint8)  # black letterbox / pillarbox
    framed[:, 20:120, 25:175] = inner
    ip = TvltImageProcessor(mode="original")
    expected = ip(inner, return_tensors="pt").pixel_values
    torch.testing.assert_close(ip(framed, return_tensors="pt").pixel_values, expected)
    no_crop = TvltImageProcessor(mode="original", dark_border_threshold=None)(framed, return_tensors="pt")
    assert not torch.allclose(no_crop.pixel_values, ip(inner, return_tensors="pt").pixel_values)
    black = np.zeros((1, 50, 80, 3), np.uint8)  # nothing bright: the whole frame is kept
    assert torch.all(ip(black, return_tensors="pt").pixel_values == -1.0)


def test_save_and_load_round_trip(tmp_path, reference):
    ip = TvltImageProcessor(mode="original", num_frames=4, frames_over_limit="error")
    ip.save_pretrained(tmp_path / "ours")
    loaded = TvltImageProcessor.from_pretrained(tmp_path / "ours")
    assert loaded.to_dict() == ip.to_dict()
    assert (loaded.mode, loaded.num_frames, loaded.resample) == ("original", 4, "bicubic")
    ReferenceImageProcessor(num_frames=6).save_pretrained(tmp_path / "hf")
    from_hf = TvltImageProcessor.from_pretrained(tmp_path / "hf")
    assert (from_hf.num_frames, from_hf.resample, from_hf.mode) == (6, "bilinear", "hf")


def test_mask_from_values_masks_black_patches():
    video = np.full((2, 64, 64, 3), 128, np.uint8)
    video[0, :16, :16] = 0  # black corner: 56x56 px after the resize to 224 -> 3x3 whole black patches
    ip = TvltImageProcessor(mode="original", mask_from_values=True)
    out = ip(video, return_tensors="pt")
    mask = out.pixel_mask[0, :196].reshape(14, 14)
    assert mask[:3, :3].sum().item() == 0 and mask.sum().item() == 196 - 9
    assert out.pixel_mask[0, 196:].sum().item() == 196  # the uniform grey frame is fully unmasked
    assert TvltImageProcessor(mode="original")(video, return_tensors="pt").pixel_mask.sum().item() == 392


def test_float_pixels_in_unit_range_warn():
    video = np.random.default_rng(12).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="rescaled by rescale_factor again"):
        out = TvltImageProcessor()(video, return_tensors="pt")
    assert out.pixel_values.max().item() < -0.99  # x / 255 of values <= 1, normalised: just above -1
    as_255 = TvltImageProcessor()(video * 255, return_tensors="pt")
    assert as_255.pixel_values.min().item() >= -1.0 and as_255.pixel_values.max().item() > 0.9


@pytest.mark.parametrize("mode", ["hf", "original"])
def test_geometry_then_values_is_process_video(mode):
    ip = TvltImageProcessor(mode=mode)
    video = torch.randint(0, 256, (3, 3, 180, 320), dtype=torch.uint8)
    video[:, :, :10] = 0  # a dark band: the original mode's border crop is part of the geometry step
    geometry = ip.geometry(video)
    assert geometry.dtype == torch.uint8 and geometry.shape == (3, 3, 224, 224)  # stays uint8: storable losslessly
    assert torch.equal(ip.to_values(geometry), ip.process_video(video))
    ends = ip.to_values(torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2).expand(1, 3, 1, 2))
    # (0 / 255 - 0.5) / 0.5 and (255 / 255 - 0.5) / 0.5, within float32 rounding of the folded affine map
    assert torch.allclose(ends[0, :, 0], torch.tensor([[-1.0, 1.0]] * 3), rtol=0, atol=2e-7)
