"""The decode-backend contract: :class:`VideoDecoder`, :class:`VideoInfo`, :class:`IndexedFrame`.

A backend only has to open a file, build its per-frame presentation-time table, and decode an
ascending list of native frame indices (``_decode_sorted``). Everything about *which* frames
the index grid wants, timing metadata, validation and reordering lives here once, so every
backend answers the same question the same way (the contract test checks that they agree).

Time conventions (see style.md): ``frame_idx`` is the 0-based native frame index in
presentation order; ``pts_sec`` is seconds from the video's start (the stream start time is
subtracted), i.e. the real presentation time of the decoded frame, never ``frame_idx / fps``.
"""

from __future__ import annotations

import contextlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from framedex.errors import VideoOpenError, check
from framedex.registry import Registry

#: Common nominal rates. A CFR estimate within 0.05% of one of them snaps to it, so that
#: containers with coarse time bases (Matroska's 1 ms) still map 29.97 fps exactly.
_NOMINAL_RATES = tuple(
    Fraction(r) for r in (
        Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 48, 50,
        Fraction(60000, 1001), 60, 90, 100, 120, Fraction(120000, 1001), 240,
    )
)
#: A gap deviating more than this fraction from the median gap makes the stream VFR.
_VFR_TOLERANCE = 0.25


@dataclass(frozen=True)
class VideoInfo:
    """What a backend knows about an opened video.

    Attributes:
        path: the file path as given.
        duration: seconds; for CFR ``num_frames / frame_rate``, for VFR the last frame's pts
            plus its display duration.
        frame_rate: average native frames per second (the exact nominal rate for CFR).
        num_frames: decodable video frames, counted from the packets (not a header estimate).
        width: frame width in pixels.
        height: frame height in pixels.
        start_sec: the stream's start time in seconds (subtracted from every ``pts_sec``).
        codec: the video codec's name, e.g. ``"h264"``.
        is_vfr: the frame gaps are irregular, so the grid maps by nearest pts.
        decoder: the backend that opened the file (``"pyav"``/``"decord"``).
    """

    path: str
    duration: float
    frame_rate: float
    num_frames: int
    width: int
    height: int
    start_sec: float
    codec: str
    is_vfr: bool
    decoder: str


@dataclass(frozen=True, eq=False)  # eq on ndarrays is elementwise; identity is enough
class IndexedFrame:
    """One decoded frame of the index grid.

    Attributes:
        pts_sec: presentation time in seconds from the video's start.
        frame_idx: native 0-based frame index in presentation order.
        image: ``H x W x 3`` uint8 RGB.
    """

    pts_sec: float
    frame_idx: int
    image: np.ndarray


def check_video_file(path: str | os.PathLike) -> str:
    """Reject paths that cannot be a video before any decoder library touches them.

    Decoders give vague messages (or, decord, crash) on these, so they are caught here once.

    Raises:
        VideoOpenError: missing path, a directory, or an empty file.
    """
    p = Path(path)
    if not p.exists():
        raise VideoOpenError(f"cannot open video {str(path)!r}: file does not exist")
    if not p.is_file():
        raise VideoOpenError(f"cannot open video {str(path)!r}: not a regular file")
    if p.stat().st_size == 0:
        raise VideoOpenError(f"cannot open video {str(path)!r}: file is empty (0 bytes)")
    return str(path)


def timing_from_pts(
    pts_sec: np.ndarray, last_duration: float | None
) -> tuple[float, float, bool]:
    """Derive ``(frame_rate, duration, is_vfr)`` from the sorted per-frame pts table.

    Header rates are not trusted: mp4's ``avg_frame_rate`` folds the last frame's (arbitrary)
    duration in (a 25 fps file may say 25.04), which would shift ``round(t * fps)`` by several
    frames an hour into the video. The rate is estimated from all the gaps instead.

    Args:
        pts_sec: presentation times (s, from the start), ascending, at least one.
        last_duration: display duration of the last frame if the container stores one (used
            only for single-frame videos).

    Returns:
        the frame rate, the duration in seconds and whether the stream is VFR.
    """
    n = len(pts_sec)
    if n < 2:
        dur = last_duration if last_duration and last_duration > 0 else 1.0
        return 1.0 / dur, dur, False
    gaps = np.diff(pts_sec)
    med = float(np.median(gaps))
    is_vfr = med <= 0 or bool(np.any(np.abs(gaps - med) > _VFR_TOLERANCE * med))
    if not is_vfr:
        est = (n - 1) / float(pts_sec[-1] - pts_sec[0])
        rate = next((float(r) for r in _NOMINAL_RATES if abs(float(r) - est) < 5e-4 * est), est)
        return rate, n / rate, False
    # The last frame's display time: the last gap, not the container's packet duration, which
    # backends report differently (PyAV: the muxer's value; decord: its own guess), so that
    # every backend derives the same duration and average rate from the same pts table.
    duration = float(pts_sec[-1]) + float(gaps[-1])
    return n / duration, duration, True


