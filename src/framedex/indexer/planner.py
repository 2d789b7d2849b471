"""Planning an index run: hash and scan each file once, ahead of the run's main thread.

The planner thread does the read-only work of admitting a file: its content id (BLAKE2b of its
bytes), whether the store already holds it at this index rate (re-checked under the claim), and
otherwise one scan with the decode backend: metadata, the index grid and its timestamps, the
keyframes, and the packet table the decode workers reuse. The store is written only by the
run's main thread (``indexer/run.py``).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from framedex.errors import FramedexError
from framedex.indexer.records import IndexOptions, IndexOutcome, content_id
from framedex.rules import FAILED, UNCHANGED
from framedex.values import Array, JsonObject

if TYPE_CHECKING:
    from framedex.indexer.decode.base import VideoDecoder, VideoInfo
    from framedex.store import Store
    from framedex.store.base import SegmentArrays, StoreReader
    from framedex.store.locks import Claim
    from framedex.store.schema import VideoRecord

#: CPU seconds to decode one native pixel (x264 720p25 with PyAV on this project's 2-core
#: machine: ~800 frames/s per core). Only used to split the cores between decoding and a CPU
#: encoder (workers.plan_cores); it does not change what is decoded.
DECODE_S_PER_PIXEL = 1.4e-9


@dataclass
class Prepared:
    """A file after the planner: its id and, unless it is unchanged or bad, its scan."""

    order: int
    path: str
    source: str
    t0: float
    video_id: str | None = None
    unchanged: bool = False
    error: str | None = None
    info: VideoInfo | None = None
    grid: Array | None = None
    grid_pts: Array | None = None
    keyframes: Array | None = None
    table: object = None
    decoder: type[VideoDecoder] | None = None


class Planner:
    """Hashes and scans files ahead of the main thread (read-only work), in order.

    Args:
        prepare: ``prepare(order, path)``: one file hashed and scanned (:func:`prepare`
            with the run's store and options).
        files: ``(order, path)`` of each file, in order.
        wait: whether the run waits for claims other writers hold (a second pass).
    """

    def __init__(self, prepare: Callable[[int, Path], Prepared], files: list[tuple[int, Path]],
                 wait: bool):
        self.prepare, self.files, self.wait = prepare, files, wait
        self.out: queue.Queue[Prepared] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._left = len(files)
        self.thread = threading.Thread(target=self._work, name="framedex-plan", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def finished(self) -> bool:
        return self._left == 0

    def next(self, block: bool) -> Prepared | None:
        """The next prepared file; None when all are out, or (not ``block``) none is ready."""
        if self._left == 0:
            return None
        try:
            prep = self.out.get(block=block)
        except queue.Empty:
            return None
        self._left -= 1
        return prep

    def stop(self) -> None:
        self._stop.set()
        while self.thread.is_alive():
            try:
                self.out.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)

    def _work(self) -> None:
        for order, f in self.files:
            if self._stop.is_set():
                return
            prep = self.prepare(order, f)
            while not self._stop.is_set():
                try:
                    self.out.put(prep, timeout=0.1)
                    break
                except queue.Full:
                    continue


def prepare(order: int, f: Path, read_from: dict[str, str], store: StoreReader,
            opts: IndexOptions, image_size: int) -> Prepared:
    """Hash a file and (unless its index looks current) scan it."""
    t0 = time.perf_counter()
    if str(f) in read_from:
        # A file the caller opened and verified (the API's path ingest): ``f`` is the real
        # path of that open descriptor, taken at the open. Resolving the name again here would
        # follow whatever a folder on the way was swapped for since, and record a path outside
        # the allowed roots for these bytes (issue 27).
        path, source = str(f), read_from[str(f)]
    else:
        path = str(Path(f).expanduser().resolve())
        source = read_from.get(path, path)
    prep = Prepared(order, path, source, t0)
    try:
        prep.video_id = content_id(source)
    except OSError as ex:
        prep.error = f"cannot read {path}: {ex.strerror or ex}"
        return prep
    try:
        existing = store.get_video(prep.video_id)
    except FramedexError:
        existing = None
    if existing is not None and existing.index_fps == opts.index_fps:
        prep.unchanged = True  # re-checked under the claim; scanned there if it changed
        return prep
    return scan(prep, opts, image_size)


def scan(prep: Prepared, opts: IndexOptions, image_size: int) -> Prepared:
    """Open the file once: metadata, the grid and its pts, keyframes and the packet table."""
    from framedex.indexer.decode import open_video

    decoder = "pyav" if opts.decoder == "nvdec" else opts.decoder  # NVDEC reads PyAV's scan
    try:
        with open_video(prep.source, decoder) as dec:
            prep.info = dec.info
            prep.grid = dec.index_grid(opts.index_fps)
            prep.grid_pts = dec.pts_of(prep.grid)
            prep.keyframes = dec.keyframes
            prep.table = dec.table()
            prep.decoder = type(dec)
    except FramedexError as ex:
        prep.error = str(ex)
    except OSError as ex:
        prep.error = f"cannot read {prep.path}: {ex.strerror or ex}"
    if prep.error is None and (prep.grid is None or len(prep.grid) == 0):
        prep.error = f"{prep.path}: no frame could be decoded"
    if prep.error is not None:
        prep.info = None
    return prep


def max_side(info: VideoInfo, image_size: int) -> int | None:
    """Shrink at decode so the short side is the model's input size (never upscale)."""
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    return math.ceil(long_ * image_size / short) if short > image_size else None


def decode_cost(prep: Prepared, index_fps: float) -> float:
    """Estimated CPU seconds to decode one grid frame (every frame of a GOP is decoded)."""
    info = prep.info
    assert info is not None  # a scanned file
    keys = max(1, len(prep.keyframes) if prep.keyframes is not None else 1)
    per_grid = min(max(1.0, info.frame_rate / index_fps), max(1.0, info.num_frames / keys))
    return per_grid * info.width * info.height * DECODE_S_PER_PIXEL


@dataclass
class Admitted:
    """A planned file the run may index: claimed, and begun in the store.

    Attributes:
        replaced: the live record this run's commit will replace (a re-index), else None.
    """

    prep: Prepared
    claim: Claim
    generation: int
    replaced: VideoRecord | None = None


@dataclass
class InFlight:
    """A video an engine is indexing (each engine adds its own progress), by its admission."""

    admitted: Admitted
    key: int

    @property
    def prep(self) -> Prepared:
        return self.admitted.prep

    @property
    def claim(self) -> Claim:
        return self.admitted.claim

    @property
    def generation(self) -> int:
        return self.admitted.generation


def admit(store: Store, prep: Prepared, opts: IndexOptions, image_size: int, wait: bool
          ) -> Admitted | IndexOutcome | None:
    """The writer's side of admitting a planned file: claim its content id, re-check under
    the claim whether it is indexed, and begin writing it (every engine's driver does this).

    Returns:
        :class:`Admitted` (the caller releases the claim); an outcome (``failed``: it could
        not be read or scanned; ``unchanged``: it is indexed at this rate); or None when
        another writer holds its claim and ``wait`` is False.
    """
    if prep.error is not None:
        return IndexOutcome(prep.path, FAILED, error=prep.error)
    vid = prep.video_id
    assert vid is not None
    if prep.unchanged:
        # Committed at this rate under this very path: nothing to write, so no claim (two
        # lease writes per file were most of a re-run over unchanged files).
        existing = store.get_video(vid)
        if existing is not None and existing.index_fps == opts.index_fps \
                and existing.path == prep.path:
            return IndexOutcome(prep.path, UNCHANGED, vid, existing.num_frames,
                                existing.num_indexed, existing.duration)
    claim = store.claim(vid, wait=wait)
    if claim is None:
        return None
    try:
        existing = store.get_video(vid)
        if existing is not None and existing.index_fps == opts.index_fps:
            if existing.path != prep.path:
                store.add_path(prep.path, vid)  # this path finds it too
            claim.release()
            return IndexOutcome(prep.path, UNCHANGED, vid, existing.num_frames,
                                existing.num_indexed, existing.duration)
        if prep.info is None:  # the planner skipped the scan: it looked unchanged
            prep = scan(prep, opts, image_size)
            if prep.error is not None:
                claim.release()
                return IndexOutcome(prep.path, FAILED, error=prep.error)
        generation = store.begin_video(claim)  # drops what a dead writer of it left
    except FramedexError as ex:
        claim.release()
        return IndexOutcome(prep.path, FAILED, error=str(ex))
    except BaseException:
        claim.release()
        raise
    return Admitted(prep, claim, generation, existing)


def video_record(prep: Prepared, generation: int, num_indexed: int, decoder: str,
                 opts: IndexOptions, encoder_model: str, metadata: JsonObject
                 ) -> VideoRecord:
    """The ``videos`` row of a fully written video (its commit makes it visible)."""
    import os

    from framedex.store.schema import VideoRecord

    info = prep.info
    assert info is not None  # a scanned file
    st = os.stat(prep.source)  # the file the bytes were read from (a verified descriptor too)
    return VideoRecord(
        video_id=prep.video_id or "", path=prep.path, duration=float(info.duration),
        frame_rate=float(info.frame_rate), num_frames=int(info.num_frames),
        width=int(info.width), height=int(info.height),
        start_sec=float(info.start_sec), is_vfr=bool(info.is_vfr),
        index_fps=opts.index_fps, num_indexed=num_indexed, decoder=decoder,
        encoder=encoder_model, metadata=metadata, generation=generation,
        file_size=int(st.st_size), file_dev=int(st.st_dev), file_ino=int(st.st_ino),
        file_mtime_ns=int(st.st_mtime_ns),
    )


def commit_finished(store: Store, admitted: Admitted, build: Callable[[], VideoRecord],
                    segments: Callable[[], SegmentArrays | None],
                    abort: Callable[[], None]) -> VideoRecord | str:
    """The writer's side of finishing a video (every engine's driver does this): build its
    ``videos`` row, check the claim is still held, commit (the one-commit swap that makes this
    generation the visible one), retire the generation it replaced and release the claim.

    Args:
        admitted: the video, as :func:`admit` began it.
        build: makes the ``videos`` row (may raise a FramedexError: a short read).
        segments: the video's segments, in memory (for its ``video_vectors`` row).
        abort: drops the generation and releases the claim.

    Returns:
        The committed record; or, when building or committing raised a FramedexError (a
        claim lost while this writer stalled included), its message, after ``abort``. Any
        other exception also aborts, and propagates.
    """
    claim = admitted.claim
    try:
        record = build()
        claim.check()  # a writer that stalled past its lease must not commit over another
        store.commit_video(record, segments(), admitted.replaced)  # the swap: one commit
    except FramedexError as ex:
        abort()
        return str(ex)
    except BaseException:
        abort()
        raise
    store.retire_generation(record.video_id, claim.replaces)
    claim.release()
    return record
