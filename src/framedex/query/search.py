"""Library search: a query (a text or an image embedding) -> ranked moments across every
indexed video; several query parts -> ranked videos (:func:`search_parts`).

How a query runs (``search_moments``):

1. *Candidates*: the segments (6-s mean-pooled windows) nearest to the query, from the
   IVF_HNSW_SQ index ``framedex build-index`` builds on the segments table (or an exact scan of
   the segments when there is no index; a store indexed on frames uses that index instead).
2. *Exact rescoring*: the frames of those segments (and a few around them) are read, one
   ``take``, and scored exactly (cosine in float32, as Lance's exact search).
3. *Moments* (``framedex.query.moments``): the best unclaimed frame is a peak; its moment is
   the run of neighbouring frames scoring at least halfway between the peak and the query's
   background (its cosine with the library's mean frame); further frames are read only when a
   moment grows past what was read. Repeat until ``limit`` moments (or videos).
4. Too few candidates for ``limit`` results (the next peak scores below the worst fetched
   segment, so an unfetched segment could hold a better one): fetch 4x more segments, go on.

The bound in 4 is a heuristic: a segment's mean-pooled vector understates a short scene that
straddles two 6-s windows, so such a scene's frames can beat segments ranked above it. That
is why the first round already fetches 16 segments per result, not the ~3 a moment spans.

Measured at 1M frame vectors on 2 busy CPU cores (``scripts/bench_search.py``, table in
``docs/search-benchmark.md``): recall@10 1.000 against brute force, every recall-1 query's
moments equal to the same rule on exact candidates (200/200), p50 6.7 ms / p95 9.6 ms, where
the first version (IVF-PQ on frames, nprobes 32, refine 10, merge of 200 fetched hits) took
40.7 ms. Fewer segments per result: 8 -> 191/200 exact, 4 -> 158/199 (a short scene across
two windows is understated by both); the frames' own index as the candidate source: 18-30 ms.

Only committed videos can appear, and only their live generation: rows a crashed index run
left behind, or a re-index not yet swapped in, are dropped here, whatever the tables hold.

A query of several parts (texts and/or images) ranks videos instead, with LanceDB's MaxSim
over each video's segment vectors (the ``video_vectors`` multivector table): ``and`` by the sum
over the parts of each part's best segment, ``or`` by the best part (:func:`search_parts`).

Example::

    hits = search_library(store, encoder.encode_text(["a red circle"])[0], limit=5)
    hits[0].to_json()   # {"video_id": ..., "path": ..., "start": 12.0, "end": 15.0, "score": 0.31}
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from framedex.errors import EmptyLibraryError, check
from framedex.query.moments import MomentFinder, RawMoment, frame_scores
from framedex.rules import (
    LIMITS,
    NO_CONFIDENCE,
    THRESHOLDS,
    confidence,
    passes,
    threshold_margin,
)
from framedex.store.base import (
    FrameArrays,
    MaxSimSnapshot,
    Nearest,
    SearchParams,
    SearchSnapshot,
    StoreReader,
    VectorRows,
)
from framedex.store.schema import VideoRecord
from framedex.values import Array, JsonObject

#: Segments fetched per wanted result in the first round (a moment spans several segments).
SEGMENTS_PER_RESULT = 16
#: Frames fetched per wanted result when the store's index is on the frames table.
FRAMES_PER_RESULT = 40
#: Frames read beyond each candidate segment on both sides.
SEGMENT_MARGIN = 4
#: Frames read at a time when a moment grows past what was read.
READ_BLOCK = 16
#: Query settings per index type when the caller gives none. IVF_PQ: the first version's
#: nprobes; IVF_HNSW_SQ: Lance's defaults (ef = k, one partition at 1M frames).
DEFAULT_PARAMS = {"IVF_PQ": SearchParams(nprobes=32), "IVF_HNSW_SQ": SearchParams()}
#: Each further round fetches this many times more candidates ...
FETCH_GROWTH = 4
#: ... up to this many per wanted result; then the candidates are taken as complete.
MAX_CANDIDATES_PER_RESULT = 2048
#: Above this many allowed videos, filters are applied after the ANN query, not inside it
#: (a huge ``IN (...)`` list costs more than it saves).
MAX_PREFILTER_IDS = 2000
#: Multi-part search with a codebook: videos scored exactly per wanted result in the first
#: round (in order of their approximate score; each further round doubles). At 100,000
#: videos the exact top 10 of 2 parts lay within the first 81-145 (41 of 42 queries), so 16
#: (one read of 160) beats 8 (two reads, 80 then 160: 25 against 17 ms) ...
PARTS_FIRST_EXACT = 16
#: ... and at most this many per wanted result (then the ranking is taken as complete).
PARTS_MAX_EXACT = 64
#: Multi-part ``and`` search uses the codebook from this many allowed videos; below, LanceDB's
#: exact scan is about as fast, and exact (10 segments, 512-d, 2 parts, idle machine: 3,000
#: videos scan 28.6 ms p50, codebook 21.3 ms; 10,000 videos 59.3 against 11.0 ms;
#: scripts/bench_multivector.py latency --no-index / --always-codebook).
PARTS_CODES_MIN_VIDEOS = 5_000
#: Multi-part ``or`` search: nearest segments fetched per wanted result and part, first round.
OR_SEGMENTS_PER_RESULT = 4


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
            value, limit = getattr(self, name), LIMITS["seconds"]
            check(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                    and math.isfinite(value) and limit.holds(value)),
                  name, value, limit.rule())
        if self.min_duration is not None and self.max_duration is not None:
            check(self.min_duration <= self.max_duration, "max_duration", self.max_duration,
                  f"must be >= min_duration ({self.min_duration})")
        limit = LIMITS["path_glob"]
        check(self.path_glob is None or (isinstance(self.path_glob, str)
                                         and limit.holds(len(self.path_glob))),
              "path_glob", self.path_glob, limit.rule())

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


def _meta_equal(have: object, want: object) -> bool:
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
    #: How sure the match is: ``high``, ``medium``, ``low`` or ``none``, from the score's
    #: margin over the query's background (``framedex.rules.CONFIDENCE_TABLE``).
    confidence: str = NO_CONFIDENCE

    def to_json(self) -> JsonObject:
        """``{"video_id", "path", "start", "end", "score", "confidence"}`` (seconds, cosine,
        level), plus ``part`` for the moments of a multi-part query."""
        out: JsonObject = {"video_id": self.video_id, "path": self.path,
                               "start": round(self.start, 3), "end": round(self.end, 3),
                               "score": round(self.score, 6), "confidence": self.confidence}
        if self.part is not None:
            out["part"] = self.part
        return out


@dataclass
class VideoHit:
    """One video in a ``group_by="video"`` result: its score and its moments, best first.

    For a one-part query the score and the confidence are its best moment's, and the moments
    are every moment of the video that passed the search's threshold (the same set whatever
    the search's ``limit``). For a multi-part query the score combines the parts (``and``:
    their sum, ``or``: the best) and the moments are the parts' best segments; with ``and``
    the confidence is the weakest part's (a video must show every part).
    """

    video_id: str
    path: str
    score: float
    moments: list[Moment]
    confidence: str = NO_CONFIDENCE

    def to_json(self) -> JsonObject:
        """The best moment's fields plus ``confidence`` and ``moments`` (each as
        :meth:`Moment.to_json`)."""
        best = self.moments[0]
        return {"video_id": self.video_id, "path": self.path, "start": round(best.start, 3),
                "end": round(best.end, 3), "score": round(self.score, 6),
                "confidence": self.confidence, "moments": [m.to_json() for m in self.moments]}


@dataclass
class SearchResult:
    """What one search found, with what it read on the way (for benchmarks and logs).

    Attributes:
        hits: the moments (or VideoHits), best first.
        candidates: candidate rows fetched (segments or frames), over all rounds.
        rounds: candidate fetches made.
        source: ``"segments"``, ``"frames"`` (the index used) or ``"exact"``.
    """

    hits: list[Moment] | list[VideoHit]
    candidates: int
    rounds: int
    source: str
    finder: MomentFinder | None = None

    @property
    def frames(self) -> tuple[list[str], Array, Array]:
        """Every frame scored exactly: ``(video_ids, pos, scores)`` (built on demand)."""
        if self.finder is None:
            return [], np.zeros(0, dtype=np.int64), np.zeros(0)
        return self.finder.scored()


def search_library(store: StoreReader, query: Array, *, limit: int = 10,
                   group_by: str = "moment", filters: SearchFilters | None = None,
                   params: SearchParams | None = None,
                   threshold: str = NO_CONFIDENCE) -> list[Moment] | list[VideoHit]:
    """Rank the moments of the library against a query embedding.

    Args:
        store: a :class:`~framedex.store.Store`.
        query: (D,) L2-normalised text embedding.
        limit: number of results (moments, or videos with ``group_by="video"``).
        group_by: ``"moment"`` or ``"video"``.
        filters: metadata filters (None: every committed video).
        params: ANN query settings (None: the index's defaults).
        threshold: the least confidence a moment must have (``framedex.rules.THRESHOLDS``;
            ``none``: every moment).

    Returns:
        Moments (or VideoHits) best first; empty when no video passes the filters.

    The request (``limit``, ``group_by``) is the facade's to check: this worker trusts it.

    Raises:
        EmptyLibraryError: nothing is indexed.
    """
    return search_moments(store, query, limit=limit, group_by=group_by, filters=filters,
                          params=params, threshold=threshold).hits


def search_moments(store: StoreReader, query: Array, *, limit: int = 10,
                   group_by: str = "moment", filters: SearchFilters | None = None,
                   params: SearchParams | None = None,
                   per_result: int | None = None,
                   threshold: str = NO_CONFIDENCE) -> SearchResult:
    """:func:`search_library`, returning what was read as well.

    A finite threshold is a floor on a moment's peak score (the query's background plus the
    threshold's margin): the search stops at the first peak below it instead of listing weak
    moments up to ``limit``. With ``group_by="video"`` it then also finds every moment above
    the floor of the videos it returns, so a video's moments (and their count) do not depend
    on ``limit`` (they did: "+49 more moments" at limit 4, "+680" at limit 50).

    Args:
        per_result: candidates fetched per wanted result in the first round (None:
            :data:`SEGMENTS_PER_RESULT` or :data:`FRAMES_PER_RESULT`).

    See :func:`search_library` for the rest.
    """
    check(per_result is None or (isinstance(per_result, int) and per_result >= 1),
          "per_result", per_result, "must be an integer >= 1")
    allowed, where = allowed_videos(store, filters)
    tables = store.search_snapshot()
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    candidates = StoreCandidates(tables, q, limit, params, per_result)
    if not allowed:
        return SearchResult([], 0, 0, candidates.source)
    frames = StoreFrames(tables, q, allowed)
    baseline = float(tables.mean @ q)
    floor = baseline + threshold_margin(threshold)  # -inf without a threshold
    finder = MomentFinder(frames, baseline=baseline, block=READ_BLOCK)
    moments: list[Moment] = []
    seen_videos: set[str] = set()

    def done() -> bool:
        return (len(seen_videos) if group_by == "video" else len(moments)) >= limit

    def take(raw: RawMoment) -> None:
        moments.append(_moment(raw, allowed[raw.video_id], frames.frame_idx(raw), baseline))
        seen_videos.add(raw.video_id)

    exhausted = False  # no moment at or above the floor is left anywhere
    for windows, bound in candidates.batches(allowed, where):
        finder.add([w for w in windows if w[0] in allowed], margin=candidates.margin)
        while not done():
            raw = finder.next(max(bound, floor))
            if raw is None:
                # the unfetched candidates score below the floor: nothing more passes
                exhausted = bound <= floor
                break
            take(raw)
        if done() or exhausted:
            break
    if group_by == "video" and math.isfinite(floor) and not exhausted and seen_videos:
        _rest_of_videos(tables, q, limit, params, per_result, allowed, seen_videos, finder,
                        floor, take)
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start))
    hits: list[Moment] | list[VideoHit] = (
        moments[:limit] if group_by == "moment" else group_by_video(moments)[:limit])
    return SearchResult(hits, candidates.fetched, candidates.rounds, candidates.source, finder)


def _rest_of_videos(tables: SearchSnapshot, q: Array, limit: int,
                    params: SearchParams | None, per_result: int | None,
                    allowed: Mapping[str, VideoRecord], seen: set[str], finder: MomentFinder,
                    floor: float, take: Callable[[RawMoment], None]) -> None:
    """Find the remaining moments above ``floor`` of the ``seen`` videos only (candidates
    from those videos alone, so the cost is bounded by them, not by the library)."""
    ids = sorted(seen)
    mine = {vid: allowed[vid] for vid in ids}
    candidates = StoreCandidates(tables, q, limit, params, per_result)
    for windows, bound in candidates.batches(mine, ids):
        finder.add([w for w in windows if w[0] in mine], margin=candidates.margin)
        while (raw := finder.next(max(bound, floor))) is not None:
            if raw.video_id in seen:  # frames of other videos read before are claimed, unused
                take(raw)
        if bound <= floor:
            return


def _moment(raw: RawMoment, video: VideoRecord, frame_idx: int | None,
            baseline: float) -> Moment:
    """Seconds from frame indices: ``end`` is the last frame's time plus one grid step,
    clipped to the duration (a moment never ends past the video); the confidence from the
    peak's margin over the query's background."""
    step = 1.0 / video.index_fps if video.index_fps > 0 else 1.0
    end = raw.end_pts + step
    if video.duration > 0:
        end = min(end, max(float(video.duration), raw.end_pts))
    return Moment(video.video_id, video.path, raw.start_pts, end, raw.score, raw.peak_pts,
                  raw.hi - raw.lo + 1, frame_idx=frame_idx,
                  confidence=confidence(raw.score - baseline))


def allowed_videos(store: StoreReader, filters: SearchFilters | None
                   ) -> tuple[Mapping[str, VideoRecord], list[str] | None]:
    """The committed videos that pass ``filters``, and the ids a prefilter keeps (None when
    no filter is set, or when the id list would be too long to help).

    Without a filter this is the store's own view of its videos: no per-query copy (a dict
    of 100,000 videos cost ~15 ms a query).

    Raises:
        EmptyLibraryError: nothing is indexed.
    """
    filters = filters or SearchFilters()
    videos = store.videos_by_id()
    if not videos:
        raise EmptyLibraryError(f"the store {store.uri} has no indexed video: run "
                                "`framedex index PATH` first")
    if not filters.active:
        return videos, None
    allowed = {vid: v for vid, v in videos.items() if filters.matches(v)}
    where = sorted(allowed) if allowed and len(allowed) <= MAX_PREFILTER_IDS else None
    return allowed, where


def search_parts(store: StoreReader, queries: Array, *, operator: str = "and", limit: int = 10,
                 group_by: str = "video", filters: SearchFilters | None = None,
                 frames: Callable[[VideoRecord], FrameArrays] | None = None,
                 threshold: str = NO_CONFIDENCE) -> list[Moment] | list[VideoHit]:
    """Rank videos against a query of several parts (texts and/or images) by MaxSim over each
    video's segment vectors (the ``video_vectors`` table).

    ``and``: a video scores the sum over the parts of each part's best segment, so a video
    showing all parts beats one that shows a single part very well. ``or``: a video scores its
    best single part. Each hit's moments are the best segment of each part (``Moment.part``);
    with ``frames`` (a loader of a video's frame arrays) each moment also names its best frame
    (``best_pts_sec``, ``frame_idx``).

    How, once ``build_index`` has run: ``and`` over at least :data:`PARTS_CODES_MIN_VIDEOS`
    videos (:func:`coded_candidates`) gives every video an
    approximate score from its segments' centroids (the store's codebook) and scores exactly
    only the videos that approximation cannot rule out; ``or``
    (:func:`nearest_segment_candidates`) takes each part's nearest segments from the segment
    index and scores their videos exactly. Before that, LanceDB's exact MaxSim scan of every
    video (59 ms at 10,000 videos, linear in them).

    Args:
        store: a :class:`~framedex.store.Store`.
        queries: (P, D) L2-normalised query parts, P >= 1.
        operator: ``and`` or ``or``.
        limit: videos (``group_by="video"``) or moments (``"moment"``: each ranked video's
            moments, best first, in the videos' order) to return.
        group_by: ``"moment"`` or ``"video"``.
        filters: metadata filters.
        frames: optional loader ``record -> FrameArrays`` (e.g. the library's frames cache).
        threshold: the least confidence a hit must have (``framedex.rules.THRESHOLDS``):
            with ``and`` every part's moment must pass it, with ``or`` the best part's (the
            parts' moments below it are left out).

    Returns:
        VideoHits (score: the combined score) or Moments (score: the part's cosine).

    The request (``operator``, ``limit``, ``group_by``, 1 to ``framedex.rules.MAX_PARTS``
    parts) is the facade's to check: this worker trusts it.

    Raises:
        EmptyLibraryError: nothing indexed.
    """
    q = np.asarray(queries, dtype=np.float32)
    allowed, where = allowed_videos(store, filters)
    if not allowed:
        return []
    filtered = filters is not None and filters.active
    codes = (store.maxsim_snapshot() if operator == "and"
             and len(allowed) >= PARTS_CODES_MIN_VIDEOS else None)
    if codes is not None and len(codes.uncovered()) <= len(codes.video_ids) // 2:
        found = coded_candidates(store, codes, q, limit, allowed, filtered=filtered)
    elif operator == "or" and store.has_ann_index():
        found = nearest_segment_candidates(store, q, limit, allowed, where)
    else:  # no index, or most videos indexed since it was built: scan exactly
        found = _scanned_candidates(store, q, operator, limit, allowed, where)
    # each part's background: its cosine with the library's mean frame
    backgrounds = q.astype(np.float64) @ store.search_snapshot().mean
    hits = []
    for vid, (starts, ends, vectors) in found.items():
        sims = vectors.astype(np.float64) @ q.T.astype(np.float64)  # (S, P)
        best = sims.max(axis=0)
        score = float(_combine(best[None, :], operator)[0])
        arrays = frames(allowed[vid]) if frames is not None else None
        # a part's confidence is its best *frame's* margin, as for a one-part query (the
        # levels were calibrated on frames; a segment's pooled vector scores lower)
        peaks = best if arrays is None or not len(arrays.pts_sec) else \
            (arrays.vectors.astype(np.float64) @ q.T.astype(np.float64)).max(axis=0)
        levels = [confidence(float(peaks[p] - backgrounds[p])) for p in range(len(q))]
        # and: the weakest part decides (every part must be shown); or: the best part
        level = max(levels, key=THRESHOLDS.index) if operator == "and" else \
            min(levels, key=THRESHOLDS.index)
        if not passes(level, threshold):
            continue
        moments = [m for m in _part_moments(allowed[vid], starts, ends, sims, q, arrays,
                                            backgrounds)
                   if passes(m.confidence, threshold)]
        hits.append(VideoHit(vid, allowed[vid].path, score, moments, level))
    hits.sort(key=lambda h: (-h.score, h.video_id))
    hits = hits[:limit]
    if group_by == "video":
        return hits
    return [m for h in hits for m in h.moments][:limit]


def _combine(best: Array, operator: str) -> Array:
    """Per-video scores from each part's best segment, (V, P) -> (V,): the sum (``and``) or
    the best part (``or``)."""
    return best.sum(axis=1) if operator == "and" else best.max(axis=1)


def _scanned_candidates(store: StoreReader, q: Array, operator: str, limit: int,
                        allowed: Mapping[str, VideoRecord], where: list[str] | None
                        ) -> dict[str, tuple[Array, Array, Array]]:
    """The best videos by LanceDB's exact MaxSim scan (one query per part for ``or``), a few
    more than ``limit``."""
    groups = [q] if operator == "and" else [q[i:i + 1] for i in range(len(q))]
    found: dict[str, tuple[Array, Array, Array]] = {}
    for part in groups:
        fetch = limit + 8
        while True:
            rows = store.search_video_vectors(part, fetch, where)
            live = _live_vector_rows(rows, allowed)
            if len(live) >= limit or len(rows) < fetch or fetch > 64 * limit + 512:
                break
            fetch *= 4
        for vid, row in live.items():
            found.setdefault(vid, row)
    return found


def approximate_scores(codes: MaxSimSnapshot, q: Array) -> Array:
    """Every codebook row's approximate ``and`` score: each part's best segment scored by its
    centroid's cosine with the part, summed over the parts. (R,) float32.

    One (P, C) matrix product, then per part a gather of every segment's code score and a
    per-video maximum (by segment position: ~1.2 ms a part at 1M segments, 2 bytes read per
    segment).
    """
    table = (q @ codes.centroids.T).astype(np.float32)  # (P, C)
    return _combine(codes.columns.best(table), "and").astype(np.float32)


def coded_candidates(store: StoreReader, codes: MaxSimSnapshot, q: Array, limit: int,
                     allowed: Mapping[str, VideoRecord], *, filtered: bool
                     ) -> dict[str, tuple[Array, Array, Array]]:
    """The ``limit`` best videos by exact ``and`` MaxSim, scoring exactly only what the
    codebook's approximation cannot rule out.

    Videos are scored exactly in order of their approximate score, in rounds (the first
    :data:`PARTS_FIRST_EXACT` per wanted result, then twice as many each round), together
    with every video the codebook has no row for. A part's exact score lies within the
    codebook's ``margin`` of its approximate one, so once the next video's approximate score
    plus P margins is below the ``limit``-th best exact score found, nothing unscored can
    enter the top ``limit``. The margin is a high quantile, not a bound, and the rounds stop
    at :data:`PARTS_MAX_EXACT` videos per result.

    ``and`` suits this: videos that show every part are few, so the approximation separates
    them from the rest. (``or`` does not: every video with one good segment ties with
    thousands that share its centroid; it takes the segment index instead.)

    Returns:
        ``video_id -> (start_sec, end_sec, vectors)`` of the best ``limit`` (fewer when fewer
        videos are allowed).
    """
    approx = approximate_scores(codes, q)
    keep = codes.live.copy()
    if filtered:
        allowed_rows = np.zeros(len(keep), dtype=bool)
        allowed_rows[codes.rows_of(allowed.keys())] = True
        keep &= allowed_rows
    approx[~keep] = -np.inf
    cap = min(int(keep.sum()), limit * PARTS_MAX_EXACT)
    order = np.argpartition(-approx, cap - 1)[:cap] if 0 < cap < len(approx) else \
        np.arange(len(approx))[:cap]
    order = order[np.argsort(-approx[order], kind="stable")]
    margin = codes.margin * len(q)
    scored: dict[str, tuple[float, tuple[Array, Array, Array]]] = {}
    batch = [v for v in codes.uncovered() if v in allowed]  # no codes: always scored
    at, size = 0, limit * PARTS_FIRST_EXACT
    while True:
        batch.extend(codes.video_ids[int(r)] for r in order[at:at + size])
        at += size
        scored.update(_exact_scores(store.video_segments(batch, times=False), q, "and"))
        batch, size = [], size * 2
        if at >= len(order) or float(approx[order[at]]) + margin < _kth(scored, limit):
            break
    return _best(store, scored, limit)


def nearest_segment_candidates(store: StoreReader, q: Array, limit: int,
                               allowed: Mapping[str, VideoRecord], where: list[str] | None
                               ) -> dict[str, tuple[Array, Array, Array]]:
    """The ``limit`` best videos by exact ``or`` MaxSim (a video's best segment for its best
    part): each part's nearest segments from the segment index, their videos scored exactly.

    A round fetches :data:`OR_SEGMENTS_PER_RESULT` segments per wanted result and part; a
    video none of whose segments was fetched scores at most the worst fetched segment of each
    part (the same bound, and the same heuristic, as one-part search), so the rounds grow the
    fetch 4x until the ``limit``-th best exact score beats every part's bound.

    Returns:
        ``video_id -> (start_sec, end_sec, vectors)`` of the best ``limit``.
    """
    tables = store.search_snapshot()
    k = limit * OR_SEGMENTS_PER_RESULT
    cap = limit * MAX_CANDIDATES_PER_RESULT
    scored: dict[str, tuple[float, tuple[Array, Array, Array]]] = {}
    while True:
        bound, new = -math.inf, set()
        for part in q:
            found = tables.nearest(part, k, video_ids=where)
            for vid, gen in zip(found.video_ids, found.generations.tolist(), strict=True):
                video = allowed.get(vid)
                if video is not None and video.generation == gen and vid not in scored:
                    new.add(vid)
            if len(found.rows) == k and k < cap:
                bound = max(bound, 1.0 - float(found.distances.max()))
        scored.update(_exact_scores(store.video_segments(sorted(new), times=False), q, "or"))
        if bound == -math.inf or _kth(scored, limit) >= bound:
            return _best(store, scored, limit)
        k = min(k * FETCH_GROWTH, cap)


def _kth(scored: Mapping[str, tuple[float, object]], limit: int) -> float:
    """The ``limit``-th best score in ``scored`` (-inf when there are fewer)."""
    if len(scored) < limit:
        return -math.inf
    return sorted((s for s, _ in scored.values()), reverse=True)[limit - 1]


def _best(store: StoreReader, scored: Mapping[str, tuple[float, object]], limit: int
          ) -> dict[str, tuple[Array, Array, Array]]:
    """The ``limit`` best of ``scored``, by score then video id (the final ranking's order),
    with their segments' times (one more read, of ``limit`` rows: scoring read vectors
    only)."""
    best = [vid for vid, _ in sorted(scored.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]]
    rows = store.video_segments(best)
    return dict(zip(rows.video_ids, zip(rows.start_sec, rows.end_sec, rows.vectors,
                                        strict=True), strict=True))


def _exact_scores(rows: VectorRows, q: Array, operator: str
                  ) -> dict[str, tuple[float, tuple[Array, Array, Array]]]:
    """Exact MaxSim of each row, one float32 product (the storage precision; the chosen
    ``limit`` are scored again in float64 for the final ranking: a float64 copy of 640
    videos' vectors cost more than the product)."""
    if not len(rows):
        return {}
    counts = np.array([len(v) for v in rows.vectors])
    sims = (np.concatenate(rows.vectors) @ q.T.astype(np.float32)).astype(np.float64)
    best = np.maximum.reduceat(sims, np.concatenate([[0], np.cumsum(counts)[:-1]]), axis=0)
    scores = _combine(best, operator)
    return {vid: (float(scores[i]), (rows.start_sec[i], rows.end_sec[i], rows.vectors[i]))
            for i, vid in enumerate(rows.video_ids)}


def _live_vector_rows(rows: VectorRows, allowed: Mapping[str, VideoRecord]
                      ) -> dict[str, tuple[Array, Array, Array]]:
    """``video_id -> (start_sec, end_sec, vectors)`` of the rows whose generation is live."""
    out: dict[str, tuple[Array, Array, Array]] = {}
    for i, vid in enumerate(rows.video_ids):
        video = allowed.get(vid)
        if video is None or video.generation != rows.generations[i] or vid in out:
            continue
        out[vid] = (rows.start_sec[i], rows.end_sec[i], rows.vectors[i])
    return out


def _part_moments(video: VideoRecord, starts: Array, ends: Array, sims: Array,
                  q: Array, arrays: FrameArrays | None, backgrounds: Array) -> list[Moment]:
    """Each part's best segment as a moment (one per segment: two parts that pick the same
    segment share it, under the better part), best first, with its confidence (from the
    segment's best frame when the frames are given)."""
    by_segment: dict[int, Moment] = {}
    for p in range(sims.shape[1]):
        s = int(np.argmax(sims[:, p]))
        score = float(sims[s, p])
        if s in by_segment and by_segment[s].score >= score:
            continue
        moment = Moment(video.video_id, video.path, float(starts[s]), float(ends[s]), score,
                        float(starts[s]), part=p,
                        confidence=confidence(score - float(backgrounds[p])))
        if arrays is not None and len(arrays.pts_sec):
            inside = np.flatnonzero((arrays.pts_sec >= starts[s] - 1e-6)
                                    & (arrays.pts_sec < ends[s] + 1e-6))
            if len(inside):
                frame_scores = arrays.vectors[inside] @ q[p]
                k = int(inside[int(np.argmax(frame_scores))])
                moment.confidence = confidence(float(frame_scores.max()) - float(backgrounds[p]))
                moment.best_pts_sec = float(arrays.pts_sec[k])
                moment.frame_idx = int(arrays.frame_idx[k])
        by_segment[s] = moment
    return sorted(by_segment.values(), key=lambda m: (-m.score, m.start))


class StoreFrames:
    """:class:`~framedex.query.moments.FrameScores` over the store's frames table: one
    ``take`` per read, scored exactly against ``query``."""

    def __init__(self, tables: SearchSnapshot, query: Array,
                 allowed: Mapping[str, VideoRecord]):
        self.tables, self.query, self.allowed = tables, query, allowed
        self.rows = tables.frame_rows

    def _span(self, video_id: str) -> tuple[int, int] | None:
        video = self.allowed.get(video_id)
        return None if video is None else self.rows.span(video_id, video.generation)

    def num_frames(self, video_id: str) -> int:
        span = self._span(video_id)
        return 0 if span is None else span[1] - span[0]

    def frame_idx(self, raw: RawMoment) -> int | None:
        """The native frame index of a moment's peak (for its thumbnail)."""
        span = self._span(raw.video_id)
        return None if span is None else int(self.rows.frame_idx[span[0] + raw.peak])

    def read(self, windows: list[tuple[str, int, int]]
             ) -> list[tuple[Array, Array, Array]]:
        rows = []
        for video_id, lo, hi in windows:
            span = self._span(video_id)
            assert span is not None  # windows come from FrameRows.between over live videos
            rows.append(np.arange(lo, hi) + span[0])
        flat = np.concatenate(rows)
        scores = frame_scores(self.tables.frame_vectors(flat), self.query)
        out, at = [], 0
        for r in rows:
            out.append((self.rows.pos[r], self.rows.pts[r], scores[at:at + len(r)]))
            at += len(r)
        return out


class StoreCandidates:
    """Candidate windows from the store's vector index (or an exact scan without one).

    Each round asks the index for ``k`` rows (``k`` grows by :data:`FETCH_GROWTH`); its
    ``bound`` is the worst fetched row's cosine while the fetch was full (rows not fetched
    score lower), and -inf once the index has no more rows or the cap is reached.
    """

    def __init__(self, tables: SearchSnapshot, query: Array, limit: int,
                 params: SearchParams | None, per_result: int | None):
        self.tables, self.query = tables, query
        self.params = params or DEFAULT_PARAMS.get(tables.index_type or "")
        self.table = tables.candidate_table
        self.source = tables.index_table or "exact"
        default = SEGMENTS_PER_RESULT if self.table == "segments" else FRAMES_PER_RESULT
        self.k = limit * (per_result or default)
        # frames read around each candidate: a segment's edges may belong to a moment that
        # goes on; a frame candidate's neighbours are usually candidates themselves
        self.margin = SEGMENT_MARGIN if self.table == "segments" else 1
        self.cap = max(self.k, limit * MAX_CANDIDATES_PER_RESULT)
        self.fetched = self.rounds = 0

    def batches(self, allowed: Mapping[str, VideoRecord], where: list[str] | None
                ) -> Iterator[tuple[list[tuple[str, int, int]], float]]:
        seen: set[int] = set()
        k = self.k
        while True:
            found = self.tables.nearest(self.query, k, params=self.params, video_ids=where,
                                        skip=seen)
            self.rounds += 1
            self.fetched += len(found.rows)
            seen.update(found.rows.tolist())
            last = len(found.rows) < k or k >= self.cap
            bound = -math.inf if last else 1.0 - float(found.distances.max())
            yield self._windows(found, allowed), bound
            if last:
                return
            k = min(k * FETCH_GROWTH, self.cap)

    def _windows(self, found: Nearest, allowed: Mapping[str, VideoRecord]
                 ) -> list[tuple[str, int, int]]:
        """Candidate rows -> ``(video_id, i0, i1)`` frame windows of the allowed videos' live
        generations (rows of a crashed run or of an unswapped re-index are dropped)."""
        vids, gens = found.video_ids, found.generations.tolist()
        keep = [i for i, (v, g) in enumerate(zip(vids, gens, strict=True))
                if v in allowed and allowed[v].generation == g]
        live = {vids[i]: gens[i] for i in keep}  # the candidates' videos only, not the library
        return self.tables.frame_rows.between(live, [vids[i] for i in keep], found.t0[keep],
                                              found.t1[keep])


def group_by_video(moments: list[Moment]) -> list[VideoHit]:
    """Group moments (best first) into one hit per video, ranked by its best moment."""
    by_video: dict[str, VideoHit] = {}
    for m in sorted(moments, key=lambda m: -m.score):
        hit = by_video.get(m.video_id)
        if hit is None:
            by_video[m.video_id] = VideoHit(m.video_id, m.path, m.score, [m], m.confidence)
        else:
            hit.moments.append(m)
    return sorted(by_video.values(), key=lambda h: (-h.score, h.video_id))
