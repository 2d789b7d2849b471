"""The evaluation suite: a deterministic spec -> synthetic videos + questions with truth spans.

Every video is a :func:`framedex.synth.haystack_spec` haystack of random filler scenes with a
few *needle* scenes placed at seeded random times. Needle objects never appear in the filler
(``unique_needles``), so the truth of a needle question is exactly its needle spans. Needle
scenes last ``needle_sec`` (3 s by default) and start on whole seconds: the index grid is
1 fps, so a 3 s needle ``[t, t+3)`` holds three grid frames (``pts_sec`` t, t+1, t+2). A
needle shorter than 2 s could fall between two grid frames and be invisible to every sampler.

Task types (one row per question, ``task`` column):

- ``single``: one needle scene. "When is there a yellow star?" (query text "a yellow star").
- ``multi``: the same object in 2-3 needle scenes spread over the video, each in its own slot;
  every scene must be hit. One occurrence is long (0.6 of a slot, at most 24 s), the others
  last ``needle_sec``: relevance alone piles the budget into the long one, so this task
  measures diversity. "Find every moment with a blue square." ("a blue square").
- ``order``: two single needles. "Which came first, the red circle or the blue square?";
  the evidence must include both spans (query texts "a red circle", "a blue square").
- ``weak``: broad questions whose evidence is spread over the video: "What shapes appear in
  this video?" (one group per shape that appears, each group = every scene showing it) and
  "What colors appear in this video?" (one group per colour). Coverage is the fraction of
  groups hit.

Each question carries both the natural ``question`` and the derived ``query_texts``; the
runner encodes either (``text_mode`` "question": the question as a user sends it; "query":
the normalised mean of the query texts' embeddings, the phrasing the model was trained on).

Seeds: the bundled model was trained on scene seeds < 1e9 (scripts/train_synthetic_shapes.py),
so every suite video uses seeds >= 1e9. The ``tune`` split and the ``test`` split use
disjoint seed ranges (:data:`SPLIT_SEED`), so defaults tuned on one are reported on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framedex.errors import UnknownNameError, check
from framedex.synth.builders import haystack_spec
from framedex.synth.captions import object_phrase
from framedex.synth.render import Truth, truth_of
from framedex.synth.spec import BACKGROUNDS, COLORS, SHAPES

#: First spec seed of each split (disjoint ranges, all >= 1e9: unseen by the model's training).
SPLIT_SEED: dict[str, int] = {"tune": 1_000_000_000, "test": 1_500_000_000}

Span = tuple[float, float]


@dataclass(frozen=True)
class SuiteSpec:
    """What to generate.

    Args:
        name: suite name (``small``, ``full`` or a custom one).
        durations: video lengths in seconds; each split gets ``videos_per_duration`` of each.
        videos_per_duration: videos per length and split.
        splits: which splits to build (``tune`` and/or ``test``).
        fps: render frame rate (the index grid is 1 fps whatever this is).
        size: render size [width, height] (the model's input is 64x64).
        needle_sec: needle scene length in seconds (>= 2 so the 1 fps grid sees it).
    """

    name: str
    durations: tuple[float, ...]
    videos_per_duration: int = 1
    splits: tuple[str, ...] = ("tune", "test")
    fps: float = 2.0
    size: tuple[int, int] = (64, 64)
    needle_sec: float = 3.0

    def __post_init__(self) -> None:
        check(len(self.durations) >= 1 and all(d >= 30 for d in self.durations), "durations",
              self.durations, "must be one or more lengths >= 30 seconds")
        check(self.videos_per_duration >= 1, "videos_per_duration", self.videos_per_duration,
              "must be >= 1")
        for s in self.splits:
            check(s in SPLIT_SEED, "splits", self.splits, f"must be among {sorted(SPLIT_SEED)}")
        check(self.needle_sec >= 2, "needle_sec", self.needle_sec,
              "must be >= 2 s (the 1 fps index grid must see every needle)")


SUITES: dict[str, SuiteSpec] = {
    # 60 min of video per split (12 videos, 1-10 min); a few minutes on 2 cores.
    "small": SuiteSpec("small", durations=(60, 180, 360, 600), videos_per_duration=3),
    # 5.6 h of video per split (15 videos, 1 min to 1 h): for a machine with time to spare.
    "full": SuiteSpec("full", durations=(60, 300, 900, 1800, 3600), videos_per_duration=3),
    # For tests: two short videos.
    "tiny": SuiteSpec("tiny", durations=(60,), videos_per_duration=1),
}


@dataclass(frozen=True)
class Question:
    """One question with its ground truth.

    Attributes:
        qid: unique id, ``{video}/{task}{n}``.
        video: the :class:`VideoCase` name.
        task: ``single`` | ``multi`` | ``order`` | ``weak``.
        question: the natural-language question a user would send.
        query_texts: derived query phrases (their mean embedding is the ``query`` text mode).
        groups: the evidence: a list of groups, each a list of [start, end) spans; a group is
            hit when a chosen frame lies in any of its spans; full coverage needs every group.
    """

    qid: str
    video: str
    task: str
    question: str
    query_texts: tuple[str, ...]
    groups: tuple[tuple[Span, ...], ...]


@dataclass(frozen=True)
class VideoCase:
    """One suite video: its render spec, truth and questions."""

    name: str
    split: str
    duration: float
    spec: dict[str, Any]
    truth: Truth
    questions: tuple[Question, ...] = field(default=())


def get_suite(name: str | SuiteSpec) -> SuiteSpec:
    """The named suite spec (``small``, ``full``, ``tiny``) or a given one.

    Raises:
        UnknownNameError: unknown suite name.
    """
    if isinstance(name, SuiteSpec):
        return name
    if name not in SUITES:
        raise UnknownNameError("suite", name, SUITES)
    return SUITES[name]


def build_suite(suite: str | SuiteSpec) -> list[VideoCase]:
    """All videos and questions of a suite; the same spec always gives the same suite."""
    spec = get_suite(suite)
    cases = []
    for split in spec.splits:
        i = 0
        for duration in spec.durations:
            for _ in range(spec.videos_per_duration):
                cases.append(build_case(spec, split, i, float(duration)))
                i += 1
    return cases


def _needle_plan(rng: np.random.Generator, duration: float) -> tuple[list[tuple], int, int]:
    """Distinct needle objects: singles, one multi-needle object and its scene count."""
    n_single = 2 if duration < 300 else 3
    n_multi = 2 if duration < 150 else 3
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    picks = [pairs[i] for i in rng.permutation(len(pairs))[: n_single + 1]]
    return picks, n_single, n_multi


def build_case(spec: SuiteSpec, split: str, index: int, duration: float) -> VideoCase:
    """One video of the suite: needles in time slots, filler around them, and its questions."""
    seed = SPLIT_SEED[split] + index
    rng = np.random.default_rng([seed, 104729])
    objs, n_single, n_multi = _needle_plan(rng, duration)
    # Each needle scene gets its own slot of the timeline (so multi-needle scenes are far
    # apart), placed at a whole second inside the slot's middle 60%.
    roles = [("single", i) for i in range(n_single)] + [("multi", n_single)] * n_multi
    order = rng.permutation(len(roles))
    slot = duration / len(roles)
    needles: list[dict[str, Any]] = []
    starts: dict[int, list[float]] = {}
    # The first multi-needle occurrence is long (up to 24 s): the realistic case where an
    # object is on screen once for a while and briefly elsewhere, so relevance alone would
    # pile the budget into the long occurrence. The others last needle_sec.
    long_sec = float(max(spec.needle_sec, min(24.0, np.floor(0.6 * slot))))
    for slot_i, r in enumerate(order):
        dur = long_sec if r == n_single else spec.needle_sec
        lo, hi = slot_i * slot + 0.2 * slot, slot_i * slot + 0.8 * slot - dur
        t = float(np.floor(rng.uniform(lo, max(lo, hi))))
        _role, obj_i = roles[r]
        shape, color = objs[obj_i]
        needles.append({"time": t, "duration": dur,
                        "background": list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))],
                        "objects": [{"shape": shape, "color": color}]})
        starts.setdefault(obj_i, []).append(t)
    name = f"{split}-{int(duration)}s-{index:02d}"
    vspec = haystack_spec(duration, needles, seed=seed, fps=spec.fps, size=list(spec.size))
    truth = truth_of(vspec)
    questions = _questions(name, truth, objs, n_single)
    return VideoCase(name, split, duration, vspec, truth, tuple(questions))


def _spans(truth: Truth, shape: str | None = None, color: str | None = None) -> tuple[Span, ...]:
    return tuple((float(a), float(b)) for a, b in truth.spans_with(shape=shape, color=color))


def _questions(name: str, truth: Truth, objs: list[tuple[str, str]],
               n_single: int) -> list[Question]:
    out = []
    for i in range(n_single):
        shape, color = objs[i]
        phrase = object_phrase(shape, color)
        out.append(Question(f"{name}/single{i}", name, "single", f"When is there {phrase}?",
                            (phrase,), (_spans(truth, shape, color),)))
    shape, color = objs[n_single]
    phrase = object_phrase(shape, color)
    out.append(Question(f"{name}/multi0", name, "multi", f"Find every moment with {phrase}.",
                        (phrase,), tuple((s,) for s in _spans(truth, shape, color))))
    for j, (a, b) in enumerate([(0, 1), (1, 2)][: n_single - 1]):
        (sa, ca), (sb, cb) = objs[a], objs[b]
        pa, pb = object_phrase(sa, ca), object_phrase(sb, cb)
        q = f"Which came first, the {ca} {sa} or the {cb} {sb}?"
        out.append(Question(f"{name}/order{j}", name, "order", q, (pa, pb),
                            (_spans(truth, sa, ca), _spans(truth, sb, cb))))
    shape_groups = tuple(g for g in (_spans(truth, shape=s) for s in SHAPES) if g)
    out.append(Question(f"{name}/weak0", name, "weak", "What shapes appear in this video?",
                        tuple(f"a {s}" for s in SHAPES), shape_groups))
    color_groups = tuple(g for g in (_spans(truth, color=c) for c in COLORS) if g)
    out.append(Question(f"{name}/weak1", name, "weak", "What colors appear in this video?",
                        tuple(f"something {c}" for c in COLORS), color_groups))
    return out


__all__ = ["SPLIT_SEED", "SUITES", "Question", "SuiteSpec", "VideoCase", "build_case",
           "build_suite", "get_suite"]
