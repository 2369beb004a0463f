"""Raw decode throughput per backend: clips per CPU-second of ``ClipReader.read`` (8 uniform frames + the whole
clip's container audio, in-process, one decoding thread), by kind of file.

CPU time rather than wall time, so that the figure does not move with the machine's other load; on an idle machine
the two agree. Kinds:

- H.264 in MP4, closed GOPs with B-frames: decord (frame-accurate there);
- the same with open GOPs, and the same in MPEG-TS: PyAV (timestamp seeks), where decord returns wrong frames;
- the real HowTo100M cut of tests/data (480x360, 5 s, AAC): decord.

There is no reference figure: neither reference implementation has an exact path for these files.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import median_seconds, moving_pattern
from datamodules.decoding import ClipReader

ROOT = Path(__file__).resolve().parents[1]


def _clips_per_cpu_second(reader: ClipReader, path: str, repeats: int) -> float:
    # the untimed first read also builds the per-file index, which later reads reuse
    return 1.0 / median_seconds(lambda: reader.read(path, "container"), repeats, clock=time.process_time)


def run(repeats: int = 8) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from clipmaker import write_video  # the tests' PyAV writer (B-frames, GOP structure, containers)

    frames = moving_pattern()
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * 44100) / 44100)).astype(np.float32)[None].repeat(2, 0)
    reader = ClipReader(num_frames=8, decode_timeout=None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kinds = {
            "H.264 MP4, closed GOP (decord)": ("closed.mp4", "bframes=3:keyint=250"),
            "H.264 MP4, open GOP (PyAV)": ("open.mp4", "bframes=3:keyint=250:open-gop=1"),
            "H.264 MPEG-TS (PyAV)": ("ts.ts", "bframes=3:keyint=250"),
        }
        for case, (name, params) in kinds.items():
            path = str(Path(tmp) / name)
            write_video(path, frames, options={"x264-params": params}, audio=audio)
            rows.append((case, _clips_per_cpu_second(reader, path, repeats), "10 s 640x480 30 fps + stereo AAC"))
        real = str(ROOT / "tests" / "data" / "mg7Q4o9bNN0_7s-12s.mp4")
        rows.append(("real HowTo100M cut (decord)", _clips_per_cpu_second(reader, real, repeats),
                     "5 s 480x360 30 fps H.264 + AAC"))
    return [{"case": f"decode: {case}", "ours": rate, "reference": None, "unit": "clips/CPU-s",
             "notes": f"{notes}; 8 frames + whole-clip audio, in-process"} for case, rate, notes in rows]

