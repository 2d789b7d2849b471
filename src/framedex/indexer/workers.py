"""Parallel decoding: work units of the index grid, and the decode workers that run them.

The parent opens each file once (the backend scans its packet table), computes the index grid
and cuts it into *work units* at keyframes (:func:`split_grid`): a unit is a run of grid frames
whose GOPs no other unit touches, so one 4-hour file keeps every worker busy and no GOP is
decoded twice. Workers get ``(path, packet table, frame indices)`` and never re-scan the file;
each worker receives a video's table once and keeps that video open until told to forget it.

Two kinds of worker sit behind one :class:`DecodePool`:

* **processes**, one FFmpeg thread each, for CPU backends: fresh interpreters
  (``python -c`` with two pipe descriptors, ``multiprocessing.connection`` on them). Not
  ``fork``: torch, Lance and FFmpeg threads do not survive it. Not ``multiprocessing``'s
  ``spawn`` either: it re-runs the caller's ``__main__`` in every worker, so a plain script
  calling ``Library.index`` at top level would index again in each worker. They never import
  torch. Frames come back over a pipe in pieces of :data:`PIECE_FRAMES` frames;
* **NVDEC sessions**, threads of the parent process (PyNvVideoCodec releases the GIL while it
  decodes), whose frames stay on the GPU as CUDA tensors all the way to the encoder;
* **in-process threads** for a run too small to pay for starting a process (one file of one
  unit, with ``decode_workers`` left to auto), and for a third-party backend a fresh
  interpreter cannot import (defined inside a function or in ``__main__``): the same units,
  pieces and events; PyAV releases the GIL while it decodes.

Memory is bounded by the pool, not by video length or library size: every worker holds at most
``prefetch`` units and one piece in hand, a pipe blocks its writer while the parent is behind,
and the parent's frame queue is bounded.

A unit that fails (a corrupt stream, a decoder error) fails its video with the decoder's
message. A worker that dies (a crash in a native decoder, the OOM killer) fails the video whose
unit it was decoding; it is replaced, and its other queued units go to the new worker.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from framedex.indexer.decode.base import VideoDecoder
from framedex.indexer.messages import (
    STOP,
    Command,
    DecodeUnit,
    Event,
    Forget,
    FramePiece,
    Stop,
    UnitFailed,
    UnitSent,
    WorkerDied,
    WorkUnit,
)

#: Frames per message from a worker (the granularity at which frames reach the encoder).
PIECE_FRAMES = 16


def split_grid(grid: np.ndarray, keyframes: np.ndarray, unit_frames: int,
               groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Cut an ascending grid into consecutive parts of about ``unit_frames`` frames.

    A cut between grid frames ``a < b`` is allowed only where a keyframe ``k`` lies in
    ``(a, b]``: the next part then starts decoding at a keyframe after everything the previous
    part decoded, so no GOP is decoded twice. Without such keyframes the grid stays whole.

    Args:
        grid: native frame indices of the index grid, ascending.
        keyframes: native indices of the keyframes, ascending.
        unit_frames: the target part length (parts are at least this long, except the last).
        groups: a label per grid frame, ascending (e.g. its fixed segment); when given, a cut
            must also lie between two labels, so that no group is split between parts.

    Returns:
        the parts, in order; their concatenation is ``grid``.
    """
    if len(grid) == 0:
        return []
    keys = np.asarray(keyframes, dtype=np.int64)
    # the keyframe at or before each grid frame: a cut before frame i is allowed when it differs
    # from the previous grid frame's keyframe
    gop = np.searchsorted(keys, grid, side="right")
    changed = np.diff(gop) > 0
    if groups is not None:
        changed &= np.diff(np.asarray(groups)) != 0
    allowed = np.flatnonzero(changed) + 1
    parts: list[np.ndarray] = []
    start = 0
    for cut in allowed.tolist():
        if cut - start >= unit_frames:
            parts.append(grid[start:cut])
            start = cut
    parts.append(grid[start:])
    return parts


def importable(cls: type) -> bool:
    """Whether a fresh interpreter can import ``cls`` by name, as a worker process must to
    unpickle a unit (a backend defined inside a function or in ``__main__`` cannot be)."""
    import pickle

    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return False
    try:
        pickle.dumps(cls)
    except Exception:
        return False
    return True


