"""The web viewer: the library, the moments and the chosen frames, served by ``framedex serve``.

Server-rendered pages (Jinja2 templates, one CSS and one small JavaScript file shipped in this
package; no build step, nothing fetched from the internet). Like the API routes, the pages
talk only to the :class:`~framedex.library.Library` facade.

Pages (read-only, GET): ``/`` (search and library), ``/videos/{id}`` (player, relevance curve,
chosen frames, router decision, cost, request export), ``/videos/{id}/compare``, ``/jobs``,
``/stats``. What they load: ``/viewer/static/*``, ``/viewer/thumb/{id}.jpg``,
``/viewer/source/{id}`` (range requests), ``/viewer/payload/{id}.json``. Sign-in:
``/login``, ``/logout`` (see :mod:`.auth`).
"""

from __future__ import annotations

from fastapi import APIRouter

from framedex.api.viewer import assets, pages, video


def viewer_router() -> APIRouter:
    """Every viewer route (none in the OpenAPI document: they are pages, not the API)."""
    router = APIRouter(include_in_schema=False)
    for sub in (assets.static_router, pages.login_router, pages.router, video.router,
                assets.router):
        router.include_router(sub)
    return router


__all__ = ["viewer_router"]
