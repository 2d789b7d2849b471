"""Run the evaluation suite: render, index once, then score every sampler and budget.

Flow (``run_eval``)::

    suite spec --build_suite--> videos + questions (truth spans)
      --render (cached by spec)--> out/videos/*.mp4 --Indexer (1 fps, cached by content)-->
      store --read_frames (once per video)--> (N, D) embeddings + pts_sec
      --encode_text (all questions at once)--> query vectors
      --sampler.select_result per (sampler, budget, question, text mode)--> metrics rows
      --sweep on the tune split--> tuned defaults, re-scored on the test split

Indexing, embeddings and question encoding go through the :class:`~framedex.library.Library`
facade; the scoring grid then runs every sampler on the cached arrays directly (many budgets
and text modes per question, no query log), so ``latency_ms`` times only ``select_result``
(relevance + selection), as the API would pay it per query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from framedex.errors import ConfigError, check
from framedex.eval.metrics import score_selection, selection_tokens
from framedex.eval.suite import SuiteSpec, VideoCase, build_suite, get_suite
from framedex.rules import FAILED

if TYPE_CHECKING:
    from framedex.library import Library

TEXT_MODES = ("question", "query")
INT_BUDGETS = (4, 8, 16, 32)
TOKEN_BUDGETS = (2048, 8192)

#: Parameter grids of the hold-out sweep (tuned on the ``tune`` split only).
SWEEP_GRID: dict[str, list[dict[str, Any]]] = {
    "adard_key": [{"lam": lam, "tau": tau} for lam in (0.05, 0.1, 0.2, 0.4, 0.8)
                  for tau in (0.0, 0.6, 0.8, 1.0, 1.2, 1.5)],
    "router": [{"threshold": t} for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)],
    "bolt": [{"power": p} for p in (1.0, 2.0, 2.5, 3.0, 5.0)],
    "qframe": [{"tau": t} for t in (0.003, 0.01, 0.03, 0.1)],
    "mmr": [{"theta": t} for t in (0.3, 0.5, 0.7, 0.9)],
    # ViLAMP's f2f_thrd was calibrated for CLIP ViT-B/32 frame-to-frame cosines.
    "vilamp": [{"f2f_thrd": t} for t in (0.85, 0.9, 0.95, 0.98)],
}
#: Budgets the sweep objective averages over.
SWEEP_BUDGETS = (8, 32)
#: Keep the current default unless a swept value beats it by more than this (objective units).
SWEEP_MARGIN = 0.005



@dataclass(frozen=True)
class Step:
    """Where a long run is, for a progress display: ``done`` of ``total`` units of ``phase``
    (render, index, score, sweep, ask); ``item`` names what starts now, and is empty when
    the phase reports its end."""

    phase: str
    done: int
    total: int
    item: str = ""

    def __str__(self) -> str:
        return f"{self.phase} {self.item}".rstrip()


Progress = Callable[[Step], None]


@dataclass
class EvalConfig:
    """What ``framedex eval`` runs.

    Args:
        suite: suite name or spec.
        out: output folder (videos/, results.parquet, results.md, plot, sweep.*).
        db: store location (default ``out/db``).
        model: encoder spec (the bundled ``synthetic-shapes`` by default).
        samplers: sampler names (default: every registered sampler).
        int_budgets: frame-count budgets K.
        token_budgets: token budgets (Gemini's tier costs, ``framedex.rules.TIER_TABLE``).
        text_modes: which question encodings to score (see :mod:`framedex.eval.suite`).
        primary_mode: text mode of the report tables, the plot and the sweep objective.
        sweep: run the hold-out sweep.
        device: encoder device.
    """

    suite: str | SuiteSpec = "small"
    out: Path = Path("framedex-eval")
    db: str | None = None
    model: str = "synthetic-shapes"
    samplers: Sequence[str] | None = None
    int_budgets: Sequence[int] = INT_BUDGETS
    token_budgets: Sequence[int] = TOKEN_BUDGETS
    text_modes: Sequence[str] = TEXT_MODES
    primary_mode: str = "question"
    sweep: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for m in self.text_modes:
            check(m in TEXT_MODES, "text_modes", m, f"must be among {TEXT_MODES}")
        check(self.primary_mode in self.text_modes, "primary_mode", self.primary_mode,
              f"must be one of the scored text modes {tuple(self.text_modes)}")


@dataclass
class PreparedVideo:
    """A suite video after indexing: its cached grid embeddings and timestamps."""

    case: VideoCase
    video_id: str
    pts_sec: np.ndarray
    vectors: np.ndarray


@dataclass
class EvalResult:
    """Rows and timings of one run."""

    rows: list[dict[str, Any]]
    sweep_rows: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    num_videos: int = 0
    num_questions: int = 0
    video_seconds: float = 0.0


class Renderable(Protocol):
    """What :func:`render_cases` needs of a case (a suite video or a QA video)."""

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def duration(self) -> float: ...


def render_cases(cases: Sequence[Renderable], folder: Path,
                 progress: Progress | None = None) -> list[Path]:
    """Render each case to ``folder/NAME.mp4`` unless the same spec was rendered there."""
    from framedex.synth import render

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, case in enumerate(cases):
        mp4, spec_file = folder / f"{case.name}.mp4", folder / f"{case.name}.spec.json"
        text = json.dumps(case.spec, sort_keys=True)
        if not (mp4.is_file() and spec_file.is_file() and spec_file.read_text() == text):
            if progress:
                progress(Step("render", i, len(cases), f"{case.name} ({case.duration:.0f}s)"))
            render(case.spec, mp4)
            spec_file.write_text(text)
        paths.append(mp4)
    if progress:
        progress(Step("render", len(cases), len(cases)))
    return paths


def prepare(cases: Sequence[VideoCase], paths: Sequence[Path], library: Library,
            progress: Progress | None = None) -> list[PreparedVideo]:
    """Index the rendered videos (unchanged ones are skipped) and read their embeddings.

    Raises:
        ConfigError: a suite video failed to index (the message has the decoder's reason).
    """
    out = []
    for i, (case, path) in enumerate(zip(cases, paths, strict=True)):
        if progress:
            progress(Step("index", i, len(cases), case.name))
        outcome = library.index_file(path)
        if outcome.status == FAILED or outcome.video_id is None:
            raise ConfigError(f"suite video {path} failed to index: {outcome.error}")
        _record, frames, _segments = library.embeddings(outcome.video_id)
        out.append(PreparedVideo(case, outcome.video_id, np.asarray(frames.pts_sec, np.float64),
                                 np.asarray(frames.vectors, np.float32)))
    if progress:
        progress(Step("index", len(cases), len(cases)))
    return out


def encode_questions(library: Library, cases: Sequence[VideoCase],
                     modes: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """Query vectors per (qid, text mode): the question itself, or the mean of its query texts.

    The ``query`` mode averages the unit embeddings of the derived phrases and renormalises
    (one vector, as every sampler takes one query): for an order question it points between
    the two events, for a weak question between all shapes/colours.
    """
    qs = [q for c in cases for q in c.questions]
    texts = sorted({q.question for q in qs} | {t for q in qs for t in q.query_texts})
    emb = library.embed_text(texts) if texts else np.zeros((0, 1))
    vec = {t: np.asarray(e, dtype=np.float64) for t, e in zip(texts, emb, strict=True)}
    out = {}
    for q in qs:
        if "question" in modes:
            out[(q.qid, "question")] = vec[q.question]
        if "query" in modes:
            m = np.mean([vec[t] for t in q.query_texts], axis=0)
            out[(q.qid, "query")] = m / max(float(np.linalg.norm(m)), 1e-12)
    return out


def budget_list(int_budgets: Sequence[int], token_budgets: Sequence[int]) -> list[tuple[str, Any]]:
    """(label, budget) pairs: ``K=8`` for frame counts, ``T=2048`` for TokenBudgets."""
    from framedex.library import TokenBudget

    return ([(f"K={k}", int(k)) for k in int_budgets]
            + [(f"T={t}", TokenBudget(int(t))) for t in token_budgets])


def score_grid(videos: Sequence[PreparedVideo], qvecs: dict[tuple[str, str], np.ndarray],
               samplers: Sequence[tuple[str, str, dict[str, Any]]],
               budgets: Sequence[tuple[str, Any]], modes: Sequence[str],
               progress: Progress | None = None) -> list[dict[str, Any]]:
    """Score every (sampler config, budget, question, text mode) on the given videos.

    Args:
        videos: prepared videos.
        qvecs: from :func:`encode_questions`.
        samplers: (label, registry name, params) triples.
        budgets: from :func:`budget_list`.
        modes: text modes to score.
        progress: told as each sampler config starts (phase ``score``).

    Returns:
        One row per selection (see :func:`_row`).
    """
    from framedex.library import create_sampler

    rows = []
    for i, (label, name, params) in enumerate(samplers):
        if progress:
            progress(Step("score", i, len(samplers), label))
        sampler = create_sampler(name, **params)
        for v in videos:
            for q in v.case.questions:
                for mode in modes:
                    qv = qvecs[(q.qid, mode)].astype(np.float32)
                    for blabel, budget in budgets:
                        t0 = time.perf_counter()
                        sel = sampler.select_result(v.vectors, qv, budget, v.pts_sec)
                        ms = (time.perf_counter() - t0) * 1e3
                        rows.append(_row(v, q, mode, label, name, params, blabel, budget,
                                         sel, ms))
    if progress:
        progress(Step("score", len(samplers), len(samplers)))
    return rows


def _row(v: PreparedVideo, q: Any, mode: str, label: str, name: str, params: dict[str, Any],
         blabel: str, budget: Any, sel: Any, ms: float) -> dict[str, Any]:
    from framedex.library import TokenBudget

    idx = np.asarray(sel.indices, dtype=np.int64)
    pts = v.pts_sec[idx] if len(idx) else np.zeros(0)
    s = score_selection(pts, q.groups)
    tb = isinstance(budget, TokenBudget)
    return {
        "split": v.case.split, "video": v.case.name, "duration": v.case.duration,
        "num_grid": len(v.pts_sec), "task": q.task, "qid": q.qid, "text_mode": mode,
        "sampler": label, "sampler_name": name, "params": json.dumps(params, sort_keys=True),
        "budget": blabel, "budget_kind": "tokens" if tb else "frames",
        "k": None if tb else int(budget), "token_budget": int(budget.tokens) if tb else None,
        "frames": len(idx), "tokens": selection_tokens(len(idx), budget, sel.tokens_used,
                                                        sel.tiers),
        "hit": s.hit, "coverage": s.coverage, "full_coverage": s.full, "precision": s.precision,
        "groups": s.groups, "groups_hit": s.groups_hit, "latency_ms": ms,
        "decision": sel.decision, "gated": (sel.extras or {}).get("gated"),
        "peakedness": _finite((sel.extras or {}).get("peakedness")),
    }


def _finite(x: Any) -> float | None:
    """A float for Parquet (None for missing; +inf peakedness capped at 1e9)."""
    return None if x is None else float(min(float(x), 1e9))


def sweep_objective(rows: Sequence[dict[str, Any]]) -> float:
    """Macro mean over task types of the mean coverage (each task type weighs the same)."""
    by_task: dict[str, list[float]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r["coverage"])
    return float(np.mean([np.mean(v) for v in by_task.values()])) if by_task else 0.0


def run_sweep(videos: Sequence[PreparedVideo], qvecs: dict[tuple[str, str], np.ndarray],
              names: Sequence[str], mode: str, progress: Progress | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Sweep :data:`SWEEP_GRID` on ``videos`` (the tune split) and choose each sampler's values.

    Returns:
        (one row per (sampler, params) with its objective and per-task coverage,
        {sampler: {"params": chosen, "default": default params, "objective": ...}}).
    """
    from framedex.library import create_sampler

    budgets = budget_list(SWEEP_BUDGETS, ())
    out_rows, chosen = [], {}
    swept = [n for n in names if n in SWEEP_GRID]
    for i, name in enumerate(swept):
        if progress:
            progress(Step("sweep", i, len(swept), name))
        default = {k: getattr(create_sampler(name), k) for k in SWEEP_GRID[name][0]}
        grid = SWEEP_GRID[name] + ([default] if default not in SWEEP_GRID[name] else [])
        scored = []
        for params in grid:
            rows = score_grid(videos, qvecs, [(name, name, params)], budgets, [mode])
            obj = sweep_objective(rows)
            scored.append((params, obj))
            tasks = {t: float(np.mean([r["coverage"] for r in rows if r["task"] == t]))
                     for t in sorted({r["task"] for r in rows})}
            out_rows.append({"sampler": name, "params": json.dumps(params, sort_keys=True),
                             "is_default": params == default, "objective": obj,
                             **{f"coverage_{t}": c for t, c in tasks.items()}})
        best, best_obj = max(scored, key=lambda p: p[1])
        default_obj = next(o for p, o in scored if p == default)
        pick = default if best_obj - default_obj <= SWEEP_MARGIN else best
        chosen[name] = {"params": pick, "default": default,
                        "objective": next(o for p, o in scored if p == pick),
                        "default_objective": default_obj, "changed": pick != default}
    if progress:
        progress(Step("sweep", len(swept), len(swept)))
    return out_rows, chosen


def run_eval(cfg: EvalConfig, progress: Progress | None = None) -> EvalResult:
    """Render, index, score every sampler/budget, sweep and re-score the tuned defaults.

    Raises:
        UnknownNameError: unknown suite or sampler name.
        ConfigError: bad config, or a suite video failed to index.
    """
    from framedex.library import Library, create_sampler, sampler_names

    spec = get_suite(cfg.suite)
    names = list(cfg.samplers) if cfg.samplers else sampler_names()
    for n in names:
        create_sampler(n)  # unknown names fail now, with the list of known ones
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cases = build_suite(spec)
    paths = render_cases(cases, cfg.out / "videos", progress)
    timings["render_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    library = Library(cfg.db or str(cfg.out / "db"), model=cfg.model, device=cfg.device,
                      log_queries=False)
    videos = prepare(cases, paths, library, progress)
    qvecs = encode_questions(library, cases, cfg.text_modes)
    timings["index_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    budgets = budget_list(cfg.int_budgets, cfg.token_budgets)
    rows = score_grid(videos, qvecs, [(n, n, {}) for n in names], budgets, cfg.text_modes,
                      progress)
    timings["score_s"] = time.perf_counter() - t2
    result = EvalResult(rows, timings=timings, num_videos=len(cases),
                        num_questions=sum(len(c.questions) for c in cases),
                        video_seconds=float(sum(c.duration for c in cases)))
    tune = [v for v in videos if v.case.split == "tune"]
    test = [v for v in videos if v.case.split == "test"]
    if cfg.sweep and tune:
        t3 = time.perf_counter()
        result.sweep_rows, result.chosen = run_sweep(tune, qvecs, names, cfg.primary_mode,
                                                     progress)
        tuned = [(f"{n}[tuned]", n, c["params"]) for n, c in result.chosen.items()
                 if c["changed"]]
        if tuned and test:
            result.rows += score_grid(test, qvecs, tuned, budgets, cfg.text_modes, progress)
        timings["sweep_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    return result


__all__ = [
    "SWEEP_GRID",
    "EvalConfig",
    "EvalResult",
    "PreparedVideo",
    "Progress",
    "Step",
    "budget_list",
    "encode_questions",
    "prepare",
    "render_cases",
    "run_eval",
    "run_sweep",
    "score_grid",
    "sweep_objective",
]
