"""The indexing pipeline: files -> parallel decode at the index rate -> encode -> Lance store.

One way through the data::

    paths --discover--> files --hash, scan once--> skip unchanged
          --claim, begin_video--> GOP-aligned work units --decode workers (processes,
          NVDEC sessions)--> frame pieces --encoder thread: batches across videos-->
          vectors --back in time order, chunked appends--> frames + segments
          --> commit the videos row (visible)

``indexer/planner.py`` hashes and scans files ahead, ``indexer/workers.py`` holds the work
units and the decode pool, ``indexer/batching.py`` the encoder loop and the per-video
reassembly, ``indexer/run.py`` the run that ties them together.
Memory is bounded by ``workers * prefetch`` units' worth of frame pieces plus one chunk of
embeddings per video in flight, whatever the video length or library size. The result does
not depend on the number of workers: same grid, timestamps, native frame indices and (within
float rounding of different batch compositions) vectors.

Example::

    indexer = Indexer(Store("framedex.db"), load_encoder("synthetic-shapes"))
    report = indexer.index_paths(["videos/"])
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framedex.errors import FramedexError, check
from framedex.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INDEX_FPS,
    FAILED,
    INDEXED,
    LIMITS,
    OUTCOME_STATUSES,
    UNCHANGED,
)
from framedex.store import Store

log = logging.getLogger(__name__)

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

    def summary(self) -> dict[str, Any]:
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

    def to_json(self) -> dict[str, Any]:
        """``{"indexed": [...], "unchanged": [...], "failed": [...]}`` (and ``"warnings"``
        when there are some)."""
        out: dict[str, Any] = {s: [o.summary() for o in self.by_status(s)]
                               for s in OUTCOME_STATUSES}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[IndexOutcome]]:
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


def content_id(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Stable video id: BLAKE2b of the file's bytes (so re-indexing the same content is a no-op,
    wherever the file lives)."""
    h = hashlib.blake2b(digest_size=10)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class Indexer:
    """Indexes files into a store with one encoder.

    Args:
        store: the target store; its encoder identity is checked (or set) on construction.
        encoder: a loaded :class:`~framedex.indexer.encoder.Encoder`.
        options: :class:`IndexOptions`.

    Raises:
        EncoderMismatchError: the store was built with another encoder.
    """

    def __init__(self, store: Store, encoder: Any, options: IndexOptions | None = None):
        self.store = store
        self.encoder = encoder
        self.options = options or IndexOptions()
        #: How the last run was set up: decode workers, NVDEC sessions, torch threads, ...
        self.last_run: dict[str, Any] = {}
        store.ensure_encoder(encoder.identity)

    def index_paths(self, paths: Iterable[str | os.PathLike], *,
                    metadata: dict[str, Any] | None = None,
                    progress: ProgressFn | None = None,
                    on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        """Index every video under ``paths``; bad files are reported and skipped.

        Files are decoded by a pool of workers and encoded in batches that span videos; each
        video still becomes visible in one commit, once all its frames are written. A file
        whose content another writer is indexing right now is put aside and revisited once
        everything else is done; by then it is normally indexed (``unchanged``), so two runs
        over one folder share the work and never index a video twice.

        Args:
            paths: files and folders.
            metadata: user metadata (JSON-able) stored with every video of this run.
            progress: called as frames are embedded.
            on_file: called after each file with its outcome.
        """
        files, missing = discover(paths)
        report = IndexReport(list(missing))
        for outcome in missing:
            if on_file:
                on_file(outcome)
        report.outcomes.extend(self._run(files, metadata, progress, on_file))
        report.warnings.extend(settle(self.store, report.outcomes))
        return report

    def index_file(self, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                   progress: ProgressFn | None = None,
                   read_from: str | os.PathLike | None = None) -> IndexOutcome:
        """Index one file. Never raises for a bad file: the outcome says ``failed`` and why.

        Args:
            path: the video file (recorded in the store, resolved; with ``read_from``,
                recorded as given, made absolute: the caller's verified real path).
            metadata: user metadata stored with the video.
            progress: called as frames are embedded.
            read_from: read the bytes from here instead (e.g. ``/proc/self/fd/N`` of a file
                the caller opened and verified), still recording ``path``.
        """
        f = Path(path).expanduser()
        sources = None
        if read_from is not None:  # never resolved again: see planner.prepare
            f = Path(os.path.abspath(f))
            sources = {str(f): str(read_from)}
        (outcome,) = self._run([f], metadata, progress, None, sources)
        return outcome

    def _run(self, files: list[Path], metadata: dict[str, Any] | None,
             progress: ProgressFn | None, on_file: Callable[[IndexOutcome], None] | None,
             read_from: dict[str, str] | None = None) -> list[IndexOutcome]:
        from framedex.indexer.run import IndexRun

        if not files:
            return []
        run = IndexRun(self, metadata or {}, progress, on_file, read_from)
        with self.store.writing():
            outcomes = run.run(files)
        self.last_run = run.stats
        return outcomes


def settle(store: Store, outcomes: list[IndexOutcome]) -> list[str]:
    """After a run that indexed something (its writer lease released): build the scalar
    indexes once, compact what the run appended, sweep what dead writers left, and delete the
    files nobody committed (when no other writer is active).

    The videos are committed and live by now, so a failure here (a full disk, an unreachable
    object store) is a warning, never a failed run: the upkeep runs again after the next run,
    on the server's timer, or with ``framedex optimize``.

    Returns:
        the warnings (one line each).
    """
    if not any(o.status == INDEXED for o in outcomes):
        return []
    try:
        store.ensure_scalar_indexes()
        store.optimize(tables=("videos", "frames", "segments", "video_paths", "video_vectors"),
                       deep=False)
    except (FramedexError, OSError) as ex:
        log.warning("store upkeep after indexing failed: %s", ex)
        return [f"the videos are indexed, but the store's upkeep failed ({ex}); it runs "
                "again after the next index run, or run `framedex optimize`"]
    return []
