"""``framedex index``, ``videos``, ``build-index``, ``optimize`` and ``synth``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    app,
    check_writable,
    console,
    emit,
    file_name,
    handle_errors,
    note,
    open_library,
    out_console,
    print_table,
    read_json_file,
    stderr_is_tty,
)
from framedex.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INDEX_FPS,
    FAILED,
    INDEXED,
    LIMITS,
    OUTCOME_STATUSES,
    UNCHANGED,
)

if TYPE_CHECKING:
    from framedex.library import Library


def _decoder_names() -> str:
    from framedex.library import decoder_names

    return ", ".join(["auto", *decoder_names()])


def _engine_names() -> str:
    from framedex.library import engine_names

    return ", ".join(engine_names())


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Video files and folders.")],
    db: Db = DEFAULT_DB,
    model: Model = None,
    fps: Annotated[float, typer.Option(
        "--fps", help=f"Frames per second to embed ({LIMITS['fps'].rule().removeprefix('must be ')}"
                      ").")] = DEFAULT_INDEX_FPS,
    decoder: Annotated[str, typer.Option("--decoder",
                                         help=f"Decode backend: {_decoder_names()}.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Frames per encoder "
                                            "forward pass.")] = DEFAULT_BATCH_SIZE,
    decode_workers: Annotated[int | None, typer.Option(
        "--decode-workers", help="Decode processes feeding the encoder (NVDEC sessions with "
        "--decoder nvdec). Default: auto, the usable cores less what a CPU encoder needs.",
        show_default=False)] = None,
    device: Device = "auto",
    metadata: Annotated[str | None, typer.Option(
        "--metadata", help='User metadata as a JSON object, e.g. \'{"source": "cam1"}\'.')] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help=f"Where to index: {_engine_names()} (a Ray cluster; "
        "docs/ray.md).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="The Ray cluster to join (auto: the one started here with `ray "
        "start`). Default: $RAY_ADDRESS, else a local cluster for this run.",
        show_default=False)] = None,
    as_json: Json = False,
) -> None:
    """Index videos (files and folders) into the store. Bad files are reported and skipped."""
    from framedex.library import parse_metadata

    lib = open_library(db, model=model, device=device, must_exist=False)
    meta = parse_metadata(metadata)
    lib.check_index_options(fps=fps, decoder=decoder, batch_size=batch_size,
                            decode_workers=decode_workers, engine=engine,
                            ray_address=ray_address)
    report = _run_with_progress(lib, paths, meta, fps=fps, decoder=decoder,
                                batch_size=batch_size, decode_workers=decode_workers,
                                engine=engine, ray_address=ray_address, show=not as_json)
    if as_json:
        emit(report.to_json())
    else:
        _print_report(report)
    for warning in report.warnings:  # upkeep after the commits: the videos are indexed
        typer.echo(f"framedex: warning: {warning}", err=True)
    if not report.live:
        if not report.outcomes:
            typer.echo("framedex: error: no video files found in the given paths", err=True)
        raise typer.Exit(1)


def _run_with_progress(lib: Library, paths: list[Path], meta: dict[str, Any], *,
                       show: bool, **options: Any) -> Any:
    if not (show and stderr_is_tty()):
        return lib.index(paths, metadata=meta, on_model=_say_model, on_note=_warn, **options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(file_name(path)[:40], total=total)
            bar.update(tasks[path], completed=min(done, total))

        return lib.index(paths, metadata=meta, progress=progress, on_model=_say_model,
                         on_note=_warn, **options)


def _say_model(spec: str, device: str) -> None:
    note(f"model {spec} on {device}")


def _warn(message: str) -> None:
    note(f"warning: {message}")


def _print_report(report: Any) -> None:
    out, err = out_console(), console()
    for status in (INDEXED, UNCHANGED):
        for o in report.by_status(status):
            out.print(f"{status:<10} {o.video_id}  {o.num_indexed:6d} frames  "
                      f"{o.duration:8.1f}s  {o.path}")
    for o in report.by_status(FAILED):
        err.print(f"{FAILED:<10} {o.path}: {o.error}")
    counts = {s: len(report.by_status(s)) for s in OUTCOME_STATUSES}
    out.print(", ".join(f"{n} {s}" for s, n in counts.items()))


@app.command()
@handle_errors
def videos(db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """List the indexed videos."""
    lib = open_library(db)
    records = lib.videos()
    if as_json:
        emit([r.summary() for r in records])
        return
    if not records:
        typer.echo(f"no indexed video in {db}")
        return
    print_table(("video_id", "file", "duration", "fps", "frames", "indexed"),
                ((r.video_id, file_name(r.path), f"{r.duration:.1f}s", f"{r.frame_rate:.3g}",
                  r.num_frames, f"{r.num_indexed} @ {r.index_fps:g} fps") for r in records))
    for line in lib.store_notes():
        note(line)


@app.command()
@handle_errors
def delete(
    video: Annotated[list[str], typer.Argument(help="Videos to remove: ids, unique id prefixes "
                                               "(4+ characters) or paths they were indexed "
                                               "from.")],
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Remove videos from the library: their records, frames and segments (not the files).

    Every name is resolved first: one that matches no video deletes nothing.
    """
    lib = open_library(db)
    records = {r.video_id: r for r in (lib.video(ref) for ref in video)}
    for record in records.values():
        lib.delete(record.video_id)
    if as_json:
        emit({"deleted": [r.video_id for r in records.values()]})
        return
    for record in records.values():
        typer.echo(f"deleted {record.video_id}  {file_name(record.path)}")


