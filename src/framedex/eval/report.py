"""Write an evaluation run: Parquet rows, markdown tables, the cost-vs-quality plot, the sweep.

Files (under the output folder):

- ``results.parquet``: one row per (sampler, budget, question, text mode); query it with
  DuckDB, e.g. ``SELECT sampler, avg(hit::INT) FROM 'results.parquet' WHERE split='test'
  AND task='single' AND budget='K=8' GROUP BY 1``.
- ``results.md``: per-sampler tables on the held-out ``test`` split.
- ``coverage_vs_tokens.png``: mean coverage (macro over task types) against mean tokens, one
  line per sampler over the frame budgets, token budgets as separate markers.
- ``sweep.parquet`` / ``sweep.md``: the hold-out sweep and the chosen defaults.
- ``summary.json``: timings, sizes, chosen defaults.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framedex.rules import GEMINI_FRAME_TOKENS

TASKS = ("single", "multi", "order", "weak")


def _group(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    return float(np.mean([float(r[key]) for r in rows])) if rows else float("nan")


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Headline metrics of one (sampler, budget) cell.

    Returns:
        single_hit, multi_full, multi_cov, order_full, weak_cov, coverage (macro mean over
        task types), frames, tokens (means) and latency_ms (median).
    """
    by_task = _group(rows, "task")
    t = {k[0]: v for k, v in by_task.items()}
    covs = [_mean(v, "coverage") for v in t.values()]
    return {
        "single_hit": _mean(t.get("single", []), "hit"),
        "multi_full": _mean(t.get("multi", []), "full_coverage"),
        "multi_cov": _mean(t.get("multi", []), "coverage"),
        "order_full": _mean(t.get("order", []), "full_coverage"),
        "weak_cov": _mean(t.get("weak", []), "coverage"),
        "coverage": float(np.mean(covs)) if covs else float("nan"),
        "frames": _mean(rows, "frames"), "tokens": _mean(rows, "tokens"),
        "latency_ms": float(np.median([r["latency_ms"] for r in rows])) if rows else 0.0,
        "n": len(rows),
    }


def _fmt(x: float, pct: bool = True) -> str:
    if x != x:  # NaN: the task is absent
        return "-"
    return f"{100 * x:.0f}" if pct else (f"{x:.0f}" if x >= 100 else f"{x:.1f}")


