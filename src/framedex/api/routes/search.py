"""``POST /v1/search``: find moments (or videos) matching a text across the library."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from framedex.api.deps import LibraryDep, PathsDep
from framedex.api.paths import PathView
from framedex.api.schemas import ErrorResponse, SearchRequest, SearchResponse
from framedex.library import SearchFilters

router = APIRouter(prefix="/v1/search", tags=["search"])


def public_hit(hit: dict[str, Any], paths: PathView) -> dict[str, Any]:
    """A search hit with its path (and its moments' paths) in public form."""
    out = {**hit, "path": paths.public(hit["path"])}
    if "moments" in out:
        out["moments"] = [{**m, "path": paths.public(m["path"])} for m in out["moments"]]
    return out


@router.post("", response_model=SearchResponse,
             responses={c: {"model": ErrorResponse} for c in (404, 409, 422)})
def search(req: SearchRequest, library: LibraryDep, paths: PathsDep) -> SearchResponse:
    """Best-matching moments (``group_by=moment``) or videos (``group_by=video``)."""
    filters = SearchFilters(**req.filters.model_dump()) if req.filters else None
    hits = library.search(req.text, limit=req.limit, group_by=req.group_by, filters=filters)
    return SearchResponse(query=req.text, group_by=req.group_by,
                          results=[public_hit(h.to_json(), paths) for h in hits],
                          notes=library.query_notes(req.text))
