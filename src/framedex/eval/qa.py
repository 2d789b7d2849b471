"""End-to-end QA on the synthetic world: ask questions through ``ask`` and score the answers.

``framedex eval --qa`` renders videos whose truth makes three questions answerable,
indexes them, asks every question through :meth:`Library.ask` with every sampler and budget,
and scores the *answers* (not the frames) against the truth files: the papers' accuracy vs
frames tables (Video-MME, LongVideoBench), offline.

The model is :mod:`framedex.eval.answerer` on loopback unless ``--vlm-url`` names a real one;
it sees only the frames ``ask`` sends, so a sampler that sends the wrong frames gets the wrong
answer. Each video (:func:`build_qa_case`, 128 x 128 at 2 fps) holds:

- **colour**: one scene with a star (or another shape the video reserves) in one colour;
  the filler never shows that shape. "What colour is the star?" -> the colour.
- **after**: a scene with an *anchor* object (say a red circle), immediately followed by a
  scene with one object of another shape; the filler never shows the anchor. "What shape
  appears after the red circle?" -> that shape. The answer is not in the frames that look
  like the question: a sampler must also send a frame of the next scene.
- **count**: an object shown in 1-3 scenes in separate parts of the video (the first 10 s
  long, the others 3 s), never in the filler. "How many times does the purple star appear?"
  -> the number of scenes. Relevance alone piles the frames into the long scene.

The answers are read back from the rendered spec's truth (:func:`framedex.synth.truth_of`,
what ``OUT.truth.json`` holds), not from the plan that placed the scenes, and every question
is checked to have exactly one answer. Seeds are >= 2e9 (unseen in training).

Answers are scored by their first colour word, shape word or number (``"purple"``, ``"It is a
triangle."``, ``"twice"``). Every ask sends :data:`QA_SYSTEM` as the system message.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framedex.errors import ConfigError, UnknownNameError, check
from framedex.eval.metrics import score_selection, selection_tokens
from framedex.eval.runner import Progress, Step
from framedex.rules import FAILED
from framedex.synth.builders import haystack_spec
from framedex.synth.render import Truth, truth_of
from framedex.synth.spec import BACKGROUNDS, COLORS, SHAPES

if TYPE_CHECKING:
    from framedex.library import Library, VLMEndpoint

#: First spec seed of the QA videos (the model trained on seeds < 1e9; the sampler suite
#: uses 1e9 and 1.5e9).
QA_SEED = 2_000_000_000
#: The system message of every ask (real models then answer in a word).
QA_SYSTEM = "Answer with a single word or number."
#: Frame and token budgets of the QA table.
QA_FRAME_BUDGETS = (8, 16, 32)
QA_TOKEN_BUDGETS = (1024, 2048)
TASKS = ("colour", "after", "count")
#: Length of the needle scenes, of the scene after the anchor, of the long count scene (s).
NEEDLE_S, AFTER_S, LONG_S = 3.0, 4.0, 10.0

Span = tuple[float, float]


@dataclass(frozen=True)
class QASuite:
    """Which QA videos to render: ``videos_per_duration`` of each length (seconds >= 120)."""

    name: str
    durations: tuple[float, ...]
    videos_per_duration: int = 1
    size: tuple[int, int] = (128, 128)
    fps: float = 2.0

    def __post_init__(self) -> None:
        check(len(self.durations) >= 1 and all(d >= 120 for d in self.durations),
              "durations", self.durations, "must be lengths >= 120 s (the count scenes are "
              "kept more than 30 s apart)")
        check(self.videos_per_duration >= 1, "videos_per_duration", self.videos_per_duration,
              "must be >= 1")


QA_SUITES: dict[str, QASuite] = {
    # 36 questions on 12 videos (68 min): a few minutes per sampler on 2 cores.
    "small": QASuite("small", durations=(120, 300, 600), videos_per_duration=4),
    # 108 questions on 36 videos (5.4 h).
    "full": QASuite("full", durations=(300, 900, 1800), videos_per_duration=12),
    # For tests: one 2-minute video, 3 questions.
    "tiny": QASuite("tiny", durations=(120,)),
}


@dataclass(frozen=True)
class QAQuestion:
    """One question with its one right answer (read from the truth) and its evidence: groups
    of spans a sent frame must fall in (all groups are needed to answer)."""

    qid: str
    video: str
    task: str
    question: str
    answer: str
    groups: tuple[tuple[Span, ...], ...]


@dataclass(frozen=True)
class QACase:
    """One QA video: its spec, truth and questions."""

    name: str
    duration: float
    spec: dict[str, Any]
    truth: Truth
    questions: tuple[QAQuestion, ...] = field(default=())


def get_qa_suite(name: str | QASuite) -> QASuite:
    """The named QA suite (``small``, ``full``, ``tiny``) or a given one.

    Raises:
        UnknownNameError: an unknown name.
    """
    if isinstance(name, QASuite):
        return name
    if name not in QA_SUITES:
        raise UnknownNameError("QA suite", name, QA_SUITES)
    return QA_SUITES[name]


def build_qa_suite(suite: str | QASuite) -> list[QACase]:
    """Every video of a QA suite; the same suite always gives the same videos."""
    spec = get_qa_suite(suite)
    cases, i = [], 0
    for duration in spec.durations:
        for _ in range(spec.videos_per_duration):
            cases.append(build_qa_case(spec, i, float(duration)))
            i += 1
    return cases


def build_qa_case(suite: QASuite, index: int, duration: float) -> QACase:
    """One QA video: the three needle units in their own slots of the timeline, filler around
    them, and the questions with their answers read from the truth."""
    seed = QA_SEED + index
    rng = np.random.default_rng([seed, 7907])
    colour_shape = str(rng.choice(SHAPES))
    colour = str(rng.choice(list(COLORS)))
    pairs = [(s, c) for s in SHAPES for c in COLORS if s != colour_shape]
    picks = rng.permutation(len(pairs))
    anchor, counted = pairs[int(picks[0])], pairs[int(picks[1])]
    after = next(pairs[int(j)] for j in picks[2:]
                 if pairs[int(j)][0] != anchor[0] and pairs[int(j)] != counted)
    n_count = int(rng.integers(1, 4))
    units = ["colour", "anchor"] + ["count"] * n_count
    while True:  # count scenes never in neighbouring slots: more than 30 s apart
        order = [units[int(j)] for j in rng.permutation(len(units))]
        if all(not (a == b == "count") for a, b in itertools.pairwise(order)):
            break
    slot = duration / len(order)
    needles: list[dict[str, Any]] = []
    first_count = True
    for i, unit in enumerate(order):
        length = {"colour": NEEDLE_S, "anchor": NEEDLE_S + AFTER_S}.get(
            unit, LONG_S if first_count else NEEDLE_S)
        lo, hi = i * slot + 0.2 * slot, i * slot + 0.8 * slot - length
        t = float(np.floor(rng.uniform(lo, max(lo, hi))))
        bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
        if unit == "colour":
            needles.append(_scene(t, NEEDLE_S, bg, (colour_shape, colour)))
        elif unit == "anchor":
            needles.append(_scene(t, NEEDLE_S, bg, anchor))
            bg2 = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
            needles.append(_scene(t + NEEDLE_S, AFTER_S, bg2, after))
        else:
            needles.append(_scene(t, length, bg, counted))
            first_count = False
    name = f"qa-{int(duration)}s-{index:02d}"
    vspec = haystack_spec(duration, needles, seed=seed, fps=suite.fps, size=list(suite.size),
                          exclude=[(colour_shape, c) for c in COLORS])
    truth = truth_of(vspec)
    questions = qa_questions(name, truth, colour_shape, anchor, counted)
    return QACase(name, duration, vspec, truth, questions)


def _scene(t: float, length: float, background: str, obj: tuple[str, str]) -> dict[str, Any]:
    return {"time": t, "duration": length, "background": background,
            "objects": [{"shape": obj[0], "color": obj[1]}]}


def qa_questions(name: str, truth: Truth, shape: str, anchor: tuple[str, str],
                 counted: tuple[str, str]) -> tuple[QAQuestion, ...]:
    """The three questions of a video, their answers read from its truth.

    Raises:
        ConfigError: the truth does not give exactly one answer (a suite bug, never silent).
    """
    scenes = truth.scenes
    colours = {c for sc in scenes for s, c in sc.objects if s == shape}
    check(len(colours) == 1, f"{name}: colour of the {shape}", sorted(colours),
          "must have one answer")
    shape_spans = tuple((sc.start, sc.end) for sc in scenes
                        if any(s == shape for s, _ in sc.objects))
    marks = [i for i, sc in enumerate(scenes) if anchor in sc.objects]
    check(bool(marks) and marks[-1] + 1 < len(scenes)
          and len(scenes[marks[-1] + 1].objects) == 1, f"{name}: after the {anchor}", marks,
          "must be followed by a scene with one object")
    nxt = scenes[marks[-1] + 1]
    runs: list[list[Span]] = []
    previous = False
    for sc in scenes:
        shows = counted in sc.objects
        if shows and not previous:
            runs.append([])
        if shows:
            runs[-1].append((sc.start, sc.end))
        previous = shows
    ca, sa = anchor[1], anchor[0]
    cc, sc_ = counted[1], counted[0]
    return (
        QAQuestion(f"{name}/colour", name, "colour", f"What colour is the {shape}?",
                   colours.pop(), (shape_spans,)),
        QAQuestion(f"{name}/after", name, "after", f"What shape appears after the {ca} {sa}?",
                   nxt.objects[0][0], (tuple((scenes[i].start, scenes[i].end) for i in marks),
                                       ((nxt.start, nxt.end),))),
        QAQuestion(f"{name}/count", name, "count", f"How many times does the {cc} {sc_} "
                   "appear?", str(len(runs)), tuple(tuple(r) for r in runs)),
    )


# -- scoring --------------------------------------------------------------------------------

_NUMBER_WORDS = {"zero": 0, "none": 0, "no": 0, "one": 1, "once": 1, "a single": 1, "two": 2,
                 "twice": 2, "three": 3, "thrice": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_COLOUR_WORD = re.compile(rf"\b({'|'.join(COLORS)}|grey)\b")
_SHAPE_WORD = re.compile(rf"\b({'|'.join(SHAPES)})s?\b")
_NUMBER = re.compile(r"\b(\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
                     + r")\b")


def extract_answer(task: str, text: str) -> str | None:
    """The answer a reply gives: its first colour word, shape word or number."""
    low = text.lower()
    pattern = {"colour": _COLOUR_WORD, "after": _SHAPE_WORD, "count": _NUMBER}[task]
    m = pattern.search(low)
    if m is None:
        return None
    word = m.group(1)
    if task == "colour":
        return "gray" if word == "grey" else word
    if task == "count":
        return str(int(word)) if word.isdigit() else str(_NUMBER_WORDS[word])
    return word


# -- running --------------------------------------------------------------------------------


@dataclass
class QAConfig:
    """What ``framedex eval --qa`` runs.

    Args:
        suite: QA suite name or spec.
        out: output folder (videos/, qa_results.json, qa.md, qa_summary.json).
        db: store (default ``out/qa-db``).
        model: encoder spec the videos are indexed with.
        samplers: sampler names (default: every registered sampler).
        frame_budgets / token_budgets: the budgets of the table.
        vlm: the video LLM (None: the shipped answering model on loopback).
        cache: take stored answers of the same asks (False: every ask calls the model).
        device: encoder device.
    """

    suite: str | QASuite = "small"
    out: Path = Path("framedex-eval")
    db: str | None = None
    model: str = "synthetic-shapes"
    samplers: Sequence[str] | None = None
    frame_budgets: Sequence[int] = QA_FRAME_BUDGETS
    token_budgets: Sequence[int] = QA_TOKEN_BUDGETS
    vlm: VLMEndpoint | None = None
    cache: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check(bool(self.frame_budgets) or bool(self.token_budgets), "budgets", (),
              "give at least one frame or token budget")


@dataclass
class QAResult:
    """Rows (one per ask) and timings of a QA run."""

    rows: list[dict[str, Any]]
    timings: dict[str, float]
    model: str
    endpoint: str
    num_videos: int
    num_questions: int
    video_seconds: float


def run_qa(cfg: QAConfig, progress: Progress | None = None) -> QAResult:
    """Render and index the QA videos, then ask every question with every sampler and budget.

    Raises:
        UnknownNameError: an unknown suite or sampler. ConfigError: a video failed to index.
        ModelEndpointError: the video LLM failed (after its retries).
    """
    from framedex.eval.runner import render_cases
    from framedex.library import Library, create_sampler, sampler_names

    spec = get_qa_suite(cfg.suite)
    names = list(cfg.samplers) if cfg.samplers else sampler_names()
    for n in names:
        create_sampler(n)  # unknown names fail now, listing the known ones
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cases = build_qa_suite(spec)
    paths = render_cases(cases, cfg.out / "videos", progress)
    timings["render_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    library = Library(cfg.db or str(cfg.out / "qa-db"), model=cfg.model, device=cfg.device,
                      log_queries=False)
    ids = []
    for i, (case, path) in enumerate(zip(cases, paths, strict=True)):
        if progress:
            progress(Step("index", i, len(cases), case.name))
        outcome = library.index_file(path)
        if outcome.status == FAILED or outcome.video_id is None:
            raise ConfigError(f"QA video {path} failed to index: {outcome.error}")
        ids.append(outcome.video_id)
    if progress:
        progress(Step("index", len(cases), len(cases)))
    timings["index_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    try:
        if cfg.vlm is not None:
            rows = _ask_all(library, cfg.vlm, cases, ids, names, cfg, progress)
            endpoint = cfg.vlm
        else:
            from framedex.eval.answerer import ANSWERER_MODEL, AnswererServer
            from framedex.library import VLMEndpoint

            with AnswererServer(device="cpu") as server:
                endpoint = VLMEndpoint(server.url, ANSWERER_MODEL)
                rows = _ask_all(library, endpoint, cases, ids, names, cfg, progress)
    finally:
        library.close()
    timings["ask_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    return QAResult(rows, timings, endpoint.model, endpoint.name, len(cases),
                    sum(len(c.questions) for c in cases),
                    float(sum(c.duration for c in cases)))


def _budgets(cfg: QAConfig) -> list[tuple[str, int | None, int | None]]:
    """(label, frames, tokens) of each budget of the table."""
    return ([(f"K={k}", int(k), None) for k in cfg.frame_budgets]
            + [(f"T={t}", None, int(t)) for t in cfg.token_budgets])


def _ask_all(library: Library, endpoint: VLMEndpoint, cases: Sequence[QACase],
             ids: Sequence[str], names: Sequence[str], cfg: QAConfig,
             progress: Progress | None) -> list[dict[str, Any]]:
    from framedex.library import TokenBudget

    rows: list[dict[str, Any]] = []
    budgets = _budgets(cfg)
    total = len(names) * sum(len(c.questions) for c in cases) * len(budgets)
    for name in names:
        for case, video_id in zip(cases, ids, strict=True):
            for q in case.questions:
                for label, frames, tokens in budgets:
                    if progress:
                        progress(Step("ask", len(rows), total, name))
                    res = library.ask(video_id, q.question, vlm=endpoint, sampler=name,
                                      budget=frames, tokens=tokens, system=QA_SYSTEM,
                                      cache=cfg.cache)
                    given = extract_answer(q.task, res.answer)
                    score = score_selection(np.asarray(res.timestamps), q.groups)
                    kind: Any = TokenBudget(tokens) if tokens is not None else frames
                    rows.append({
                        "video": case.name, "duration": case.duration, "qid": q.qid,
                        "task": q.task, "question": q.question, "truth": q.answer,
                        "sampler": name, "budget": label,
                        "budget_kind": "tokens" if tokens is not None else "frames",
                        "answer": res.answer, "extracted": given,
                        "correct": given == q.answer, "frames": len(res.timestamps),
                        "selection_tokens": selection_tokens(len(res.timestamps), kind, None,
                                                             res.tiers),
                        "prompt_tokens": res.prompt_tokens,
                        "completion_tokens": res.completion_tokens,
                        "evidence": score.full, "evidence_coverage": score.coverage,
                        "cached": res.cached, "select_ms": res.select_ms,
                        "deliver_ms": res.deliver_ms, "model_ms": res.model_ms,
                        "latency_ms": res.latency_ms,
                    })
    if progress:
        progress(Step("ask", total, total))
    return rows


# -- the report -----------------------------------------------------------------------------


def summarize_qa(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (sampler, budget): accuracy (overall and per task), evidence sent, frames, tokens
    and the median latencies."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["sampler"], r["budget"]), []).append(r)
    out = {}
    for key, group in cells.items():
        cell: dict[str, float] = {
            "n": len(group), "accuracy": float(np.mean([r["correct"] for r in group])),
            "evidence": float(np.mean([r["evidence"] for r in group])),
            "frames": float(np.mean([r["frames"] for r in group])),
            "selection_tokens": float(np.mean([r["selection_tokens"] for r in group])),
            "prompt_tokens": float(np.mean([r["prompt_tokens"] or 0 for r in group])),
            "model_ms": float(np.median([r["model_ms"] for r in group])),
            "ask_ms": float(np.median([r["latency_ms"] for r in group])),
        }
        for task in TASKS:
            sub = [r["correct"] for r in group if r["task"] == task]
            cell[f"accuracy_{task}"] = float(np.mean(sub)) if sub else float("nan")
        out[key] = cell
    return out


def qa_markdown(result: QAResult) -> str:
    """The QA tables: accuracy per sampler and budget, per task at each frame budget, and
    what each budget sent."""
    cells = summarize_qa(result.rows)
    samplers = sorted({s for s, _ in cells},
                      key=lambda s: -np.mean([c["accuracy"] for (x, _), c in cells.items()
                                              if x == s]))
    budgets = list(dict.fromkeys(r["budget"] for r in result.rows))
    lines = [f"QA accuracy ({result.num_questions} questions on {result.num_videos} videos, "
             f"{result.video_seconds / 60:.0f} min; model {result.model} at "
             f"{result.endpoint}):", "",
             "| sampler | " + " | ".join(budgets) + " |",
             "|---|" + "---:|" * len(budgets)]
    for s in samplers:
        lines.append(f"| {s} | " + " | ".join(
            f"{100 * cells[(s, b)]['accuracy']:.0f} %" for b in budgets) + " |")
    lines += ["", "What each budget sent (mean over samplers and questions):", "",
              "| budget | frames | selection tokens (Gemini units) | prompt tokens (usage) | "
              "model p50 ms | ask p50 ms |", "|---|---:|---:|---:|---:|---:|"]
    for b in budgets:
        cs = [c for (_, bb), c in cells.items() if bb == b]
        lines.append(f"| {b} | {np.mean([c['frames'] for c in cs]):.1f} | "
                     f"{np.mean([c['selection_tokens'] for c in cs]):,.0f} | "
                     f"{np.mean([c['prompt_tokens'] for c in cs]):,.0f} | "
                     f"{np.median([c['model_ms'] for c in cs]):.0f} | "
                     f"{np.median([c['ask_ms'] for c in cs]):.0f} |")
    for b in [b for b in budgets if b.startswith("K=")]:
        lines += ["", f"Per task at {b} (accuracy; evidence: every needed scene was sent):", "",
                  "| sampler | colour | after | count | evidence |", "|---|---:|---:|---:|---:|"]
        for s in samplers:
            c = cells[(s, b)]
            lines.append(f"| {s} | " + " | ".join(
                f"{100 * c[f'accuracy_{t}']:.0f} %" for t in TASKS)
                + f" | {100 * c['evidence']:.0f} % |")
    return "\n".join(lines) + "\n"


def write_qa_report(result: QAResult, out: Path) -> dict[str, str]:
    """Write ``qa_results.json`` (one row per ask), ``qa.md`` and ``qa_summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": out / "qa_results.json", "markdown": out / "qa.md",
             "summary": out / "qa_summary.json"}
    files["results"].write_text(json.dumps(result.rows, indent=1) + "\n")
    files["markdown"].write_text(qa_markdown(result))
    cells = summarize_qa(result.rows)
    files["summary"].write_text(json.dumps({
        "model": result.model, "endpoint": result.endpoint, "videos": result.num_videos,
        "questions": result.num_questions, "video_seconds": result.video_seconds,
        "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
        "cells": [{"sampler": s, "budget": b, **c} for (s, b), c in sorted(cells.items())],
    }, indent=1) + "\n")
    return {k: str(v) for k, v in files.items()}


__all__ = [
    "QA_FRAME_BUDGETS",
    "QA_SUITES",
    "QA_SYSTEM",
    "QA_TOKEN_BUDGETS",
    "QACase",
    "QAConfig",
    "QAQuestion",
    "QAResult",
    "QASuite",
    "build_qa_case",
    "build_qa_suite",
    "extract_answer",
    "get_qa_suite",
    "qa_markdown",
    "qa_questions",
    "run_qa",
    "summarize_qa",
    "write_qa_report",
]
