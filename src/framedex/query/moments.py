"""Moments: greedy, peak-relative runs of exactly scored frames.

The rule (the same whatever found the candidates, so an ANN search and an exact one agree
whenever the ANN finds one frame of each moment):

1. The best frame not yet in a moment is the next *peak* ``p`` (ties: video id, then time).
2. Its moment grows left and right over consecutive frames of the video while their cosine
   stays at or above the half-height ``(p + b) / 2``, where ``b`` is the query's background
   (its cosine with the mean frame vector of the library); up to ``max_gap`` frames in a row
   may dip below it. Frames already in a moment stop the growth, as does ``max_side``.
3. Repeat.

Why not merge the fetched hits, as the first version did: its moments depended on *which*
frames the top-``limit*20`` fetch returned and on their median score, so an ANN that missed
one frame at rank 150 changed the moments (5 of 198 queries with IVF-PQ at 1M frames, see
docs/search-benchmark.md), and a scene whose frames' scores straddled that median split into
slivers (7 of a query's 10 results from one scene). Here a moment's extent depends only on its
own frames' exact scores, so candidates need only hit one frame of each moment.

Frames are read lazily, window by window (:class:`FrameScores`): the candidates' windows
first, with a margin, and further blocks only when a moment grows past what was read. A block
that reveals a frame better than the current peak sends that frame back to the queue first,
so the order stays that of step 1.

Example::

    finder = MomentFinder(frames, baseline=float(query @ mean_frame))
    finder.add([("vid", 10, 16)])          # frames 10..15 of video "vid"
    found = finder.next(bound=-np.inf)      # a RawMoment, or None when nothing is left
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from framedex.values import Array


class FrameScores(Protocol):
    """Exact query scores of a store's frames, per video, in time order."""

    def num_frames(self, video_id: str) -> int:
        """Number of frames of the video (0 if unknown)."""

    def read(self, windows: list[tuple[str, int, int]]
             ) -> list[tuple[Array, Array, Array]]:
        """``(pos, pts_sec, scores)`` of each ``(video_id, lo, hi)`` window (``[lo, hi)``
        in the video's time order), read together."""


def frame_scores(vectors: Array, query: Array) -> Array:
    """Exact cosine of L2-normalised ``vectors`` (N, D) with ``query``, as float64.

    Computed in float32 (the storage precision, as Lance's exact search) with ``einsum``,
    which sums each row on its own: a frame's score does not depend on which other rows were
    read with it (a BLAS matrix-vector product handles rows in blocks, and a row's last bit
    can depend on its place in the block). 5x faster than a float64 product.
    """
    q = np.asarray(query, dtype=np.float32)
    return np.einsum("ij,j->i", np.asarray(vectors, dtype=np.float32), q).astype(np.float64)


@dataclass(frozen=True)
class RawMoment:
    """A moment as frame indices of one video (``lo``..``hi`` inclusive)."""

    video_id: str
    lo: int
    hi: int
    peak: int
    score: float
    start_pts: float
    end_pts: float
    peak_pts: float


