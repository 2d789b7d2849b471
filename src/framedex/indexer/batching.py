"""Cross-video batches for the encoder, and each video's frames put back in order.

:class:`EncodeLoop` is the encoder's thread. It takes frame pieces (from any video, in the
order workers deliver them) and packs them into batches of up to ``batch_size`` frames: it
never waits for a full batch while pieces are ready, and it submits the next batch before it
collects the previous one's vectors, so on a GPU the host prepares batch *k+1* (pinned memory,
asynchronous copy) while batch *k* runs. The vectors go back to the parent, labelled with the
video and unit they belong to.

:class:`VideoAssembly` puts one video's vectors back in time order: units finish out of order
across workers, and the store's rows are written unit by unit in order through
:class:`ChunkWriter` (chunked appends, fixed segments pooled on the fly). Out-of-order units
wait as vectors (2 KB a frame at D=512), never as images.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from framedex.indexer.encoder import ImageEncoder, Pending, PipelinedEncoder
from framedex.indexer.messages import EncoderFailed, Event, FramePiece, Images, Stop, Vectors
from framedex.store.base import SegmentArrays, StoreWriter
from framedex.values import Array


@dataclass
class _Slice:
    """Part of a worker's piece that went into one batch."""

    video: int
    seq: int
    frame_idx: Array
    last: bool  # the unit's final slice
    cpu_s: float


class EncodeLoop(threading.Thread):
    """The encoder thread (see the module docstring).

    Args:
        encoder: the encoder; a :class:`~framedex.indexer.encoder.PipelinedEncoder` is
            given batches with ``submit`` (the next one is prepared while the GPU works),
            any other ``encode_images``.
        frames: :class:`~framedex.indexer.messages.FramePiece` s, then ``STOP``.
        events: where :class:`~framedex.indexer.messages.Vectors` and
            :class:`~framedex.indexer.messages.EncoderFailed` go.
        batch_size: frames per forward pass at most.
    """

    def __init__(self, encoder: ImageEncoder, frames: queue.Queue[FramePiece | Stop],
                 events: queue.Queue[Event], batch_size: int):
        super().__init__(name="framedex-encode", daemon=True)
        self.encoder, self.frames, self.events = encoder, frames, events
        self.batch_size = batch_size
        self.stop = threading.Event()
        # the rest of a piece that did not fit a batch
        self._held: FramePiece | Stop | None = None
        self.busy_s = 0.0  # time spent submitting and waiting for batches
        self.batches = 0

    def run(self) -> None:
        import time

        pending: tuple[list[_Slice], Pending | None] | None = None
        try:
            while True:
                batch = self._next_batch(block=pending is None)
                if batch is None:  # nothing ready: collect the batch in flight meanwhile
                    if pending is not None:
                        self._emit(*pending)
                        pending = None
                        continue
                    if self.stop.is_set():
                        return
                    continue
                if isinstance(batch, Stop):
                    if pending is not None:
                        self._emit(*pending)
                    return
                slices, images = batch
                t0 = time.perf_counter()
                handle = self._submit(images) if images else None
                if pending is not None:
                    self._emit(*pending)
                self.busy_s += time.perf_counter() - t0
                pending = (slices, handle)
                self.batches += 1
        except BaseException as ex:  # the run re-raises it in the parent thread
            self.events.put(EncoderFailed(ex))

    def _submit(self, images: list[Images]) -> Pending:
        if isinstance(self.encoder, PipelinedEncoder):
            return self.encoder.submit(images)
        # a plain encoder decodes on the CPU: its pieces are numpy arrays (NVDEC tensors go
        # to the torch encoder, which takes them with submit)
        arrays = [np.asarray(im) for im in images]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return _Ready(self.encoder.encode_images(batch))

    def _emit(self, slices: list[_Slice], handle: Pending | None) -> None:
        import time

        t0 = time.perf_counter()
        vectors = handle.result() if handle is not None else np.zeros((0, 0), np.float32)
        self.busy_s += time.perf_counter() - t0
        at = 0
        for s in slices:
            n = len(s.frame_idx)
            self.events.put(Vectors(s.video, s.seq, s.frame_idx, vectors[at:at + n], s.last,
                                    s.cpu_s))
            at += n

    def _next_batch(self, block: bool) -> tuple[list[_Slice], list[Images]] | Stop | None:
        """Pieces ready now, up to ``batch_size`` frames (waits only for the first one, and
        only when ``block``); None when nothing is ready."""
        slices: list[_Slice] = []
        images: list[Images] = []
        room = self.batch_size
        while room > 0:
            item = self._take(block=block and not slices)
            if item is None:
                break
            if isinstance(item, Stop):
                if slices:
                    self._held = item
                    break
                return item
            video, seq, idx, imgs = item.video, item.seq, item.frame_idx, item.images
            last, cpu_s = item.last, item.cpu_s
            n = len(idx)
            if n > room:  # split: the rest starts the next batch
                self._held = FramePiece(None, video, seq, idx[room:], imgs[room:], last, cpu_s)
                idx, imgs, n, last, cpu_s = idx[:room], imgs[:room], room, False, 0.0
            slices.append(_Slice(video, seq, idx, last, cpu_s))
            if n:
                images.append(imgs)
            room -= n
        return (slices, images) if slices else None

    def _take(self, block: bool) -> FramePiece | Stop | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        while True:
            try:
                return self.frames.get(timeout=0.1) if block else self.frames.get_nowait()
            except queue.Empty:
                if not block or self.stop.is_set():
                    return None


