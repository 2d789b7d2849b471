"""A Twelve-Labs-compatible API at ``/v1.3``: the official ``twelvelabs`` SDK as a client.

    from twelvelabs import TwelveLabs
    client = TwelveLabs(api_key=KEY, base_url="http://host:8000/v1.3")

``create_app`` mounts :func:`twelvelabs_app` at ``/v1.3``. It is a FastAPI sub-application so
that its error shape (``{"code", "message", "error": {...}}``, 400 instead of 422) and its
OpenAPI document stay its own, while it shares the parent's state: the same library, job
runner, settings and API key. Its routes call the same :class:`~framedex.library.Library`
methods as ``/v1`` (no second copy of ingest, search or embedding), through the same job
runner; what they add is translation between Twelve Labs' wire format and framedex's.

One router per resource: ``indexes`` (collections of videos), ``assets``,
``indexed_assets``, ``tasks`` (legacy indexing), ``search``, ``embed`` (v2, sync and tasks),
``entities`` (entity collections and their entities, for entity search),
``analyze`` (Pegasus' call, answered by the server's own video LLM through ``Library.ask``),
and ``unsupported`` (what a visual-only, self-hosted server does not offer: a 400 that names
it). docs/twelvelabs.md lists what is supported.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from framedex.api.deps import require_api_key
from framedex.api.twelvelabs.errors import install_tl_error_handlers

PREFIX = "/v1.3"


def twelvelabs_app(parent: FastAPI) -> FastAPI:
    """The ``/v1.3`` application, sharing ``parent``'s state (library, jobs, settings).

    Args:
        parent: the framedex app (its ``state`` is filled by its lifespan).

    Returns:
        the sub-application to mount at :data:`PREFIX`.
    """
    from framedex.api.twelvelabs.routes import (
        analyze,
        assets,
        embed,
        entities,
        indexed_assets,
        indexes,
        search,
        tasks,
        unsupported,
    )

    app = FastAPI(
        title="framedex: Twelve Labs API v1.3",
        version="1.3",
        description="The Twelve Labs Embed, Search and Analyze API on a self-hosted framedex "
                    "(`TwelveLabs(api_key=KEY, base_url=\"http://host:8000/v1.3\")`). Errors "
                    "are `{\"code\", \"message\", \"error\": {\"code\", \"message\"}}`.",
        docs_url=None, redoc_url=None,  # the parent's /docs works offline; this one would not
    )
    app.state = parent.state  # one library, one job runner, one API key
    search.install_pages(app)
    install_tl_error_handlers(app)
    protected = APIRouter(dependencies=[Depends(require_api_key)])
    for module in (indexes, indexed_assets, assets, tasks, search, embed, analyze, entities,
                   unsupported):
        protected.include_router(module.router)
    protected.include_router(indexed_assets.videos_router)  # the legacy indexes.videos view
    protected.include_router(entities.assets_router)  # GET /assets/{id}/entities
    app.include_router(protected)
    return app
