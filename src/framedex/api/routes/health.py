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
                  cache=library.cache_stats(), notes=library.store_notes(),
                  vlm_model=library.vlm.model if library.vlm is not None else None,
                  rollout=library.rollout.text if library.rollout is not None else None)


@router.get("/health", response_model=Health)
async def health(library: LibraryDep) -> Health:
    """Version, encoder (model, device, whether it is the shipped toy model), number of indexed
    videos, cache hit rates, the video LLM's model name (``ask``; null: not configured), the
    rollout, and notes for users of this store. No server path or endpoint URL is shown."""
    return await run_in_threadpool(_health, library)
