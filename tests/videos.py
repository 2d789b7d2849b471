"""Tiny test-video writer (PyAV/libx264) whose frames carry their own index.

Each frame shows its index as a 12-bit pattern of 16x16 black/white blocks (4 columns x 3 rows
on 64x48), aligned to H.264 macroblocks and encoded near-losslessly, so :func:`read_index`
recovers the index from any decoded frame, also after downsizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

COLS, ROWS = 4, 3
BITS = COLS * ROWS  # up to 4096 frames


@dataclass(frozen=True)
class VideoTruth:
    """What the generator wrote: pts are seconds from the first frame (start subtracted)."""

    path: Path
    pts: tuple[Fraction, ...]
    start: Fraction
    frame_rate: Fraction | None  # None for VFR
    duration: float
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.pts)


def frame_image(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """RGB frame whose block pattern spells ``index`` (bit b at row b // 4, column b % 4)."""
    img = np.zeros((height, width, 3), np.uint8)
    bh, bw = height // ROWS, width // COLS
    for b in range(BITS):
        if (index >> b) & 1:
            r, c = divmod(b, COLS)
            img[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """Recover the frame index from a decoded (possibly resized) frame."""
    h, w = img.shape[:2]
    value = 0
    for b in range(BITS):
        r, c = divmod(b, COLS)
        y0, y1 = int((r + 0.25) * h / ROWS), int((r + 0.75) * h / ROWS)  # block centre only
        x0, x1 = int((c + 0.25) * w / COLS), int((c + 0.75) * w / COLS)
        if img[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].mean() > 127:
            value |= 1 << b
    return value


def write_video(
    path: Path, pts: list[Fraction], start: Fraction = Fraction(0), rate: Fraction | None = None,
    width: int = 64, height: int = 48, faststart: bool = False,
) -> VideoTruth:
    """Write frames ``0..len(pts)-1`` at ``start + pts[i]`` seconds (H.264, 90 kHz time base).

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv).
        pts: presentation times in seconds from the first frame, ascending, pts[0] == 0.
        start: stream start time in seconds.
        rate: nominal CFR rate (None = VFR; the last frame then lasts the median gap).
        faststart: mp4 only, move the index to the front (so a truncated copy still opens).
    """
    import av

    tb = Fraction(1, 90000)
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    stream = container.add_stream("libx264", rate=rate or 30)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = tb
    stream.codec_context.time_base = tb
    stream.options = {"crf": "8", "g": "12"}  # short GOPs so seeking paths are exercised
    for i, t in enumerate(pts):
        frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
        frame.pts, frame.time_base = int((start + t) / tb), tb
        for pkt in stream.encode(frame):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)
    container.close()
    # without a rate, the decoders count the last gap
    duration = float(len(pts) / rate) if rate is not None else \
        float(pts[-1] + (pts[-1] - pts[-2]))
    return VideoTruth(Path(path), tuple(pts), start, rate, duration, width, height)


def cfr(path: Path, rate: Fraction, seconds: float, start: Fraction = Fraction(0),
        **kw: object) -> VideoTruth:
    """A constant-frame-rate video of about ``seconds``."""
    n = int(seconds * rate)
    return write_video(path, [i / rate for i in range(n)], start=start, rate=rate, **kw)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC file with no video stream."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    samples = int(seconds * 16000)
    tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    for s in range(0, samples, 1024):
        chunk = tone[None, s:s + 1024]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, s
        for pkt in stream.encode(frame):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)
    container.close()
    return Path(path)
