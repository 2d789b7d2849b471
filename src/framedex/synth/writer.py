"""A small, streaming video writer on PyAV that the rest of framedex can reuse."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from framedex.errors import ConfigError, VideoOpenError, check


def _rate(fps: float) -> Fraction:
    # PyAV wants a rational rate; limit_denominator keeps 29.97 as 30000/1001.
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, *,
                codec: str = "libx264", crf: int = 23, gop: int | None = None,
                preset: str = "veryfast", pix_fmt: str = "yuv420p",
                options: dict[str, str] | None = None) -> int:
    """Encode RGB uint8 frames (height, width, 3) into a video file, streaming.

    Frames are encoded as they arrive, so memory stays bounded whatever the length. The
    encoder is single-threaded (``threads=1``) so the same frames always give the same bytes.

    Args:
        path: output file; the container follows the extension (.mp4, .mkv, ...).
        frames: iterable of RGB frames, all the same even width and height.
        fps: frame rate; frame ``i`` gets ``pts_sec = i / fps``.
        codec: "libx264" (default), "libx265", "mpeg4", or any encoder PyAV has.
        crf: constant rate factor for x264/x265 (lower is better quality).
        gop: maximum keyframe interval in frames (default ``2 * fps``).
        preset: x264/x265 speed preset.
        pix_fmt: encoded pixel format.
        options: extra encoder options, passed to the codec as is.

    Returns:
        The number of frames written.

    Raises:
        ConfigError: bad fps, frame shape or dtype.
        VideoOpenError: the file could not be created or the codec is unavailable.
    """
    import av

    check(fps > 0, "fps", fps, "must be > 0")
    path = Path(path)
    try:
        container = av.open(str(path), mode="w")
    except (OSError, av.error.FFmpegError) as e:
        raise VideoOpenError(f"cannot create video file {str(path)!r}: {e}") from e
    n = 0
    stream = None
    try:
        for frame in frames:
            if stream is None:
                stream = _add_stream(container, frame, fps, codec, crf, gop, preset, pix_fmt,
                                     options)
            if frame.shape != (stream.height, stream.width, 3) or frame.dtype != np.uint8:
                raise ConfigError(f"frames[{n}] shape={frame.shape} dtype={frame.dtype} is "
                                  f"invalid: must be ({stream.height}, {stream.width}, 3) uint8")
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = n
            container.mux(stream.encode(vf))
            n += 1
        if stream is not None:
            container.mux(stream.encode(None))
    finally:
        container.close()
    if n == 0:
        path.unlink(missing_ok=True)
        raise ConfigError("frames=<empty> is invalid: need at least one frame to write a video")
    return n


def _add_stream(container, frame: np.ndarray, fps: float, codec: str, crf: int,
                gop: int | None, preset: str, pix_fmt: str, options: dict[str, str] | None):
    import av

    check(frame.ndim == 3 and frame.shape[2] == 3, "frames[0].shape", frame.shape,
          "must be (height, width, 3) RGB")
    h, w = frame.shape[:2]
    if pix_fmt in ("yuv420p", "nv12"):
        check(w % 2 == 0 and h % 2 == 0, "frame size", (w, h),
              f"{pix_fmt} needs an even width and height")
    opts = {"threads": "1"}
    if codec in ("libx264", "libx265"):
        opts.update({"crf": str(crf), "preset": preset})
    opts.update(options or {})
    try:
        stream = container.add_stream(codec, rate=_rate(fps), options=opts)
    except (ValueError, av.error.FFmpegError) as e:
        raise VideoOpenError(f"codec={codec!r} is not available in this PyAV build: {e}") from e
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    stream.time_base = Fraction(1) / _rate(fps)
    stream.codec_context.gop_size = gop if gop is not None else max(1, round(2 * fps))
    if codec == "mpeg4":
        # mpeg4 has no crf; its 200 kb/s default smears small shapes, so scale with the area.
        stream.bit_rate = int(w * h * fps * 0.5)
    return stream