def table(rows: Sequence[dict[str, Any]], budget: str, split: str = "test",
          mode: str = "question") -> str:
    """A markdown table of every sampler at one budget (percentages for rates)."""
    cells = _group([r for r in rows if r["split"] == split and r["text_mode"] == mode
                    and r["budget"] == budget], "sampler")
    head = ("| sampler | single hit % | multi full % | multi cov % | order full % | "
            "weak cov % | mean cov % | frames | tokens | select ms |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for (name,), rs in sorted(cells.items()):
        s = summarize(rs)
        lines.append(f"| {name} | {_fmt(s['single_hit'])} | {_fmt(s['multi_full'])} | "
                     f"{_fmt(s['multi_cov'])} | {_fmt(s['order_full'])} | "
                     f"{_fmt(s['weak_cov'])} | {_fmt(s['coverage'])} | "
                     f"{_fmt(s['frames'], False)} | {_fmt(s['tokens'], False)} | "
                     f"{s['latency_ms']:.2f} |")
    return head + "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: Path, split: str = "test",
         mode: str = "question") -> None:
    """coverage_vs_tokens.png: mean coverage vs mean tokens, a line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["split"] == split and r["text_mode"] == mode]
    names = sorted({r["sampler"] for r in sel})
    fig, ax = plt.subplots(figsize=(11, 6), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        color, style = cmap(i % 20), ("-" if "[tuned]" not in name else "--")
        pts = []
        for (_budget,), rs in _group([r for r in sel if r["sampler"] == name], "budget").items():
            s = summarize(rs)
            pts.append((rs[0]["budget_kind"], s["tokens"], s["coverage"]))
        line = sorted((t, c) for kind, t, c in pts if kind == "frames")
        if line:
            ax.plot(*zip(*line, strict=True), style, marker="o", ms=4, color=color, label=name,
                    lw=1.6)
        tok = [(t, c) for kind, t, c in pts if kind == "tokens"]
        if tok:
            xs, ys = zip(*tok, strict=True)
            ax.scatter(xs, ys, marker="x", s=40, color=color)
    ax.set_xscale("log", base=2)
    ticks = sorted({int(r["k"]) * GEMINI_FRAME_TOKENS for r in sel
                    if r["budget_kind"] == "frames"})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("mean tokens per question (log scale; K frames cost K x "
                  f"{GEMINI_FRAME_TOKENS})")
    ax.set_ylabel("mean evidence coverage (macro over task types)")
    ax.set_title(f"framedex eval: quality vs cost ({split} split, text = {mode})\n"
                 "lines: K = 4, 8, 16, 32 frames;  x: TokenBudget 2048 / 8192")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(list(rows)), path)


def sweep_markdown(sweep_rows: Sequence[dict[str, Any]], chosen: dict[str, dict]) -> str:
    """sweep.md: the objective of every swept value and the chosen default."""
    parts = ["# Hold-out sweep (tune split)\n",
             "Objective: mean coverage, macro-averaged over task types, at K = 8 and 32, "
             "text mode = the report's primary mode. A swept value replaces the current default "
             "only if it beats it by more than 0.005.\n"]
    for name, c in chosen.items():
        verdict = "changed" if c["changed"] else "kept"
        parts.append(f"\n## {name}: {verdict} -> {json.dumps(c['params'])} "
                     f"(objective {c['objective']:.4f}; default {json.dumps(c['default'])} "
                     f"{c['default_objective']:.4f})\n")
        parts.append("\n| params | objective | " + " | ".join(TASKS) + " |\n|---|---:|"
                     + "---:|" * len(TASKS) + "\n")
        for r in (r for r in sweep_rows if r["sampler"] == name):
            mark = " (default)" if r["is_default"] else ""
            cov = " | ".join(f"{r.get(f'coverage_{t}', float('nan')):.3f}" for t in TASKS)
            parts.append(f"| {r['params']}{mark} | {r['objective']:.4f} | {cov} |\n")
    return "".join(parts)


def write_report(result: Any, cfg: Any) -> dict[str, str]:
    """Write every output file of a run; returns {kind: path}."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": out / "results.parquet", "markdown": out / "results.md",
             "plot": out / "coverage_vs_tokens.png", "summary": out / "summary.json"}
    _write_parquet(result.rows, files["results"])
    split = "test" if any(r["split"] == "test" for r in result.rows) else "tune"
    budgets = sorted({r["budget"] for r in result.rows},
                     key=lambda b: (b[0] != "K", int(b.split("=")[1])))
    md = [f"# framedex eval: suite {getattr(cfg.suite, 'name', cfg.suite)}, {split} split, "
          f"text mode {cfg.primary_mode}\n\n{result.num_videos} videos, "
          f"{result.num_questions} questions, {result.video_seconds / 60:.0f} min of video "
          f"(all splits).\n"]
    for b in budgets:
        md.append(f"\n## {b}\n\n" + table(result.rows, b, split, cfg.primary_mode))
    files["markdown"].write_text("".join(md))
    plot(result.rows, files["plot"], split, cfg.primary_mode)
    if result.sweep_rows:
        files["sweep"], files["sweep_md"] = out / "sweep.parquet", out / "sweep.md"
        _write_parquet(result.sweep_rows, files["sweep"])
        files["sweep_md"].write_text(sweep_markdown(result.sweep_rows, result.chosen))
    summary = {"suite": getattr(cfg.suite, "name", cfg.suite), "model": cfg.model,
               "videos": result.num_videos, "questions": result.num_questions,
               "video_minutes": round(result.video_seconds / 60, 1),
               "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
               "chosen": result.chosen, "files": {k: str(v) for k, v in files.items()}}
    files["summary"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return {k: str(v) for k, v in files.items()}


__all__ = ["plot", "summarize", "sweep_markdown", "table", "write_report"]
