"""``framedex eval`` and ``framedex export-selections``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    app,
    emit,
    handle_errors,
    open_library,
)
from framedex.validate import parse_pairs


@app.command("eval")
@handle_errors
def eval_(
    suite: Annotated[str, typer.Option("--suite", help="small (minutes on 2 cores) or full "
                                       "(1 min to 1 h videos).")] = "small",
    out: Annotated[Path, typer.Option("--out", help="Output folder (videos, results.parquet, "
                                      "results.md, coverage_vs_tokens.png, sweep.*).")]
    = Path("framedex-eval"),
    samplers: Annotated[str | None, typer.Option(
        "--samplers", help="Comma-separated sampler names (default: all).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store for the suite videos "
                                           "(default: OUT/db).")] = None,
    model: Annotated[str, typer.Option("--model", help="Encoder spec.")] = "synthetic-shapes",
    no_sweep: Annotated[bool, typer.Option("--no-sweep", help="Skip the hold-out sweep.")]
    = False,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Benchmark every sampler on synthetic videos with known truth (quality vs cost)."""
    from framedex.eval.report import write_report
    from framedex.eval.runner import EvalConfig, run_eval

    names = [s.strip() for s in samplers.split(",") if s.strip()] if samplers else None
    cfg = EvalConfig(suite=suite, out=out, db=db, model=model, samplers=names,
                     sweep=not no_sweep, device=device)
    result = run_eval(cfg, progress=lambda msg: typer.echo(msg, err=True))
    files = write_report(result, cfg)
    summary = {"videos": result.num_videos, "questions": result.num_questions,
               "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
               "chosen": result.chosen, "files": files}
    if as_json:
        emit(summary)
        return
    typer.echo(f"{result.num_videos} videos, {result.num_questions} questions in "
               f"{result.timings.get('total_s', 0):.0f}s; wrote {files['markdown']}, "
               f"{files['results']}, {files['plot']}")
    for name, c in result.chosen.items():
        if c["changed"]:
            typer.echo(f"sweep: {name} {c['default']} -> {c['params']} "
                       f"(objective {c['default_objective']:.3f} -> {c['objective']:.3f})")


@app.command("export-selections")
@handle_errors
def export_selections(
    manifest: Annotated[Path, typer.Argument(help="JSON list of {question_id, video_path, "
                                             "question}.")],
    sampler: Annotated[str, typer.Option("--sampler", help="Sampler name.")],
    budget: Annotated[int, typer.Option("--budget", help="Frames per question (K).")],
    out: Annotated[Path, typer.Option("--out", help="Output JSON file.")],
    fmt: Annotated[str, typer.Option("--format", help="bolt (BOLT lmms-eval "
                                     "frame_indices_json, seconds) or aks (AKS "
                                     "selected_frames.json, native frame indices).")] = "bolt",
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Sampler parameter KEY=VALUE (repeatable).")] = None,
    db: Db = DEFAULT_DB,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Index a benchmark manifest's videos and write per-question frame selections."""
    from framedex.eval.export import export_selections as run_export
    from framedex.eval.export import load_manifest

    items = load_manifest(manifest)
    lib = open_library(db, model=model, device=device, must_exist=False, log_queries=False)
    report = run_export(items, lib, sampler, budget, fmt,
                        progress=None if as_json else lambda m: typer.echo(m, err=True),
                        **parse_pairs(param, "--param"))
    lib.write_file(out, (json.dumps(report.data) + "\n").encode(), "out")
    if as_json:
        emit({**report.summary(), "out": str(out)})
    else:
        for f in report.failed:
            typer.echo(f"failed     {f['video_path']}: {f['error']}", err=True)
        typer.echo(f"wrote {out}: {report.questions} questions, {report.videos} videos, "
                   f"{len(report.failed)} failed, {len(report.short)} short")
    if report.videos == 0:
        raise typer.Exit(1)
