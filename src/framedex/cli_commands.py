"""More ``framedex`` commands: search, select, stats, sql, serve, eval, export-selections.

Registered on :data:`framedex.cli.app` when :mod:`framedex.cli` is imported. Like every
command they take ``--db`` and ``--json``; errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from framedex.cli import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    _store_exists,
    app,
    emit,
    handle_errors,
    out_console,
    resolve_model,
)


def _registered_samplers() -> list[str]:
    """Registry names for --help (the samplers are numpy-only, cheap to import)."""
    from framedex.query.samplers import list_samplers

    return list_samplers()


def _sampler_name(value: str | None) -> str | None:
    """Validate --sampler against the registry (never a hand-written list)."""
    if value is None:
        return None
    from framedex.errors import UnknownNameError
    from framedex.query.samplers import list_samplers

    if value not in list_samplers():
        raise UnknownNameError("sampler", value, list_samplers())
    return value


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are JSON literals when they parse (8, 0.5, true)."""
    from framedex.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option}={pair!r} is invalid: use KEY=VALUE")
        try:
            value = json.loads(raw)
            if not isinstance(value, (str, int, float, bool)):
                value = raw
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _library(db: str, model: str | None = None, device: str = "auto", sampler: str | None = None):
    from framedex.library import Library

    return Library(db, model=model, device=device, default_sampler=sampler)


def _require_store(db: str) -> None:
    from framedex.errors import EmptyLibraryError

    if not _store_exists(db):
        raise EmptyLibraryError(f"the store {db} has no indexed video: run "
                                "`framedex index PATH` first")


@app.command()
@handle_errors
def search(
    text: Annotated[str, typer.Argument(help="What to look for, in words.")],
    db: Db = DEFAULT_DB,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Number of results.")] = 10,
    group_by: Annotated[str, typer.Option("--group-by", help="moment or video.")] = "moment",
    min_duration: Annotated[float | None, typer.Option("--min-duration",
                                                       help="Videos at least this long (s).")] = None,
    max_duration: Annotated[float | None, typer.Option("--max-duration",
                                                       help="Videos at most this long (s).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Glob on the video path.")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        "--meta", help="User metadata equality KEY=VALUE (repeatable).")] = None,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Search the whole library: ranked moments (start/end seconds, score), best first."""
    from framedex.query.search import SearchFilters

    filters = SearchFilters(min_duration=min_duration, max_duration=max_duration,
                            path_glob=path, metadata=parse_pairs(meta, "--meta"))
    _require_store(db)
    hits = _library(db, model, device).search(text, limit=limit, group_by=group_by,
                                              filters=filters)
    if as_json:
        emit([h.to_json() for h in hits])
        return
    if not hits:
        typer.echo("no match")
        return
    from rich.table import Table

    table = Table("#", "score", "start", "end", "video_id", "path", box=None)
    for rank, h in enumerate(hits, start=1):
        j = h.to_json()
        extra = f" (+{len(j['moments']) - 1} more)" if len(j.get("moments", [])) > 1 else ""
        table.add_row(str(rank), f"{j['score']:.4f}", f"{j['start']:.1f}s", f"{j['end']:.1f}s",
                      j["video_id"], j["path"] + extra)
    out_console().print(table)


@app.command()
@handle_errors
def select(
    video: Annotated[str, typer.Argument(help="A video id, id prefix or indexed path.")],
    question: Annotated[str, typer.Argument(help="The question for the video LLM.")],
    db: Db = DEFAULT_DB,
    sampler: Annotated[str | None, typer.Option(
        "--sampler", envvar="FRAMEDEX_SAMPLER",
        help="Sampler: " + ", ".join(_registered_samplers())
        + ". Default: $FRAMEDEX_SAMPLER, else router.")] = None,
    budget: Annotated[int, typer.Option("--budget", "-k", help="Frames to choose (K).")] = 8,
    tokens: Annotated[int | None, typer.Option(
        "--tokens", help="Token budget instead of K (Gemini 258/130/66 per high/mid/low).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Sampler parameter KEY=VALUE (repeatable).")] = None,
    frames_out: Annotated[Path | None, typer.Option(
        "--frames-out", help="Decode the chosen frames and write JPEGs into this folder.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG of the relevance curve and the chosen frames.")] = None,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Pick the frames of one video a video LLM should see for a question (cached embeddings)."""
    lib = _library(db, model, device, _sampler_name(sampler))
    from framedex.query.select import check_request

    check_request(question, budget, tokens)
    _require_store(db)
    result = lib.select(video, question, budget=budget, tokens=tokens,
                        params=parse_pairs(param, "--param"))
    out = result.to_json()
    if frames_out is not None or plot is not None:
        out.update(_deliver(lib, result, question, frames_out, plot))
    if as_json:
        emit(out)
        return
    _print_selection(out)


def _deliver(lib: Any, result: Any, question: str, frames_out: Path | None,
             plot: Path | None) -> dict[str, Any]:
    """Decode only the chosen frames (for --frames-out / --plot) and write the outputs."""
    from framedex.query.frames import decode_frames, write_frames
    from framedex.query.payload import cost_line

    record = lib.video(result.video_id)
    decoder = record.decoder if record.decoder in ("pyav", "decord") else "auto"
    images = decode_frames(record.path, result.frame_idx, decoder=decoder, tiers=result.tiers)
    extra: dict[str, Any] = {"cost": cost_line(len(result.indices), result.tokens_used,
                                                max(record.duration, 1e-3), result.tiers)}
    if frames_out is not None:
        paths = write_frames(frames_out, images, result.timestamps, result.frame_idx)
        extra["frames"] = [str(p) for p in paths]
    if plot is not None:
        from framedex.query.plot import plot_selection

        frames = lib.store.read_frames(result.video_id)
        query = lib.embed_text([question])[0]
        curve = frames.vectors @ query.astype(frames.vectors.dtype)
        chosen = [int(i) for i in result.indices]
        extra["plot"] = str(plot_selection(
            plot, timestamps=frames.pts_sec, scores=curve, chosen_positions=chosen,
            chosen_timestamps=result.timestamps, thumbnails=images, tiers=result.tiers,
            title=f"{result.sampler}: {question}"))
    return extra


