"""The leaf types of indexing: its options, the outcome of one file, the report of a run,
and the two steps every engine shares before any decode (finding the files, hashing them).

They sit below the drivers (``pipeline``, ``run``, ``planner``, the engines), which all pass
them around, so no driver imports another to name them.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from framedex.errors import check
from framedex.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INDEX_FPS,
    FAILED,
    INDEXED,
    LIMITS,
    OUTCOME_STATUSES,
    UNCHANGED,
)
from framedex.values import JsonObject

VIDEO_EXTENSIONS = frozenset(
    [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".flv", ".wmv", ".3gp", ".ogv"]
)

#: progress(path, frames_done, frames_expected)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class IndexOptions:
    """How to index.

    Args:
        index_fps: frames per second of video to embed (1.0: BOLT's grid).
        decoder: ``auto``, ``pyav``, ``decord`` or ``nvdec``. ``auto`` decodes with PyAV
            workers, plus NVDEC sessions when the encoder runs on a CUDA GPU that has them.
        batch_size: frames per encoder forward pass (at most; batches span videos).
        prefetch: work units each decode worker holds (one decoding, the rest queued).
        segment_sec: length of the fixed segments (6 s, Twelve Labs' default).
        write_chunk: frame rows per store append (fewer, larger Lance fragments).
        resize_at_decode: let the decoder shrink frames towards the model's input size
            (much less colour conversion and copying for HD video).
        decode_workers: decode processes (NVDEC sessions with ``decoder="nvdec"``); None
            means auto: the usable cores, less what a CPU encoder needs.
        unit_frames: grid frames per work unit (units are cut at keyframes, so a long video
            is decoded by every worker at once).
    """

    index_fps: float = DEFAULT_INDEX_FPS
    decoder: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    prefetch: int = 2
    segment_sec: float = 6.0
    write_chunk: int = 4096
    resize_at_decode: bool = True
    decode_workers: int | None = None
    unit_frames: int = 32

    def __post_init__(self) -> None:
        from framedex.indexer.decode import resolve_decoder

        fps = LIMITS["fps"]
        check(isinstance(self.index_fps, (int, float)) and not isinstance(self.index_fps, bool)
              and math.isfinite(self.index_fps) and fps.holds(self.index_fps), "fps",
              self.index_fps, fps.rule())
        resolve_decoder(self.decoder)  # an unknown name is one clear error, not N failed files
        check(isinstance(self.batch_size, int) and LIMITS["batch_size"].holds(self.batch_size),
              "batch_size", self.batch_size, LIMITS["batch_size"].rule())
        check(self.prefetch >= 1, "prefetch", self.prefetch, "must be >= 1")
        check(self.segment_sec > 0, "segment_sec", self.segment_sec, "must be > 0")
        check(self.write_chunk >= 1, "write_chunk", self.write_chunk, "must be >= 1")
        check_decode_workers(self.decode_workers)
        check(isinstance(self.unit_frames, int) and self.unit_frames >= 1, "unit_frames",
              self.unit_frames, "must be an integer >= 1")


def check_decode_workers(value: object) -> None:
    """Validate ``decode_workers`` (None = auto).

    Raises:
        ConfigError: not None and not an integer within ``framedex.rules.LIMITS`` (more
        decode workers than that is a typo, not a machine).
    """
    limit = LIMITS["decode_workers"]
    check(value is None or (isinstance(value, int) and not isinstance(value, bool)
                            and limit.holds(value)),
          "decode_workers", value, f"{limit.rule()}, or None for auto")


@dataclass
class IndexOutcome:
    """What happened to one file."""

    path: str
    status: str  # indexed | unchanged | failed
    video_id: str | None = None
    num_frames: int = 0
    num_indexed: int = 0
    duration: float = 0.0
    error: str | None = None
    seconds: float = 0.0
    units: int = 0  # work units the grid was cut into
    workers: int = 0  # decode workers that took part

    def summary(self) -> JsonObject:
        """The fields ``framedex index --json`` prints for this file."""
        if self.status == FAILED:
            return {"path": self.path, "error": self.error}
        return {"video_id": self.video_id, "path": self.path, "num_frames": self.num_frames,
                "num_indexed": self.num_indexed, "duration": round(self.duration, 3)}


@dataclass
class IndexReport:
    """Outcomes of one index run, grouped as the CLI prints them.

    Attributes:
        warnings: what went wrong after the videos were committed (the store's upkeep): the
            videos are indexed and live; the upkeep runs again later.
    """

    outcomes: list[IndexOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[IndexOutcome]:
        """Outcomes with this status (one of ``framedex.rules.OUTCOME_STATUSES``)."""
        return [o for o in self.outcomes if o.status == status]

    @property
    def live(self) -> list[IndexOutcome]:
        """The files whose video is in the store after the run (indexed or unchanged)."""
        return [o for o in self.outcomes if o.status in (INDEXED, UNCHANGED)]

    def to_json(self) -> JsonObject:
        """``{"indexed": [...], "unchanged": [...], "failed": [...]}`` (and ``"warnings"``
        when there are some)."""
        out: JsonObject = {s: [o.summary() for o in self.by_status(s)]
                               for s in OUTCOME_STATUSES}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[IndexOutcome]]:
    """Expand folders (recursively, by video extension) and keep explicit files as given.

    Returns:
        the files to index (deduplicated, in order), and failures for paths that do not exist.
    """
    files: list[Path] = []
    missing: list[IndexOutcome] = []
    seen: set[Path] = set()
    for raw in paths:
        try:
            p = Path(raw).expanduser()
            if p.is_dir():
                found = sorted(f for f in p.rglob("*")
                               if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            elif p.is_file():
                found = [p]
            else:
                raise FileNotFoundError(errno.ENOENT, "no such file or folder")
        except (OSError, RuntimeError) as ex:
            # RuntimeError: ``~name`` of a user this machine does not know (pathlib's
            # expanduser); OSError: a name longer than the file system allows, a folder that
            # cannot be read. Each is this path's failure; the other paths go on.
            reason = "no such user" if isinstance(ex, RuntimeError) else \
                (getattr(ex, "strerror", None) or str(ex)).lower()
            missing.append(IndexOutcome(str(raw), FAILED, error=f"{reason}: {raw}"))
            continue
        for f in found:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                files.append(r)
    return files, missing


def content_id(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Stable video id: BLAKE2b of the file's bytes (so re-indexing the same content is a no-op,
    wherever the file lives)."""
    h = hashlib.blake2b(digest_size=10)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
