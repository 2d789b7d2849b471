"""Media a ``/v1.3`` request names by URL or carries as base64, written to a file.

A URL is fetched only when it starts with one of the server's ``--allow-url`` prefixes (no
prefix: every URL is refused), without following redirects (a redirect could leave the
prefix), with a time limit and the upload size limit. Nothing else reaches the network.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from pathlib import Path

from framedex.api.settings import Settings
from framedex.errors import ConfigError, PayloadTooLargeError, PermissionDeniedError

#: Seconds to connect, and between two chunks, when fetching a URL.
FETCH_TIMEOUT_S = 30.0
#: Most seconds one download may take in all (a server that trickles bytes is cut off).
FETCH_DEADLINE_S = 600.0
#: A ``..`` path segment, also percent-encoded (it could climb out of an allowed prefix).
_DOT_SEGMENT = re.compile(r"/(\.|%2e){2}(/|\?|#|$)", re.IGNORECASE)


def check_url(url: str, settings: Settings, name: str = "url") -> str:
    """The URL if the server may fetch it.

    Raises:
        ConfigError: not an http(s) URL, or no ``--allow-url`` prefix covers it (400).
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
            or len(url) > 4096:
        raise ConfigError(f"{name}={str(url)[:200]!r} is invalid: must be an http(s) URL")
    if not settings.allow_urls:
        raise ConfigError(f"{name} is invalid: this server fetches no URL (start it with "
                          "--allow-url PREFIX); upload the file instead (method=direct)")
    if not any(url.startswith(p) for p in settings.allow_urls):
        raise ConfigError(f"{name}={url[:200]!r} is invalid: it is not under an allowed URL "
                          "prefix of this server (--allow-url)")
    if _DOT_SEGMENT.search(url) or "\\" in url:
        raise ConfigError(f"{name}={url[:200]!r} is invalid: no '..' segments")
    return url


def fetch_url(url: str, dest: Path, settings: Settings, name: str = "url") -> int:
    """Download an allowed URL to ``dest`` (removed on any failure). Returns its size.

    Raises:
        ConfigError: refused URL, HTTP error, network error or timeout (400).
        PayloadTooLargeError: over the upload limit (413).
    """
    import httpx

    check_url(url, settings, name)
    limit = settings.max_upload_bytes
    size = 0
    try:
        with httpx.stream("GET", url, follow_redirects=False,
                          timeout=httpx.Timeout(FETCH_TIMEOUT_S)) as response:
            if response.status_code != 200:
                raise ConfigError(f"{name}={url[:200]!r} is invalid: fetching it answered "
                                  f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLargeError(f"{name}: {declared} bytes is over the limit of "
                                           f"{limit} bytes (the server's --max-upload-mb)")
            deadline = time.monotonic() + FETCH_DEADLINE_S
            with open(dest, "wb") as fh:
                for chunk in response.iter_bytes():
                    if time.monotonic() > deadline:
                        raise ConfigError(f"{name}={url[:200]!r} is invalid: the download "
                                          f"took over {FETCH_DEADLINE_S:.0f} s")
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(f"{name}: over the limit of {limit} bytes "
                                                   "(the server's --max-upload-mb)")
                    fh.write(chunk)
    except (ConfigError, PayloadTooLargeError, PermissionDeniedError):
        dest.unlink(missing_ok=True)
        raise
    except (httpx.HTTPError, OSError) as ex:
        dest.unlink(missing_ok=True)
        raise ConfigError(f"{name}={url[:200]!r} is invalid: cannot fetch it "
                          f"({type(ex).__name__})") from None
    return size


def decode_base64(data: str, name: str, max_bytes: int) -> bytes:
    """Decode base64 (or a ``data:`` URL).

    Raises:
        ConfigError: not base64 (400). PayloadTooLargeError: over ``max_bytes`` (413).
    """
    raw = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    if len(raw) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLargeError(f"{name} is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} is invalid: not base64 data") from None