def _print_selection(out: dict[str, Any]) -> None:
    con = out_console()
    head = f"{out['sampler']} chose {len(out['indices'])} of {out['num_frames']} frames " \
           f"of {out['video_id']} in {out['latency_ms']:.1f} ms"
    if out.get("tokens_used") is not None:
        head += f", {out['tokens_used']} of {out['tokens']} tokens"
    con.print(head, highlight=False, soft_wrap=True)
    if out.get("decision"):
        con.print(f"decision: {out['decision']} ({out.get('reason')})", highlight=False,
                  soft_wrap=True)
    tiers = out.get("tiers") or [None] * len(out["indices"])
    scores = out.get("scores") or [None] * len(out["indices"])
    for pos, t, f, s, tier in zip(out["indices"], out["timestamps"], out["frame_idx"], scores,
                                  tiers):
        score = "" if s is None else f"  score {s:.4f}"
        con.print(f"  pos {pos:6d}  t {t:9.3f}s  frame {f:7d}{score}"
                  f"{'  ' + tier if tier else ''}", highlight=False)
    if out.get("cost"):
        con.print(out["cost"]["text"], highlight=False, soft_wrap=True)
    for key in ("frames", "plot"):
        if out.get(key):
            value = out[key]
            con.print(f"{key}: {value[0].rsplit('/', 1)[0] if key == 'frames' else value}",
                      highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def stats(db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """Logged queries: count and p50/p95 latency per (kind, sampler)."""
    rows = _library(db).stats() if _store_exists(db) else []
    if as_json:
        emit(rows)
        return
    if not rows:
        typer.echo(f"no logged query in {db}")
        return
    from rich.table import Table

    table = Table("kind", "sampler", "count", "p50 ms", "p95 ms", box=None)
    for r in rows:
        table.add_row(r["kind"], r["sampler"] or "-", str(r["count"]), f"{r['p50_ms']:.2f}",
                      f"{r['p95_ms']:.2f}")
    out_console().print(table)


@app.command()
@handle_errors
def sql(
    query: Annotated[str, typer.Argument(help="DuckDB SQL over videos, query_log and jobs.")],
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Run SQL (DuckDB) over the videos, query_log and jobs tables."""
    from framedex.store.sql import run_sql

    if _store_exists(db):
        table = _library(db).sql(query)
    else:  # an absent store is an empty one: SQL still runs (and reports its own errors)
        from framedex.store import Store

        table = run_sql(Store(db), query)
    rows = table.to_pylist()
    if as_json:
        emit(rows)
        return
    from rich.table import Table

    out = Table(*table.column_names, box=None)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    out_console().print(out)
    typer.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)


@app.command()
@handle_errors
def serve(
    db: Db = DEFAULT_DB,
    model: Model = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="FRAMEDEX_API_KEY",
        help="Require 'Authorization: Bearer KEY' or 'x-api-key: KEY' (not on /health).")] = None,
    allow_root: Annotated[list[Path] | None, typer.Option(
        "--allow-root", help="Folder whose files may be ingested by server-side path "
                             "(repeatable). None: uploads only.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb")] = 2048.0,
    workers: Annotated[int, typer.Option("--workers", help="Ingest jobs run at once.")] = 1,
    upload_dir: Annotated[Path | None, typer.Option(
        "--upload-dir", help="Where uploads are kept (default: DB.uploads).")] = None,
    device: Device = "auto",
) -> None:
    """Serve the HTTP API (ingest jobs, search, select, frames, embeddings); docs at /docs."""
    import uvicorn

    from framedex.api.app import create_app
    from framedex.api.settings import Settings
    from framedex.errors import check
    from framedex.store import Store

    check(max_upload_mb > 0, "max_upload_mb", max_upload_mb, "must be > 0")
    spec = resolve_model(Store(db), model) if _store_exists(db) else model
    settings = Settings(
        db=db, model=spec, device=device, host=host, port=port, api_key=api_key or None,
        allow_roots=tuple(str(r) for r in allow_root or ()),
        max_upload_bytes=int(max_upload_mb * (1 << 20)), workers=workers,
        upload_dir=str(upload_dir) if upload_dir else None,
    )
    logging.getLogger("framedex").setLevel(logging.WARNING)  # job recovery, server errors
    typer.echo(f"framedex: serving {db} on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


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
    from framedex.indexer.encoder import load_encoder
    from framedex.store import Store

    items = load_manifest(manifest)
    _sampler_name(sampler)
    store = Store(db)
    encoder = load_encoder(resolve_model(store, model), device=device)
    report = run_export(items, store, encoder, sampler, budget, fmt,
                        progress=None if as_json else lambda m: typer.echo(m, err=True),
                        **parse_pairs(param, "--param"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.data) + "\n")
    if as_json:
        emit({**report.summary(), "out": str(out)})
    else:
        for f in report.failed:
            typer.echo(f"failed     {f['video_path']}: {f['error']}", err=True)
        typer.echo(f"wrote {out}: {report.questions} questions, {report.videos} videos, "
                   f"{len(report.failed)} failed, {len(report.short)} short")
    if report.videos == 0:
        raise typer.Exit(1)