class _Ready:
    """A finished result (encoders without ``submit``)."""

    def __init__(self, vectors: Array):
        self._vectors = vectors

    def result(self) -> Array:
        return self._vectors


class VideoAssembly:
    """One video's vectors, put back in unit order and written through a :class:`ChunkWriter`.

    Args:
        writer: the video's chunk writer.
        units: how many units the video was cut into.
        pts_of: native frame indices -> pts in seconds (from the parent's packet table).
    """

    def __init__(self, writer: ChunkWriter, units: int,
                 pts_of: Callable[[Array], Array]):
        self.writer, self.units, self.pts_of = writer, units, pts_of
        self._parts: dict[int, list[tuple[Array, Array]]] = {}
        self._complete: set[int] = set()
        self._next = 0  # the first unit not yet written
        self.cpu_s = 0.0

    def add(self, seq: int, frame_idx: Array, vectors: Array, last: bool) -> None:
        """A slice of unit ``seq``'s vectors (slices of a unit arrive in order)."""
        if len(frame_idx):
            self._parts.setdefault(seq, []).append((frame_idx, vectors))
        if last:
            self._complete.add(seq)
        while True:  # the front unit is written as it arrives; later ones wait for it
            for idx, vecs in self._parts.pop(self._next, []):
                self.writer.add(idx, self.pts_of(idx), vecs)
            if self._next not in self._complete:
                return
            self._complete.discard(self._next)
            self._next += 1

    @property
    def done(self) -> bool:
        """Every unit has been written (or handed to the writer's buffer)."""
        return self._next == self.units

    @property
    def embedded(self) -> int:
        """Frames embedded so far (for progress reports)."""
        return self.writer.embedded + sum(len(i) for p in self._parts.values() for i, _ in p)


class ChunkWriter:
    """Accumulates embeddings into chunks for the store, and pools fixed segments on the fly.

    Args:
        store: the store.
        video_id: the video's content id.
        generation: the generation being written (invisible until committed).
        segment_sec: fixed segment length.
        write_chunk: frame rows per append.
        duration: the video's duration (the last segment ends there).
    """

    def __init__(self, store: StoreWriter, video_id: str, generation: int, segment_sec: float,
                 write_chunk: int, duration: float):
        self.store, self.video_id, self.generation = store, video_id, generation
        self.segment_sec, self.write_chunk, self.duration = segment_sec, write_chunk, duration
        self.count = 0
        self._pending: list[tuple[Array, Array, Array]] = []
        self._pending_rows = 0
        self._seg_sum: dict[int, Array] = {}
        self._seg_n: dict[int, int] = {}
        #: The segments :meth:`finish` wrote (None before, or when there were none).
        self.segments: SegmentArrays | None = None

    def add(self, frame_idx: Array, pts_sec: Array, vectors: Array) -> None:
        """Frames in time order, with their vectors."""
        self._pending.append((frame_idx, pts_sec, vectors))
        self._pending_rows += len(vectors)
        segs = segment_keys(pts_sec, self.segment_sec)
        for s in np.unique(segs):
            m = segs == s
            self._seg_sum[s] = self._seg_sum.get(s, 0) + vectors[m].astype(np.float64).sum(0)
            self._seg_n[s] = self._seg_n.get(s, 0) + int(m.sum())
        if self._pending_rows >= self.write_chunk:
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
        """Write what is pending and the segments; return the frame count (the segments
        written are kept in :attr:`segments` for the video's ``video_vectors`` row)."""
        self._flush()
        if self._seg_sum:
            keys = np.array(sorted(self._seg_sum), dtype=np.int64)
            sums = np.stack([self._seg_sum[k] for k in keys])
            starts, ends, vecs = fixed_segments(keys, sums, self.segment_sec,
                                                segments_end(keys, self.segment_sec,
                                                             self.duration))
            counts = np.array([self._seg_n[k] for k in keys], dtype=np.int32)
            self.store.add_segments(self.video_id, self.generation, starts, ends, counts, vecs)
            self.segments = SegmentArrays(self.video_id, starts, ends, ["fixed"] * len(starts),
                                          vecs)
        return self.count


def segment_keys(pts_sec: Array, segment_sec: float) -> Array:
    """The fixed segment each frame falls in: ``floor(pts_sec / segment_sec)``, int64."""
    return np.floor(np.asarray(pts_sec, np.float64) / segment_sec).astype(np.int64)


def segments_end(keys: Array, segment_sec: float, duration: float) -> float:
    """Where a video's last fixed segment ends: its duration, or the start of its last
    segment (``keys``: all of the video's segment keys, ascending) if that is later."""
    return max(duration, float(keys[-1]) * segment_sec)


def fixed_segments(keys: Array, sums: Array, segment_sec: float, end: float
                   ) -> tuple[Array, Array, Array]:
    """Fixed segments from the sums of their frames' vectors (one engine writes them as a
    video streams by, the Ray engine per segment window: same numbers either way).

    Args:
        keys: segment keys (:func:`segment_keys`), ascending.
        sums: (len(keys), D) float64 sums of each segment's frame vectors.
        segment_sec: segment length.
        end: :func:`segments_end` of the whole video.

    Returns:
        ``(start_sec, end_sec, vectors)``: ``[k * segment_sec, + segment_sec)`` cut at
        ``end``, and the mean-pooled, re-normalised vectors.
    """
    starts = np.asarray(keys, np.int64) * float(segment_sec)
    ends = np.minimum(starts + segment_sec, end)
    vecs = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return starts, ends, vecs