def portable_source(source: str) -> str:
    """A path another process can open: ``/proc/self/fd/N`` names this process's descriptor
    (the API's verified upload), which a worker reaches as ``/proc/<our pid>/fd/N``."""
    if source.startswith("/proc/self/"):
        return f"/proc/{os.getpid()}/" + source[len("/proc/self/"):]
    return source


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def plan_cores(cores: int, workers: int | None, decode_s: float, encode_s: float,
               on_cpu: bool) -> tuple[int, int]:
    """How many decode workers, and how many torch threads for a CPU encoder.

    The encoder and the decoders share the cores by their cost per frame: with ``d`` CPU
    seconds to decode a grid frame and ``e`` to encode one, decoding needs ``cores * d/(d+e)``
    cores. Decode workers that outrun the encoder block on full pipes and use no CPU, so the
    worker count rounds up; torch gets the cores decoding does not keep busy (rounded down),
    never fewer than one. On a GPU the encoder needs one core to feed it.

    Args:
        cores: usable cores.
        workers: decode workers asked for, or None for auto.
        decode_s: estimated CPU seconds to decode one grid frame.
        encode_s: measured CPU seconds to encode one frame (0 when it is on a GPU).
        on_cpu: the encoder runs on the CPU.

    Returns:
        ``(decode workers, torch threads)``.
    """
    if not on_cpu:
        return (workers or max(1, cores - 1)), cores
    share = decode_s / max(decode_s + encode_s, 1e-12)
    decode_cores = cores * share
    if workers is None:
        workers = max(1, min(cores, math.ceil(decode_cores - 0.1)))
    threads = max(1, cores - math.floor(min(workers, decode_cores)))
    return workers, threads


# ---- the worker process --------------------------------------------------------------------

class OpenDecoders:
    """The decoders a worker keeps open: one per video it is decoding, reused by that video's
    next units (no rescan), closed when the parent says ``forget`` or the worker stops."""

    def __init__(self) -> None:
        self._open: dict[int, VideoDecoder] = {}

    def get(self, unit: WorkUnit, table: Any,
            open_decoder: Callable[[WorkUnit, Any], VideoDecoder]) -> VideoDecoder:
        """The unit's video's decoder, ``open_decoder(unit, table)`` the first time."""
        dec = self._open.get(unit.video)
        if dec is None:
            dec = self._open[unit.video] = open_decoder(unit, table)
        return dec

    def forget(self, video: int) -> None:
        dec = self._open.pop(video, None)
        if dec is not None:
            dec.close()

    def close(self) -> None:
        for dec in self._open.values():
            dec.close()
        self._open.clear()


#: What a worker process runs: the parent's import path first (so a third-party backend's
#: module imports there too), then :func:`worker_main` on the two inherited descriptors.
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[4]); "
         "from framedex.indexer.workers import worker_main; "
         "worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))")


def worker_main(inbox_fd: int, outbox_fd: int, wid: int) -> None:
    """A decode worker: decode units from ``inbox``, send pieces of frames to ``outbox``.

    Messages in: :class:`DecodeUnit`, :class:`Forget`, ``STOP``. Messages out:
    :class:`FramePiece` and :class:`UnitFailed` (``indexer/messages.py``). Exits when the
    parent goes away (EOF/EPIPE).
    """
    import signal

    from framedex.errors import FramedexError

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    inbox = Connection(inbox_fd, writable=False)
    outbox = Connection(outbox_fd, readable=False)
    decoders = OpenDecoders()
    try:
        while True:
            msg: Command = inbox.recv()
            if isinstance(msg, Stop):
                return
            if isinstance(msg, Forget):
                decoders.forget(msg.video)
                continue
            unit = msg.unit
            try:
                dec = decoders.get(unit, msg.table, _open_in_process)
                _send_unit(outbox, wid, unit, dec)
            except (BrokenPipeError, EOFError):
                raise
            except FramedexError as ex:
                outbox.send(UnitFailed(wid, unit.video, unit.seq, str(ex)))
            except Exception as ex:  # a backend bug fails its video, not the worker
                outbox.send(UnitFailed(
                    wid, unit.video, unit.seq,
                    f"decoding {unit.source!r} failed: {type(ex).__name__}: {ex}"))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return
    finally:
        decoders.close()


