"""The moment rule (framedex.query.moments): peaks, half-height growth, lazy reads.

Pure numpy: an in-memory FrameScores stands in for the store. The key property is that the
moments do not depend on which candidates found them, only on the frames' exact scores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framedex.query.moments import MomentFinder


class Memory:
    """FrameScores over score arrays per video (pts = index), counting reads."""

    def __init__(self, scores: dict[str, np.ndarray]):
        self.scores = scores
        self.frames_read = 0

    def num_frames(self, video_id: str) -> int:
        return len(self.scores.get(video_id, ()))

    def read(self, windows):
        out = []
        for video_id, lo, hi in windows:
            self.frames_read += hi - lo
            idx = np.arange(lo, hi)
            out.append((idx, idx.astype(float), self.scores[video_id][lo:hi]))
        return out


def spans(finder: MomentFinder, bound: float = -math.inf, limit: int = 100):
    out = []
    while len(out) < limit:
        m = finder.next(bound)
        if m is None:
            break
        out.append((m.video_id, m.lo, m.hi, round(m.score, 12)))
    return out


def test_moment_is_the_half_height_run_around_the_peak():
    s = np.array([0.0, 0.1, 0.5, 0.8, 1.0, 0.7, 0.45, 0.6, 0.2, 0.2, 0.0])
    finder = MomentFinder(Memory({"v": s}), baseline=0.0, max_gap=1)
    finder.add([("v", 0, len(s))])
    first = finder.next()
    # half height (1.0 + 0.0) / 2 = 0.5: frames 2..7; frame 6 (0.45) is a one-frame dip
    assert (first.lo, first.hi, first.peak, first.score) == (2, 7, 4, 1.0)
    assert (first.start_pts, first.end_pts, first.peak_pts) == (2.0, 7.0, 4.0)
    # the rest, best peak first (ties: earlier frame): 8..9 (>= 0.1), then 1, 0, 10 alone
    assert spans(finder) == [("v", 8, 9, 0.2), ("v", 1, 1, 0.1), ("v", 0, 0, 0.0),
                             ("v", 10, 10, 0.0)]


def test_no_gap_allowed_splits_at_the_dip_and_baseline_raises_the_bar():
    s = np.array([0.0, 0.6, 0.9, 0.3, 0.8, 0.1])
    strict = MomentFinder(Memory({"v": s}), baseline=0.0, max_gap=0)
    strict.add([("v", 0, 6)])
    assert spans(strict)[:2] == [("v", 1, 2, 0.9), ("v", 4, 4, 0.8)]
    # background 0.5: half height (0.9 + 0.5) / 2 = 0.7 -> frame 1 (0.6) is out
    high = MomentFinder(Memory({"v": s}), baseline=0.5, max_gap=0)
    high.add([("v", 0, 6)])
    assert spans(high)[0] == ("v", 2, 2, 0.9)


def test_claimed_frames_stop_a_later_moment():
    s = np.array([0.2, 0.9, 0.85, 0.5, 0.48, 0.47, 0.1])
    finder = MomentFinder(Memory({"v": s}), baseline=0.0, max_gap=0)
    finder.add([("v", 0, 7)])
    first, second = finder.next(), finder.next()
    assert (first.lo, first.hi) == (1, 5)  # >= 0.45
    assert (second.lo, second.hi, second.score) == (0, 0, 0.2)


def test_bound_waits_for_better_candidates():
    s = np.array([0.1, 0.3, 0.1, 0.1, 0.9, 0.1])
    finder = MomentFinder(Memory({"v": s}), baseline=0.0, margin=0)
    finder.add([("v", 1, 2)])
    assert finder.next(bound=0.5) is None  # 0.3 < 0.5: an unread candidate may beat it
    finder.add([("v", 4, 5)])
    assert finder.next(bound=-math.inf).peak == 4


def test_growth_that_reveals_a_better_frame_lets_it_go_first():
    s = np.zeros(100)
    s[40:60] = 0.6
    s[55] = 0.95  # not among the candidates, found while growing from frame 41
    finder = MomentFinder(Memory({"v": s}), baseline=0.0, margin=0, block=4)
    finder.add([("v", 41, 42)])
    m = finder.next()
    assert (m.peak, m.score, m.lo, m.hi) == (55, 0.95, 40, 59)


def test_reads_stay_local():
    s = np.zeros(100_000)
    s[50_000:50_010] = 1.0
    mem = Memory({"v": s})
    finder = MomentFinder(mem, baseline=0.0, margin=4, block=16)
    finder.add([("v", 50_003, 50_004)])
    m = finder.next()
    assert (m.lo, m.hi) == (50_000, 50_009)
    assert mem.frames_read <= 64


def test_unknown_videos_and_empty_windows_are_ignored():
    finder = MomentFinder(Memory({"v": np.ones(3)}), baseline=0.0, margin=0)
    finder.add([("nope", 0, 2), ("v", 5, 9)])
    assert finder.next() is None
    assert finder.scored()[0] == []


def _videos(seed: int, n_videos: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for v in range(n_videos):
        cuts = np.sort(rng.choice(np.arange(1, n), size=max(1, n // 8), replace=False))
        level = rng.random(len(cuts) + 1) ** 3  # a few relevant scenes
        s = np.repeat(level, np.diff(np.concatenate([[0], cuts, [n]])))
        out[f"vid{v:02d}"] = s + 0.05 * rng.random(n)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 60), margin=st.integers(0, 6),
       block=st.integers(1, 40), gap=st.integers(0, 2))
def test_top_k_candidates_give_the_same_moments_as_reading_everything(seed, k, margin, block,
                                                                     gap):
    """Exact candidates (the k best frames, with the k-th score as the bound) reproduce the
    moments of a full read, as far as they reach; so does any candidate order."""
    videos = _videos(seed, 3, 120)
    full = MomentFinder(Memory(videos), baseline=0.2, max_gap=gap)
    full.add([(v, 0, len(s)) for v, s in videos.items()])
    want = spans(full)

    flat = [(s[i], v, i) for v, s in videos.items() for i in range(len(s))]
    flat.sort(key=lambda t: (-t[0], t[1], t[2]))
    top = flat[:k]
    lazy = MomentFinder(Memory(videos), baseline=0.2, max_gap=gap, margin=margin, block=block)
    lazy.add([(v, i, i + 1) for _, v, i in reversed(top)])
    bound = top[-1][0] if k < len(flat) else -math.inf
    got = spans(lazy, bound=bound)
    assert got == want[:len(got)]
    # every moment whose peak is among the candidates is found
    assert len(got) >= sum(1 for m in want if m[3] > bound)


@pytest.mark.parametrize("gap", [0, 1])
def test_any_candidate_order_gives_the_same_moments(gap):
    videos = _videos(3, 4, 200)
    base = MomentFinder(Memory(videos), baseline=0.1, max_gap=gap)
    base.add([(v, 0, len(s)) for v, s in videos.items()])
    want = spans(base)
    rng = np.random.default_rng(0)
    windows = [(v, i, i + 1) for v, s in videos.items() for i in range(len(s))]
    for _ in range(3):
        order = rng.permutation(len(windows))
        finder = MomentFinder(Memory(videos), baseline=0.1, max_gap=gap, margin=0)
        for chunk in np.array_split(order, 7):
            finder.add([windows[i] for i in chunk])
        assert spans(finder) == want
