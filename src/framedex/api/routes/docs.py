"""``/docs``: Swagger UI served from the installed ``swagger-ui-bundle`` package.

FastAPI's default page loads Swagger UI from a CDN, so it was blank on an offline machine;
here the JavaScript and CSS come from this server, and nothing is fetched from the internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from framedex.errors import NotFoundError

router = APIRouter(include_in_schema=False)

_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def _asset_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    """The interactive API documentation."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="framedex API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png")


@router.get("/docs/assets/{name}")
def asset(name: str) -> FileResponse:
    """One of Swagger UI's files (only the ones the page uses)."""
    if name not in _ASSETS:
        raise NotFoundError(f"no documentation asset {name[:64]!r}")
    media = {"js": "text/javascript", "css": "text/css", "png": "image/png"}[name.rsplit(".")[-1]]
    return FileResponse(_asset_dir() / name, media_type=media,
                        headers={"Cache-Control": "public, max-age=86400"})
