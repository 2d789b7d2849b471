"""One index run: plan videos, feed the decode pool, encode across videos, commit each video.

Threads and processes of a run::

    planner thread   hash + scan each file (read-only), one or two files ahead
    main thread      the store's only writer: claim, begin_video, hand units to workers,
                     put vectors back in order, append chunks, commit_video, outcomes
    decode workers   processes (and NVDEC sessions): units -> frame pieces
    collector thread worker pipes -> the encoder's bounded frame queue
    encoder thread   cross-video batches -> vectors (batching.EncodeLoop)

``indexer/planner.py`` holds the planner, ``workers.py`` the decode pool, ``batching.py`` the
encoder thread and the per-video reassembly.

The write protocol of ``store/base.py`` is unchanged per video: claim, ``begin_video``, frames
and segments under the new generation (invisible), ``commit_video`` last, then
``retire_generation`` of the one it replaced; any failure before the commit calls
``abort_video``. A kill at any
moment leaves only committed videos visible, and a re-run redoes the rest.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from framedex.errors import DecodeError
from framedex.indexer.batching import ChunkWriter, EncodeLoop, VideoAssembly
from framedex.indexer.encoder import (
    ImageEncoder,
    PipelinedEncoder,
    encoder_device,
    ready_encoder,
)
from framedex.indexer.messages import (
    STOP,
    EncoderFailed,
    Event,
    FramePiece,
    Stop,
    UnitFailed,
    UnitSent,
    Vectors,
    WorkerDied,
)
from framedex.indexer.planner import (
    Admitted,
    InFlight,
    Planner,
    Prepared,
    admit,
    commit_finished,
    decode_cost,
    max_side,
    prepare,
    video_record,
)
from framedex.indexer.records import IndexOptions, IndexOutcome, ProgressFn
from framedex.indexer.workers import (
    DecodePool,
    WorkUnit,
    importable,
    plan_cores,
    portable_source,
    split_grid,
    usable_cores,
)
from framedex.rules import FAILED, INDEXED
from framedex.values import Array, JsonObject

if TYPE_CHECKING:
    from framedex.store.base import Store
    from framedex.store.schema import VideoRecord

log = logging.getLogger(__name__)

#: NVDEC sessions ``auto`` adds beside the CPU workers on a GPU (the issue's H200 numbers:
#: 1/4/8/16 sessions decode 51/178/252/299 grid frames/s of 720p25; 8 gets most of it).
AUTO_NVDEC_SESSIONS = 8


@dataclass
class _Video(InFlight):
    """A video in flight: claimed, begun in the store, cut into units."""

    assembly: VideoAssembly
    units: deque[WorkUnit]
    expected: int
    backends: set[str] = field(default_factory=set)
    workers: set[int] = field(default_factory=set)


class IndexRun:
    """Index a list of files (see the module docstring). Used by :class:`Indexer`.

    Args:
        store: the target store (its encoder identity checked).
        encoder: the loaded encoder.
        options: how to index.
        metadata: user metadata for every video.
        progress: ``progress(path, frames_done, frames_expected)``.
        on_file: called with each outcome.
        read_from: per path, where to read its bytes instead (the API's verified file).
    """

    def __init__(self, store: Store, encoder: ImageEncoder, options: IndexOptions,
                 metadata: JsonObject, progress: ProgressFn | None,
                 on_file: Callable[[IndexOutcome], None] | None,
                 read_from: dict[str, str] | None = None):
        self.store, self.encoder, self.opts = store, encoder, options
        self.metadata, self.progress, self.on_file = metadata, progress, on_file
        self.read_from = read_from or {}
        self.outcomes: list[tuple[int, IndexOutcome]] = []
        self.videos: dict[int, _Video] = {}
        self.ready: deque[WorkUnit] = deque()  # units not yet given to a worker
        self.events: queue.Queue[Event] = queue.Queue()
        self.pool: DecodePool | None = None
        self.encode_loop: EncodeLoop | None = None
        self._keys = 0
        self._sources: dict[int, str] = {}  # file order -> what is read, where it differs
        self.stats: JsonObject = {}
        self._decode_cpu_s = 0.0

    # ---- the loop -------------------------------------------------------------------------
    def run(self, files: list[Path]) -> list[IndexOutcome]:
        """Index ``files``; return their outcomes in the order of ``files``."""
        self._restore_threads: int | None = None
        self._n_files = len(files)
        deferred: list[tuple[int, Path]] = []
        try:
            planner = Planner(self._prepare, list(enumerate(files)), wait=False)
            self._drain(planner, deferred)
            if deferred:  # other writers held these; by now they are normally done
                self._drain(Planner(self._prepare, deferred, wait=True), [])
        except BaseException:
            for video in list(self.videos.values()):
                self._abort(video)
            raise
        finally:
            self._shutdown()
        self.outcomes.sort(key=lambda o: o[0])
        out = [o for _, o in self.outcomes]
        assert all(isinstance(o, IndexOutcome) for o in out)
        return out

    def _drain(self, planner: Planner, deferred: list[tuple[int, Path]]) -> None:
        planner.start()
        try:
            while True:
                while len(self.ready) < self._units_wanted() and not planner.finished:
                    prep = planner.next(block=not self.videos)  # never stall running videos
                    if prep is None:
                        break
                    self._admit(prep, planner.wait, deferred)
                self._dispatch()
                if not self.videos and not self.ready:
                    if planner.finished:
                        return
                    continue  # waiting for the planner
                try:
                    self._handle(self.events.get(timeout=0.1))
                except queue.Empty:
                    continue
                while True:  # everything else already there, before planning more
                    try:
                        self._handle(self.events.get_nowait())
                    except queue.Empty:
                        break
        finally:
            planner.stop()

    def _units_wanted(self) -> int:
        """Units to keep ready beyond the workers' own queues: enough to refill every worker."""
        if self.pool is None:
            return 1
        return max(2, len(self.pool.slots) * self.opts.prefetch)

    # ---- admitting a file (main thread: claims and begin_video) ----------------------------
    def _admit(self, prep: Prepared, wait: bool, deferred: list[tuple[int, Path]]) -> None:
        self._sources[prep.order] = prep.source
        got = admit(self.store, prep, self.opts, self._image_size(), wait)
        if got is None:  # another writer is indexing this content right now
            deferred.append((prep.order, Path(prep.path)))
        elif isinstance(got, Admitted):
            self._start_video(got)
        else:
            self._finish_outcome(prep.order, got)

    def _start_video(self, admitted: Admitted) -> None:
        prep, generation = admitted.prep, admitted.generation
        assert prep.grid is not None and prep.info is not None and prep.decoder is not None
        assert prep.keyframes is not None and prep.grid_pts is not None
        key = self._keys = self._keys + 1
        opts = self.opts
        writer = ChunkWriter(self.store, prep.video_id or "", generation, opts.segment_sec,
                             opts.write_chunk, prep.info.duration)
        lookup = dict(zip(prep.grid.tolist(), prep.grid_pts.tolist(), strict=True))

        def pts_of(idx: Array) -> Array:
            return np.array([lookup[int(i)] for i in idx], dtype=np.float64)

        parts = split_grid(prep.grid, prep.keyframes, opts.unit_frames)
        side = max_side(prep.info, self._image_size()) if opts.resize_at_decode else None
        source = portable_source(prep.source)
        units = deque(WorkUnit(key, i, source, prep.decoder, part, side)
                      for i, part in enumerate(parts))
        video = _Video(admitted, key, VideoAssembly(writer, len(parts), pts_of), units,
                       len(prep.grid))
        self.videos[key] = video
        self.ready.extend(units)
        if self.pool is None:
            self._start_pool(prep, len(parts))

    # ---- workers ----------------------------------------------------------------------------
    def _start_pool(self, first: Prepared, first_units: int) -> None:
        """Size and start the pool and the encoder thread, once the first video is known."""
        import torch

        self.encoder = ready_encoder(self.encoder)  # the first frame to encode: load the model
        opts = self.opts
        device = encoder_device(self.encoder)
        on_cpu = device == "cpu"
        cores = usable_cores()
        nvdec, cpu_workers = self._nvdec_sessions(device), opts.decode_workers
        if opts.decoder == "nvdec":
            cpu_workers = 0
        decode_s = decode_cost(first, opts.index_fps)
        encode_s = self._encode_cost() if on_cpu else 0.0
        workers, threads = plan_cores(cores, cpu_workers, decode_s, encode_s, on_cpu)
        if opts.decoder == "nvdec":
            workers = 0
        in_process = False
        if opts.decode_workers is None and self._n_files == 1:
            # one file: no more workers than it has units (starting a process is not free);
            # one unit (a short clip, an API upload): decode in a thread of this process
            workers = min(workers, max(1 if not nvdec else 0, first_units - nvdec))
            in_process = first_units == 1 and workers == 1
        if workers and first.decoder is not None and not importable(first.decoder):
            log.info("decoder %s cannot be imported by a worker process: decoding in threads",
                     first.decoder.__qualname__)
            in_process = True
        if on_cpu:
            self._restore_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
        frames: queue.Queue[FramePiece | Stop] = queue.Queue(
            maxsize=max(2, (workers + nvdec) * opts.prefetch))
        self.pool = DecodePool(workers, nvdec, opts.prefetch, frames, self.events,
                               gpu_id=_gpu_index(device), in_process=in_process)
        self.encode_loop = EncodeLoop(self.encoder, frames, self.events, opts.batch_size)
        self.encode_loop.start()
        self.stats.update(decode_workers=workers, nvdec_sessions=nvdec, in_process=in_process,
                          torch_threads=torch.get_num_threads(), cores=cores,
                          decode_s_per_frame=decode_s, encode_s_per_frame=encode_s)
        log.info("indexing with %d decode workers, %d NVDEC sessions, %d torch threads",
                 workers, nvdec, torch.get_num_threads())

    def _nvdec_sessions(self, device: str) -> int:
        opts = self.opts
        if opts.decoder == "nvdec":
            return opts.decode_workers or AUTO_NVDEC_SESSIONS
        if opts.decoder != "auto" or not device.startswith("cuda"):
            return 0
        from framedex.indexer.decode import get_decoder_class

        return AUTO_NVDEC_SESSIONS if get_decoder_class("nvdec").is_available() else 0

    def _encode_cost(self) -> float:
        """CPU seconds per frame of the encoder on one thread, measured on a few blank frames
        (0 for a stand-in encoder without ``submit``).

        One thread, because several OpenMP threads on busy cores wait for each other at every
        barrier: on this project's loaded 2-core machine the small model encoded 700 frames/s
        with one torch thread and 100 with two, which would make any encoder look heavy.
        """
        import torch

        if not isinstance(self.encoder, PipelinedEncoder):
            return 0.0
        s = self._image_size()
        dummy = np.zeros((8, s, s, 3), np.uint8)
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.encoder.encode_images(dummy[:2])  # warm-up
            t0 = time.perf_counter()
            self.encoder.encode_images(dummy)
            return (time.perf_counter() - t0) / len(dummy)
        finally:
            torch.set_num_threads(saved)

    def _image_size(self) -> int:
        return int(self.encoder.image_size)

    def _prepare(self, order: int, f: Path) -> Prepared:
        """Hash and scan one file (the planner's thread calls this, read-only)."""
        return prepare(order, f, self.read_from, self.store, self.opts, self._image_size())

    def _dispatch(self) -> None:
        """Hand ready units to workers with room (in order: a video's units go out together)."""
        if self.pool is None:
            return
        while self.ready:
            slot = self.pool.free_slot()
            if slot is None:
                return
            unit = self.ready.popleft()
            video = self.videos.get(unit.video)
            if video is None:  # failed meanwhile
                continue
            self.pool.submit(unit, video.prep.table, slot)
            video.backends.add("nvdec" if slot.kind == "nvdec" else unit.decoder.name)
            video.workers.add(slot.wid)

    # ---- events -----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if isinstance(event, Vectors):
            video = self.videos.get(event.video)
            if video is None:
                return
            video.assembly.cpu_s += event.cpu_s
            self._decode_cpu_s += event.cpu_s
            self.stats["decode_cpu_s"] = self._decode_cpu_s
            video.assembly.add(event.seq, event.frame_idx, event.vectors, event.last)
            if self.progress and len(event.frame_idx):
                self.progress(video.prep.path, video.assembly.embedded, video.expected)
            if video.assembly.done:
                self._commit(video)
        elif isinstance(event, UnitSent):
            assert self.pool is not None
            self.pool.unit_finished(event.wid, event.video, event.seq)
        elif isinstance(event, UnitFailed):
            assert self.pool is not None
            self.pool.unit_finished(event.wid, event.video, event.seq)
            if event.video in self.videos:
                self._fail(self.videos[event.video], event.message)
        elif isinstance(event, WorkerDied):
            self._worker_died(event.wid, event.exitcode)
        elif isinstance(event, EncoderFailed):
            raise event.error

    def _worker_died(self, wid: int, exitcode: int | None) -> None:
        assert self.pool is not None
        culprit, requeue = self.pool.replace(wid)
        for unit, _table in reversed(requeue):
            if unit.video in self.videos:
                self.ready.appendleft(unit)
        if culprit is not None and culprit[0] in self.videos:
            video = self.videos[culprit[0]]
            why = (f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
                   else f"exit code {exitcode}")
            self._fail(video, f"decoding {video.prep.path!r} failed: the decode worker died "
                              f"({why}) in frames {_unit_span(video, culprit[1])}")

    # ---- finishing a video --------------------------------------------------------------------
    def _commit(self, video: _Video) -> None:
        prep, info = video.prep, video.prep.info
        assert info is not None  # a scanned file
        del self.videos[video.key]

        def record() -> VideoRecord:
            num = video.assembly.writer.finish()
            if num != video.expected:
                raise DecodeError(f"{prep.path}: {num} of {video.expected} grid frames were "
                                  "decoded")
            return video_record(prep, video.generation, num,
                                "+".join(sorted(video.backends)) or info.decoder, self.opts,
                                self.encoder.identity["model"], self.metadata)

        done = commit_finished(self.store, video.admitted, record,
                               lambda: video.assembly.writer.segments,
                               abort=lambda: self._cleanup(video))
        if isinstance(done, str):
            self._finish_outcome(prep.order, IndexOutcome(prep.path, FAILED, error=done))
            return
        if self.pool is not None:
            self.pool.forget(video.key)
        self._finish_outcome(prep.order, IndexOutcome(
            prep.path, INDEXED, done.video_id, done.num_frames, done.num_indexed,
            done.duration, seconds=time.perf_counter() - prep.t0, units=video.assembly.units,
            workers=len(video.workers)))

    def _fail(self, video: _Video, message: str) -> None:
        self.videos.pop(video.key, None)
        self._cleanup(video)
        self._finish_outcome(video.prep.order, IndexOutcome(video.prep.path, FAILED,
                                                            error=message))

    def _abort(self, video: _Video) -> None:
        self.videos.pop(video.key, None)
        try:
            self._cleanup(video)
        except Exception:  # already failing: keep the first error
            log.exception("cleaning up %s after an error", video.prep.path)

    def _cleanup(self, video: _Video) -> None:
        try:
            self.store.abort_video(video.prep.video_id or "", video.generation)
        finally:
            video.claim.release()
            if self.pool is not None:
                self.pool.forget(video.key)

    def _finish_outcome(self, order: int, outcome: IndexOutcome) -> None:
        source = self._sources.get(order)
        if outcome.error and source and source != outcome.path:
            # name the file as the user knows it, not the descriptor it was read through
            outcome.error = outcome.error.replace(portable_source(source), outcome.path) \
                .replace(source, outcome.path)
        self.outcomes.append((order, outcome))
        if self.on_file:
            self.on_file(outcome)

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.encode_loop is not None:
            self.encode_loop.stop.set()
            with contextlib.suppress(queue.Full):
                self.encode_loop.frames.put_nowait(STOP)
            self.encode_loop.join(10.0)
            self.stats.update(encode_busy_s=self.encode_loop.busy_s,
                              batches=self.encode_loop.batches)
        if self._restore_threads is not None:
            import torch

            torch.set_num_threads(self._restore_threads)


def _gpu_index(device: str) -> int:
    return int(device.split(":")[1]) if device.startswith("cuda:") else 0


def _unit_span(video: _Video, seq: int) -> str:
    idx = video.units[seq].frame_idx
    return f"{int(idx[0])}..{int(idx[-1])}" if len(idx) else "(none)"
