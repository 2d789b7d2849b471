"""The ``framedex`` command line: a thin layer over :class:`framedex.library.Library`.

Every subcommand takes ``--db`` (the store) and ``--json`` (machine-readable output on stdout).
User mistakes and bad input end with one line on stderr and a non-zero exit, never a
traceback; progress goes to stderr so ``--json`` output stays clean. Commands live in
``index.py`` (index, videos, build-index, optimize, synth), ``query.py`` (search, select,
samplers, stats, sql), ``ask.py`` (ask, feedback), ``serve.py`` (serve, serve-vlm) and
``eval.py`` (eval, export-selections); importing them registers them on :data:`app`.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from framedex.cli import ask as _ask  # noqa: F401  (registers the commands)
from framedex.cli import eval as _eval  # noqa: F401
from framedex.cli import index as _index  # noqa: F401
from framedex.cli import query as _query  # noqa: F401
from framedex.cli import serve as _serve  # noqa: F401
from framedex.cli._common import VERBOSE, configure_logging
from framedex.cli._common import app as app


def _version(value: bool) -> None:
    if value:
        import framedex

        typer.echo(f"framedex {framedex.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show library logs and tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    VERBOSE.set(verbose)
    # Lance's Rust logger prints warnings (e.g. one "KMeans: more than 10% of clusters are
    # empty" per partition, 324 lines for one build-index) straight to stderr.
    os.environ.setdefault("LANCE_LOG", "info" if verbose else "error")
    configure_logging(verbose)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


__all__ = ["app", "main"]
