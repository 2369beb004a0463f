"""Preprocessing benchmark: this project's processors against transformers 4.40.2's, same inputs, same run.

Cases (seconds per call, median after one warm-up call):
- log-mel of 10 s of 44.1 kHz mono audio (TvltFeatureExtractor, hf mode, float32 numpy in);
- the same for a batch of 8 such clips;
- 8 frames of 640x480 uint8 video (TvltImageProcessor, hf mode; torch uint8 (F, H, W, 3) in for ours, the same
  frames as a numpy array for the reference, which converts each frame to PIL).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from bench import median_seconds
from tvlt import TvltFeatureExtractor, TvltImageProcessor


def _reference():
    try:
        from transformers import TvltFeatureExtractor as RefFE
        from transformers import TvltImageProcessor as RefIP
    except ImportError:  # the bench still reports our figures without the oracle installed
        return None, None
    return RefFE(), RefIP()


def run(repeats: int = 5) -> list[dict]:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(441000)).astype(np.float32)  # 10 s at 44.1 kHz
    clips = [(0.1 * rng.standard_normal(441000)).astype(np.float32) for _ in range(8)]
    video = rng.integers(0, 256, (8, 480, 640, 3), dtype=np.uint8)
    video_pt = torch.from_numpy(video)
    ours_fe, ours_ip = TvltFeatureExtractor(), TvltImageProcessor()
    ref_fe, ref_ip = _reference()
    # One torch thread, as in DataLoader workers; numpy's FFT in the reference is single-threaded too. (On a shared
    # 2-core machine, multi-threaded torch ops under load are dominated by thread contention.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = []
    try:
        results = _run_cases(audio, clips, video, video_pt, ours_fe, ours_ip, ref_fe, ref_ip, repeats)
    finally:
        torch.set_num_threads(threads)
    return results


def _run_cases(audio, clips, video, video_pt, ours_fe, ours_ip, ref_fe, ref_ip, repeats: int) -> list[dict]:
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = [
            (
                "log-mel, 10 s of 44.1 kHz audio",
                lambda: ours_fe(audio, sampling_rate=44100, return_tensors="pt"),
                (lambda: ref_fe(audio, sampling_rate=44100, return_tensors="pt")) if ref_fe else None,
                "audio_values (1,1,864,128)",
            ),
            (
                "log-mel, batch of 8 x 10 s clips",
                lambda: ours_fe(clips, sampling_rate=44100, return_tensors="pt"),
                (lambda: ref_fe(clips, sampling_rate=44100, return_tensors="pt")) if ref_fe else None,
                "audio_values (8,1,864,128)",
            ),
            (
                "video, 8 frames 640x480 uint8",
                lambda: ours_ip(video_pt, return_tensors="pt"),
                (lambda: ref_ip(video, return_tensors="pt")) if ref_ip else None,
                "pixel_values (1,8,3,224,224); ours: torch uint8 in, reference: numpy in",
            ),
        ]
        for case, ours, reference, notes in cases:
            results.append(
                {
                    "case": case,
                    "ours": median_seconds(ours, repeats),  # the untimed call builds the mel bank and window
                    "reference": median_seconds(reference, repeats) if reference else None,
                    "unit": "s",
                    "notes": f"{notes}; CPU, 1 torch thread; reference = transformers 4.40.2",
                }
            )
    return results

