"""Server settings, built once at the edge (the CLI or a test) and passed to ``create_app``.

Nothing here reads the environment at import time; ``framedex serve`` reads its options (and
``FRAMEDEX_API_KEY``) and builds a :class:`Settings`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from framedex.errors import ConfigError, check
from framedex.rules import DEFAULT_INDEX_FPS, LIMITS

#: Default upload limit (2 GiB): large enough for an hour of 1080p H.264.
DEFAULT_MAX_UPLOAD_BYTES = 2 << 30
#: Twelve Labs assets are kept this long by default (the query log's retention too).
DEFAULT_ASSET_RETENTION_DAYS = 30.0


@dataclass(frozen=True)
class Settings:
    """How the HTTP service runs.

    Args:
        db: store location (folder or URI).
        model: encoder spec; None means the store's encoder, else the default spec.
        device: ``auto``, ``cpu``, ``cuda``...
        host: address to bind (loopback by default: nothing is exposed unless asked).
        port: TCP port.
        api_key: when set, every route but ``/health`` and the docs needs it.
        allow_roots: folders under which server-side paths may be ingested; empty means
            ``{"path": ...}`` ingest is refused.
        max_upload_bytes: largest accepted upload; larger ones get 413.
        workers: ingest worker threads (ingest jobs running at once).
        upload_dir: where uploads are stored (kept: frames are decoded from them later).
            None means ``<db>.uploads`` beside a local store, else a temporary folder.
        index_fps: default frames per second embedded by ingest jobs.
        log_queries: record each search/select in the store's query log.
        default_sampler: sampler of select requests that name none (None: the library's).
        optimize_every_s: seconds between two store upkeep runs (compaction, retention,
            old versions); 0 turns the timer off.
        cache_bytes: bound of the in-memory frames cache shared by all requests.
        allow_urls: URL prefixes the server may download media from (Twelve Labs
            ``method=url`` assets, ``video_url``, media URLs); empty means URLs are refused.
        staleness_s: how old a replica's view of the store may be, in seconds (None: 0 on a
            local disk, 1 s on object storage): a video indexed by another replica is
            searchable here within this.
        job_retention_days: finished ingest jobs are deleted by the upkeep after this long.
        lease_ttl_s: seconds a writer's claim lives without a heartbeat (None: 30 s).
        vlm_url: base URL of the OpenAI-compatible video LLM ``ask`` and ``/v1.3/analyze``
            call (None: asking is refused with a 400 that says how to configure it).
        vlm_model: the model name at that endpoint.
        vlm_api_key_env: the environment variable holding the endpoint's key (None:
            ``$FRAMEDEX_VLM_API_KEY``).
        vlm_timeout_s: seconds one model call may wait to connect and for each read (None:
            the ``VLMEndpoint`` default).
        vlm_retries: retries of a failed model call (None: the default).
        rollout: sampler rollout of requests that name no sampler (``aks=0.9,bolt=0.1``).
        asset_retention_days: Twelve Labs assets older than this are deleted by the upkeep
            timer (a video indexed from one keeps its source file); 0 keeps them for good.
    """

    db: str = "framedex.db"
    model: str | None = None
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    allow_roots: tuple[str, ...] = ()
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    workers: int = 1
    upload_dir: str | None = None
    index_fps: float = DEFAULT_INDEX_FPS
    log_queries: bool = True
    default_sampler: str | None = None
    optimize_every_s: float = 600.0
    cache_bytes: int = 256 << 20
    allow_urls: tuple[str, ...] = ()
    staleness_s: float | None = None
    job_retention_days: float = 30.0
    lease_ttl_s: float | None = None
    vlm_url: str | None = None
    vlm_model: str | None = None
    vlm_api_key_env: str | None = None
    vlm_timeout_s: float | None = None
    vlm_retries: int | None = None
    rollout: str | None = None
    asset_retention_days: float = DEFAULT_ASSET_RETENTION_DAYS

    @classmethod
    def from_cli(cls, *, max_upload_mb: float, **options: Any) -> Settings:
        """Settings from ``framedex serve``'s options (``--max-upload-mb`` in MiB).

        Raises:
            ConfigError: a bad value (names the option).
        """
        check(max_upload_mb > 0, "max_upload_mb", max_upload_mb, "must be > 0")
        return cls(max_upload_bytes=int(max_upload_mb * (1 << 20)), **options)

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535 or self.port == 0, "port", self.port,
              "must be in 1..65535 (or 0 for any free port)")
        check(self.workers >= 1, "workers", self.workers, "must be >= 1")
        check(self.max_upload_bytes >= 1, "max_upload_bytes", self.max_upload_bytes,
              "must be >= 1")
        check(LIMITS["fps"].holds(self.index_fps), "index_fps", self.index_fps,
              LIMITS["fps"].rule())
        check(self.api_key is None or len(self.api_key) >= 8, "api_key", "***",
              "must be at least 8 characters (a short key is easy to guess); e.g. "
              "--api-key $(openssl rand -hex 16)")
        check(self.optimize_every_s >= 0, "optimize_every_s", self.optimize_every_s,
              "must be >= 0 (0: off)")
        check(self.staleness_s is None or 0 <= self.staleness_s <= 3600, "staleness",
              self.staleness_s, "must be from 0 to 3600 seconds")
        check(0 <= self.job_retention_days <= 36500, "job_retention_days",
              self.job_retention_days, "must be from 0 to 36500 days")
        check(self.lease_ttl_s is None or 1 <= self.lease_ttl_s <= 86400, "lease_ttl",
              self.lease_ttl_s, "must be from 1 to 86400 seconds")
        check(self.asset_retention_days >= 0, "asset_retention_days",
              self.asset_retention_days, "must be >= 0 (0: keep assets for good)")
        for prefix in self.allow_urls:
            check(isinstance(prefix, str) and prefix.startswith(("http://", "https://"))
                  and len(prefix.split("/", 3)) == 4 and prefix.split("/", 3)[2] != "",
                  "allow_url", prefix, "must be an http(s) URL prefix with a host and a path, "
                  "e.g. https://media.example.com/videos/")
        check((self.vlm_url is None) == (self.vlm_model is None), "vlm_model",
              self.vlm_model, "give --vlm-url and --vlm-model together")
        for root in self.allow_roots:
            check(Path(root).expanduser().is_dir(), "allow_root", root,
                  "must be an existing folder")

    @property
    def resolved_roots(self) -> tuple[Path, ...]:
        """The allowed roots with symlinks resolved (paths are compared after realpath)."""
        return tuple(Path(os.path.realpath(Path(r).expanduser())) for r in self.allow_roots)

    @property
    def asset_retention(self) -> timedelta | None:
        """How long assets are kept, or None for good."""
        days = self.asset_retention_days
        return timedelta(days=days) if days > 0 else None

    def media_dir_for(self, store_uri: str, *, create: bool = True) -> Path:
        """Where ``/v1.3`` keeps assets (created unless ``create`` is False): ``assets/`` in
        the upload folder, so the upload folder's own sweep, which looks at that folder's
        files only, leaves them to the media sweep (``api/upkeep.py``)."""
        folder = self.resolved_upload_dir_for(store_uri) / "assets"
        if not create:
            return folder
        try:
            folder.mkdir(exist_ok=True)
        except OSError as ex:
            raise ConfigError(f"upload_dir={str(folder.parent)!r} is invalid: cannot create "
                              f"assets/ in it ({ex.strerror or ex}); pass --upload-dir") from None
        return folder

    def resolved_upload_dir_for(self, store_uri: str) -> Path:
        """The upload folder (created): ``upload_dir``, else ``<db>.uploads`` beside a local
        store, else a temporary folder.

        Raises:
            ConfigError: it cannot be created.
        """
        if self.upload_dir:
            folder = Path(self.upload_dir).expanduser()
        elif "://" not in store_uri:
            db = Path(store_uri)
            folder = db.parent / (db.name + ".uploads")
        else:
            folder = Path(tempfile.gettempdir()) / "framedex-uploads"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as ex:
            raise ConfigError(f"upload_dir={str(folder)!r} is invalid: cannot create it "
                              f"({ex.strerror or ex}); pass --upload-dir") from None
        return folder.resolve()