def _open_in_process(unit: WorkUnit, table: Any) -> VideoDecoder:
    return unit.decoder.from_table(unit.source, table, threads=1)  # one core per worker


def _send_unit(outbox: Connection, wid: int, unit: WorkUnit, dec: VideoDecoder) -> None:
    t0 = time.process_time()
    idx: list[int] = []
    imgs: list[np.ndarray] = []
    for i, img in dec.iter_frames(unit.frame_idx, unit.max_side):
        idx.append(i)
        imgs.append(img)
        if len(idx) == PIECE_FRAMES:
            outbox.send(FramePiece(wid, unit.video, unit.seq, np.asarray(idx, np.int64),
                                   np.stack(imgs), False, 0.0))
            idx, imgs = [], []
    images = np.stack(imgs) if imgs else np.zeros((0, 1, 1, 3), np.uint8)
    outbox.send(FramePiece(wid, unit.video, unit.seq, np.asarray(idx, np.int64), images, True,
                           time.process_time() - t0))


# ---- the pool ------------------------------------------------------------------------------

@dataclass
class _Slot:
    """One worker, as the parent sees it: what it holds, and how to reach it."""

    wid: int
    kind: str  # "process" | "nvdec"
    assigned: collections.deque = field(default_factory=collections.deque)  # (video, seq)
    tables: set[int] = field(default_factory=set)  # videos whose table it has
    units_done: int = 0
    proc: Any = None
    inbox: Any = None  # Connection (process) or queue.Queue (nvdec)
    outbox: Connection | None = None
    thread: threading.Thread | None = None

    def send(self, msg: Command) -> None:
        if self.kind == "process":
            self.inbox.send(msg)
        else:
            self.inbox.put(msg)


