"""``/indexes``: named collections of framedex videos (a video can be in several).

Deleting or renaming an index never touches its videos; ``video_count`` and
``total_duration`` count its committed videos.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import LibraryDep
from framedex.api.schemas import body_schema
from framedex.api.twelvelabs.common import Page, PageLimit, paginate, parse_json, rfc3339
from framedex.api.twelvelabs.schemas import IndexCreate, IndexUpdate
from framedex.api.uploads import read_json_body
from framedex.library import CollectionInfo

router = APIRouter(prefix="/indexes", tags=["indexes"])

_CREATE = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(IndexCreate)}}}}
_UPDATE = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(IndexUpdate)}}}}


def index_public(info: CollectionInfo) -> dict[str, Any]:
    """An index as the SDK's ``IndexSchema`` reads it."""
    c = info.collection
    return {"_id": c.index_id, "index_name": c.name, "models": c.models,
            "video_count": info.video_count, "total_duration": round(info.total_duration, 3),
            "created_at": rfc3339(c.created_at), "updated_at": rfc3339(c.updated_at),
            "expires_at": None}


@router.post("", status_code=201, openapi_extra=_CREATE)
async def create_index(request: Request, library: LibraryDep) -> dict[str, Any]:
    """Create an index: ``{"index_name", "models": [{"model_name": "marengo3.0",
    "model_options": ["visual"]}]}``. ``audio`` and Pegasus models are 400 (unsupported)."""
    req = parse_json(IndexCreate, await read_json_body(request))
    req.require_supported()
    models = [m.model_dump() for m in req.models]
    info = await run_in_threadpool(
        lambda: library.create_collection(req.index_name, models=models))
    return {"_id": info.collection.index_id}


@router.get("")
def list_indexes(library: LibraryDep, page: Page = 1, page_limit: PageLimit = 10,
                 sort_by: Annotated[Literal["created_at", "updated_at"], Query()] = "created_at",
                 sort_option: Annotated[Literal["asc", "desc"], Query()] = "desc",
                 index_name: Annotated[str | None, Query(max_length=200)] = None
                 ) -> dict[str, Any]:
    """Indexes, newest first by default; a page past the last has ``"data": []``."""
    infos = library.collections()
    if index_name is not None:
        infos = [i for i in infos if i.collection.name == index_name]
    infos.sort(key=lambda i: getattr(i.collection, sort_by), reverse=sort_option == "desc")
    data, info = paginate(infos, page, page_limit)
    return {"data": [index_public(i) for i in data], "page_info": info}


@router.get("/{index_id}")
def retrieve_index(index_id: str, library: LibraryDep) -> dict[str, Any]:
    """One index."""
    return index_public(library.collection(index_id))


@router.put("/{index_id}", status_code=204, openapi_extra=_UPDATE)
async def update_index(index_id: str, request: Request, library: LibraryDep) -> Response:
    """Rename an index (its videos stay)."""
    req = parse_json(IndexUpdate, await read_json_body(request))
    await run_in_threadpool(library.rename_collection, index_id, req.index_name)
    return Response(status_code=204)


@router.delete("/{index_id}", status_code=204)
def delete_index(index_id: str, library: LibraryDep) -> Response:
    """Delete an index; its videos stay in the library (and in other indexes)."""
    library.delete_collection(index_id)
    return Response(status_code=204)