@app.command()
@handle_errors
def collections(db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """List the collections (Twelve Labs indexes): id, name, videos, total duration."""
    lib = open_library(db)
    infos = lib.collections()
    if as_json:
        emit([{"id": c.collection.index_id, "name": c.collection.name,
               "video_count": c.video_count, "total_duration": round(c.total_duration, 3)}
              for c in infos])
        return
    if not infos:
        typer.echo(f"no collection in {db} (create one with POST /v1.3/indexes)")
        return
    print_table(("id", "name", "videos", "duration"),
                ((c.collection.index_id, c.collection.name, c.video_count,
                  f"{c.total_duration:.1f}s") for c in infos))


@app.command("build-index")
@handle_errors
def build_index(
    db: Db = DEFAULT_DB,
    table: Annotated[str | None, typer.Option(
        "--table", help="Table to index: segments (default) or frames.")] = None,
    index_type: Annotated[str | None, typer.Option(
        "--index-type", help="IVF_HNSW_SQ (default) or IVF_PQ.")] = None,
    partitions: Annotated[int | None, typer.Option("--partitions")] = None,
    sub_vectors: Annotated[int | None, typer.Option(
        "--sub-vectors", help="PQ sub-vectors (IVF_PQ only).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Build it even for a small "
                                        "library.")] = False,
    as_json: Json = False,
) -> None:
    """Build the ANN index library search uses (IVF_HNSW_SQ on the 6-s segments by default)."""
    lib = open_library(db, log_queries=False)
    info = lib.build_index(table=table, index_type=index_type, num_partitions=partitions,
                           num_sub_vectors=sub_vectors, force=force)
    if as_json:
        emit(info)
        return
    if "skipped" in info:  # a small library needs no index: a notice, not a failure
        typer.echo(f"nothing built: {info['skipped']}")
        return
    extra = f", {info['num_sub_vectors']} sub-vectors" if "num_sub_vectors" in info else ""
    parts = info["num_partitions"]
    typer.echo(f"built {info['index_type']} on {info['table']} over {info['rows']} rows "
               f"({parts} IVF partition{'' if parts == 1 else 's'}{extra}) in "
               f"{info['seconds']:.1f} s")


@app.command()
@handle_errors
def optimize(
    db: Db = DEFAULT_DB,
    log_retention_days: Annotated[float, typer.Option(
        "--log-retention-days", help="Delete query-log rows older than this.")] = 30.0,
    keep_versions_minutes: Annotated[float, typer.Option(
        "--keep-versions-minutes", help="Delete table versions older than this.")] = 10.0,
    as_json: Json = False,
) -> None:
    """Compact the store and bound its disk use (also runs after index runs and in serve)."""
    from datetime import timedelta

    lib = open_library(db, log_queries=False)
    info = lib.optimize(log_retention=timedelta(days=log_retention_days),
                        keep_versions=timedelta(minutes=keep_versions_minutes))
    if as_json:
        emit(info)
    elif "skipped" in info:
        typer.echo(f"nothing done: {info['skipped']} (it does the same work)")
    else:
        def mb(key: str) -> float:
            value = info[key]
            return value / (1 << 20) if isinstance(value, (int, float)) else 0.0

        typer.echo(f"{mb('bytes_before'):.1f} MB -> {mb('bytes_after'):.1f} MB in "
                   f"{info['seconds']:.1f}s; {info['log_rows_deleted']} old log rows and the "
                   f"dead rows of {info['dead_videos_swept']} video(s) removed")


@app.command()
@handle_errors
def synth(
    spec: Annotated[Path, typer.Argument(help="Spec JSON file.")],
    out: Annotated[Path, typer.Argument(help="Output .mp4; truth goes to OUT.truth.json.")],
    as_json: Json = False,
) -> None:
    """Render a synthetic video (coloured shapes, hard cuts) with its ground truth."""
    from framedex.synth import render, truth_path

    check_writable(out, "out")
    truth = render(read_json_file(spec, "spec"), out)
    summary = {"video": str(out), "truth": str(truth_path(out)), "duration": truth.duration,
               "scenes": len(truth.scenes)}
    if as_json:
        emit(summary)
    else:
        typer.echo(f"wrote {out} ({truth.duration:.1f}s, {len(truth.scenes)} scenes) "
                   f"and {truth_path(out)}")
