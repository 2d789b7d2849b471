"""``GET /health``: always open (no API key), for load balancers and humans."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

import framedex
from framedex.api.deps import LibraryDep
from framedex.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(library: LibraryDep) -> Health:
    """Version, encoder identity, store URI and number of indexed videos."""
    count = await run_in_threadpool(library.store.count_videos)
    return Health(version=framedex.__version__, encoder=library.encoder.identity,
                  store={"uri": library.store.uri, "videos": count})
