"""``/assets``: files kept on the server until an index (or an embedding task) uses them.

``method=direct`` streams the ``file`` part to disk through the size-limited upload parser;
``method=url`` downloads an URL under one of the server's ``--allow-url`` prefixes (else 400);
``method=multipart`` (presigned multipart uploads) is 400 unsupported.

``DELETE /assets/{id}`` answers 409 while a video was indexed from the asset or a job reads
it, as Twelve Labs does for an asset indexed assets reference; ``force=true`` deletes it
anyway, and the video keeps its source file (removed by the media sweep once nothing uses it,
``api/upkeep.py``). Assets older than ``--asset-retention-days`` are deleted by the upkeep
timer. The list is paged by the store (newest first), not read whole.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import JobsDep, LibraryDep, SettingsDep
from framedex.api.jobs import new_job_id
from framedex.api.twelvelabs.common import (
    Page,
    PageLimit,
    media_dir,
    page_info,
    parse_form,
    rfc3339,
)
from framedex.api.twelvelabs.media import fetch_url
from framedex.api.twelvelabs.schemas import AssetForm
from framedex.api.uploads import json_object, receive_upload
from framedex.errors import ConfigError
from framedex.library import AssetRecord

router = APIRouter(prefix="/assets", tags=["assets"])

_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["method"], "properties": {
        "method": {"type": "string", "enum": ["direct", "url"]},
        "file": {"type": "string", "format": "binary"},
        "url": {"type": "string"},
        "filename": {"type": "string"},
        "user_metadata": {"type": "string", "description": "A JSON object."},
    }}}}}}


def asset_public(record: AssetRecord) -> dict[str, Any]:
    """An asset as the SDK's ``Asset``/``AssetDetail`` reads it."""
    return {"_id": record.asset_id, "method": record.method, "status": "ready",
            "filename": record.filename,
            "file_type": mimetypes.guess_type(record.filename)[0] or "application/octet-stream",
            "created_at": rfc3339(record.created_at), "user_metadata": record.metadata or None,
            "size": record.size}


def _suffix(name: str | None) -> str:
    suffix = Path(name or "").suffix.lower()
    return suffix if suffix and suffix[1:].isalnum() and suffix.isascii() and len(suffix) <= 8 \
        else ""


@router.post("", openapi_extra=_FORM)
async def create_asset(request: Request, library: LibraryDep,
                       settings: SettingsDep) -> dict[str, Any]:
    """Upload a file (``method=direct`` with ``file``) or fetch an allowed URL
    (``method=url`` with ``url``)."""
    folder = media_dir(settings, library)
    dest = folder / new_job_id()
    upload = await receive_upload(request, file_field="file", dest=dest,
                                  max_bytes=settings.max_upload_bytes, require_file=False)
    try:  # a refused request never leaves its file behind
        form = parse_form(AssetForm, upload)
        form.require_supported()
        metadata = json_object(form.user_metadata, "user_metadata")
        if form.method == "direct":
            if upload.path is None:
                raise ConfigError("file is invalid: method='direct' needs a file part")
            name = form.filename or upload.filename or dest.name
            path = dest.rename(dest.with_name(dest.name + _suffix(upload.filename or name)))
        else:
            if not form.url:
                raise ConfigError("url is invalid: method='url' needs a url")
            dest.unlink(missing_ok=True)
            name = form.filename or form.url.rstrip("/").rsplit("/", 1)[-1] or dest.name
            path = dest.with_name(dest.name + _suffix(name))
            await run_in_threadpool(fetch_url, form.url, path, settings, "url")
        record = await run_in_threadpool(lambda: library.add_asset(
            path, filename=name, method=form.method, metadata=metadata))
    except BaseException:
        for leftover in folder.glob(f"{dest.name}*"):
            leftover.unlink(missing_ok=True)
        raise
    return asset_public(record)


@router.get("")
def list_assets(library: LibraryDep, page: Page = 1, page_limit: PageLimit = 10
                ) -> dict[str, Any]:
    """Assets, newest first; a page past the last has ``"data": []``."""
    data, total = library.assets_page(page_limit, (page - 1) * page_limit)
    return {"data": [asset_public(r) for r in data],
            "page_info": page_info(total, page, page_limit)}


@router.delete("/{asset_id}", status_code=204)
def delete_asset(asset_id: str, library: LibraryDep, jobs: JobsDep, settings: SettingsDep,
                 force: Annotated[bool, Query(description="Delete it even when a video was "
                                              "indexed from it (the video keeps its "
                                              "source).")] = False) -> Response:
    """Delete an asset (``client.assets.delete``); 409 while it is in use, unless
    ``force=true``."""
    record, used = library.delete_asset(asset_id, force=force, in_use=jobs.live_paths())
    path = Path(record.path)
    if not used and path.parent == media_dir(settings, library).resolve():
        path.unlink(missing_ok=True)  # nothing else needs it (a file elsewhere is not ours)
    return Response(status_code=204)


@router.get("/{asset_id}")
def retrieve_asset(asset_id: str, library: LibraryDep) -> dict[str, Any]:
    """One asset (its status is ``ready`` as soon as it exists)."""
    return asset_public(library.asset(asset_id))
