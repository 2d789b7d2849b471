"""``framedex eval`` and ``framedex export-selections``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    VlmKeyEnv,
    VlmModel,
    VlmRetries,
    VlmTimeout,
    VlmUrl,
    app,
    check_writable,
    console,
    emit,
    handle_errors,
    open_library,
    stderr_is_tty,
    vlm_endpoint,
    write_output,
)
from framedex.errors import ConfigError
from framedex.library import parse_pairs

if TYPE_CHECKING:
    from framedex.eval.runner import Step


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
    qa: Annotated[bool, typer.Option(
        "--qa", help="End-to-end QA instead: ask questions through `ask` (the shipped "
                     "answering model on loopback, or --vlm-url) and score the answers; "
                     "suites small, full, tiny.")] = False,
    budgets: Annotated[str | None, typer.Option(
        "--budgets", help="--qa: comma-separated frame budgets (default 8,16,32).")] = None,
    token_budgets: Annotated[str | None, typer.Option(
        "--token-budgets", help="--qa: comma-separated token budgets (default 1024,2048; "
                                "'' for none).")] = None,
    vlm_url: VlmUrl = None,
    vlm_model: VlmModel = None,
    vlm_api_key_env: VlmKeyEnv = None,
    vlm_timeout: VlmTimeout = None,
    vlm_retries: VlmRetries = None,
    use_cache: Annotated[bool, typer.Option(
        "--cache", help="--qa: take stored answers of asks already made (default: every ask "
                        "calls the model).")] = False,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Benchmark every sampler on synthetic videos with known truth (quality vs cost); with
    --qa, the accuracy of a video LLM's answers per sampler and budget."""
    names = [s.strip() for s in samplers.split(",") if s.strip()] if samplers else None
    check_writable(out, "--out", folder=True)  # before minutes of work
    if qa:
        _eval_qa(suite, out, names, db, model, budgets, token_budgets,
                 vlm_endpoint(vlm_url, vlm_model, vlm_api_key_env, vlm_timeout, vlm_retries,
                              required=False), use_cache, device, as_json)
        return
    from framedex.eval.report import write_report
    from framedex.eval.runner import EvalConfig, run_eval

    cfg = EvalConfig(suite=suite, out=out, db=db, model=model, samplers=names,
                     sweep=not no_sweep, device=device)
    with steps_display(show=not as_json) as progress:
        result = run_eval(cfg, progress=progress)
    files = write_report(result, cfg)
    summary = {"videos": result.num_videos, "questions": result.num_questions,
               "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
               "chosen": result.chosen, "files": files}
    if as_json:
        emit(summary)
        return
    table = main_table(Path(files["markdown"]).read_text())
    if table:
        typer.echo(table)
    typer.echo(f"{result.num_videos} videos, {result.num_questions} questions in "
               f"{result.timings.get('total_s', 0):.0f}s; wrote {files['markdown']}, "
               f"{files['results']}, {files['plot']}")
    for name, c in result.chosen.items():
        if c["changed"]:
            typer.echo(f"sweep: {name} {c['default']} -> {c['params']} "
                       f"(objective {c['default_objective']:.3f} -> {c['objective']:.3f})")


@contextmanager
def steps_display(show: bool) -> Iterator[Callable[[Step], None] | None]:
    """How a run's progress is shown, on stderr: on a terminal, one bar per phase (render,
    index, score, sweep, ask) as `framedex index` draws them, gone when the run ends; into a
    pipe or a log, one line per step; with ``show`` off (``--json``), nothing."""
    if not show:
        yield None
        return
    if not stderr_is_tty():
        said = [""]

        def line(step: Step) -> None:
            if step.item and str(step) != said[0]:  # one line per step, not per unit
                said[0] = str(step)
                typer.echo(said[0], err=True)

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def draw(step: Step) -> None:
            if step.phase not in tasks:
                tasks[step.phase] = bar.add_task(step.phase, total=step.total)
            bar.update(tasks[step.phase], description=str(step)[:48], total=step.total,
                       completed=min(step.done, step.total))

        yield draw


def main_table(markdown: str) -> str:
    """The report's main table, as the README shows it: the K = 8 section (else the first
    K section), heading included; empty when the report has none."""
    sections = re.findall(r"^(## K=(\d+)\n\n(?:\|.*\n?)+)", markdown, flags=re.M)
    if not sections:
        return ""
    chosen = next((s for s, k in sections if k == "8"), sections[0][0])
    return chosen.rstrip("\n")


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}={text!r} is invalid: use comma-separated integers, "
                          "e.g. 8,16,32") from None


def _eval_qa(suite: str, out: Path, names: list[str] | None, db: str | None, model: str,
             budgets: str | None, token_budgets: str | None, vlm: Any, use_cache: bool,
             device: str, as_json: bool) -> None:
    from framedex.eval.qa import (
        QA_FRAME_BUDGETS,
        QA_TOKEN_BUDGETS,
        QAConfig,
        run_qa,
        write_qa_report,
    )

    frames = _int_list(budgets, "--budgets")
    tokens = _int_list(token_budgets, "--token-budgets")
    cfg = QAConfig(suite=suite, out=out, db=db, model=model, samplers=names,
                   frame_budgets=QA_FRAME_BUDGETS if frames is None else frames,
                   token_budgets=QA_TOKEN_BUDGETS if tokens is None else tokens, vlm=vlm,
                   cache=use_cache, device=device)
    with steps_display(show=not as_json) as progress:
        result = run_qa(cfg, progress=progress)
    files = write_qa_report(result, cfg.out)
    if as_json:
        emit({"videos": result.num_videos, "questions": result.num_questions,
              "asks": len(result.rows), "model": result.model, "endpoint": result.endpoint,
              "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
              "files": files})
        return
    typer.echo(Path(files["markdown"]).read_text().split("\n\n", 2)[1])
    typer.echo(f"{len(result.rows)} asks ({result.num_questions} questions) in "
               f"{result.timings.get('total_s', 0):.0f}s; wrote {files['markdown']}, "
               f"{files['results']}")


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
    check_writable(out, "--out")  # before any video is indexed
    lib = open_library(db, model=model, device=device, must_exist=False, log_queries=False)
    report = run_export(items, lib, sampler, budget, fmt,
                        progress=None if as_json else lambda m: typer.echo(m, err=True),
                        **parse_pairs(param, "--param"))
    write_output(out, (json.dumps(report.data) + "\n").encode(), "--out")
    if as_json:
        emit({**report.summary(), "out": str(out)})
    else:
        for f in report.failed:
            typer.echo(f"failed     {f['video_path']}: {f['error']}", err=True)
        typer.echo(f"wrote {out}: {report.questions} questions, {report.videos} videos, "
                   f"{len(report.failed)} failed, {len(report.short)} short")
    if report.videos == 0:
        raise typer.Exit(1)
