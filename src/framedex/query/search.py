"""Library search: a query (a text or an image embedding) -> ranked moments across every
indexed video; several query parts -> ranked videos (:func:`search_parts`).

One ANN (or exact, when no index is built) nearest-neighbour query over all frame vectors
returns the best frames; neighbouring hits of the same video merge into one *moment*
(``start`` = first hit's ``pts_sec``, ``end`` = last hit's ``pts_sec`` + one grid step, clipped
to the duration; ``score`` = best hit's cosine). Results rank best first, by moment or grouped
by video.

Only committed videos (a ``videos`` row exists) can appear: frames a crashed index run left
behind are dropped here, whatever the frames table holds.

A query of several parts (texts and/or images) ranks videos instead, with LanceDB's MaxSim
over each video's segment vectors (the ``video_vectors`` multivector table): ``and`` by the sum
over the parts of each part's best segment, ``or`` by the best part (:func:`search_parts`).

Example::

    hits = search_library(store, encoder.encode_text(["a red circle"])[0], limit=5)
    videos = search_parts(store, encoder.encode_text(["a dog", "a pool"]), operator="and")
    hits[0].to_json()   # {"video_id": ..., "path": ..., "start": 12.0, "end": 15.0, "score": 0.31}
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from framedex.errors import EmptyLibraryError, check
from framedex.store.schema import VideoRecord

GROUP_BY = ("moment", "video")
#: How the parts of a multi-part query combine: ``and`` ranks a video by the sum over the parts
#: of each part's best segment (LanceDB's MaxSim), ``or`` by its best single part.
OPERATORS = ("or", "and")
#: Most parts in one query (Twelve Labs takes up to 10 images plus a text).
MAX_PARTS = 11

#: Frames fetched per wanted result before merging (many hits merge into one moment).
OVERFETCH = 20
#: ANN settings. scripts/bench_search.py (10k video-like vectors, the largest this 2-core box
#: indexed in time) showed the exact re-rank is what matters: recall@10 0.57 without
#: refine, 0.96-0.98 with refine_factor=10 at 4-32 probes. Not yet confirmed at 1M vectors.
DEFAULT_NPROBES = 32
DEFAULT_REFINE_FACTOR = 10
#: Above this many allowed videos, filters are applied after the ANN query, not inside it
#: (a huge ``IN (...)`` list costs more than it saves).
MAX_PREFILTER_IDS = 2000


@dataclass
class SearchFilters:
    """Filters on video metadata; a video must pass all that are set.

    Attributes:
        min_duration: keep videos at least this long (seconds).
        max_duration: keep videos at most this long (seconds).
        path_glob: ``fnmatch`` pattern on the indexed path (``*`` crosses ``/``), e.g.
            ``*/cam1/*.mp4``; a pattern without ``/`` is also matched on the file name.
        metadata: user metadata equality, ``{"source": "cam1", "night": True}``.
        video_ids: keep only these videos (None: no restriction; empty: no video).
    """

    min_duration: float | None = None
    max_duration: float | None = None
    path_glob: str | None = None
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)
    video_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.video_ids is not None:
            ids = self.video_ids
            check(not isinstance(ids, str) and all(isinstance(v, str) for v in ids),
                  "video_ids", ids, "must be a collection of video id strings")
            self.video_ids = frozenset(ids)
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            check(value is None or (isinstance(value, (int, float)) and value >= 0
                                    and math.isfinite(value)),
                  name, value, "must be a number of seconds >= 0")
        if self.min_duration is not None and self.max_duration is not None:
            check(self.min_duration <= self.max_duration, "max_duration", self.max_duration,
                  f"must be >= min_duration ({self.min_duration})")
        check(self.path_glob is None or self.path_glob != "", "path_glob", self.path_glob,
              "must be a non-empty glob pattern")

    @property
    def active(self) -> bool:
        """True when at least one filter is set."""
        return (self.min_duration is not None or self.max_duration is not None
                or self.path_glob is not None or bool(self.metadata)
                or self.video_ids is not None)

    def matches(self, video: VideoRecord) -> bool:
        """True when ``video`` passes every filter."""
        if self.video_ids is not None and video.video_id not in self.video_ids:
            return False
        if self.min_duration is not None and video.duration < self.min_duration:
            return False
        if self.max_duration is not None and video.duration > self.max_duration:
            return False
        if self.path_glob is not None:
            name = video.path.rsplit("/", 1)[-1]
            if not (fnmatch.fnmatchcase(video.path, self.path_glob)
                    or ("/" not in self.path_glob and fnmatch.fnmatchcase(name, self.path_glob))):
                return False
        for key, want in self.metadata.items():
            if key not in video.metadata or not _meta_equal(video.metadata[key], want):
                return False
        return True


def _meta_equal(have: Any, want: Any) -> bool:
    # bool is an int in Python: True must not equal 1 in user metadata.
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    return have == want


@dataclass
class Moment:
    """A contiguous stretch of one video whose frames match the query."""

    video_id: str
    path: str
    start: float
    end: float
    score: float
    best_pts_sec: float = 0.0
    num_hits: int = 1
    #: Native index of the best frame (what ``GET /v1/videos/{id}/frames/{frame_idx}.jpg``
    #: serves), when known.
    frame_idx: int | None = None
    #: Which part of a multi-part query this moment answers (None for a one-part query).
    part: int | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"video_id", "path", "start", "end", "score"}`` (seconds, cosine), plus ``part``
        for the moments of a multi-part query."""
        out = {"video_id": self.video_id, "path": self.path, "start": round(self.start, 3),
               "end": round(self.end, 3), "score": round(self.score, 6)}
        if self.part is not None:
            out["part"] = self.part
        return out


@dataclass
class VideoHit:
    """One video in a ``group_by="video"`` result: its best score and its moments, best first."""

    video_id: str
    path: str
    score: float
    moments: list[Moment]

    def to_json(self) -> dict[str, Any]:
        """The best moment's fields plus ``moments`` (each as :meth:`Moment.to_json`)."""
        best = self.moments[0]
        return {"video_id": self.video_id, "path": self.path, "start": round(best.start, 3),
                "end": round(best.end, 3), "score": round(self.score, 6),
                "moments": [m.to_json() for m in self.moments]}


def merge_hits(video: VideoRecord, pos: np.ndarray, pts_sec: np.ndarray, scores: np.ndarray,
               max_gap: int = 1, strong: float = -np.inf,
               frame_idx: np.ndarray | None = None) -> list[Moment]:
    """Merge one video's matching frames into moments.

    Hits whose grid positions differ by at most ``max_gap`` (or whose times differ by at most
    ~1 grid step, for variable-rate grids) join one moment, unless one scores at least
    ``strong`` and the other does not: a matching scene must not melt into the weak frames
    around it when the over-fetch reaches past it (a small library is fetched whole).

    Args:
        video: the video's record (path, duration, index_fps).
        pos: grid positions of the hits.
        pts_sec: their timestamps.
        scores: their cosine similarities.
        max_gap: largest position step that still merges.
        strong: score that separates matching frames from background ones.
        frame_idx: native frame indices of the hits (sets each moment's ``frame_idx``).

    Returns:
        Moments in time order.
    """
    order = np.argsort(pos, kind="stable")
    pos, pts_sec, scores = pos[order], pts_sec[order], scores[order]
    native = frame_idx[order] if frame_idx is not None else None
    is_strong = scores >= strong
    step = 1.0 / video.index_fps if video.index_fps > 0 else 1.0
    moments: list[Moment] = []
    first = 0
    for i in range(1, len(pos) + 1):
        if i < len(pos) and is_strong[i] == is_strong[i - 1] and (
                pos[i] - pos[i - 1] <= max_gap or pts_sec[i] - pts_sec[i - 1] <= 1.5 * step):
            continue
        run = slice(first, i)
        best = first + int(np.argmax(scores[run]))
        end = float(pts_sec[i - 1]) + step
        if video.duration > 0:
            end = min(end, max(float(video.duration), float(pts_sec[i - 1])))
        moments.append(Moment(video.video_id, video.path, float(pts_sec[first]), end,
                              float(scores[best]), float(pts_sec[best]), i - first,
                              frame_idx=int(native[best]) if native is not None else None))
        first = i
    return moments


def search_library(store: Any, query: np.ndarray, *, limit: int = 10, group_by: str = "moment",
                   filters: SearchFilters | None = None, nprobes: int | None = None,
                   refine_factor: int | None = None) -> list[Moment] | list[VideoHit]:
    """Rank the moments of the library against a query embedding.

    Args:
        store: a :class:`~framedex.store.Store`.
        query: (D,) L2-normalised text embedding.
        limit: number of results (moments, or videos with ``group_by="video"``).
        group_by: ``"moment"`` or ``"video"``.
        filters: metadata filters (None: every committed video).
        nprobes: IVF partitions to probe (ANN only; default :data:`DEFAULT_NPROBES`).
        refine_factor: re-rank this many times ``limit`` candidates exactly (ANN only).

    Returns:
        Moments (or VideoHits) best first; empty when no video passes the filters.

    Raises:
        ConfigError: bad limit or group_by.
        EmptyLibraryError: nothing is indexed.
    """
    check(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1,
          "limit", limit, "must be an integer >= 1")
    check(group_by in GROUP_BY, "group_by", group_by, f"must be one of {', '.join(GROUP_BY)}")
    allowed, where = allowed_videos(store, filters)
    if not allowed:
        return []
    ann = store.has_ann_index()
    fetch = max(limit * OVERFETCH, 100)
    while True:
        rows = store.search_frames(
            query, fetch, where=where,
            nprobes=(nprobes or DEFAULT_NPROBES) if ann else None,
            refine_factor=(refine_factor or DEFAULT_REFINE_FACTOR) if ann else None)
        moments = _moments(rows, allowed)
        wanted = len({m.video_id for m in moments}) if group_by == "video" else len(moments)
        # Too few results after dropping uncommitted or filtered-out videos: fetch deeper,
        # unless the store has no more rows to give.
        if wanted >= limit or rows.num_rows < fetch or fetch >= 64 * limit * OVERFETCH:
            break
        fetch *= 4
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start))
    if group_by == "moment":
        return moments[:limit]
    return group_by_video(moments)[:limit]


def allowed_videos(store: Any, filters: SearchFilters | None
                   ) -> tuple[dict[str, VideoRecord], str | None]:
    """The committed videos that pass ``filters``, and the SQL prefilter that keeps them
    (None when no filter is set, or when the id list would be too long to help).

    Raises:
        EmptyLibraryError: nothing is indexed.
    """
    filters = filters or SearchFilters()
    videos = {v.video_id: v for v in store.list_videos()}
    if not videos:
        raise EmptyLibraryError(f"the store {store.uri} has no indexed video: run "
                                "`framedex index PATH` first")
    allowed = {vid: v for vid, v in videos.items() if filters.matches(v)}
    where = None
    if allowed and filters.active and len(allowed) <= MAX_PREFILTER_IDS:
        where = "video_id IN (" + ", ".join(_sql_str(v) for v in sorted(allowed)) + ")"
    return allowed, where


def search_parts(store: Any, queries: np.ndarray, *, operator: str = "and", limit: int = 10,
                 group_by: str = "video", filters: SearchFilters | None = None,
                 frames: Callable[[VideoRecord], Any] | None = None
                 ) -> list[Moment] | list[VideoHit]:
    """Rank videos against a query of several parts (texts and/or images) with LanceDB's MaxSim
    over each video's segment vectors (the ``video_vectors`` multivector table).

    ``and``: a video scores the sum over the parts of each part's best segment, so a video
    showing all parts beats one that shows a single part very well. ``or``: a video scores its
    best single part (one MaxSim query per part, then the best). Each hit's moments are the
    best segment of each part (``Moment.part``); with ``frames`` (a loader of a video's frame
    arrays) each moment also names its best frame (``best_pts_sec``, ``frame_idx``).

    Args:
        store: a :class:`~framedex.store.Store`.
        queries: (P, D) L2-normalised query parts, P >= 1.
        operator: ``and`` or ``or``.
        limit: videos (``group_by="video"``) or moments (``"moment"``: each ranked video's
            moments, best first, in the videos' order) to return.
        group_by: ``"moment"`` or ``"video"``.
        filters: metadata filters.
        frames: optional loader ``record -> FrameArrays`` (e.g. the library's frames cache).

    Returns:
        VideoHits (score: the combined score) or Moments (score: the part's cosine).

    Raises:
        ConfigError: bad limit, group_by or operator. EmptyLibraryError: nothing indexed.
    """
    check(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1,
          "limit", limit, "must be an integer >= 1")
    check(group_by in GROUP_BY, "group_by", group_by, f"must be one of {', '.join(GROUP_BY)}")
    check(operator in OPERATORS, "operator", operator, f"must be one of {', '.join(OPERATORS)}")
    q = np.asarray(queries, dtype=np.float32)
    check(q.ndim == 2 and 1 <= len(q) <= MAX_PARTS, "queries", q.shape,
          f"must be 1 to {MAX_PARTS} query parts")
    allowed, where = allowed_videos(store, filters)
    if not allowed:
        return []
    groups = [q] if operator == "and" else [q[i:i + 1] for i in range(len(q))]
    found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for part in groups:
        fetch = limit + 8
        while True:
            rows = store.search_video_vectors(part, fetch, where)
            live = _live_vector_rows(rows, allowed)
            if len(live) >= limit or rows.num_rows < fetch or fetch > 64 * limit + 512:
                break
            fetch *= 4
        for vid, row in live.items():
            found.setdefault(vid, row)
    hits = []
    for vid, (starts, ends, vectors) in found.items():
        sims = vectors.astype(np.float64) @ q.T.astype(np.float64)  # (S, P)
        best = sims.max(axis=0)
        score = float(best.sum()) if operator == "and" else float(best.max())
        moments = _part_moments(allowed[vid], starts, ends, sims, q, frames)
        hits.append(VideoHit(vid, allowed[vid].path, score, moments))
    hits.sort(key=lambda h: (-h.score, h.video_id))
    hits = hits[:limit]
    if group_by == "video":
        return hits
    return [m for h in hits for m in h.moments][:limit]


def _live_vector_rows(rows: Any, allowed: dict[str, VideoRecord]
                      ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``video_id -> (start_sec, end_sec, vectors)`` of the rows whose generation is live."""
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if rows.num_rows == 0:
        return out
    vids = rows.column("video_id").to_pylist()
    gens = rows.column("generation").to_pylist()
    starts = rows.column("start_sec").to_pylist()
    ends = rows.column("end_sec").to_pylist()
    vectors = rows.column("vectors").to_pylist()
    for i, vid in enumerate(vids):
        video = allowed.get(vid)
        if video is None or video.generation != gens[i] or vid in out:
            continue
        out[vid] = (np.asarray(starts[i], np.float64), np.asarray(ends[i], np.float64),
                    np.asarray(vectors[i], np.float32))
    return out


def _part_moments(video: VideoRecord, starts: np.ndarray, ends: np.ndarray, sims: np.ndarray,
                  q: np.ndarray, frames: Callable[[VideoRecord], Any] | None) -> list[Moment]:
    """Each part's best segment as a moment (one per segment: two parts that pick the same
    segment share it, under the better part), best first."""
    arrays = frames(video) if frames is not None else None
    by_segment: dict[int, Moment] = {}
    for p in range(sims.shape[1]):
        s = int(np.argmax(sims[:, p]))
        score = float(sims[s, p])
        if s in by_segment and by_segment[s].score >= score:
            continue
        moment = Moment(video.video_id, video.path, float(starts[s]), float(ends[s]), score,
                        float(starts[s]), part=p)
        if arrays is not None and len(arrays.pts_sec):
            inside = np.flatnonzero((arrays.pts_sec >= starts[s] - 1e-6)
                                    & (arrays.pts_sec < ends[s] + 1e-6))
            if len(inside):
                frame_scores = arrays.vectors[inside] @ q[p]
                k = int(inside[int(np.argmax(frame_scores))])
                moment.best_pts_sec = float(arrays.pts_sec[k])
                moment.frame_idx = int(arrays.frame_idx[k])
        by_segment[s] = moment
    return sorted(by_segment.values(), key=lambda m: (-m.score, m.start))


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _moments(rows: Any, allowed: dict[str, VideoRecord]) -> list[Moment]:
    """Drop hits of uncommitted / filtered videos, then merge each video's hits."""
    if rows.num_rows == 0:
        return []
    vids = np.asarray(rows.column("video_id").to_pylist(), dtype=object)
    gens = rows.column("generation").to_numpy()
    # A hit counts only if its generation is the one its video's row names: rows of a killed
    # run, or of a re-index not yet swapped in (or already swapped out), are invisible.
    live = np.fromiter((allowed[v].generation == g if v in allowed else False
                        for v, g in zip(vids.tolist(), gens.tolist(), strict=True)),
                       dtype=bool, count=len(vids))
    rows = rows.filter(pa.array(live))
    if rows.num_rows == 0:
        return []
    vids = vids[live]
    pos = rows.column("pos").to_numpy()
    pts = rows.column("pts_sec").to_numpy()
    native = rows.column("frame_idx").to_numpy()
    scores = 1.0 - rows.column("_distance").to_numpy().astype(np.float64)  # cosine distance
    # Halfway between the typical fetched frame and the best one: relative, so it needs no
    # encoder-specific cosine threshold.
    med = float(np.median(scores))
    strong = med + 0.5 * (float(scores.max()) - med)
    out: list[Moment] = []
    for vid in dict.fromkeys(vids.tolist()):
        video = allowed.get(vid)
        if video is None:  # uncommitted (crashed run) or filtered out
            continue
        mask = vids == vid
        out.extend(merge_hits(video, pos[mask], pts[mask], scores[mask], strong=strong,
                              frame_idx=native[mask]))
    return out


def group_by_video(moments: list[Moment]) -> list[VideoHit]:
    """Group moments (best first) into one hit per video, ranked by its best moment."""
    by_video: dict[str, VideoHit] = {}
    for m in sorted(moments, key=lambda m: -m.score):
        hit = by_video.get(m.video_id)
        if hit is None:
            by_video[m.video_id] = VideoHit(m.video_id, m.path, m.score, [m])
        else:
            hit.moments.append(m)
    return sorted(by_video.values(), key=lambda h: (-h.score, h.video_id))
