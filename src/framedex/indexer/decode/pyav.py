"""PyAV (FFmpeg) decode backend.

Opening demuxes every video packet once (no decoding; ~0.1 s per 10 min of 720p) to build the
exact pts table and keyframe list: header frame counts and rates are estimates (mp4's
``avg_frame_rate`` includes the last frame's duration, Matroska stores no count at all).

Decoding streams frames in order with FFmpeg's frame+slice threads and converts to RGB only
the frames that are wanted. When the next wanted frame lies past a keyframe we have not
reached, it seeks there instead of decoding the gap (sparse grids, random access). Frames are
identified by their pts, never by counting, so a seek that lands early costs time, not
correctness; one that lands late (MPEG-TS) is retried from an earlier keyframe.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from framedex.errors import DecodeError, VideoOpenError
from framedex.indexer.decode.base import (
    VideoDecoder,
    VideoInfo,
    check_video_file,
    output_size,
    register_decoder,
    timing_from_pts,
)


@dataclass(frozen=True)
class PacketTable:
    """The result of one packet scan, handed to decode workers so none of them scans again.

    Attributes:
        info: the video's metadata.
        pts_int: every frame's pts in stream time-base units, ascending.
        key_idx: native indices of the keyframes.
        start: the stream start time (time-base units).
        time_base: ``(numerator, denominator)`` of the stream time base.
    """

    info: VideoInfo
    pts_int: np.ndarray
    key_idx: np.ndarray
    start: int
    time_base: tuple[int, int]


def _is_image_format(name: str) -> bool:
    """Whether FFmpeg's demuxer name is that of a still image: its image pipes (``jpeg_pipe``,
    ``png_pipe``, ``webp_pipe``...) and the ``image2`` sequence reader (an animated GIF is
    ``gif`` and stays a video)."""
    return name == "image2" or name.endswith("_pipe")


@register_decoder("pyav")
class PyAVDecoder(VideoDecoder):
    """Decode with PyAV.

    Args:
        path: the video file.
        threads: FFmpeg decoder threads (0 = FFmpeg picks, from the CPU count).

    Raises:
        VideoOpenError: missing/empty/non-media file, no video stream, unsupported codec,
            zero frames, or packets missing against the header (truncated file).
    """

    # PyAV's stubs type these as optional or partial; they are set in _open and only
    # cleared by close(), after which the decoder is not used.
    _container: Any
    _stream: Any
    _tb: Any
    _pts_int: np.ndarray
    _key_idx: np.ndarray
    _start: int

    @classmethod
    def is_available(cls) -> bool:
        """Whether ``av`` can be imported."""
        import importlib.util

        return importlib.util.find_spec("av") is not None

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        self._open(path, threads)
        cc, vs = self._stream.codec_context, self._stream
        pts, keys, last_dur = self._scan_packets()
        start = vs.start_time if vs.start_time is not None else int(pts[0])
        self._pts_int = pts
        self._pts = (pts - start).astype(np.float64) * float(self._tb)
        self._key_idx = keys
        rate, duration, is_vfr = timing_from_pts(self._pts, last_dur)
        self._info = VideoInfo(
            path=self.path, duration=duration, frame_rate=rate, num_frames=len(pts),
            width=int(cc.width), height=int(cc.height), start_sec=float(start * self._tb),
            codec=cc.codec.name, is_vfr=is_vfr, decoder=self.name)
        if self._info.width <= 0 or self._info.height <= 0:
            raise VideoOpenError(f"cannot open video {self.path!r}: frame size is unknown")
        self._start = int(start)

    def _open(self, path: str | os.PathLike, threads: int) -> None:
        """Open the container and its first video stream (no packet is read)."""
        import av

        self._container = None
        self.path = check_video_file(path)
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except av.error.FFmpegError as ex:
            raise VideoOpenError(
                f"cannot open video {self.path!r}: not a readable media file or corrupt/"
                f"truncated header ({ex.strerror or ex})") from ex
        c = self._container
        if _is_image_format(c.format.name):
            # FFmpeg opens a photo as a one-frame "video" of 0 seconds, which would then be
            # indexed and found by search; a folder scan already skips images by extension
            raise VideoOpenError(
                f"cannot open video {self.path!r}: it is an image ({c.format.name}), not a "
                "video; to search with it: framedex search --image PATH")
        if not c.streams.video:
            kinds: list[str] = sorted({str(s.type) for s in c.streams}) or ["none"]
            raise VideoOpenError(f"cannot open video {self.path!r}: no video stream "
                                 f"(streams found: {', '.join(kinds)})")
        self._stream = vs = c.streams.video[0]
        cc = vs.codec_context
        if cc is None or not vs.codec_context.codec.name:
            raise VideoOpenError(f"cannot open video {self.path!r}: unsupported codec")
        # FFmpeg defaults to slice threads only, which most H.264 (x264 without slices) cannot
        # use; AUTO adds frame threads.
        cc.thread_type = "AUTO"
        cc.thread_count = threads
        self._tb = vs.time_base

    def table(self) -> PacketTable:
        """The packet scan, for decode workers (see :meth:`from_table`)."""
        return PacketTable(self._info, self._pts_int, self._key_idx, self._start,
                           (self._tb.numerator, self._tb.denominator))

    @classmethod
    def from_table(cls, path: str | os.PathLike, table: object | None,
                   **options: object) -> PyAVDecoder:
        """Reopen ``path`` with the packet table another process scanned (no second scan).

        Raises:
            VideoOpenError: the file no longer opens, or its stream is not the scanned one.
        """
        if not isinstance(table, PacketTable):
            return cls(path, **options)  # type: ignore[arg-type]
        self = cls.__new__(cls)
        threads: Any = options.get("threads", 0)
        self._open(path, int(threads))
        tb = self._tb
        if (tb.numerator, tb.denominator) != table.time_base:
            raise VideoOpenError(f"cannot open video {self.path!r}: the file changed while "
                                 "it was being indexed")
        self._pts_int, self._key_idx, self._start = table.pts_int, table.key_idx, table.start
        self._pts = (table.pts_int - table.start).astype(np.float64) * float(tb)
        self._info = table.info
        return self

    def _scan_packets(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Demux all video packets: sorted pts, keyframe frame indices, last frame duration."""
        import av

        pts_l: list[int] = []
        key_pts: list[int] = []
        last = (None, None)
        try:
            for pkt in self._container.demux(self._stream):
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is None or pkt.size == 0:
                    continue  # the demuxer's flush packet
                pts_l.append(ts)
                if pkt.is_keyframe:
                    key_pts.append(ts)
                if last[0] is None or ts > last[0]:
                    last = (ts, pkt.duration)
        except av.error.FFmpegError as ex:
            raise VideoOpenError(f"cannot open video {self.path!r}: corrupt or truncated "
                                 f"data after {len(pts_l)} frames ({ex.strerror or ex})") from ex
        declared = self._stream.frames
        if not pts_l:
            raise VideoOpenError(f"cannot open video {self.path!r}: video stream has no frames")
        if declared and len(pts_l) < declared:
            raise VideoOpenError(f"cannot open video {self.path!r}: truncated file, header "
                                 f"declares {declared} frames but only {len(pts_l)} are present")
        pts = np.unique(np.asarray(pts_l, dtype=np.int64))
        keys = np.searchsorted(pts, np.asarray(key_pts, dtype=np.int64))
        if len(keys) == 0 or keys[0] != 0:
            keys = np.concatenate([[0], keys])
        dur = float(last[1] * self._tb) if last[1] else None
        self._container.seek(0, stream=self._stream)  # leave it at the start for decoding
        return pts, np.unique(keys), dur

    def _decode_sorted(
        self, indices: np.ndarray, max_side: int | None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream the wanted frames; seek over GOPs that hold none of them."""
        w, h = output_size(self._info.width, self._info.height, max_side)
        resize = (w, h) != (self._info.width, self._info.height)
        frames: Iterator | None = None
        pos = -1  # last decoded native index
        for target in indices:
            target = int(target)
            key = int(self._key_idx[np.searchsorted(self._key_idx, target, side="right") - 1])
            if frames is None or key > pos + 1 or target <= pos:
                frames = self._seek(key, target)
            for frame in frames:
                pos = self._frame_index(frame)
                if pos >= target:
                    break
            else:
                raise DecodeError(f"decoding {self.path!r} stopped before frame {target} of "
                                  f"{self._info.num_frames}: truncated or corrupt stream")
            if pos != target:
                raise DecodeError(f"decoding {self.path!r}: frame {target} was not produced "
                                  f"(decoder jumped to frame {pos}); the stream is corrupt")
            yield target, self._to_rgb(frame, target, (w, h) if resize else None)

    def _to_rgb(self, frame, target: int, size: tuple[int, int] | None) -> np.ndarray:
        """One decoded frame as ``H x W x 3`` RGB, resized to ``size`` if given."""
        import av

        try:
            if size is not None:  # AREA: the alias-free filter for large downscales; scaling
                # the YUV planes first keeps the RGB conversion small (< 1 ms CPU per 720p frame)
                frame = frame.reformat(width=size[0], height=size[1], interpolation="AREA")
            return frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as ex:  # pragma: no cover - swscale failure
            raise DecodeError(f"converting frame {target} of {self.path!r}: {ex}") from ex

    def _seek(self, key: int, target: int) -> Iterator:
        """Seek to keyframe ``key`` so that decoding reaches ``target``; return the frames.

        Timestamp seeks are not exact in every container: in MPEG-TS a seek to the first
        keyframe's pts lands one GOP late, near the end it can land past the last frame. If
        the first frame after a seek is past ``target`` (or there is none), retry from the
        previous keyframe, and after three tries from the file's start.
        """
        import av

        k = int(np.searchsorted(self._key_idx, key))
        for attempt in range(4):
            at_start = k <= 0 or attempt == 3
            try:
                if at_start:  # global seek to 0 (AV_TIME_BASE): the beginning of the file
                    self._container.seek(0, backward=True)
                else:
                    ts = int(self._pts_int[self._key_idx[k]])
                    self._container.seek(ts, stream=self._stream, backward=True)
            except av.error.FFmpegError as ex:
                raise DecodeError(f"seeking to frame {key} of {self.path!r} failed: {ex}") from ex
            frames = self._frames()
            first = next(frames, None)
            if at_start or (first is not None and self._frame_index(first) <= target):
                return itertools.chain([] if first is None else [first], frames)
            k -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _frames(self) -> Iterator:
        """Decoded frames in presentation order from the container's current position."""
        import av

        try:
            yield from self._container.decode(self._stream)
        except av.error.FFmpegError as ex:
            raise DecodeError(f"decoding {self.path!r} failed: corrupt or truncated stream "
                              f"({ex.strerror or ex})") from ex

    def _frame_index(self, frame) -> int:
        ts = frame.pts if frame.pts is not None else frame.dts
        if ts is None:
            raise DecodeError(f"decoding {self.path!r}: a frame has no timestamp")
        return int(np.searchsorted(self._pts_int, ts))  # exact match or the gap's slot

    def close(self) -> None:
        """Close the container; idempotent."""
        c, self._container = getattr(self, "_container", None), None
        if c is not None:
            c.close()
