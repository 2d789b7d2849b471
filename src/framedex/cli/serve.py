"""``framedex serve``: the HTTP API (and the web viewer) on one store."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from framedex.api.settings import DEFAULT_ASSET_RETENTION_DAYS
from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Model,
    VlmKeyEnv,
    VlmModel,
    VlmRetries,
    VlmTimeout,
    VlmUrl,
    app,
    handle_errors,
    note,
    vlm_endpoint,
)
from framedex.errors import ConfigError, StoreNotFoundError


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
    staleness: Annotated[float | None, typer.Option(
        "--staleness", help="Seconds a replica's view of the store may lag behind other "
                            "writers (default: 0 on a local disk, 1 on object storage).",
        show_default=False)] = None,
    job_retention_days: Annotated[float, typer.Option(
        "--job-retention-days", help="Delete finished ingest jobs after this many days.")
        ] = 30.0,
    rollout: Annotated[str | None, typer.Option(
        "--rollout", envvar="FRAMEDEX_ROLLOUT",
        help="Split requests that name no sampler between samplers by a request key: "
             "aks=0.9,bolt=0.1.")] = None,
    vlm_url: VlmUrl = None,
    vlm_model: VlmModel = None,
    vlm_api_key_env: VlmKeyEnv = None,
    vlm_timeout: VlmTimeout = None,
    vlm_retries: VlmRetries = None,
    asset_retention_days: Annotated[float, typer.Option(
        "--asset-retention-days",
        help="Delete Twelve Labs assets (/v1.3/assets) older than this; a video indexed from "
             "one keeps its source file. 0: keep them for good.")
    ] = DEFAULT_ASSET_RETENTION_DAYS,
    device: Device = "auto",
    create: Annotated[bool, typer.Option(
        "--create", help="Start on a new, empty store when there is none at --db (ingests "
                         "fill it). Without it, a --db with no store is refused.")] = False,
) -> None:
    """Serve the HTTP API (ingest jobs, search, select, ask, frames, embeddings) and the web
    viewer (at /); API docs at /docs. With --vlm-url and --vlm-model, /v1/videos/{id}/ask and
    the Twelve Labs /v1.3/analyze ask that video LLM."""
    import logging

    import uvicorn

    from framedex.api.app import create_app, open_library
    from framedex.api.settings import Settings
    from framedex.library import lease_ttl_from_env

    settings = Settings.from_cli(
        db=db, model=model, device=device, host=host, port=port, api_key=api_key or None,
        allow_roots=tuple(str(r) for r in allow_root or ()), max_upload_mb=max_upload_mb,
        workers=workers, upload_dir=str(upload_dir) if upload_dir else None,
        default_sampler=sampler, allow_urls=tuple(allow_url or ()), staleness_s=staleness,
        job_retention_days=job_retention_days, lease_ttl_s=lease_ttl_from_env(),
        rollout=rollout, vlm_url=vlm_url, vlm_model=vlm_model, vlm_api_key_env=vlm_api_key_env,
        vlm_timeout_s=vlm_timeout, vlm_retries=vlm_retries,
        asset_retention_days=asset_retention_days)
    vlm_endpoint(vlm_url, vlm_model, vlm_api_key_env, vlm_timeout, vlm_retries,
                 required=False)  # a bad --vlm-* option fails here, in one line
    # A bad --db, upload folder or model, or a port in use, fails here in one line, before
    # anything is served.
    listening = bind(host, port)
    try:  # before the model loads: a mistyped --db is not an empty library
        library = open_library(settings, load_model=True, must_exist=not create)
    except StoreNotFoundError as ex:
        raise StoreNotFoundError(f"{ex}; or pass --create to serve a new, empty store") \
            from None
    app_ = create_app(settings, library=library)
    logging.getLogger("framedex").setLevel(logging.WARNING)  # job recovery, server errors
    note(f"serving {db} on http://{host}:{port} (viewer at /, docs at /docs, the Twelve Labs "
         "API at /v1.3)")
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning"))
    server.run(sockets=[listening])


@app.command("serve-vlm")
@handle_errors
def serve_vlm(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8001,
    model: Annotated[str, typer.Option(
        "--model", help="The open_clip model it sees with.")] = "synthetic-shapes",
    device: Device = "cpu",
) -> None:
    """Serve the small video LLM of the synthetic world: an OpenAI-compatible chat endpoint
    (POST /v1/chat/completions, model framedex-shapes-vlm) that answers questions about
    coloured shapes only from the images it is sent (the shipped model, zero-shot per frame).
    For trying `framedex ask` and `eval --qa` offline; it knows nothing else."""
    import logging

    import uvicorn

    from framedex.eval.answerer import (
        ANSWERER_MODEL,
        Answerer,
        ShapesReader,
        create_answerer_app,
    )

    listening = bind(host, port)
    app_ = create_answerer_app(Answerer(ShapesReader(model, device)))
    logging.getLogger("framedex").setLevel(logging.WARNING)
    note(f"serving the video LLM {ANSWERER_MODEL} on http://{host}:{port}/v1 (framedex ask "
         f"VIDEO QUESTION --vlm-url http://{host}:{port}/v1 --vlm-model {ANSWERER_MODEL})")
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
