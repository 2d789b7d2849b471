"""``POST /v1/search``: find moments (or videos) matching a text across the library."""

from __future__ import annotations

from fastapi import APIRouter

from framedex.api.deps import LibraryDep
from framedex.api.schemas import ErrorResponse, SearchRequest, SearchResponse

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post("", response_model=SearchResponse,
             responses={409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
def search(req: SearchRequest, library: LibraryDep) -> SearchResponse:
    """Best-matching moments (``group_by=moment``) or videos (``group_by=video``)."""
    from framedex.query.search import SearchFilters

    filters = SearchFilters(**req.filters.model_dump()) if req.filters else None
    hits = library.search(req.text, limit=req.limit, group_by=req.group_by, filters=filters)
    return SearchResponse(query=req.text, group_by=req.group_by,
                          results=[h.to_json() for h in hits])
