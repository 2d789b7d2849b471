"""``GET /health``: always open (no API key), for load balancers and humans."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

import framedex
from framedex.api.deps import LibraryDep
from framedex.api.schemas import Health, StoreInfo
from framedex.library import Library

router = APIRouter(tags=["health"])


def _health(library: Library) -> Health:
    encoder = library.encoder_info()
    return Health(version=framedex.__version__, encoder=encoder,
                  store=StoreInfo(name=library.uri.rstrip("/").rsplit("/", 1)[-1],
                                  videos=library.count_videos()),
                  cache=library.cache_stats(), notes=library.store_notes())


@router.get("/health", response_model=Health)
async def health(library: LibraryDep) -> Health:
    """Version, encoder (model, device, whether it is the shipped toy model), number of indexed
    videos, cache hit rates, and notes for users of this store. No server path is shown."""
    return await run_in_threadpool(_health, library)
