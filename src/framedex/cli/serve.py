"""``framedex serve``: the HTTP API (and the web viewer) on one store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from framedex.cli._common import DEFAULT_DB, Db, Device, Model, app, handle_errors, note


@app.command()
@handle_errors
def serve(
    db: Db = DEFAULT_DB,
    model: Model = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="FRAMEDEX_API_KEY",
        help="Require 'Authorization: Bearer KEY' or 'x-api-key: KEY' (not on /health); at "
             "least 8 characters, e.g. $(openssl rand -hex 16).")] = None,
    allow_root: Annotated[list[Path] | None, typer.Option(
        "--allow-root", help="Folder whose files may be ingested by server-side path "
                             "(repeatable). None: uploads only.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb")] = 2048.0,
    workers: Annotated[int, typer.Option("--workers", help="Ingest jobs run at once.")] = 1,
    upload_dir: Annotated[Path | None, typer.Option(
        "--upload-dir", help="Where uploads are kept (default: DB.uploads).")] = None,
    allow_url: Annotated[list[str] | None, typer.Option(
        "--allow-url", help="URL prefix the server may download media from (repeatable; "
                            "Twelve Labs method=url assets). None: URLs are refused.")] = None,
    sampler: Annotated[str | None, typer.Option(
        "--sampler", envvar="FRAMEDEX_SAMPLER",
        help="Default sampler of select requests that name none.")] = None,
    device: Device = "auto",
) -> None:
    """Serve the HTTP API (ingest jobs, search, select, frames, embeddings) and the web viewer
    (at /); API docs at /docs."""
    import logging

    import uvicorn

    from framedex.api.app import create_app, open_library
    from framedex.api.settings import Settings

    settings = Settings.from_cli(
        db=db, model=model, device=device, host=host, port=port, api_key=api_key or None,
        allow_roots=tuple(str(r) for r in allow_root or ()), max_upload_mb=max_upload_mb,
        workers=workers, upload_dir=str(upload_dir) if upload_dir else None,
        default_sampler=sampler, allow_urls=tuple(allow_url or ()))
    library = open_library(settings)  # a bad --db or upload folder fails here, in one line
    app_ = create_app(settings, library=library)
    logging.getLogger("framedex").setLevel(logging.WARNING)  # job recovery, server errors
    note(f"serving {db} on http://{host}:{port} (viewer at /, docs at /docs, the Twelve Labs "
         "API at /v1.3)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
