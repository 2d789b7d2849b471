"""The Python facade: one object for indexing, search, frame selection, frames and SQL.

Example::

    from framedex import Library
    lib = Library("framedex.db", model="synthetic-shapes")
    lib.index(["clips/"])
    lib.search("a red circle", limit=5)                      # -> [Moment, ...]
    res = lib.select("clips/a.mp4", "when is the red circle?", sampler="bolt", budget=8)
    images = lib.frames(res.video_id, res.frame_idx)          # decoded RGB frames

This module stays thin: the logic lives in ``query.search``, ``query.select``, ``store.sql``
and ``indexer.pipeline``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from framedex.errors import EmptyLibraryError, NotFoundError, check
from framedex.query.search import Moment, SearchFilters, VideoHit, search_library
from framedex.query.select import SelectResult, default_sampler, select_frames
from framedex.store import Store, VideoRecord
from framedex.store.sql import log_query, query_stats, run_sql

if TYPE_CHECKING:
    from framedex.indexer.encoder import TextEncoder

__all__ = ["Library", "Moment", "SearchFilters", "SelectResult", "VideoHit"]


class Library:
    """A framedex library on one store.

    Args:
        db: store location (a folder, or a URI LanceDB accepts).
        model: encoder spec; None means the store's encoder (else ``DEFAULT_MODEL``).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        default_sampler: sampler used when ``select`` names none (else $FRAMEDEX_SAMPLER,
            else ``router``).
        log_queries: append one ``query_log`` row per search and select.
    """

    def __init__(self, db: str | Path = "framedex.db", model: str | None = None,
                 device: str = "auto", default_sampler: str | None = None,
                 log_queries: bool = True):
        self.store = Store(db)
        self.model = model
        self.device = device
        self.default_sampler = default_sampler
        self.log_queries = log_queries
        self._encoder: Any = None
        self._text_encoder: TextEncoder | None = None

    # -- encoder --------------------------------------------------------------------------

    @property
    def model_spec(self) -> str:
        """The encoder spec in use: the one given, else the store's, else the default."""
        from framedex.indexer.encoder import DEFAULT_MODEL

        if self.model:
            return self.model
        identity = self.store.encoder_identity()
        if identity and identity.get("spec"):
            return str(identity["spec"])
        return DEFAULT_MODEL

    @property
    def encoder(self) -> Any:
        """The encoder, loaded on first use (cached per process by ``load_encoder``)."""
        if self._encoder is None:
            from framedex.indexer.encoder import load_encoder

            self._encoder = load_encoder(self.model_spec, device=self.device)
        return self._encoder

    @property
    def text_encoder(self) -> TextEncoder:
        """The encoder for query texts, loaded on first use: numpy when the model allows it
        (no torch import, see ``load_text_encoder``), else the full encoder; same identity."""
        if self._text_encoder is None:
            from framedex.indexer.encoder import load_text_encoder

            self._text_encoder = load_text_encoder(self.model_spec, device=self.device)
        return self._text_encoder

    def _query_encoder(self) -> TextEncoder:
        """The encoder for queries, checked against the store's identity."""
        encoder = self.text_encoder
        if self.store.encoder_identity() is not None:
            self.store.ensure_encoder(encoder.identity)
        return encoder

    # -- indexing and videos --------------------------------------------------------------

    def _indexer(self, fps: float, decoder: str) -> Any:
        from framedex.indexer.pipeline import Indexer, IndexOptions

        return Indexer(self.store, self.encoder, IndexOptions(index_fps=fps, decoder=decoder))

    def index(self, paths: str | Path | Iterable[str | Path], *, fps: float = 1.0,
              decoder: str = "auto", metadata: dict[str, Any] | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> Any:
        """Index video files and folders. Bad files are reported, not raised.

        Returns:
            An ``IndexReport`` (``.by_status("indexed"|"unchanged"|"failed")``).
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return self._indexer(fps, decoder).index_paths(list(paths), metadata=metadata,
                                                       progress=progress)

    def index_file(self, path: str | Path, *, fps: float = 1.0, decoder: str = "auto",
                   metadata: dict[str, Any] | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> Any:
        """Index one file. Returns an ``IndexOutcome`` (status ``failed`` for a bad file)."""
        return self._indexer(fps, decoder).index_file(path, metadata=metadata, progress=progress)

    def videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]:
        """Indexed videos, oldest first."""
        return self.store.list_videos(limit=limit, offset=offset)

    def video(self, ref: str) -> VideoRecord:
        """A video by id, id prefix or indexed path.

        Raises:
            VideoNotFoundError / EmptyLibraryError: nothing matches.
        """
        return self.store.find_video(ref)

    def delete(self, video_id: str) -> None:
        """Remove a video and its frames. Raises VideoNotFoundError if unknown."""
        self.store.delete_video(video_id)

    # -- queries --------------------------------------------------------------------------

    def search(self, text: str, *, limit: int = 10, group_by: str = "moment",
               filters: SearchFilters | None = None) -> list[Moment] | list[VideoHit]:
        """Ranked moments (or videos, ``group_by="video"``) matching ``text``.

        Raises:
            ConfigError: empty text, bad limit or group_by.
            EmptyLibraryError: nothing indexed.
        """
        check(isinstance(text, str) and text.strip() != "", "text", text,
              "must be non-empty text")
        if self.store.count_videos() == 0:  # before loading a model for nothing
            raise EmptyLibraryError(f"the store {self.store.uri} has no indexed video: run "
                                    "`framedex index PATH` first")
        encoder = self._query_encoder()  # a first-use model load is not query latency
        t0 = time.perf_counter()
        query = encoder.encode_text([text])[0]
        hits = search_library(self.store, query, limit=limit, group_by=group_by,
                              filters=filters)
        if self.log_queries:
            log_query(self.store, kind="search", query=text, budget=limit,
                      latency_ms=(time.perf_counter() - t0) * 1000.0, result_size=len(hits),
                      params={"group_by": group_by, "filters": _filters_json(filters)})
        return hits

    def select(self, video: str, question: str, *, sampler: str | None = None, budget: int = 8,
               tokens: int | None = None, params: dict[str, Any] | None = None) -> SelectResult:
        """Pick the frames of ``video`` a video LLM should see for ``question``.

        Raises:
            ConfigError: bad question/budget/tokens/params. UnknownNameError: unknown sampler.
            VideoNotFoundError / EmptyLibraryError: no such indexed video.
        """
        name = sampler or default_sampler(self.default_sampler)
        # Validate everything cheap first, so a typo never waits for a model load.
        from framedex.query.samplers import create_sampler
        from framedex.query.select import check_request

        check_request(question, budget, tokens)
        chosen = create_sampler(name, **(params or {}))
        record = self.store.find_video(video)  # before loading a model for nothing
        encoder = self._query_encoder()  # a first-use model load is not query latency
        result = select_frames(self.store, encoder.encode_text, record, question,
                               sampler=chosen, budget=budget, tokens=tokens, params=params)
        if self.log_queries:
            log_query(self.store, kind="select", query=question, sampler=result.sampler,
                      budget=budget, tokens=tokens, video_id=result.video_id,
                      latency_ms=result.latency_ms, result_size=len(result.indices),
                      params=result.params)
        return result

    def frames(self, video: str, frame_idx: list[int], *,
               max_side: int | None = None) -> list[np.ndarray]:
        """Decode indexed frames of a video (RGB uint8), in the requested order.

        Raises:
            NotFoundError: a ``frame_idx`` that is not an indexed frame of the video.
            VideoNotFoundError: unknown video. VideoOpenError/DecodeError: the file fails.
        """
        from framedex.indexer.decode import open_video

        record = self.store.find_video(video)
        indexed = set(self.store.read_frame_idx(record.video_id).tolist())
        wanted = [int(f) for f in frame_idx]
        missing = [f for f in wanted if f not in indexed]
        if missing:
            raise NotFoundError(f"frame_idx {missing[:5]} {'are' if len(missing) > 1 else 'is'}"
                                f" not indexed in video {record.video_id}: only indexed frames "
                                "can be read")
        if not wanted:
            return []
        decoder = record.decoder if record.decoder in ("pyav", "decord") else "auto"
        with open_video(record.path, decoder=decoder) as source:
            return source.get_frames(wanted, max_side=max_side)

    def embed_text(self, texts: str | list[str]) -> np.ndarray:
        """(n, D) L2-normalised text embeddings."""
        return self.text_encoder.encode_text([texts] if isinstance(texts, str) else list(texts))

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """(n, D) L2-normalised embeddings of RGB uint8 images (H, W, 3)."""
        return self.encoder.encode_images(images)

    # -- logs and SQL ---------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Count and p50/p95 latency of logged queries per (kind, sampler)."""
        return query_stats(self.store)

    def sql(self, query: str) -> pa.Table:
        """DuckDB SQL over ``videos``, ``query_log`` and ``jobs``. Raises ConfigError."""
        return run_sql(self.store, query)


def _filters_json(filters: SearchFilters | None) -> dict[str, Any] | None:
    if filters is None or not filters.active:
        return None
    return {"min_duration": filters.min_duration, "max_duration": filters.max_duration,
            "path_glob": filters.path_glob, "metadata": filters.metadata}