def grid_frame_indices(
    pts_sec: np.ndarray, frame_rate: float, duration: float, is_vfr: bool, index_fps: float
) -> np.ndarray:
    """Native frame indices of the index grid ``t_i = i / index_fps`` for ``t_i < duration``.

    CFR: ``frame = round(t_i * frame_rate)`` (BOLT's second-to-frame convention), where an
    exact .5 tie goes to the earlier frame, which is the same nearest-pts rule VFR uses (Python's
    banker's rounding would alternate between earlier and later at 25 fps / index_fps 2).
    VFR: the frame whose pts is nearest ``t_i``, ties to the earlier one. Grid points that
    map to the frame before them, or past the last frame, are skipped.

    Returns:
        ascending, distinct int64 frame indices.
    """
    n = len(pts_sec)
    count = math.ceil(duration * index_fps - 1e-9)
    t = np.arange(max(count, 0), dtype=np.float64) / index_fps
    t = t[t < duration]
    if is_vfr:
        right = np.searchsorted(pts_sec, t, side="left").clip(1, n - 1) if n > 1 else None
        if right is None:
            idx = np.zeros(len(t), dtype=np.int64)
        else:
            left = right - 1
            take_left = (t - pts_sec[left]) <= (pts_sec[right] - t) + 1e-9
            idx = np.where(take_left, left, right)
    else:
        idx = np.ceil(t * frame_rate - 0.5 - 1e-9).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n)]
    return np.unique(idx)  # unique() also sorts; duplicates are the skipped grid points


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` after fitting the longer side into ``max_side`` (never upscales)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class VideoDecoder(ABC):
    """One opened video. Subclasses set ``self._info`` and ``self._pts`` in ``__init__``.

    Example::

        with open_video("clip.mp4") as dec:
            for fr in dec.iter_index_frames(index_fps=1.0, max_side=224):
                ...  # fr.pts_sec, fr.frame_idx, fr.image
            imgs = dec.get_frames([120, 3, 3])
    """

    name: ClassVar[str]
    _info: VideoInfo
    #: float64 seconds from the start, one per native frame, ascending.
    _pts: np.ndarray

    #: Native indices of the keyframes (ascending, 0 first): where a decode may start without
    #: the frames before it. Backends that know them set ``_key_idx``; without them a video is
    #: never split (one worker decodes it start to end).
    _key_idx: np.ndarray | None = None
    #: True when frames come out as torch tensors on a GPU (NVDEC), not numpy arrays.
    device_frames: ClassVar[bool] = False

    @classmethod
    def is_available(cls) -> bool:
        """Whether the backend's library can be imported here."""
        return True

    # ---- required -------------------------------------------------------------------------
    @abstractmethod
    def _decode_sorted(
        self, indices: np.ndarray, max_side: int | None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_idx, rgb)`` for ascending distinct in-range ``indices``, streaming."""

    @abstractmethod
    def close(self) -> None:
        """Release the file and decoder; idempotent."""

    # ---- optional: hand a scanned video to another process -------------------------------
    def table(self) -> object | None:
        """What another process needs to decode this file without scanning it again (picklable),
        or None when :meth:`from_table` simply reopens the file."""
        return None

    @classmethod
    def from_table(cls, path: str | os.PathLike, table: object | None, **options: object
                   ) -> VideoDecoder:
        """Open ``path`` again from :meth:`table`'s result (in a decode worker).

        The default reopens and rescans the file; PyAV reuses the packet table instead.
        """
        backend: Any = cls  # concrete backends take their own options
        return backend(path, **options)

    # ---- shared ---------------------------------------------------------------------------
    @property
    def info(self) -> VideoInfo:
        """Metadata of the opened video."""
        return self._info

    @property
    def keyframes(self) -> np.ndarray:
        """Native indices where decoding can start (``[0]`` when the backend does not know)."""
        return self._key_idx if self._key_idx is not None else np.zeros(1, np.int64)

    def pts_of(self, frame_idx: np.ndarray) -> np.ndarray:
        """Presentation times (s from the start) of native frames ``frame_idx``."""
        return self._pts[np.asarray(frame_idx, dtype=np.int64)].astype(np.float64)

    def index_grid(self, index_fps: float = 1.0) -> np.ndarray:
        """Native frame indices ``iter_index_frames(index_fps)`` will yield, ascending.

        Raises:
            ConfigError: ``index_fps`` is not a positive finite number.
        """
        check(isinstance(index_fps, (int, float)) and math.isfinite(index_fps) and index_fps > 0,
              "index_fps", index_fps, "must be a positive number of frames per second")
        i = self._info
        return grid_frame_indices(self._pts, i.frame_rate, i.duration, i.is_vfr, float(index_fps))

    def iter_index_frames(
        self, index_fps: float = 1.0, max_side: int | None = None
    ) -> Iterator[IndexedFrame]:
        """Decode the index grid in time order, streaming (memory does not grow with length).

        Args:
            index_fps: grid points per second of video.
            max_side: if set, frames are downsized at decode time so the longer side fits.

        Yields:
            one :class:`IndexedFrame` per distinct grid frame.

        Raises:
            ConfigError: bad ``index_fps`` / ``max_side``.
            DecodeError: the stream turned out to be truncated or corrupt while decoding.
        """
        wanted = self.index_grid(index_fps)
        self._check_max_side(max_side)
        for idx, img in self._decode_sorted(wanted, max_side):
            yield IndexedFrame(pts_sec=float(self._pts[idx]), frame_idx=int(idx),
                               image=self._host(img))

    def iter_frames(
        self, frame_idx: np.ndarray, max_side: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(frame_idx, image)`` for ascending, distinct native indices (a decode
        worker's part of the grid). Images are numpy arrays, or CUDA tensors when
        ``device_frames`` is set.

        Raises:
            ConfigError: the indices are not ascending and distinct within ``[0, num_frames)``,
                or bad ``max_side``.
            DecodeError: the stream turned out to be truncated or corrupt while decoding.
        """
        self._check_max_side(max_side)
        idx = np.asarray(frame_idx, dtype=np.int64)
        n = self._info.num_frames
        check(idx.ndim == 1 and (len(idx) == 0 or (idx[0] >= 0 and idx[-1] < n
                                                    and bool(np.all(np.diff(idx) > 0)))),
              "frame_idx", f"{len(idx)} indices",
              f"must be ascending and distinct in [0, {n}) for {self._info.path!r}")
        yield from self._decode_sorted(idx, max_side)

    def get_frames(
        self, frame_idx: Sequence[int], max_side: int | None = None
    ) -> list[np.ndarray]:
        """Random access to native frames, returned in the requested order.

        Args:
            frame_idx: native indices, any order, duplicates allowed.
            max_side: if set, frames are downsized so the longer side fits.

        Returns:
            one ``H x W x 3`` uint8 RGB array per requested index (duplicates share an array).

        Raises:
            ConfigError: an index is not an integer in ``[0, num_frames)``, or bad ``max_side``.
            DecodeError: the stream turned out to be truncated or corrupt while decoding.
        """
        self._check_max_side(max_side)
        n = self._info.num_frames
        req = list(frame_idx)
        for k in req:
            check(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 0 <= k < n,
                  "frame_idx", k, f"must be an integer in [0, {n}) for {self._info.path!r}")
        if not req:
            return []
        uniq = np.unique(np.asarray(req, dtype=np.int64))
        got = {i: self._host(img) for i, img in self._decode_sorted(uniq, max_side)}
        return [got[int(k)] for k in req]

    def _host(self, img: object) -> np.ndarray:
        """A frame as a numpy array (device frames are copied to the host)."""
        if self.device_frames:
            return img.cpu().numpy()  # type: ignore[attr-defined]
        return img  # type: ignore[return-value]

    def _check_max_side(self, max_side: int | None) -> None:
        check(max_side is None or (isinstance(max_side, (int, np.integer)) and max_side >= 8),
              "max_side", max_side, "must be None or an integer >= 8")

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        i = self._info
        return (f"{type(self).__name__}({i.path!r}, {i.num_frames} frames, "
                f"{i.frame_rate:.3f} fps, {i.width}x{i.height})")


# ---- registry ------------------------------------------------------------------------------
_DECODERS: Registry[type[VideoDecoder]] = Registry("decoder")

#: Class decorator registering a decode backend under a name (duplicates raise).
register_decoder = _DECODERS.register
#: Remove a registered backend (unloading a plug-in, a test's fake).
unregister_decoder = _DECODERS.unregister


def list_decoders(available_only: bool = True) -> list[str]:
    """Names of registered backends (by default only those whose library is installed), sorted."""
    return sorted(n for n, c in _DECODERS.items() if not available_only or c.is_available())


def get_decoder_class(name: str) -> type[VideoDecoder]:
    """The backend class registered as ``name``.

    Raises:
        UnknownNameError: no backend has that name.
    """
    return _DECODERS.get(name)
