"""The indexing pipeline: files -> decode at the index rate -> encode -> Lance store.

One way through the data::

    paths --discover--> files --hash--> skip unchanged
          --decode thread (bounded queue of batches)--> encode (main thread)
          --chunked appends--> frames + segments --> commit the videos row (visible)

Decoding runs in a producer thread that fills a small bounded queue of frame batches while the
encoder works on the previous batch (PyAV, decord and torch all release the GIL), so the encoder
is not idle while frames decode. Memory is bounded by ``batch_size * prefetch`` frames plus one
chunk of embeddings, whatever the video length.

Example::

    indexer = Indexer(Store("framedex.db"), load_encoder("synthetic-shapes"))
    report = indexer.index_paths(["videos/"])
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framedex.errors import FramedexError, check
from framedex.store import Store
from framedex.store.schema import VideoRecord

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv"]
)

#: progress(path, frames_done, frames_expected)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class IndexOptions:
    """How to index.

    Args:
        index_fps: frames per second of video to embed (1.0: BOLT's grid).
        decoder: ``auto``, ``pyav`` or ``decord``.
        batch_size: frames per encoder forward pass.
        prefetch: decoded batches kept ready ahead of the encoder.
        segment_sec: length of the fixed segments (6 s, Twelve Labs' default).
        write_chunk: frame rows per store append (fewer, larger Lance fragments).
        resize_at_decode: let the decoder shrink frames towards the model's input size
            (much less colour conversion and copying for HD video).
    """

    index_fps: float = 1.0
    decoder: str = "auto"
    batch_size: int = 64
    prefetch: int = 4
    segment_sec: float = 6.0
    write_chunk: int = 4096
    resize_at_decode: bool = True

    def __post_init__(self) -> None:
        from framedex.indexer.decode import resolve_decoder

        check(isinstance(self.index_fps, (int, float)) and math.isfinite(self.index_fps)
              and 1e-3 <= self.index_fps <= 240, "fps", self.index_fps,
              "must be a number of frames per second from 0.001 to 240")
        resolve_decoder(self.decoder)  # an unknown name is one clear error, not N failed files
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.prefetch >= 1, "prefetch", self.prefetch, "must be >= 1")
        check(self.segment_sec > 0, "segment_sec", self.segment_sec, "must be > 0")
        check(self.write_chunk >= 1, "write_chunk", self.write_chunk, "must be >= 1")


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

    def summary(self) -> dict[str, Any]:
        """The fields ``framedex index --json`` prints for this file."""
        if self.status == "failed":
            return {"path": self.path, "error": self.error}
        return {"video_id": self.video_id, "path": self.path, "num_frames": self.num_frames,
                "num_indexed": self.num_indexed, "duration": round(self.duration, 3)}


@dataclass
class IndexReport:
    """Outcomes of one index run, grouped as the CLI prints them."""

    outcomes: list[IndexOutcome] = field(default_factory=list)

    def by_status(self, status: str) -> list[IndexOutcome]:
        """Outcomes with this status."""
        return [o for o in self.outcomes if o.status == status]

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        """``{"indexed": [...], "unchanged": [...], "failed": [...]}``."""
        return {s: [o.summary() for o in self.by_status(s)]
                for s in ("indexed", "unchanged", "failed")}


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[IndexOutcome]]:
    """Expand folders (recursively, by video extension) and keep explicit files as given.

    Returns:
        the files to index (deduplicated, in order), and failures for paths that do not exist.
    """
    files: list[Path] = []
    missing: list[IndexOutcome] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            missing.append(IndexOutcome(str(raw), "failed", error=f"no such file or folder: {raw}"))
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
        store.ensure_encoder(encoder.identity)

    def index_paths(self, paths: Iterable[str | os.PathLike], *,
                    metadata: dict[str, Any] | None = None,
                    progress: ProgressFn | None = None,
                    on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        """Index every video under ``paths``; bad files are reported and skipped.

        A file whose content another writer is indexing right now is put aside and revisited
        once everything else is done; by then it is normally indexed (``unchanged``), so two
        runs over one folder share the work and never index a video twice.

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
        deferred: list[Path] = []
        with self.store.writing():
            for f in files:
                outcome = self._index_file(f, metadata, progress, wait=False)
                if outcome is None:
                    deferred.append(f)
                    continue
                report.outcomes.append(outcome)
                if on_file:
                    on_file(outcome)
            for f in deferred:
                outcome = self._index_file(f, metadata, progress, wait=True)
                assert outcome is not None
                report.outcomes.append(outcome)
                if on_file:
                    on_file(outcome)
        if report.by_status("indexed"):
            self.store.ensure_scalar_indexes()
            self.store.optimize(tables=("videos", "frames", "segments", "video_paths",
                                        "video_vectors"))
        return report

    def index_file(self, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                   progress: ProgressFn | None = None,
                   read_from: str | os.PathLike | None = None) -> IndexOutcome:
        """Index one file. Never raises for a bad file: the outcome says ``failed`` and why.

        Args:
            path: the video file (recorded in the store, resolved).
            metadata: user metadata stored with the video.
            progress: called as frames are embedded.
            read_from: read the bytes from here instead (e.g. ``/proc/self/fd/N`` of a file
                the caller opened and verified), still recording ``path``.
        """
        with self.store.writing():
            outcome = self._index_file(path, metadata, progress, wait=True, read_from=read_from)
        assert outcome is not None
        return outcome

    def _index_file(self, path: str | os.PathLike, metadata: dict[str, Any] | None,
                    progress: ProgressFn | None, *, wait: bool,
                    read_from: str | os.PathLike | None = None) -> IndexOutcome | None:
        t0 = time.perf_counter()
        path = str(Path(path).expanduser().resolve())
        source = str(read_from) if read_from is not None else path
        try:
            vid = content_id(source)
            claim = self.store.claim(vid, wait=wait)
            if claim is None:
                return None  # another writer is indexing this content right now
            with claim:
                existing = self.store.get_video(vid)
                if existing is not None and existing.index_fps == self.options.index_fps:
                    self.store.add_path(path, vid)
                    return IndexOutcome(path, "unchanged", vid, existing.num_frames,
                                        existing.num_indexed, existing.duration)
                record = self._index(path, source, vid, metadata or {}, progress)
        except FramedexError as ex:  # name the file as the user knows it, not read_from
            return IndexOutcome(path, "failed", error=str(ex).replace(source, path))
        except OSError as ex:
            return IndexOutcome(path, "failed", error=f"cannot read {path}: {ex.strerror or ex}")
        return IndexOutcome(path, "indexed", record.video_id, record.num_frames,
                            record.num_indexed, record.duration,
                            seconds=time.perf_counter() - t0)

    def _index(self, path: str, source: str, vid: str, metadata: dict[str, Any],
               progress: ProgressFn | None) -> VideoRecord:
        """Write a new generation of ``vid`` and swap it live; the old one stays live until
        then, and stays live if anything fails."""
        from framedex.indexer.decode import open_video

        opts = self.options
        with open_video(source, opts.decoder) as video:
            info = video.info
            expected = max(1, math.ceil(info.duration * opts.index_fps))
            generation = self.store.begin_video(vid)  # drops leftovers of a killed run
            writer = _ChunkWriter(self.store, vid, generation, opts, info.duration)
            try:
                for batch in _prefetch(self._batches(video), opts.prefetch):
                    writer.add(batch, self.encoder.encode_images(batch.images))
                    if progress:
                        progress(path, writer.embedded, expected)
                num_indexed = writer.finish()
                if num_indexed == 0:
                    raise _no_frames(path)
                record = VideoRecord(
                    video_id=vid, path=path, duration=float(info.duration),
                    frame_rate=float(info.frame_rate), num_frames=int(info.num_frames),
                    width=int(info.width), height=int(info.height),
                    start_sec=float(info.start_sec), is_vfr=bool(info.is_vfr),
                    index_fps=opts.index_fps, num_indexed=num_indexed, decoder=info.decoder,
                    encoder=self.encoder.identity["model"], metadata=metadata,
                    generation=generation, file_size=os.stat(source).st_size,
                )
                self.store.commit_video(record)  # the swap: one commit
            except BaseException:
                self.store.abort_video(vid, generation)  # the old generation stays live
                raise
        self.store.retire_generations(vid, keep=generation)
        return record

    def _batches(self, video: Any) -> Iterator[_Batch]:
        opts = self.options
        max_side = None
        if opts.resize_at_decode:
            info = video.info
            short, long_ = min(info.width, info.height), max(info.width, info.height)
            target = self.encoder.image_size
            if short > target:  # shrink so the short side is the model's input size
                max_side = math.ceil(long_ * target / short)
        frames = []
        for frame in video.iter_index_frames(opts.index_fps, max_side=max_side):
            frames.append(frame)
            if len(frames) == opts.batch_size:
                yield _Batch.of(frames)
                frames = []
        if frames:
            yield _Batch.of(frames)


def _no_frames(path: str) -> FramedexError:
    from framedex.errors import DecodeError

    return DecodeError(f"{path}: no frame could be decoded")


@dataclass
class _Batch:
    images: np.ndarray  # (n, H, W, 3) uint8
    frame_idx: np.ndarray
    pts_sec: np.ndarray

    @classmethod
    def of(cls, frames: list[Any]) -> _Batch:
        return cls(
            images=np.stack([f.image for f in frames]),
            frame_idx=np.array([f.frame_idx for f in frames], dtype=np.int64),
            pts_sec=np.array([f.pts_sec for f in frames], dtype=np.float64),
        )


class _ChunkWriter:
    """Accumulates embeddings into chunks for the store, and pools fixed segments on the fly."""

    def __init__(self, store: Store, video_id: str, generation: int, opts: IndexOptions,
                 duration: float):
        self.store, self.video_id, self.opts, self.duration = store, video_id, opts, duration
        self.generation = generation
        self.count = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._seg_sum: dict[int, np.ndarray] = {}
        self._seg_n: dict[int, int] = {}

    def add(self, batch: _Batch, vectors: np.ndarray) -> None:
        self._pending.append((batch.frame_idx, batch.pts_sec, vectors))
        self._pending_rows += len(vectors)
        segs = np.floor(batch.pts_sec / self.opts.segment_sec).astype(np.int64)
        for s in np.unique(segs):
            m = segs == s
            self._seg_sum[s] = self._seg_sum.get(s, 0) + vectors[m].astype(np.float64).sum(0)
            self._seg_n[s] = self._seg_n.get(s, 0) + int(m.sum())
        if self._pending_rows >= self.opts.write_chunk:
            self._flush()

    @property
    def embedded(self) -> int:
        """Frames embedded so far, written or still pending (for progress reports)."""
        return self.count + self._pending_rows

    def _flush(self) -> None:
        if not self._pending:
            return
        frame_idx = np.concatenate([p[0] for p in self._pending])
        pts = np.concatenate([p[1] for p in self._pending])
        vecs = np.concatenate([p[2] for p in self._pending])
        pos = np.arange(self.count, self.count + len(vecs), dtype=np.int32)
        self.store.add_frames(self.video_id, self.generation, pos, frame_idx, pts, vecs)
        self.count += len(vecs)
        self._pending, self._pending_rows = [], 0

    def finish(self) -> int:
        self._flush()
        if self._seg_sum:
            keys = sorted(self._seg_sum)
            sums = np.stack([self._seg_sum[k] for k in keys])
            vecs = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            seg = self.opts.segment_sec
            starts = np.array([k * seg for k in keys], dtype=np.float64)
            ends = np.minimum(starts + seg, max(self.duration, starts[-1]))
            counts = np.array([self._seg_n[k] for k in keys], dtype=np.int32)
            self.store.add_segments(self.video_id, self.generation, starts, ends, counts, vecs)
        return self.count


_DONE = object()


def _prefetch(source: Iterator[_Batch], depth: int) -> Iterator[_Batch]:
    """Run ``source`` in a thread, ``depth`` items ahead; re-raise its errors here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as ex:  # handed to the consumer, raised there
            q.put(ex)

    thread = threading.Thread(target=produce, name="framedex-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # drain so the producer can exit
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
