"""The ``framedex`` command line: a thin layer over the library.

Every subcommand takes ``--db`` (the store) and ``--json`` (machine-readable output on stdout).
User mistakes and bad input end with one line on stderr and a non-zero exit, never a
traceback; progress goes to stderr so ``--json`` output stays clean.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from framedex.errors import FramedexError

app = typer.Typer(
    name="framedex",
    help="Embed a video library once; then search it and pick frames for a video LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEFAULT_DB = "framedex.db"

Db = Annotated[str, typer.Option("--db", envvar="FRAMEDEX_DB",
                                 help="Store location: a folder (or an s3:// etc. URI).")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Model = Annotated[str | None, typer.Option(
    "--model", help="Encoder spec: ARCH:TAG, ARCH:/path/ckpt, hf-hub:org/name, a model folder, "
                    "or synthetic-shapes. Default: the store's encoder, else "
                    "ViT-B-32:laion2b_s34b_b79k.")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda, mps, cpu), cpu, cuda, mps.")]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn framedex errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FramedexError as ex:
            typer.echo(f"framedex: error: {ex}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("framedex: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def emit(data: Any) -> None:
    """Print JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def console():
    """A rich console on stderr (so stdout stays machine-readable)."""
    from rich.console import Console

    return Console(stderr=True)


def out_console():
    """A rich console on stdout, for human-readable results."""
    from rich.console import Console

    return Console()


def resolve_model(store: Any, model: str | None) -> str:
    """The model spec to use: the one given, else the store's encoder, else the default."""
    from framedex.indexer.encoder import DEFAULT_MODEL

    if model:
        return model
    identity = store.encoder_identity()
    if identity and identity.get("spec"):
        return str(identity["spec"])
    return DEFAULT_MODEL


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                help="Show library log messages.")] = False):
    # Libraries (open_clip, huggingface_hub) log errors on the root logger; the user gets our
    # one-line message instead, unless they ask for the details.
    level = logging.INFO if verbose else logging.CRITICAL
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # pylance sets its own logger to INFO ("Final create_index rust time"): filter at the
    # handler too, so the root level holds for every library.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Video files and folders.")],
    db: Db = DEFAULT_DB,
    model: Model = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second to embed.")] = 1.0,
    decoder: Annotated[str, typer.Option("--decoder", help="auto, pyav or decord.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    device: Device = "auto",
    metadata: Annotated[str | None, typer.Option(
        "--metadata", help='User metadata as a JSON object, e.g. \'{"source": "cam1"}\'.')] = None,
    as_json: Json = False,
) -> None:
    """Index videos (files and folders) into the store. Bad files are reported and skipped."""
    from framedex.indexer.decode import resolve_decoder
    from framedex.indexer.encoder import load_encoder
    from framedex.indexer.pipeline import Indexer, IndexOptions, parse_metadata
    from framedex.store import Store

    options = IndexOptions(index_fps=fps, decoder=decoder, batch_size=batch_size)
    resolve_decoder(decoder)
    meta = parse_metadata(metadata)
    store = Store(db)
    encoder = load_encoder(resolve_model(store, model), device=device)
    indexer = Indexer(store, encoder, options)
    report = _run_with_progress(indexer, paths, meta, show=not as_json)
    if as_json:
        emit(report.to_json())
    else:
        _print_report(report)
    if not report.by_status("indexed") and not report.by_status("unchanged"):
        if not report.outcomes:
            typer.echo("framedex: error: no video files found in the given paths", err=True)
        raise typer.Exit(1)


def _run_with_progress(indexer: Any, paths: list[Path], meta: dict[str, Any], show: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not (show and sys.stderr.isatty()):
        return indexer.index_paths(paths, metadata=meta)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(Path(path).name[:40], total=total)
            bar.update(tasks[path], completed=min(done, total))

        return indexer.index_paths(paths, metadata=meta, progress=progress)


def _print_report(report: Any) -> None:
    con = out_console()
    for o in report.by_status("indexed"):
        con.print(f"indexed    {o.video_id}  {o.num_indexed:6d} frames  {o.duration:8.1f}s  "
                  f"{o.path}", highlight=False, soft_wrap=True)
    for o in report.by_status("unchanged"):
        con.print(f"unchanged  {o.video_id}  {o.num_indexed:6d} frames  {o.duration:8.1f}s  "
                  f"{o.path}", highlight=False, soft_wrap=True)
    for o in report.by_status("failed"):
        con.print(f"failed     {o.path}: {o.error}", highlight=False, soft_wrap=True)
    counts = {s: len(report.by_status(s)) for s in ("indexed", "unchanged", "failed")}
    con.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)


@app.command()
@handle_errors
def videos(db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """List the indexed videos."""
    from framedex.store import Store

    records = Store(db).list_videos() if _store_exists(db) else []
    if as_json:
        emit([r.summary() for r in records])
        return
    if not records:
        typer.echo(f"no indexed video in {db}")
        return
    from rich.table import Table

    table = Table("video_id", "duration", "fps", "frames", "indexed", "path", box=None)
    for r in records:
        table.add_row(r.video_id, f"{r.duration:.1f}s", f"{r.frame_rate:.3g}",
                      str(r.num_frames), f"{r.num_indexed} @ {r.index_fps:g} fps", r.path)
    out_console().print(table)


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
    as_json: Json = False,
) -> None:
    """Build the ANN index library search uses (IVF_HNSW_SQ on the 6-s segments by default)."""
    from framedex.store import Store

    info = Store(db).build_index(table=table, index_type=index_type, num_partitions=partitions,
                                 num_sub_vectors=sub_vectors)
    if as_json:
        emit(info)
    else:
        extra = f", {info['num_sub_vectors']} sub-vectors" if "num_sub_vectors" in info else ""
        parts = info["num_partitions"]
        typer.echo(f"built {info['index_type']} on {info['table']} over {info['rows']} rows "
                   f"({parts} IVF partition{'' if parts == 1 else 's'}{extra}) "
                   f"in {info['seconds']} s")


@app.command()
@handle_errors
def synth(
    spec: Annotated[Path, typer.Argument(help="Spec JSON file.")],
    out: Annotated[Path, typer.Argument(help="Output .mp4; truth goes to OUT.truth.json.")],
    as_json: Json = False,
) -> None:
    """Render a synthetic video (coloured shapes, hard cuts) with its ground truth."""
    from framedex.errors import ConfigError
    from framedex.synth import render, truth_path

    try:
        spec_data = json.loads(spec.read_text())
    except FileNotFoundError:
        raise ConfigError(f"spec={str(spec)!r} is invalid: no such file") from None
    except json.JSONDecodeError as ex:
        raise ConfigError(f"spec={str(spec)!r} is invalid: not JSON ({ex})") from None
    truth = render(spec_data, out)
    summary = {"video": str(out), "truth": str(truth_path(out)), "duration": truth.duration,
               "scenes": len(truth.scenes)}
    if as_json:
        emit(summary)
    else:
        typer.echo(f"wrote {out} ({truth.duration:.1f}s, {len(truth.scenes)} scenes) "
                   f"and {truth_path(out)}")


def _store_exists(db: str) -> bool:
    return "://" in db or Path(db).expanduser().is_dir()


# search, select, stats, sql, serve, eval and export-selections live in cli_commands (kept
# apart for module size); importing it registers them on ``app``.
from framedex import cli_commands as _cli_commands  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    # Under ``python -m framedex.cli`` this file runs as ``__main__``; the commands in
    # cli_commands register on the imported ``framedex.cli`` module, so run that one.
    from framedex.cli import main as _main

    _main()
