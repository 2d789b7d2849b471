"""``framedex serve``: the HTTP API (and the web viewer) on one store."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from framedex.api.settings import DEFAULT_ASSET_RETENTION_DAYS
from framedex.cli._common import DEFAULT_DB, Db, Device, Model, app, handle_errors, note
from framedex.errors import ConfigError


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
    asset_retention_days: Annotated[float, typer.Option(
        "--asset-retention-days",
        help="Delete Twelve Labs assets (/v1.3/assets) older than this; a video indexed from "
             "one keeps its source file. 0: keep them for good.")
    ] = DEFAULT_ASSET_RETENTION_DAYS,
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
        default_sampler=sampler, allow_urls=tuple(allow_url or ()),
        asset_retention_days=asset_retention_days)
    # A bad --db, upload folder or model, or a port in use, fails here in one line, before
    # anything is served.
    listening = bind(host, port)
    library = open_library(settings, load_model=True)
    app_ = create_app(settings, library=library)
    logging.getLogger("framedex").setLevel(logging.WARNING)  # job recovery, server errors
    note(f"serving {db} on http://{host}:{port} (viewer at /, docs at /docs, the Twelve Labs "
         "API at /v1.3)")
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning"))
    server.run(sockets=[listening])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (handed to uvicorn, so nothing can take the port in
    between).

    Raises:
        ConfigError: the address is in use or cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as ex:
        raise ConfigError(f"host={host!r} is invalid: {ex.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as ex:
        sock.close()
        if ex.errno == errno.EADDRINUSE:
            raise ConfigError(f"port={port} is invalid: {host}:{port} is already in use; "
                              "stop what is serving there, or pick another --port") from None
        raise ConfigError(f"host={host!r} is invalid: cannot listen on {host}:{port} "
                          f"({ex.strerror})") from None
    sock.set_inheritable(True)
    return sock