class DecodePool:
    """Decode workers fed with work units; frames go to ``frames``, everything else to
    ``events`` (see the module docstring).

    Args:
        workers: decode processes.
        nvdec_sessions: NVDEC sessions (threads) beside them (0: none).
        prefetch: units a worker holds at once (one decoding, the rest queued).
        frames: bounded queue of frame pieces for the encoder.
        events: the parent's event queue (unit done, error, worker died).
        gpu_id: the CUDA device of the NVDEC sessions.
        in_process: run the CPU workers as threads of this process (for a run too small to
            pay for starting processes: one short file).
    """

    def __init__(self, workers: int, nvdec_sessions: int, prefetch: int,
                 frames: queue.Queue[FramePiece | Stop], events: queue.Queue[Event],
                 gpu_id: int = 0,
                 in_process: bool = False):
        self.prefetch = prefetch
        self.frames, self.events = frames, events
        self._gpu_id = gpu_id
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._units: dict[tuple[int, int], tuple[WorkUnit, Any]] = {}  # assigned, with tables
        self.slots: list[_Slot] = []
        for _ in range(workers):
            self.slots.append(self._start_process(len(self.slots)) if not in_process
                              else self._start_thread(len(self.slots), "thread"))
        for _ in range(nvdec_sessions):
            self.slots.append(self._start_thread(len(self.slots), "nvdec"))
        self._collector = threading.Thread(target=self._collect, name="framedex-collect",
                                           daemon=True)
        self._collector.start()

    # -- starting workers ---------------------------------------------------------------------
    def _start_process(self, wid: int) -> _Slot:
        import json
        import subprocess
        import sys

        inbox_r, inbox_w = os.pipe()
        outbox_r, outbox_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(inbox_r), str(outbox_w), str(wid),
                 json.dumps([p for p in sys.path if isinstance(p, str)])],
                pass_fds=(inbox_r, outbox_w), stdin=subprocess.DEVNULL)
        finally:
            os.close(inbox_r)  # the child's ends: closed here so EOF reaches each side
            os.close(outbox_w)
        return _Slot(wid, "process", proc=proc, inbox=Connection(inbox_w, readable=False),
                     outbox=Connection(outbox_r, writable=False))

    def _start_thread(self, wid: int, kind: str) -> _Slot:
        slot = _Slot(wid, kind, inbox=queue.Queue())
        slot.thread = threading.Thread(target=self._thread_main, args=(slot,),
                                       name=f"framedex-{kind}-{wid}", daemon=True)
        slot.thread.start()
        return slot

    # -- assigning units -------------------------------------------------------------------------
    def free_slot(self) -> _Slot | None:
        """The least busy worker that can take another unit, or None."""
        with self._lock:
            open_ = [s for s in self.slots if len(s.assigned) < self.prefetch]
        return min(open_, key=lambda s: (len(s.assigned), -s.units_done, s.wid), default=None)

    def submit(self, unit: WorkUnit, table: Any, slot: _Slot | None = None) -> _Slot:
        """Give ``unit`` to ``slot`` (default: the least busy one); its video's table goes
        along the first time that worker sees the video."""
        slot = slot or self.free_slot()
        assert slot is not None, "submit() without a free slot"
        with self._lock:
            slot.assigned.append((unit.video, unit.seq))
            self._units[(unit.video, unit.seq)] = (unit, table)
            send_table = unit.video not in slot.tables
            slot.tables.add(unit.video)
        with contextlib.suppress(OSError):  # a worker that just died: its "died" event
            slot.send(DecodeUnit(unit, table if send_table else None))  # hands it out again
        return slot

    def unit_finished(self, wid: int, video: int, seq: int) -> None:
        """The worker ``wid`` sent the last frame of (or failed) unit ``(video, seq)``."""
        with self._lock:
            slot = self.slots[wid]
            if (video, seq) in slot.assigned:
                slot.assigned.remove((video, seq))
                slot.units_done += 1
            self._units.pop((video, seq), None)

    def forget(self, video: int) -> None:
        """Let workers close ``video`` (it is done or failed; no unit of it will come)."""
        with self._lock:
            slots = [s for s in self.slots if video in s.tables]
            for s in slots:
                s.tables.discard(video)
        for s in slots:
            with contextlib.suppress(OSError):  # a dead worker: replaced on its "died" event
                s.send(Forget(video))

    def replace(self, wid: int) -> tuple[tuple[int, int] | None, list[tuple[WorkUnit, Any]]]:
        """Replace a dead process worker.

        Returns:
            the unit it was decoding (its video fails), and its other queued units, which the
            caller hands out again.
        """
        with self._lock:
            old = self.slots[wid]
            assigned = list(old.assigned)
            lost = [self._units.pop(k) for k in assigned if k in self._units]
            if not assigned and old.units_done == 0:
                raise RuntimeError(f"decode worker {wid} exited (code {old.proc.returncode}) "
                                   "before decoding anything; see its error above")
            fresh = self._start_process(wid)
            fresh.units_done = old.units_done
            self.slots[wid] = fresh
        old.inbox.close()
        culprit = assigned[0] if assigned else None
        return culprit, [u for u in lost if (u[0].video, u[0].seq) != culprit]

    def busy(self) -> int:
        """Units assigned and not finished."""
        with self._lock:
            return sum(len(s.assigned) for s in self.slots)

    # -- results ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        """Move worker messages on: frames to the encoder's queue, the rest to the events.
        A worker's pipe at EOF means the worker is gone."""
        while not self._stop.is_set():
            with self._lock:
                conns: dict[Any, _Slot] = {s.outbox: s for s in self.slots
                                           if s.kind == "process" and s.outbox is not None
                                           and not s.outbox.closed}
            if not conns:
                time.sleep(0.05)
                continue
            try:
                ready = wait(list(conns), timeout=0.2)
            except (OSError, ValueError):  # closed by replace(); the next round has the new one
                continue
            for conn in ready:
                slot = conns[conn]
                assert isinstance(conn, Connection)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    if not self._stop.is_set():
                        code = slot.proc.wait()
                        with self._lock:
                            conn.close()
                        self.events.put(WorkerDied(slot.wid, code))
                    continue
                if isinstance(msg, FramePiece):
                    self._put_frames(msg)
                else:
                    self.events.put(msg)

    def _put_frames(self, piece: FramePiece) -> None:
        while not self._stop.is_set():
            try:
                self.frames.put(piece, timeout=0.2)
                break
            except queue.Full:
                continue
        if piece.last:  # the unit's last piece: the worker is free for another unit
            assert piece.wid is not None
            self.events.put(UnitSent(piece.wid, piece.video, piece.seq))

    # -- threads: NVDEC sessions, and in-process CPU decoding -------------------------------
    def _thread_main(self, slot: _Slot) -> None:
        """A decode thread of this process. NVDEC sessions decode on the GPU (frames stay CUDA
        tensors, made on the session's own stream); a ``thread`` slot runs the unit's CPU
        backend here (PyAV releases the GIL while it decodes)."""
        import contextlib as _ctx

        from framedex.errors import FramedexError

        scope: Any = _ctx.nullcontext()
        stream = None
        if slot.kind == "nvdec":
            import torch

            if torch.cuda.is_available():  # (the tests' stand-in for NVDEC runs on the CPU)
                torch.cuda.set_device(self._gpu_id)
                stream = torch.cuda.Stream(self._gpu_id)
                scope = torch.cuda.stream(stream)
        decoders = OpenDecoders()
        with scope:
            while not self._stop.is_set():
                msg: Command | None = slot.inbox.get()
                if msg is None or isinstance(msg, Stop):
                    break
                if isinstance(msg, Forget):
                    decoders.forget(msg.video)
                    continue
                unit = msg.unit
                try:
                    dec = decoders.get(unit, msg.table,
                                       functools.partial(self._open_in_thread, slot))
                    self._thread_unit(slot, unit, dec, stream)
                except FramedexError as ex:
                    self.events.put(UnitFailed(slot.wid, unit.video, unit.seq, str(ex)))
                except Exception as ex:
                    self.events.put(UnitFailed(
                        slot.wid, unit.video, unit.seq,
                        f"decoding {unit.source!r} failed ({slot.kind}): "
                        f"{type(ex).__name__}: {ex}"))
        decoders.close()

    def _open_in_thread(self, slot: _Slot, unit: WorkUnit, table: Any) -> VideoDecoder:
        if slot.kind == "nvdec":
            from framedex.indexer.decode.nvdec import NvdecDecoder

            return NvdecDecoder.from_table(unit.source, table, gpu_id=self._gpu_id)
        # the only decoder thread of a run: FFmpeg's own threads may use every core
        alone = sum(s.kind == "thread" for s in self.slots) == 1
        return unit.decoder.from_table(unit.source, table, threads=0 if alone else 1)

    def _thread_unit(self, slot: _Slot, unit: WorkUnit, dec: VideoDecoder,
                     stream: Any) -> None:
        t0 = time.thread_time()
        idx: list[int] = []
        imgs: list[Any] = []

        def piece(last: bool) -> FramePiece:
            images: Any
            if slot.kind == "nvdec":
                import torch

                images = torch.stack(imgs) if imgs else torch.zeros((0, 1, 1, 3),
                                                                    dtype=torch.uint8)
                if stream is not None:
                    stream.synchronize()  # the encoder reads it on its own stream
            else:
                images = np.stack(imgs) if imgs else np.zeros((0, 1, 1, 3), np.uint8)
            return FramePiece(slot.wid, unit.video, unit.seq, np.asarray(idx, np.int64),
                              images, last, time.thread_time() - t0 if last else 0.0)

        for i, img in dec.iter_frames(unit.frame_idx, unit.max_side):
            idx.append(i)
            imgs.append(img)
            if len(idx) == PIECE_FRAMES:
                self._put_frames(piece(False))
                idx, imgs = [], []
        self._put_frames(piece(True))

    # -- shutting down ---------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        for s in self.slots:
            with contextlib.suppress(OSError):
                s.send(STOP)
        deadline = time.monotonic() + timeout
        for s in self.slots:
            if s.proc is not None:
                s.inbox.close()
                try:
                    s.proc.wait(max(0.01, deadline - time.monotonic()))
                except Exception:  # subprocess.TimeoutExpired: a worker stuck in a decoder
                    s.proc.kill()
                    s.proc.wait()
        self._collector.join(1.0)
        for s in self.slots:
            if s.outbox is not None:
                s.outbox.close()

