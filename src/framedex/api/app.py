"""The app factory: ``create_app(settings)`` -> FastAPI.

Heavy resources (the library, its encoder, the job workers) are created in the ``lifespan``
and put on ``app.state``; routes reach them through :mod:`framedex.api.deps`. Nothing is a
module global, so a test can build an app around its own library.

Example::

    app = create_app(Settings(db="framedex.db", model="synthetic-shapes"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

import framedex
from framedex.api.deps import require_api_key
from framedex.api.errors import install_error_handlers
from framedex.api.jobs import JobManager
from framedex.api.routes import embed, health, jobs, search, select, videos
from framedex.api.settings import Settings

log = logging.getLogger("framedex.api")


def _open_library(settings: Settings) -> Any:
    from framedex.library import Library

    return Library(db=settings.db, model=settings.model, device=settings.device,
                   log_queries=settings.log_queries)


def create_app(settings: Settings, *, library: Any = None) -> FastAPI:
    """Build the HTTP app.

    Args:
        settings: server settings (built by the CLI or a test).
        library: an existing :class:`~framedex.library.Library` to serve; None opens one
            from ``settings`` when the app starts.

    Returns:
        the FastAPI app (OpenAPI docs at ``/docs``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lib = library if library is not None else await run_in_threadpool(_open_library,
                                                                          settings)
        # Load the encoders once, before the first request (not on the first query).
        await run_in_threadpool(lambda: (lib.encoder, lib.text_encoder))
        manager = JobManager(lib, workers=settings.workers,
                             upload_dir=settings.resolved_upload_dir())
        await run_in_threadpool(manager.start)
        app.state.settings, app.state.library, app.state.jobs = settings, lib, manager
        log.info("framedex API serving %s", lib.store.uri)
        try:
            yield
        finally:
            manager.stop()

    app = FastAPI(
        title="framedex",
        version=framedex.__version__,
        description="Search an indexed video library and pick the frames a video LLM should "
                    "see. Errors are always `{\"error\": {\"code\", \"message\", \"detail\"?}}`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    protected = APIRouter(dependencies=[Depends(require_api_key)])
    for module in (videos, jobs, search, select, embed):
        protected.include_router(module.router)
    app.include_router(protected)
    return app
