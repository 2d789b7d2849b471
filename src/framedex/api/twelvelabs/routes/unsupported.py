"""What a visual-only, self-hosted server does not offer: a 400 ``unsupported`` that names it.

Each Twelve Labs endpoint of the SDK that framedex does not serve answers here, with what it
is and what to use instead, never a 5xx and never a hang (docs/twelvelabs.md has the table).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from framedex.errors import UnsupportedError

router = APIRouter(tags=["unsupported"], include_in_schema=False)

_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: (path prefix, what it is and what to do instead), checked in order.
UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("analyze/tasks", "asynchronous analysis tasks are not offered: use POST /v1.3/analyze "
                      "(answered at once, or streamed), which asks this server's video LLM"),
    ("analyze/batches", "analysis batches are not offered: call POST /v1.3/analyze per "
                        "video"),
    ("generate", "Pegasus text generation is not offered: use POST /v1.3/analyze with a "
                 "prompt"),
    ("summarize", "Pegasus summaries are not offered: use POST /v1.3/analyze with a prompt "
                  "that asks for a summary"),
    ("gist", "Pegasus gists are not offered"),
    ("responses", "the Responses API (a generative model) is not offered"),
    ("assets/multipart-uploads", "multipart uploads through presigned URLs need an object "
                                 "store: upload with POST /v1.3/assets (method=direct)"),
    ("knowledge-stores", "knowledge stores are not offered: search an index with "
                         "POST /v1.3/search"),
    ("connections", "data connectors (Google Drive...) are not offered: upload the file"),
    ("embed/tasks", "Marengo 2.7 embedding tasks (/embed/tasks) are not offered: use "
                    "POST /v1.3/embed-v2/tasks"),
    ("embed", "the v1 embed endpoint (/embed) is not offered: use POST /v1.3/embed-v2"),
)


def _refuse(request: Request) -> None:
    path = request.url.path.split("/v1.3/", 1)[-1].strip("/")
    for prefix, reason in UNSUPPORTED:
        if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + ":"):
            raise UnsupportedError(f"{request.method} /v1.3/{prefix} is not supported: "
                                   f"{reason}")
    raise UnsupportedError(f"{request.method} /v1.3/{path} is not supported")


def _endpoint(request: Request) -> None:
    """Answer 400 ``unsupported``, naming the feature."""
    _refuse(request)


for _prefix, _ in UNSUPPORTED:
    router.add_api_route(f"/{_prefix}", _endpoint, methods=_ALL)
    router.add_api_route(f"/{_prefix}/{{rest:path}}", _endpoint, methods=_ALL)


@router.api_route("/assets/{asset_id}/transcription", methods=_ALL)
def transcription(request: Request) -> None:
    """Transcripts need speech recognition, which framedex does not run."""
    raise UnsupportedError("transcription is not supported: framedex does not transcribe "
                           "speech (it embeds the visual stream)")
