"""The Ray engine's stages: the functions its tasks and actors run on the cluster's nodes.

Each stage is framedex's own code, called where Ray schedules it:

- :func:`plan_file` (CPU task): ``planner.prepare``, i.e. hash the file, see whether the store
  holds it, and scan it once (metadata, index grid, keyframes, the backend's packet table);
- :func:`decode_unit` (CPU task): one GOP-aligned unit of whole fixed segments, decoded by the
  file's backend from that table (``from_table``, ``iter_frames``), emitted as one row per
  segment window, so a segment is pooled where its frames are, without a shuffle;
- :class:`EncodeActor` (a GPU actor, or a CPU one): ``load_encoder`` once, then batches of
  windows -> frame vectors; its identity is checked against the job's first;
- :func:`write_windows` (CPU task): the store's staged writes (``stage_frames``,
  ``stage_segments``: Lance data files in the live tables' schemas, under the generation the
  driver began), one pair per video per batch; it returns the fragments and commits nothing.

``indexer/ray_engine.py`` is the driver that plans the job, commits and reports. Rows carry
numpy arrays; a window row has ``key`` (the driver's number for the video), ``seg`` (the
window's position among the video's segments), ``pos``, ``frame_idx``, ``pts_sec``,
``images`` (then ``vectors``), ``last`` (the unit's final row) and ``error``.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from framedex.indexer.decode.base import VideoDecoder
    from framedex.indexer.pipeline import IndexOptions
    from framedex.store import Store
    from framedex.store.base import SegmentArrays

_STORES: dict[tuple[str, str], Store] = {}
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreRef:
    """How a worker opens the job's store: its URI and the one ``storage_options`` mapping
    the driver opened it with (object-store credentials reach every node this way)."""

    uri: str
    storage_options: dict[str, str] | None = None

    def open(self) -> Store:
        """The store, opened once per worker process."""
        from framedex.store import open_store

        key = (self.uri, json.dumps(self.storage_options, sort_keys=True))
        with _STORES_LOCK:
            if key not in _STORES:
                _STORES[key] = open_store(self.uri, storage_options=self.storage_options)
            return _STORES[key]


# ---- plan -----------------------------------------------------------------------------------

def plan_file(row: dict[str, Any], *, store: StoreRef, opts: IndexOptions, image_size: int,
              backend: type | None = None) -> dict[str, Any]:
    """Hash and scan one file (``planner.prepare``); the result travels pickled.

    Args:
        backend: the class of the backend ``opts.decoder`` names (None for ``auto``), pickled
            by reference: a third-party backend whose module does not register it on import
            is registered here under that name, as in the driver.
    """
    from framedex.indexer.planner import Prepared, prepare

    if backend is not None:
        _register(opts.decoder, backend)
    order, path = int(row["order"]), str(row["path"])
    try:
        prep = prepare(order, Path(path), {}, store.open(), opts, image_size)
    except Exception as ex:  # a backend bug fails its file, not the job
        prep = Prepared(order, path, path, 0.0,
                        error=f"cannot index {path}: {type(ex).__name__}: {ex}")
    return {"order": order, "prep": pickle.dumps(prep)}


def _register(name: str, backend: type) -> None:
    from framedex.errors import UnknownNameError
    from framedex.indexer.decode import get_decoder_class, register_decoder

    try:
        get_decoder_class(name)
    except UnknownNameError:
        register_decoder(name)(backend)


# ---- decode ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodePlan:
    """What a decode task needs of its video: the file, the backend class (pickled by
    reference, as for the local engine's workers), the backend's table (an ObjectRef: put
    once, fetched by each task) and the decode-time downsizing."""

    source: str
    decoder: type[VideoDecoder]
    table: Any
    max_side: int | None


def decode_unit(row: dict[str, Any], *, videos: dict[int, DecodePlan]
                ) -> Iterator[dict[str, Any]]:
    """Decode one unit; yield one row per segment window, the last with ``last=True``.

    A decoder error ends the unit with an error row (it fails its video, not the job).
    """
    import ray

    from framedex.errors import FramedexError

    key = int(row["key"])
    plan = videos[key]
    idx = np.asarray(row["frame_idx"], np.int64)
    pts, seg = np.asarray(row["pts_sec"], np.float64), np.asarray(row["seg"], np.int64)
    pos0 = int(row["pos0"])
    window: list[tuple[int, np.ndarray]] = []  # (position in the unit, image)
    try:
        dec = plan.decoder.from_table(plan.source, ray.get(plan.table), threads=1)
        with dec:
            for i, img in dec.iter_frames(idx, plan.max_side):
                j = int(np.searchsorted(idx, i))
                if window and seg[window[0][0]] != seg[j]:
                    yield _window(key, window, idx, pts, seg, pos0, last=False)
                    window = []
                window.append((j, img))
    except FramedexError as ex:
        yield _error_row(key, str(ex))
        return
    except Exception as ex:  # a backend bug fails its video, not the job
        yield _error_row(key, f"decoding {plan.source!r} failed: {type(ex).__name__}: {ex}")
        return
    yield _window(key, window, idx, pts, seg, pos0, last=True)


def _window(key: int, frames: list[tuple[int, np.ndarray]], idx: np.ndarray, pts: np.ndarray,
            seg: np.ndarray, pos0: int, last: bool) -> dict[str, Any]:
    if not frames:  # a unit that decoded nothing: the driver still counts it as done
        return _row(key, -1, last=last)
    at = np.array([j for j, _ in frames], np.int64)
    return {"key": key, "seg": int(seg[at[0]]), "pos": (pos0 + at).astype(np.int32),
            "frame_idx": idx[at], "pts_sec": pts[at],
            "images": np.stack([img for _, img in frames]), "last": last, "error": ""}


def _row(key: int, seg: int, last: bool, error: str = "") -> dict[str, Any]:
    return {"key": key, "seg": seg, "pos": np.zeros(0, np.int32),
            "frame_idx": np.zeros(0, np.int64), "pts_sec": np.zeros(0, np.float64),
            "images": np.zeros((0, 1, 1, 3), np.uint8), "last": last, "error": error}


def _error_row(key: int, message: str) -> dict[str, Any]:
    return _row(key, -1, last=True, error=message)


# ---- encode ---------------------------------------------------------------------------------

class EncodeActor:
    """Loads the encoder once and turns batches of windows into frame vectors.

    Args:
        spec: the model spec.
        identity: the identity the driver checked against the store; a node whose model
            files differ (another checkpoint at the same path) refuses to start.
        device: ``cuda`` (Ray gives the actor its own GPU) or ``cpu``.
        batch_size: frames per forward pass at most.
        uri: the store, for the mismatch message.

    Raises:
        EncoderMismatchError: this node's model is not the job's.
    """

    def __init__(self, spec: str, identity: dict[str, Any], device: str, batch_size: int,
                 uri: str):
        import socket

        from framedex.indexer.encoder import load_encoder
        from framedex.store.lance_store import check_same_encoder

        self.encoder = load_encoder(spec, device=device)
        check_same_encoder(identity, self.encoder.identity,
                           f"{uri} (as loaded on the Ray node {socket.gethostname()})")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["key"])
        images = [batch["images"][i] for i in range(n)]
        vectors = self._encode([im for im in images if len(im)])
        out = {k: batch[k] for k in ("key", "seg", "pos", "frame_idx", "pts_sec", "last",
                                     "error")}
        per_row = np.empty(n, dtype=object)
        at = 0
        for i, im in enumerate(images):
            per_row[i] = vectors[at:at + len(im)]
            at += len(im)
        out["vectors"] = per_row
        return out

    def _encode(self, pieces: list[np.ndarray]) -> np.ndarray:
        """Forward passes of at most ``batch_size`` frames, all submitted before the first
        result is collected (on a GPU the host prepares the next while one runs)."""
        pending, chunk, room = [], [], self.batch_size
        for piece in pieces:
            while len(piece):
                take, piece = piece[:room], piece[room:]
                chunk.append(take)
                room -= len(take)
                if room == 0:
                    pending.append(self.encoder.submit(chunk))
                    chunk, room = [], self.batch_size
        if chunk:
            pending.append(self.encoder.submit(chunk))
        if not pending:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.concatenate([p.result() for p in pending])


# ---- write ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WritePlan:
    """What a write task needs of its video: its id, the generation the driver began, the
    keys of all its fixed segments (by position) and where its last segment ends."""

    video_id: str
    generation: int
    seg_keys: np.ndarray
    seg_end: float


def write_windows(batch: dict[str, np.ndarray], *, store: StoreRef,
                  videos: dict[int, WritePlan], segment_sec: float) -> pa.Table:
    """Stage each video's frames and segments of this batch (nothing is committed).

    Returns:
        one row per video: ``key``, ``frames`` written, ``units`` finished, ``error`` (a
        decoder's message), the staged ``frames_frags`` / ``segments_frags`` (JSON lists),
        and ``segments``: the pooled segments written (:func:`pack_segments`), from which the
        driver builds the video's ``video_vectors`` row without reading them back.
    """
    import pyarrow as pa

    from framedex.indexer.batching import fixed_segments

    rows_of: dict[int, list[int]] = {}
    for i, key in enumerate(batch["key"]):
        rows_of.setdefault(int(key), []).append(i)
    out: dict[str, list[Any]] = {"key": [], "frames": [], "units": [], "error": [],
                                 "frames_frags": [], "segments_frags": [], "segments": []}

    def emit(key: int, frames: int, units: int, error: str, ff: list[str],
             sf: list[str], seg: bytes = b"") -> None:
        for name, value in zip(out, (key, frames, units, error, json.dumps(ff),
                                     json.dumps(sf), seg), strict=True):
            out[name].append(value)

    for key, rows in rows_of.items():
        units = sum(bool(batch["last"][i]) for i in rows)
        error = next((str(batch["error"][i]) for i in rows if batch["error"][i]), "")
        full = [i for i in rows if len(batch["pos"][i])]
        if error or not full:
            emit(key, 0, units, error, [], [])
            continue
        plan, st = videos[key], store.open()
        vectors = [np.asarray(batch["vectors"][i], np.float32) for i in full]
        frames = st.stage_frames(
            plan.video_id, plan.generation, np.concatenate([batch["pos"][i] for i in full]),
            np.concatenate([batch["frame_idx"][i] for i in full]),
            np.concatenate([batch["pts_sec"][i] for i in full]), np.concatenate(vectors))
        ranks = np.array([int(batch["seg"][i]) for i in full], np.int64)
        sums = np.stack([v.astype(np.float64).sum(0) for v in vectors])
        starts, ends, pooled = fixed_segments(plan.seg_keys[ranks], sums, segment_sec,
                                              plan.seg_end)
        segments = st.stage_segments(plan.video_id, plan.generation, ranks, starts, ends,
                                     np.array([len(v) for v in vectors], np.int32), pooled)
        emit(key, sum(len(v) for v in vectors), units, "", frames, segments,
             pack_segments(ranks, starts, ends, pooled))
    return pa.table(out)


def pack_segments(ranks: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  vectors: np.ndarray) -> bytes:
    """Segments as bytes for the trip to the driver (``.npz``)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, ranks=np.asarray(ranks, np.int64), starts=np.asarray(starts, np.float64),
             ends=np.asarray(ends, np.float64), vectors=np.asarray(vectors, np.float32))
    return buf.getvalue()


def unpack_segments(video_id: str, parts: list[bytes]) -> SegmentArrays | None:
    """The video's segments from the write tasks' :func:`pack_segments`, in time order
    (None when there are none)."""
    import io

    from framedex.store.base import SegmentArrays

    loaded = [np.load(io.BytesIO(p)) for p in parts if p]
    if not loaded:
        return None
    ranks = np.concatenate([z["ranks"] for z in loaded])
    order = np.argsort(ranks, kind="stable")
    starts = np.concatenate([z["starts"] for z in loaded])[order]
    return SegmentArrays(video_id, starts, np.concatenate([z["ends"] for z in loaded])[order],
                         ["fixed"] * len(starts),
                         np.concatenate([z["vectors"] for z in loaded])[order])
