"""``/entity-collections``: entity collections and their entities (Twelve Labs' entity search).

An entity is built from images uploaded as assets (``POST /assets``): each reference image is
decoded and embedded when it is added, so an entity is ``ready`` as soon as it is created.
A search then finds it with ``<@ENTITY_ID>`` in ``query_text`` (``routes/search.py``).
Deleting an entity or a collection never touches the assets. ``GET /assets/{id}/entities``
lists the entities that use an asset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import LibraryDep
from framedex.api.schemas import body_schema
from framedex.api.twelvelabs.common import Page, PageLimit, paginate, parse_json, rfc3339
from framedex.api.twelvelabs.schemas import (
    EntityAssets,
    EntityBulkCreate,
    EntityCollectionCreate,
    EntityCollectionUpdate,
    EntityCreate,
    EntityUpdate,
)
from framedex.api.uploads import read_json_body
from framedex.errors import FramedexError
from framedex.library import EntityCollectionRecord, EntityRecord

router = APIRouter(prefix="/entity-collections", tags=["entities"])
assets_router = APIRouter(prefix="/assets", tags=["entities"])

T = TypeVar("T", EntityCollectionRecord, EntityRecord)
SortBy = Annotated[Literal["created_at", "updated_at", "name"], Query()]
SortOption = Annotated[Literal["asc", "desc"], Query()]
NameFilter = Annotated[str | None, Query(max_length=200)]


def _body(model: type[Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": body_schema(model)}}}}


def collection_public(record: EntityCollectionRecord) -> dict[str, Any]:
    """An entity collection as the SDK's ``EntityCollection`` reads it."""
    return {"_id": record.entity_collection_id, "name": record.name,
            "description": record.description, "created_at": rfc3339(record.created_at),
            "updated_at": rfc3339(record.updated_at)}


def entity_public(record: EntityRecord) -> dict[str, Any]:
    """An entity as the SDK's ``Entity`` reads it (``ready`` at once: its images were
    embedded when they were added)."""
    return {"_id": record.entity_id, "entity_collection_id": record.entity_collection_id,
            "name": record.name, "description": record.description,
            "metadata": record.metadata or None, "asset_ids": list(record.asset_ids),
            "status": "ready", "created_at": rfc3339(record.created_at),
            "updated_at": rfc3339(record.updated_at)}


def _page(records: Sequence[T], public: Callable[[T], dict[str, Any]], page: int,
          page_limit: int, name: str | None, sort_by: str, sort_option: str) -> dict[str, Any]:
    """One page of records, filtered by name and sorted as the SDK asks."""
    found = [r for r in records if name is None or r.name == name]
    found.sort(key=lambda r: getattr(r, sort_by), reverse=sort_option == "desc")
    data, info = paginate(found, page, page_limit)
    return {"data": [public(r) for r in data], "page_info": info}


# -- entity collections -------------------------------------------------------------------------


@router.post("", status_code=201, openapi_extra=_body(EntityCollectionCreate))
async def create_collection(request: Request, library: LibraryDep) -> dict[str, Any]:
    """Create an entity collection: ``{"name", "description"?}``."""
    req = parse_json(EntityCollectionCreate, await read_json_body(request))
    record = await run_in_threadpool(lambda: library.create_entity_collection(
        req.name, description=req.description))
    return collection_public(record)


@router.get("")
def list_collections(library: LibraryDep, page: Page = 1, page_limit: PageLimit = 10,
                     name: NameFilter = None, sort_by: SortBy = "created_at",
                     sort_option: SortOption = "desc") -> dict[str, Any]:
    """Entity collections, newest first by default; a page past the last has ``"data": []``."""
    return _page(library.entity_collections(), collection_public, page, page_limit, name,
                 sort_by, sort_option)


@router.get("/{entity_collection_id}")
def retrieve_collection(entity_collection_id: str, library: LibraryDep) -> dict[str, Any]:
    """One entity collection."""
    return collection_public(library.entity_collection(entity_collection_id))


@router.patch("/{entity_collection_id}", openapi_extra=_body(EntityCollectionUpdate))
async def update_collection(entity_collection_id: str, request: Request,
                            library: LibraryDep) -> dict[str, Any]:
    """Rename an entity collection or change its description."""
    req = parse_json(EntityCollectionUpdate, await read_json_body(request))
    record = await run_in_threadpool(lambda: library.update_entity_collection(
        entity_collection_id, name=req.name, description=req.description))
    return collection_public(record)


@router.delete("/{entity_collection_id}", status_code=204)
def delete_collection(entity_collection_id: str, library: LibraryDep) -> Response:
    """Delete an entity collection and its entities (their assets stay)."""
    library.delete_entity_collection(entity_collection_id)
    return Response(status_code=204)


# -- entities -----------------------------------------------------------------------------------


@router.post("/{entity_collection_id}/entities", status_code=201,
             openapi_extra=_body(EntityCreate))