def _coalesce(windows: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Windows sorted per video, overlapping or touching ones merged."""
    out: list[tuple[str, int, int]] = []
    for video_id, lo, hi in sorted(windows):
        if out and out[-1][0] == video_id and lo <= out[-1][2]:
            if hi > out[-1][2]:
                out[-1] = (video_id, out[-1][1], hi)
        else:
            out.append((video_id, lo, hi))
    return out


class _Video:
    """Read / claimed state of one video's frames."""

    def __init__(self, n: int, code: int):
        self.code = code
        # scores, pts and pos are only looked at where ``read`` is set
        self.scores = np.empty(n)
        self.pts = np.empty(n)
        self.pos = np.empty(n, dtype=np.int64)
        self.read = np.zeros(n, dtype=bool)
        self.claimed = np.zeros(n, dtype=bool)


class MomentFinder:
    """Finds moments one at a time, best peak first (see the module docstring).

    Args:
        frames: where exact scores come from.
        baseline: the query's background cosine ``b``.
        max_gap: frames in a row that may dip below the half-height inside a moment.
        margin: frames read beyond each candidate window on both sides.
        block: frames read at a time when a moment grows past what was read.
        max_side: most frames a moment extends on each side of its peak.
    """

    def __init__(self, frames: FrameScores, baseline: float, *, max_gap: int = 1,
                 margin: int = 8, block: int = 32, max_side: int = 600):
        self.frames = frames
        self.baseline = float(baseline)
        self.max_gap, self.margin, self.block, self.max_side = max_gap, margin, block, max_side
        self._videos: dict[str, _Video] = {}
        self._names: list[str] = []  # video code -> id
        # Frames read and not yet taken as a peak, best first: (score, video code, index),
        # from position ``_at``; frames read since the last sort wait in ``_new``.
        self._queue: tuple[Array, Array, Array] = (
            np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._at = 0
        self._new: list[tuple[Array, Array, Array]] = []

    # -- reading --------------------------------------------------------------------------

    def _video(self, video_id: str) -> _Video | None:
        state = self._videos.get(video_id)
        if state is None:
            n = self.frames.num_frames(video_id)
            if n <= 0:
                return None
            state = self._videos[video_id] = _Video(n, len(self._names))
            self._names.append(video_id)
        return state

    def add(self, windows: list[tuple[str, int, int]], margin: int | None = None) -> None:
        """Read candidate windows ``(video_id, lo, hi)`` plus ``margin`` frames on each side
        (None: the finder's) into the queue."""
        m = self.margin if margin is None else margin
        self._read([(v, lo - m, hi + m) for v, lo, hi in windows])

    def _read(self, windows: list[tuple[str, int, int]]) -> list[tuple[_Video, Array]]:
        """Read the unread parts of ``windows``; returns (video, new indices) per part."""
        todo: list[tuple[str, int, int]] = []
        for video_id, lo, hi in _coalesce(windows):
            state = self._video(video_id)
            if state is None:
                continue
            lo, hi = max(lo, 0), min(hi, len(state.read))
            if lo >= hi:
                continue
            unread = ~state.read[lo:hi]
            if unread.all():
                todo.append((video_id, lo, hi))
                state.read[lo:hi] = True
                continue
            # contiguous unread runs of [lo, hi)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], unread.astype(np.int8), [0]])))
            for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
                todo.append((video_id, lo + a, lo + b))
                state.read[lo + a:lo + b] = True
        if not todo:
            return []
        out = []
        read = self.frames.read(todo)
        for (video_id, lo, hi), (pos, pts, scores) in zip(todo, read, strict=True):
            state = self._videos[video_id]
            state.scores[lo:hi], state.pts[lo:hi], state.pos[lo:hi] = scores, pts, pos
            idx = np.arange(lo, hi)
            self._new.append((state.scores[lo:hi], np.full(hi - lo, state.code), idx))
            out.append((state, idx))
        return out

    def _sorted_queue(self) -> tuple[Array, Array, Array]:
        """The queue, with frames read since the last call sorted in (score desc, video id,
        index)."""
        if self._new:
            s, c, i = (np.concatenate([q[self._at:]] + [n[k] for n in self._new])
                       for k, q in enumerate(self._queue))
            rank = np.argsort(np.argsort(np.array(self._names)))  # ties: by video id
            order = np.lexsort((i, rank[c], -s))
            self._queue = (s[order], c[order], i[order])
            self._at = 0
            self._new = []
        return self._queue

    # -- moments --------------------------------------------------------------------------

    def next(self, bound: float = -math.inf) -> RawMoment | None:
        """The next moment, or None when the best unclaimed frame read so far scores below
        ``bound`` (the candidates not yet read could hold a better one) or none is left."""
        while True:
            scores, codes, idx = self._sorted_queue()
            while self._at < len(scores):
                state = self._videos[self._names[codes[self._at]]]
                i = int(idx[self._at])
                if state.claimed[i]:
                    self._at += 1
                    continue
                if scores[self._at] < bound:
                    return None
                moment = self._grow(state, i)
                if moment is None:  # a better frame turned up while growing: it goes first
                    break
                self._at += 1
                return moment
            else:
                return None

    def _grow(self, state: _Video, peak: int) -> RawMoment | None:
        p = float(state.scores[peak])
        b = self.baseline
        threshold = (p + b) / 2.0 if p > b else p
        video_id = self._names[state.code]
        n = len(state.read)
        ends = []
        for step in (-1, 1):
            last, gap, j = peak, 0, peak + step
            while 0 <= j < n and abs(j - peak) <= self.max_side:
                if not state.read[j]:
                    lo, hi = (j - self.block + 1, j + 1) if step < 0 else (j, j + self.block)
                    for _, new in self._read([(video_id, lo, hi)]):
                        s = state.scores[new]
                        if bool((s > p).any()) or bool(((s == p) & (new < peak)).any()):
                            return None
                if state.claimed[j]:
                    break
                if state.scores[j] >= threshold:
                    last, gap = j, 0
                else:
                    gap += 1
                    if gap > self.max_gap:
                        break
                j += step
            ends.append(last)
        lo, hi = ends
        state.claimed[lo:hi + 1] = True
        return RawMoment(video_id, lo, hi, peak, p, float(state.pts[lo]), float(state.pts[hi]),
                         float(state.pts[peak]))

    def scored(self) -> tuple[list[str], Array, Array]:
        """Every frame read so far: (video ids, grid positions, exact scores)."""
        vids: list[str] = []
        pos, scores = [], []
        for video_id, state in self._videos.items():
            idx = np.flatnonzero(state.read)
            vids += [video_id] * len(idx)
            pos.append(state.pos[idx])
            scores.append(state.scores[idx])
        if not vids:
            return [], np.zeros(0, dtype=np.int64), np.zeros(0)
        return vids, np.concatenate(pos), np.concatenate(scores)
