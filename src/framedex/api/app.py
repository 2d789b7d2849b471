"""The app factory: ``create_app(settings)`` -> FastAPI.

Heavy resources (the library, its encoder, the job workers, the upkeep timer) are created in
the ``lifespan`` and put on ``app.state``; routes reach them through :mod:`framedex.api.deps`.
Nothing is a module global, so a test can build an app around its own library. The store and
the upload folder are checked when the app is built, so ``framedex serve`` with a bad ``--db``
fails in one line before it listens.

Example::

    app = create_app(Settings(db="framedex.db", model="synthetic-shapes"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

import framedex
from framedex.api.deps import require_api_key
from framedex.api.errors import install_error_handlers
from framedex.api.jobs import JobManager
from framedex.api.paths import PathView
from framedex.api.routes import ask, embed, health, jobs, search, select, videos
from framedex.api.settings import Settings
from framedex.api.upkeep import Upkeep
from framedex.library import Library, VLMEndpoint

log = logging.getLogger("framedex.api")


def open_library(settings: Settings, *, load_model: bool = False,
                 must_exist: bool = False) -> Library:
    """The library the settings describe, with its store location and upload folder checked
    (``framedex serve`` calls this before it listens, so a bad ``--db`` or a model that cannot
    load is one line, and leaves no upload folder behind).

    Args:
        must_exist: refuse a location with no store (``framedex serve`` without
            ``--create``: a mistyped ``--db`` must not start a server on an empty library).
        load_model: load the query encoder now (:func:`load_encoders`).

    Raises:
        ConfigError / StoreError: a bad store location or upload folder.
        StoreNotFoundError: ``must_exist`` and there is no store at ``settings.db``.
        ModelLoadError: ``load_model`` and the model cannot be loaded.
    """
    vlm = None
    if settings.vlm_url is not None and settings.vlm_model is not None:
        vlm = VLMEndpoint.create(settings.vlm_url, settings.vlm_model,
                                 api_key_env=settings.vlm_api_key_env,
                                 timeout_s=settings.vlm_timeout_s, retries=settings.vlm_retries)
    library = Library(settings.db, model=settings.model, device=settings.device,
                      default_sampler=settings.default_sampler,
                      log_queries=settings.log_queries, cache_bytes=settings.cache_bytes,
                      consistency_s=settings.staleness_s, lease_ttl=settings.lease_ttl_s,
                      rollout=settings.rollout, vlm=vlm, must_exist=must_exist)
    if load_model:
        load_encoders(library)
    settings.resolved_upload_dir_for(library.uri)
    return library


def load_encoders(library: Library) -> None:
    """Load the query encoder before the first request (not on the first query), and check
    it against the store.

    Only the text tower: for the shipped model and local ``.safetensors`` models that is the
    numpy one, so a server that answers searches and selects never imports torch (its idle
    RSS went from ~1.1 GB to ~0.25 GB). The full encoder (torch, ~1 GB) loads on the first
    request that needs it: an image query, ``/embed`` of an image, an ingest job.
    """
    library.encoder_info()


def create_app(settings: Settings, *, library: Library | None = None) -> FastAPI:
    """Build the HTTP app.

    Nothing is opened or created until the app starts (its lifespan), so building an app just
    for its OpenAPI document touches no disk.

    Args:
        settings: server settings (built by the CLI or a test).
        library: an existing :class:`~framedex.library.Library` to serve (see
            :func:`open_library`); None opens one from ``settings`` when the app starts.

    Returns:
        the FastAPI app (OpenAPI docs at ``/docs``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lib = library if library is not None else await run_in_threadpool(open_library,
                                                                          settings)
        uploads = settings.resolved_upload_dir_for(lib.uri)
        await run_in_threadpool(load_encoders, lib)  # already loaded by `framedex serve`
        paths = PathView(settings.resolved_roots, uploads)
        manager = JobManager(lib, workers=settings.workers, upload_dir=uploads,
                             roots=settings.resolved_roots, public_path=paths.public)
        await run_in_threadpool(manager.start)
        upkeep = Upkeep(lib, manager, settings.media_dir_for(lib.uri, create=False),
                        settings.optimize_every_s, settings.asset_retention,
                        timedelta(days=settings.job_retention_days))
        upkeep.start()
        app.state.library, app.state.jobs, app.state.paths = lib, manager, paths
        app.state.upkeep = upkeep
        log.info("framedex API serving %s", lib.uri)
        try:
            yield
        finally:
            manager.stop()
            upkeep.stop()
            lib.close()

    app = FastAPI(
        title="framedex",
        version=framedex.__version__,
        description="Search an indexed video library and pick the frames a video LLM should "
                    "see. Errors are always `{\"error\": {\"code\", \"message\", \"detail\"?}}`.",
        lifespan=lifespan,
        docs_url=None,  # served from the package by routes/docs.py (works offline)
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    protected = APIRouter(dependencies=[Depends(require_api_key)])
    for module in (videos, jobs, search, select, ask, embed):
        protected.include_router(module.router)
    app.include_router(protected)
    from framedex.api.routes import docs

    app.include_router(docs.router)
    from framedex.api.twelvelabs import PREFIX, twelvelabs_app

    app.mount(PREFIX, twelvelabs_app(app))  # the Twelve Labs SDK's API, same library and key
    from framedex.api.viewer import viewer_router
    from framedex.api.viewer.auth import ViewerSessions

    app.state.viewer_sessions = ViewerSessions()  # signed-in browsers, shared by every thread
    app.include_router(viewer_router())  # the web viewer's pages (its own sign-in)
    return app