async def create_entity(entity_collection_id: str, request: Request,
                        library: LibraryDep) -> dict[str, Any]:
    """Create an entity from reference images uploaded as assets: ``{"name", "asset_ids",
    "description"?, "metadata"?}``."""
    req = parse_json(EntityCreate, await read_json_body(request))
    record = await run_in_threadpool(lambda: library.create_entity(
        entity_collection_id, req.name, req.asset_ids, description=req.description,
        metadata=req.metadata))
    return entity_public(record)


@router.post("/{entity_collection_id}/entities/bulk", status_code=201,
             openapi_extra=_body(EntityBulkCreate))
async def create_entities(entity_collection_id: str, request: Request,
                          library: LibraryDep) -> dict[str, Any]:
    """Create several entities; each that fails (a missing asset, an unusable image) is
    reported in ``errors`` with its index, the others are created."""
    req = parse_json(EntityBulkCreate, await read_json_body(request))
    library.entity_collection(entity_collection_id)  # an unknown collection fails them all

    def run() -> dict[str, Any]:
        made: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for i, item in enumerate(req.entities):
            try:
                record = library.create_entity(entity_collection_id, item.name, item.asset_ids,
                                               description=item.description,
                                               metadata=item.metadata)
            except FramedexError as ex:
                errors.append({"entity_index": i, "entity_name": item.name,
                               "error_reason": str(ex)})
                continue
            made.append({"_id": record.entity_id, "name": record.name, "status": "ready"})
        return {"success_count": len(made), "failed_count": len(errors), "entities": made,
                "errors": errors}

    return await run_in_threadpool(run)


@router.get("/{entity_collection_id}/entities")
def list_entities(entity_collection_id: str, library: LibraryDep, page: Page = 1,
                  page_limit: PageLimit = 10, name: NameFilter = None,
                  status: Annotated[Literal["processing", "ready"] | None, Query()] = None,
                  sort_by: SortBy = "created_at",
                  sort_option: SortOption = "desc") -> dict[str, Any]:
    """A collection's entities, newest first by default (every entity is ``ready``)."""
    records = library.entities(entity_collection_id) if status != "processing" else []
    return _page(records, entity_public, page, page_limit, name, sort_by, sort_option)


@router.get("/{entity_collection_id}/entities/{entity_id}")
def retrieve_entity(entity_collection_id: str, entity_id: str,
                    library: LibraryDep) -> dict[str, Any]:
    """One entity."""
    return entity_public(library.entity(entity_collection_id, entity_id))


@router.patch("/{entity_collection_id}/entities/{entity_id}", openapi_extra=_body(EntityUpdate))
async def update_entity(entity_collection_id: str, entity_id: str, request: Request,
                        library: LibraryDep) -> dict[str, Any]:
    """Change an entity's name, description or metadata (its reference images stay)."""
    req = parse_json(EntityUpdate, await read_json_body(request))
    record = await run_in_threadpool(lambda: library.update_entity(
        entity_collection_id, entity_id, name=req.name, description=req.description,
        metadata=req.metadata))
    return entity_public(record)


@router.delete("/{entity_collection_id}/entities/{entity_id}", status_code=204)
def delete_entity(entity_collection_id: str, entity_id: str, library: LibraryDep) -> Response:
    """Delete an entity (its assets stay)."""
    library.delete_entity(entity_collection_id, entity_id)
    return Response(status_code=204)


@router.post("/{entity_collection_id}/entities/{entity_id}/assets",
             openapi_extra=_body(EntityAssets))
async def add_assets(entity_collection_id: str, entity_id: str, request: Request,
                     library: LibraryDep) -> dict[str, Any]:
    """Add reference images (assets) to an entity."""
    req = parse_json(EntityAssets, await read_json_body(request))
    record = await run_in_threadpool(library.add_entity_assets, entity_collection_id,
                                     entity_id, req.asset_ids)
    return entity_public(record)


@router.delete("/{entity_collection_id}/entities/{entity_id}/assets",
               openapi_extra=_body(EntityAssets))
async def remove_assets(entity_collection_id: str, entity_id: str, request: Request,
                        library: LibraryDep) -> dict[str, Any]:
    """Take reference images out of an entity (the assets stay; at least one remains)."""
    req = parse_json(EntityAssets, await read_json_body(request))
    record = await run_in_threadpool(library.remove_entity_assets, entity_collection_id,
                                     entity_id, req.asset_ids)
    return entity_public(record)


@assets_router.get("/{asset_id}/entities")
def list_asset_entities(asset_id: str, library: LibraryDep, page: Page = 1,
                        page_limit: PageLimit = 10) -> dict[str, Any]:
    """The entities, in every collection, whose reference images include this asset."""
    return _page(library.entities_with_asset(asset_id), entity_public, page, page_limit, None,
                 "created_at", "desc")
