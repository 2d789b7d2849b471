"""The Python facade: one object for indexing, search, frame selection, delivery and SQL.

Example::

    from framedex import Library
    lib = Library("framedex.db", model="synthetic-shapes")
    lib.index(["clips/"])
    lib.search("a red circle", limit=5)                      # -> [Moment, ...]
    lib.search(["a red circle", "a blue star"], operator="and", group_by="video")
    res = lib.select("clips/a.mp4", "when is the red circle?", sampler="bolt", budget=8)
    out = lib.deliver(res, include=("frames", "payload"))    # JPEGs at their tiers, a request

Every face (the CLI, the HTTP API, the web viewer, the Twelve Labs routes, ``eval``) talks to
the store, the indexer and the query layer only through this class. A request is validated
once, here; the workers below trust their arguments. Each step happens once: one store read
(or a cache hit), one text encode (or a cache hit), one sampler call per select.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import numpy as np
import pyarrow as pa

from framedex.errors import (
    ConfigError,
    EmptyLibraryError,
    FramedexError,
    ModelLoadError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    check,
)
from framedex.indexer.clip_bpe import ClipTokenizer
from framedex.indexer.encoder import (
    ModelSpec,
    is_model_path,
    load_encoder,
    missing_model_path,
)
from framedex.indexer.records import IndexOptions, IndexOutcome, IndexReport, discover
from framedex.library_ask import AskMixin, AskResult, AskStream, Rollout, VLMEndpoint
from framedex.library_collections import CollectionInfo, check_id
from framedex.library_entities import EntitiesMixin
from framedex.query.cache import DEFAULT_CACHE_BYTES, DEFAULT_TEXT_CACHE, FrameCache, TextCache
from framedex.query.delivery import (
    Delivery,
    DeliveryOptions,
    SourceFile,
    deliver,
    open_source,
    verified_source,
)
from framedex.query.images import MAX_IMAGE_DECODES
from framedex.query.samplers.base import (
    Budget,
    Sampler,
    SamplerInfo,
    TokenBudget,
    create_sampler,
)
from framedex.query.search import (
    Moment,
    SearchFilters,
    VideoHit,
    search_library,
    search_parts,
)
from framedex.query.select import RelevanceCurve, SelectResult, frames_in_span, select_frames
from framedex.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INDEX_FPS,
    DEFAULT_LIMIT,
    DEFAULT_QUALITY,
    DEFAULT_THRESHOLD,
    GROUP_BY,
    LIMITS,
    MAX_PARTS,
    MAX_QUERY_IMAGES,
    OPERATORS,
    PAYLOAD_FORMATS,
    THRESHOLDS,
)
from framedex.store import (
    AssetRecord,
    EntityCollectionRecord,
    EntityRecord,
    FrameArrays,
    Job,
    JobFilter,
    JobStore,
    MemberRecord,
    QueryLog,
    SegmentArrays,
    Store,
    VideoRecord,
    is_missing_file,
    lease_ttl_from_env,
    open_store,
)
from framedex.store.sql import QueryStats, query_stats, run_sql
from framedex.validate import (
    check_limit,
    check_metadata,
    check_span,
    check_text,
    decoder_names,
    engine_names,
    make_budget,
    parse_json,
    parse_metadata,
    parse_pairs,
    sampler_infos,
    sampler_names,
)
from framedex.values import Array, Json, JsonObject

if TYPE_CHECKING:
    from framedex.indexer.encoder import Encoder, ImageEncoder, TextEncoder

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "DEFAULT_SAMPLER",
    "AskResult",
    "AskStream",
    "AssetRecord",
    "ClipTokenizer",
    "CollectionInfo",
    "Delivery",
    "DeliveryOptions",
    "EntityCollectionRecord",
    "EntityRecord",
    "Job",
    "JobFilter",
    "JobStore",
    "Library",
    "MemberRecord",
    "Moment",
    "QueryStats",
    "RelevanceCurve",
    "Rollout",
    "SamplerInfo",
    "SearchFilters",
    "SelectResult",
    "SourceFile",
    "TokenBudget",
    "VLMEndpoint",
    "VideoHit",
    "VideoRecord",
    "create_sampler",
    "decoder_names",
    "engine_names",
    "lease_ttl_from_env",
    "load_encoder",
    "parse_json",
    "parse_metadata",
    "parse_pairs",
    "sampler_infos",
    "sampler_names",
]

log = logging.getLogger(__name__)

#: The sampler used when a request names none. AKS had the best held-out evaluation on both
#: needle tasks at K = 8 (single-needle hit 100 %, multi-needle full coverage 92 %; the router,
#: the old default, had 93 % and 25 %), as with the model before its binding stages (100 / 75
#: against 73 / 17 %): docs/eval.md.
DEFAULT_SAMPLER = "aks"
#: Fewer frames than this are searched exactly; an ANN index is refused without ``force``.
MIN_ANN_ROWS = 50_000
#: What to tell users of a store built with the shipped toy model.
SYNTHETIC_NOTE = ("the store's model is synthetic-shapes, which only knows coloured shapes "
                  "(circle, square, triangle, star in six colours); index real videos with a "
                  "real model (README: \"Index your own videos\")")


def _recovering(method: Callable[Concatenate[Library, P], R]
                ) -> Callable[Concatenate[Library, P], R]:
    """A read that survives its store being replaced under a running process: when files of
    a version it knew are gone (the store was deleted or rebuilt, e.g. ``make demo`` again
    beside a running ``serve``), reopen the store and run it once more; if the store is still
    unusable, :class:`~framedex.errors.StoreUnavailableError` (HTTP 503), and the next call
    tries again."""

    @functools.wraps(method)
    def run(self: Library, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except Exception as ex:
            if not _store_went_away(ex):
                raise
            self._store.reopen()
        try:
            return method(self, *args, **kwargs)
        except Exception as ex:
            if not _store_went_away(ex) or isinstance(ex, StoreUnavailableError):
                raise
            self._store.reopen()
            raise StoreUnavailableError(
                f"the store at {self._store.uri} cannot be read right now (it was deleted or "
                "is being replaced): it answers again once it is back") from ex

    return run


def _store_went_away(ex: BaseException) -> bool:
    if isinstance(ex, StoreUnavailableError):
        return True
    if isinstance(ex, FramedexError) and not isinstance(ex, StoreError):
        return False  # a domain answer (no such video...), not a vanished file
    return is_missing_file(ex)


class Library(EntitiesMixin, AskMixin):
    """A framedex library on one store.

    Args:
        db: store location (a folder, or an object-store URI).
        model: encoder spec; None means the store's encoder (else ``DEFAULT_MODEL``).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        default_sampler: sampler used when ``select`` names none (None: :data:`DEFAULT_SAMPLER`).
        log_queries: record each search and select in the store's query log (buffered).
        cache_bytes: bound of the in-memory frames cache (0 turns it off).
        text_cache: number of query-text embeddings kept (0 turns it off).
        must_exist: raise :class:`~framedex.errors.StoreNotFoundError` when there is no store
            at ``db`` (read-only commands; a mistyped path must not look like an empty library).
        storage_options: object-store settings passed to Lance and the store's leases.
        lease_ttl: seconds a writer's claim lives without a heartbeat (None: 30 s): how
            long a killed writer's claim blocks a video on object storage.
        consistency_s: how stale reads may be, in seconds (None: 0 on a local disk, 1 s on
            object storage): the staleness of an API replica.
        rollout: split requests that name no sampler between samplers, e.g.
            ``"aks=0.9,bolt=0.1"`` (see :class:`Rollout`); None: the default sampler.
        vlm: the video LLM ``ask`` calls when a call names none (:class:`VLMEndpoint`).

    Raises:
        ConfigError / StoreError: a bad location or setting. UnknownNameError: an unknown
        default sampler, or an unknown sampler in the rollout.
    """

    def __init__(self, db: str | os.PathLike[str] = "framedex.db", *, model: str | None = None,
                 device: str = "auto", default_sampler: str | None = None,
                 log_queries: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 text_cache: int = DEFAULT_TEXT_CACHE, must_exist: bool = False,
                 storage_options: Mapping[str, str] | None = None,
                 lease_ttl: float | None = None, consistency_s: float | None = None,
                 rollout: str | Mapping[str, float] | Rollout | None = None,
                 vlm: VLMEndpoint | None = None):
        self._store: Store = open_store(db, storage_options=storage_options,
                                       lease_ttl=lease_ttl, consistency_s=consistency_s)
        if must_exist:
            self._store.require()
        self.model = model
        self.device = device
        self.default_sampler = default_sampler or DEFAULT_SAMPLER
        create_sampler(self.default_sampler)  # an unknown name fails here, not per request
        self._frame_cache = FrameCache(cache_bytes)
        self._text_cache = TextCache(text_cache)
        self._query_log = QueryLog(self._store) if log_queries else None
        self.rollout = Rollout.parse(rollout) if rollout is not None else None
        check(vlm is None or isinstance(vlm, VLMEndpoint), "vlm", vlm,
              "must be a VLMEndpoint or None")
        self.vlm = vlm
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()
        self._text_encoder: TextEncoder | None = None
        self._init_answers()
        self._image_decodes = threading.BoundedSemaphore(MAX_IMAGE_DECODES)

    @property
    def uri(self) -> str:
        """Where the store is."""
        return self._store.uri

    @property
    def jobs(self) -> JobStore:
        """The HTTP API's ingest jobs, kept in the store (every replica sees them)."""
        return self._store.jobs

    def close(self) -> None:
        """Write the buffered query log and answers (also done at interpreter exit) and
        release the leases this process holds on the store."""
        if self._query_log is not None:
            self._query_log.close()
        self._close_answers()
        self._store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoders -------------------------------------------------------------------------

    @property
    def model_spec(self) -> str:
        """The encoder spec in use: the one given, else the store's, else the default."""
        if self.model:
            return self.model
        identity = self._store.encoder_identity()
        if identity and identity.get("spec"):
            spec = str(identity["spec"])
            gone = missing_model_path(spec)
            if gone is not None:
                raise ModelLoadError(
                    f"the store {self._store.uri} was built with the model at {gone}, which is "
                    "no longer there (moved or deleted): pass --model with its new place (the "
                    "store checks that the weights are the same)")
            return spec
        from framedex.indexer.encoder import DEFAULT_MODEL

        return DEFAULT_MODEL

    @property
    def encoder(self) -> Encoder:
        """The full encoder (both towers; indexing and images), loaded on first use: torch
        is imported by the first request that encodes an image or a frame, never by a text
        query (:attr:`text_encoder`)."""
        if self._encoder is None:
            with self._encoder_lock:  # concurrent first image requests load it once
                if self._encoder is None:
                    from framedex.indexer.encoder import load_encoder

                    self._encoder = load_encoder(self.model_spec, device=self.device)
        return self._encoder

    def _index_encoder(self) -> ImageEncoder:
        """The encoder an index run gets: the model loads when its first frame needs
        encoding (an unchanged file loads nothing), unless only the model can tell its
        identity."""
        from framedex.indexer.encoder import LazyEncoder, files_identity

        if self._encoder is not None:
            return self._encoder
        identity = files_identity(self.model_spec)
        return self.encoder if identity is None else LazyEncoder(identity, lambda: self.encoder)

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
        self._check_encoder(encoder.identity)
        return encoder

    def _check_encoder(self, identity: Mapping[str, Json]) -> None:
        """Refuse an encoder the store was not built with; when the same weights were given
        from a new place (``--model``), record it, so later commands without ``--model`` find
        them there."""
        stored = self._store.encoder_identity()
        if stored is None:
            return
        self._store.ensure_encoder(identity)
        here, before = identity.get("spec"), stored.get("spec")
        if (self.model and isinstance(here, str) and here != before
                and is_model_path(str(before or "")) and identity.get("weights_digest")):
            try:
                self._store.remember_model(here)
            except StoreError as ex:  # a read-only store still answers; it just forgets
                log.info("could not record the model's new place in %s: %s", self.uri, ex)

    def encoder_info(self) -> JsonObject:
        """The encoder's identity, its device and backend, and whether it is the shipped toy
        model."""
        text = self._query_encoder()
        identity = dict(text.identity)
        identity["device"] = getattr(self._encoder or text, "device", "cpu")
        identity["text_backend"] = getattr(text, "backend", "torch")
        identity["synthetic"] = identity.get("spec") == "synthetic-shapes"
        return identity

    # -- indexing and videos --------------------------------------------------------------

    def index(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
              fps: float = DEFAULT_INDEX_FPS, decoder: str = "auto",
              batch_size: int = DEFAULT_BATCH_SIZE,
              metadata: Mapping[str, Json] | None = None,
              progress: Callable[[str, int, int], None] | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None,
              on_model: Callable[[str, str], None] | None = None,
              on_note: Callable[[str], None] | None = None,
              decode_workers: int | None = None, engine: str = "local",
              ray_address: str | None = None) -> IndexReport:
        """Index video files and folders. Bad files are reported, not raised.

        Options and the store's location are checked before the model loads, so a typo costs
        nothing, and a failed first run leaves no empty store behind.

        Args:
            on_model: called once with the model spec and device when the encoder is loaded
                (not at all when nothing needs encoding: unchanged files load no model).
            on_note: called with each warning about the run (e.g. a Ray cluster without
                authentication); None logs them.
            decode_workers: decode processes feeding one encoder (None: auto, the usable
                cores less what a CPU encoder needs); the index does not depend on it.
            engine: ``local`` (this machine) or ``ray`` (a Ray cluster; ``list_engines()``).
            ray_address: the Ray cluster to join (``auto``, ``host:port``); None: joins
                ``$RAY_ADDRESS``, else starts a local cluster for the job.

        Returns:
            An ``IndexReport`` (``.by_status("indexed"|"unchanged"|"failed")``).

        Raises:
            ConfigError / UnknownNameError: bad options. ModelLoadError: the model cannot load.
            EncoderMismatchError: the store was built with another encoder.
        """
        from framedex.indexer.engines import create_engine

        options = IndexOptions(index_fps=fps, decoder=decoder, batch_size=batch_size,
                               decode_workers=decode_workers)
        runner = create_engine(engine, options, ray_address=ray_address)
        meta = check_metadata(metadata)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if not any(_exists(p) for p in paths):
            # nothing to read: say so at once, without loading a model or making a store
            return IndexReport(discover(paths)[1])
        with runner:  # the Ray engine starts or joins its cluster here, before Lance loads
            for line in runner.notes:
                (on_note or log.warning)(line)
            # The store must be writable before a model loads (a bad --db fails in a second),
            # and a first run that indexes nothing leaves no empty store behind.
            made = self._store.location.create()
            try:
                # where the weights are, as a spec any process finds them by (a relative
                # folder would break for a Ray worker or a command run from elsewhere)
                spec = ModelSpec.parse(self.model_spec).location or self.model_spec

                def load() -> ImageEncoder:  # when the first frame needs encoding, if ever
                    from framedex.indexer.encoder import encoder_device

                    encoder = self.encoder
                    if on_model is not None:
                        on_model(spec, encoder_device(encoder))
                    return encoder

                where = runner.prepare(self._store, spec, self.device, load)
                if self.model:  # weights given: the store's, and remembered where they are
                    from framedex.indexer.encoder import load_text_encoder

                    # the loaded encoder, or the text tower (cached; numpy where it can)
                    self._check_encoder((self._encoder or load_text_encoder(
                        spec, device="cpu")).identity)
                if where is not None and on_model is not None:
                    on_model(spec, where)
                report = runner.index(paths, metadata=meta, progress=progress,
                                      on_file=on_file)
            except BaseException:
                self._store.discard_if_unused(made)
                raise
            if not report.live:
                self._store.discard_if_unused(made)
            return report

    def check_index_options(self, *, fps: float = DEFAULT_INDEX_FPS, decoder: str = "auto",
                            batch_size: int = DEFAULT_BATCH_SIZE, decode_workers: int | None = None,
                            engine: str = "local", ray_address: str | None = None) -> None:
        """Validate indexing options without loading anything (for callers that want the
        error before a model load).

        Raises:
            ConfigError / UnknownNameError: a bad value, decoder or engine name.
        """
        from framedex.indexer.engines import create_engine

        create_engine(engine, IndexOptions(index_fps=fps, decoder=decoder,
                                           batch_size=batch_size,
                                           decode_workers=decode_workers),
                      ray_address=ray_address)

    def index_file(self, path: str | os.PathLike[str], *, fps: float = DEFAULT_INDEX_FPS,
                   decoder: str = "auto",
                   metadata: Mapping[str, Json] | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   read_from: str | None = None) -> IndexOutcome:
        """Index one file. Returns an ``IndexOutcome`` (status ``failed`` for a bad file).

        Args:
            read_from: read the bytes from here (an already opened and verified file, e.g.
                ``/proc/self/fd/N``) while recording ``path``.
        """
        from framedex.indexer.pipeline import Indexer

        options = IndexOptions(index_fps=fps, decoder=decoder)
        indexer = Indexer(self._store, self._index_encoder(), options)
        return indexer.index_file(path, metadata=check_metadata(metadata), progress=progress,
                                  read_from=read_from)

    @_recovering
    def videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]:
        """Indexed videos, oldest first."""
        check(limit is None or (isinstance(limit, int) and limit >= 0), "limit", limit,
              "must be None or an integer >= 0")
        check(isinstance(offset, int) and offset >= 0, "offset", offset, "must be >= 0")
        return self._store.list_videos(limit=limit, offset=offset)

    @_recovering
    def videos_page(self, limit: int, offset: int = 0) -> tuple[list[VideoRecord], int]:
        """One page of videos and the total count, from one snapshot of the table."""
        everything = self._store.list_videos()
        return everything[offset: offset + limit], len(everything)

    @_recovering
    def count_videos(self) -> int:
        """Number of indexed videos."""
        return self._store.count_videos()

    @_recovering
    def video(self, ref: str) -> VideoRecord:
        """A video by id, unique id prefix (4+ characters) or any path it was indexed from.

        Raises:
            VideoNotFoundError / EmptyLibraryError: nothing matches. ConfigError: a bad ref.
        """
        return self._store.find_video(ref)

    def delete(self, video_id: str) -> None:
        """Remove a video and its frames. Raises VideoNotFoundError if unknown."""
        self._store.delete_video(video_id)

    @_recovering
    def embeddings(self, video: str) -> tuple[VideoRecord, FrameArrays, SegmentArrays]:
        """A video's record, frame embeddings and segment embeddings.

        Raises:
            VideoNotFoundError: no such video.
        """
        record = self._store.find_video(video)
        return record, self._frames(record)[0], self._store.read_segments(record.video_id)

    def scenes(self, video: str, params: Mapping[str, Json] | None = None
               ) -> tuple[VideoRecord, list[JsonObject]]:
        """The scenes (shots) the ``shots`` sampler sees in a video: ``{"scene", "start",
        "end", "frame_idx", "frames"}`` each (seconds of the indexed frames; the last scene
        ends at the video's end).

        Raises:
            ConfigError / UnknownNameError: bad ``shots`` parameters. VideoNotFoundError.
        """
        from framedex.query.samplers.shots import ShotsSampler

        sampler = create_sampler("shots", **dict(params or {}))
        assert isinstance(sampler, ShotsSampler)
        record = self._store.find_video(video)
        frames = self._frames(record)[0]
        n = len(frames.pts_sec)
        starts: list[int] = [0, *sampler.cuts(frames.vectors, n).tolist()] if n else []
        rows: list[JsonObject] = []
        for i, a in enumerate(starts):
            b = starts[i + 1] if i + 1 < len(starts) else n
            end = float(frames.pts_sec[b]) if b < n else max(float(record.duration),
                                                              float(frames.pts_sec[-1]))
            rows.append({"scene": i + 1, "start": round(float(frames.pts_sec[a]), 3),
                         "end": round(end, 3), "frame_idx": int(frames.frame_idx[a]),
                         "frames": b - a})
        return record, rows

    def _frames(self, record: VideoRecord) -> tuple[FrameArrays, bool]:
        """The video's frames (through the cache), and whether the cache had them."""
        key = (self._store.uri, record.video_id, record.generation)
        return self._frame_cache.get_or_load(key, lambda: self._store.read_frames(record.video_id))

    # -- queries --------------------------------------------------------------------------

    @_recovering
    def search(self, text: str | Sequence[str] | None = None, *,
               image: Array | Sequence[Array] | None = None,
               entity: str | Sequence[str] | None = None,
               operator: str = OPERATORS[0], compose: bool = False,
               limit: int = DEFAULT_LIMIT, group_by: str = GROUP_BY[0],
               filters: SearchFilters | None = None,
               collection: str | None = None,
               threshold: str = DEFAULT_THRESHOLD) -> list[Moment] | list[VideoHit]:
        """Ranked moments (or videos, ``group_by="video"``) matching a query.

        A query has one or more parts: texts and/or RGB images (an image query finds the same
        moments a text does, through the same filters). One part searches every indexed
        frame. Several parts rank videos by LanceDB's MaxSim over their segment vectors:
        ``operator="and"`` by the sum over the parts of each part's best segment ("videos that
        show all of these"), ``"or"`` by the best single part; each hit's moments are the
        parts' best segments.

        A text may reference entities, ``"<@ENTITY_ID> on a white background"``: its part is
        then the entities' vectors fused with the rest of the text. ``compose=True`` fuses
        every text, image and entity into one part ("this, doing that"; Twelve Labs' composed
        query). How a part is fused: ``framedex.query.compose``.

        Args:
            text: a text or a list of texts (each may hold ``<@ENTITY_ID>`` references).
            image: an RGB uint8 array (H, W, 3) or a list of them, at most
                ``framedex.rules.MAX_QUERY_IMAGES`` (:meth:`load_images` decodes files and
                uploads).
            entity: entity ids, as if written ``<@ENTITY_ID>`` in the first text (or a part
                of their own without a text).
            operator: ``or`` or ``and`` (how several parts combine).
            compose: fuse everything into one query vector (``operator`` then has no parts
                to combine).
            limit: results to return.
            group_by: ``moment`` or ``video``.
            filters: metadata filters.
            collection: search only the videos of this collection (a Twelve Labs index).
            threshold: the least confidence a result must have, ``high``, ``medium``,
                ``low`` (the default) or ``none`` (every result, however weak); a result's
                ``confidence`` is its score's margin over the query's background
                (``framedex.rules.CONFIDENCE_TABLE``, calibrated on the synthetic world).

        Raises:
            ConfigError: no part, empty text, a bad image, entity reference, limit, operator,
            group_by or threshold; too many images, parts or entities. NotFoundError: an
            unknown collection or entity. EmptyLibraryError: nothing indexed.
            EncoderMismatchError: an entity embedded with another encoder.
        """
        from framedex.query.compose import fuse, plan_parts
        from framedex.query.images import check_image

        texts = [text] if isinstance(text, str) else list(text or [])
        images = [image] if isinstance(image, np.ndarray) else list(image or [])
        entities = [entity] if isinstance(entity, str) else list(entity or [])
        check(bool(texts or images or entities), "text", text,
              "give a text or an image (or an entity) to search for")
        for t in texts:
            check_text("text", t)
        for im in images:
            check_image(im)
        for e in entities:
            check_id("entity", e)
        check(len(images) <= MAX_QUERY_IMAGES, "image", f"<{len(images)} images>",
              LIMITS["images"].rule())
        check(isinstance(compose, bool), "compose", compose, "must be true or false")
        plan = plan_parts(texts, len(images), entities, compose)
        check(len(plan) <= MAX_PARTS, "text", len(plan),
              f"a query has at most {MAX_PARTS} parts (texts and images)")
        check(operator in OPERATORS, "operator", operator, f"must be one of {', '.join(OPERATORS)}")
        check(not compose or operator == OPERATORS[0], "operator", operator,
              "combines a query's parts; a composed query is one vector (drop compose, or "
              "the operator)")
        check(group_by in GROUP_BY, "group_by", group_by, f"must be one of {', '.join(GROUP_BY)}")
        check(threshold in THRESHOLDS, "threshold", threshold,
              f"must be one of {', '.join(THRESHOLDS)}")
        check_limit(limit, LIMITS["limit"])
        if collection is not None:
            ids = self.collection_ids(collection)
            if not ids:  # an empty collection has no match, even in an empty library
                return []
            base = filters or SearchFilters()
            if base.video_ids is not None:
                ids = ids & base.video_ids
            from dataclasses import replace

            filters = replace(base, video_ids=ids)
        if self._store.count_videos() == 0:  # before loading a model for nothing
            raise EmptyLibraryError(f"the store {self._store.uri} has no indexed video: run "
                                    "`framedex index PATH` first")
        refs = list(dict.fromkeys(e for part in plan for e in part.entities))
        known = dict(zip(refs, self.entity_vectors(refs), strict=True)) if refs else {}
        encoder = self._query_encoder()  # a first-use model load is not query latency
        if images:
            self._image_encoder()
        t0 = time.perf_counter()
        pictures = (self.encoder.encode_images(images) if images
                    else np.zeros((0, 0), np.float32))
        queries = np.stack([fuse(
            np.stack([self._text_cache.get_or_encode(t, encoder.encode_text)
                      for t in part.texts]) if part.texts else None,
            np.stack([*(known[e] for e in part.entities),
                      *(pictures[i] for i in part.images)])
            if part.entities or part.images else None) for part in plan]).astype(np.float32)
        if len(queries) == 1:
            hits = search_library(self._store, queries[0], limit=limit, group_by=group_by,
                                  filters=filters, threshold=threshold)
        else:
            if self._store.count_video_vectors() < self._store.count_videos():
                self._store.backfill_video_vectors()  # a store indexed before the table existed
            hits = search_parts(self._store, queries, operator=operator, limit=limit,
                                group_by=group_by, filters=filters,
                                frames=lambda record: self._frames(record)[0],
                                threshold=threshold)
        if self._query_log is not None:
            logged = f" {operator.upper()} ".join(part.label for part in plan)
            self._query_log.record(kind="search", query=logged, budget=limit,
                                  latency_ms=(time.perf_counter() - t0) * 1000.0,
                                  result_size=len(hits),
                                  params={"group_by": group_by, "operator": operator,
                                          "parts": len(queries), "compose": compose,
                                          "images": len(images), "entities": len(refs),
                                          "threshold": threshold,
                                          "filters": _filters_json(filters)})
        return hits

    def _image_encoder(self) -> ImageEncoder:
        """The full encoder for image queries, checked against the store's encoder."""
        encoder = self.encoder
        self._check_encoder(encoder.identity)
        return encoder

    @_recovering
    def select(self, video: str, question: str, *, sampler: str | None = None,
               budget: int | None = None, tokens: int | None = None,
               params: Mapping[str, Json] | None = None, start: float | None = None,
               end: float | None = None, rollout_key: str | None = None) -> SelectResult:
        """Pick the frames of ``video`` a video LLM should see for ``question``.

        Args:
            video: id, unique id prefix or indexed path.
            question: the question (non-empty).
            sampler: a registered sampler (None: the rollout's arm for ``rollout_key`` when
                the library has a rollout, else the library's default sampler).
            budget: frames to choose (K >= 1); default 8 unless ``tokens`` is given.
            tokens: a VLM token budget instead of a frame count (not both).
            params: sampler parameters.
            start: choose only among frames at or after this time (seconds).
            end: choose only among frames before this time (seconds).
            rollout_key: what the rollout assigns arms by (a user or session id); None: the
                video's id and the question.

        Raises:
            ConfigError: bad question/budget/tokens/params/span. UnknownNameError: unknown
            sampler. VideoNotFoundError / EmptyLibraryError: no such indexed video.
        """
        check_text("question", question)
        spend = make_budget(budget, tokens)
        params = dict(params or {})
        check_span(start, end)
        # an unknown name or parameter fails before any read; the sampler is built once
        named = None if sampler is None else create_sampler(sampler, **params)
        record = self._store.find_video(video)  # before loading a model for nothing
        name, arm = self._pick_sampler(sampler, record.video_id, question, rollout_key)
        return self._select_record(record, question, name if named is None else named, arm,
                                   spend, params, start, end)

    def _pick_sampler(self, sampler: str | None, video_id: str, question: str,
                     rollout_key: str | None = None) -> tuple[str, str | None]:
        """The sampler a request gets, and its rollout arm: the named sampler (no arm), else
        the rollout's arm for the key (default: the video and the question), else the
        default sampler (no arm)."""
        if sampler is not None:
            return sampler, None
        if self.rollout is not None:
            arm = self.rollout.assign(rollout_key if rollout_key is not None
                                      else f"{video_id}\0{question}")
            return arm, arm
        return self.default_sampler, None

    def _select_record(self, record: VideoRecord, question: str, sampler: str | Sampler,
                       arm: str | None, spend: Budget, params: JsonObject,
                       start: float | None, end: float | None) -> SelectResult:
        """Select on a found video with a chosen sampler (a built one, or a name: the
        rollout's or the default), arguments already validated, and log it with its arm."""
        chosen = create_sampler(sampler, **params)
        encoder = self._query_encoder()  # a first-use model load is not query latency
        t0 = time.perf_counter()
        query = self._text_cache.get_or_encode(question, encoder.encode_text)
        frames, hit = self._frames(record)
        if start is not None or end is not None:
            frames = frames_in_span(frames, record, start, end)
        result = select_frames(frames, record, query, chosen, spend, question=question,
                               params=params, started=t0)
        result.arm = arm
        if self._query_log is not None:
            self._query_log.record(kind="select", query=question, sampler=result.sampler,
                                  budget=result.budget, tokens=result.tokens,
                                  video_id=result.video_id, latency_ms=result.latency_ms,
                                  result_size=len(result.indices), params=result.params,
                                  cache_hit=hit, arm=arm)
        return result

    def deliver(self, result: SelectResult, options: DeliveryOptions | None = None, *,
                include: Sequence[str] = ("frames",), max_side: int | None = None,
                width: int | None = None, payload_format: str = PAYLOAD_FORMATS[0],
                quality: int = DEFAULT_QUALITY,
                payload_options: Mapping[str, Json] | None = None) -> Delivery:
        """Decode the chosen frames at their tiers with the video's own decoder, and build
        JPEGs, a chat payload (``openai``/``gemini``; ``payload_options`` adds ``model``,
        ``system``, ``max_tokens``), the cost line and the plot.

        Args:
            options: the :class:`DeliveryOptions`, made (and so checked) before the selection
                ran; None: the keyword arguments, checked here.

        Raises:
            ConfigError: bad include/format/sizes. VideoOpenError: the source file is gone or
            changed. DecodeError: decoding fails where a chosen frame lies.
        """
        if result.record is None:
            raise ConfigError("result is invalid: pass a SelectResult from Library.select")
        if options is None:
            options = DeliveryOptions(include=include, payload_format=payload_format,
                                      max_side=max_side, width=width, quality=quality,
                                      payload_options=dict(payload_options or {}))
        return deliver(result, options, decoder=self._decoder_for(result.record))

    def payload(self, result: SelectResult, fmt: str = PAYLOAD_FORMATS[0], *,
                max_side: int | None = None) -> JsonObject:
        """The OpenAI/vLLM or Gemini chat request body for a selection (:meth:`deliver` with
        ``include=("payload",)``)."""
        out = self.deliver(result, include=("payload",), max_side=max_side, payload_format=fmt)
        assert out.payload is not None
        return out.payload

    @_recovering
    def frames(self, video: str, frame_idx: Sequence[int], *,
               tiers: Sequence[str | None] | None = None, max_side: int | None = None,
               width: int | None = None) -> list[Array]:
        """Decode indexed frames of a video (RGB uint8), in the requested order.

        Raises:
            NotFoundError: a ``frame_idx`` that is not an indexed frame of the video.
            VideoNotFoundError: unknown video. VideoOpenError/DecodeError: the file fails.
        """
        from framedex.query.frames import decode_frames

        record = self._store.find_video(video)
        wanted = [int(f) for f in frame_idx]
        indexed = set(self._frames(record)[0].frame_idx.tolist()) if wanted else set()
        missing = [f for f in wanted if f not in indexed]
        if missing:
            raise NotFoundError(f"frame_idx {missing[:5]} {'are' if len(missing) > 1 else 'is'}"
                                f" not indexed in video {record.video_id}: only indexed frames "
                                "can be read")
        if not wanted:
            return []
        with verified_source(record) as source:
            return decode_frames(source, wanted, decoder=self._decoder_for(record),
                                 tiers=tiers, max_side=max_side, width=width)

    @_recovering
    def frame_jpeg(self, video: str, frame_idx: int, *, width: int | None = None,
                   quality: int = 90) -> bytes:
        """One indexed frame as JPEG bytes, at most ``width`` wide (never upscaled).

        Raises:
            ConfigError: a width or quality outside its rule (``framedex.rules.LIMITS``).
            NotFoundError / VideoNotFoundError: as :meth:`frames`.
        """
        from framedex.query.frames import encode_jpeg

        check_limit(quality, LIMITS["quality"])
        return encode_jpeg(self.frames(video, [frame_idx], width=width)[0], quality)

    @_recovering
    def frame_at(self, video: str, t: float) -> int:
        """The native ``frame_idx`` of the indexed frame nearest to ``t`` seconds (for a
        thumbnail of a moment or a time; read through the frames cache).

        Raises:
            ConfigError: ``t`` is not a finite number. VideoNotFoundError: unknown video.
            NotFoundError: the video has no indexed frame.
        """
        check(isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t), "t",
              t, "must be a finite number of seconds")
        record = self._store.find_video(video)
        frames = self._frames(record)[0]
        if len(frames.pts_sec) == 0:
            raise NotFoundError(f"video {record.video_id} has no indexed frame: re-index it")
        return int(frames.frame_idx[int(np.argmin(np.abs(frames.pts_sec - float(t))))])

    @_recovering
    def open_source(self, video: str) -> SourceFile:
        """Open the source file of an indexed video for reading (a player's range requests);
        see :func:`framedex.query.delivery.open_source`. The caller closes ``.file``.

        Raises:
            VideoNotFoundError: unknown video. VideoOpenError: the file is gone or changed.
        """
        return open_source(self._store.find_video(video))

    def _decoder_for(self, record: VideoRecord) -> str:
        """The backend that indexed the video when it is available here, else ``auto`` (the
        decoder contract tests hold every backend to the same frames)."""
        from framedex.indexer.decode import list_decoders

        return record.decoder if record.decoder in list_decoders() else "auto"

    def embed_text(self, texts: str | Sequence[str]) -> Array:
        """(n, D) L2-normalised text embeddings.

        Raises:
            ConfigError: no text or too many (``framedex.rules.LIMITS["embed_texts"]``), or a
            text outside its rule.
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        limit = LIMITS["embed_texts"]
        check(limit.holds(len(items)), "text", f"<{len(items)} texts>", limit.rule())
        for t in items:
            check_text("text", t)
        return self._query_encoder().encode_text(items)

    def load_image(self, source: bytes | str | os.PathLike[str], name: str = "image") -> Array:
        """Decode a query image (bytes or a path) into RGB, with the limits every face shares
        (:meth:`load_images`).

        Raises:
            ConfigError: unreadable, too large or too small.
        """
        return self.load_images([source], name)[0]

    def load_images(self, sources: Sequence[bytes | str | os.PathLike[str]],
                    name: str | Sequence[str] = "image") -> list[Array]:
        """Decode the query images of one request into RGB arrays at the model's input size.

        Every header is read first, so a request over the per-request pixel limit is refused
        before any pixel is decoded; then each image is decoded straight to the encoder's
        input size (the shorter side), at most ``MAX_IMAGE_DECODES`` at once for this library,
        so image queries take bounded memory whatever the traffic.

        Args:
            sources: the images (bytes or paths).
            name: the parameter they came in (for errors), or one name per image.

        Raises:
            ConfigError: an image unreadable, too large or too small, or too many pixels in all.
        """
        from framedex.query.images import QueryImage, check_request_pixels

        names = [name] * len(sources) if isinstance(name, str) else list(name)
        check(len(names) == len(sources), "name", len(names), "must name every image")
        opened: list[QueryImage] = []
        try:
            for source, label in zip(sources, names, strict=True):
                opened.append(QueryImage(source, label))
            check_request_pixels(opened)
            side = self._query_image_side()
            out = []
            for image in opened:
                with self._image_decodes:
                    out.append(image.decode(side))
            return out
        finally:
            for image in opened:
                image.close()

    def _query_image_side(self) -> int:
        """The image tower's input size (the shorter side a query image is decoded to): from
        the store's encoder, else the model's files (no image tower is loaded for it)."""
        identity = self._store.encoder_identity() or self.text_encoder.identity
        preprocess = identity.get("preprocess")
        size = preprocess.get("size", 224) if isinstance(preprocess, Mapping) else 224
        if isinstance(size, Sequence) and not isinstance(size, str):
            size = max(int(s) for s in size if isinstance(s, (int, float)))
        return int(size) if isinstance(size, (int, float)) else 224

    def embed_images(self, images: Sequence[Array]) -> Array:
        """(n, D) L2-normalised embeddings of RGB uint8 images (H, W, 3)."""
        return self.encoder.encode_images(list(images))

    # -- logs, SQL, health and upkeep -----------------------------------------------------

    @_recovering
    def stats(self) -> list[QueryStats]:
        """Count and p50/p95 latency of logged queries per (kind, sampler); ``arm_stats``
        compares rollout arms."""
        if self._query_log is not None:
            self._query_log.flush()
        return query_stats(self._store)

    def cache_stats(self) -> JsonObject:
        """Every in-memory cache of this library: hit rates, entries, bytes and bounds of the
        frames and query-text caches, and the store's (Lance's index and metadata caches,
        search row maps, the videos table); ``image_encoder`` says whether the full encoder
        (torch) is loaded."""
        out: JsonObject = {"frames": self._frame_cache.stats().to_json(),
                           "text": self._text_cache.stats().to_json()}
        out.update(self._store.memory())
        out["image_encoder"] = {"loaded": self._encoder is not None}
        return out

    @_recovering
    def sql(self, query: str) -> pa.Table:
        """DuckDB SQL over ``videos``, ``video_paths``, ``query_log``, ``jobs``, ``answers`` and
        ``answer_feedback``.

        Raises:
            ConfigError: empty or invalid SQL.
        """
        if self._query_log is not None:
            self._query_log.flush()
        self._flush_answers()
        return run_sql(self._store, query)

    def build_index(self, *, table: str | None = None, index_type: str | None = None,
                    num_partitions: int | None = None, num_sub_vectors: int | None = None,
                    force: bool = False) -> JsonObject:
        """Build the ANN index library search uses (default: IVF_HNSW_SQ on the 6-s segments,
        see ``framedex.store.ann``).

        Below :data:`MIN_ANN_ROWS` frames an exact search is already fast and an index only
        costs build time, so nothing is built unless ``force``: the result then says why in
        ``skipped`` (not an error: the library is fine as it is).

        Returns:
            what was built (``index_type``, ``table``, ``rows``, ``seconds``...), or
            ``{"skipped": reason, "rows": frames}``.

        Raises:
            EmptyLibraryError: nothing indexed. ConfigError: a bad index setting.
        """
        if self._store.count_videos() == 0:
            raise EmptyLibraryError(f"the store {self._store.uri} has no indexed video: run "
                                    "`framedex index PATH` first")
        rows = sum(v.num_indexed for v in self._store.list_videos())
        if rows < MIN_ANN_ROWS and not force:
            return {"skipped": f"the library has {rows:,} frames: exact search over fewer than "
                               f"{MIN_ANN_ROWS:,} takes milliseconds, and an ANN index would "
                               "only cost build time; index more videos first, or pass --force",
                    "rows": rows}
        t0 = time.perf_counter()
        info = self._store.build_index(table=table, index_type=index_type,
                                      num_partitions=num_partitions,
                                      num_sub_vectors=num_sub_vectors)
        info["seconds"] = round(time.perf_counter() - t0, 3)
        return info

    def store_notes(self) -> list[str]:
        """Things a user of this store should know (e.g. that it uses the toy model)."""
        identity = self._store.encoder_identity() or {}
        if identity.get("spec") == "synthetic-shapes":
            return [SYNTHETIC_NOTE]
        return []

    @staticmethod
    def query_parts(texts: Sequence[str], *, images: int = 0,
                    entity: Sequence[str] = (), compose: bool = False) -> list[str]:
        """The labels of a search's parts, in the order its moments' ``part`` numbers them
        (``["a red circle <@ENTITY>", "[image]"]``; one label for a composed query).

        Raises:
            ConfigError: a malformed entity reference.
        """
        from framedex.query.compose import plan_parts

        return [p.label for p in plan_parts(list(texts), images, list(entity), compose)]

    def query_notes(self, text: str) -> list[str]:
        """Warnings about a query, e.g. words the shipped toy model cannot know."""
        identity = self._store.encoder_identity() or {}
        if identity.get("spec") != "synthetic-shapes":
            return []
        from framedex.synth.captions import outside_world

        unknown = outside_world(text)
        if not unknown:
            return []
        words = ", ".join(repr(w) for w in unknown[:5])
        return [f"note: {words} {'is' if len(unknown) == 1 else 'are'} outside the world of "
                f"this store's model; {SYNTHETIC_NOTE}, so these scores mean little"]

    def optimize(self, **options: object) -> JsonObject:
        """Bound the store's disk use (compaction, retention, old versions, dead rows)."""
        if self._query_log is not None:
            self._query_log.flush()
        self._flush_answers()
        return self._store.optimize(**options)

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per table."""
        return self._store.disk_usage()


@dataclass(frozen=True)
class Internals:
    """What a :class:`Library` holds below the facade: for tests and maintenance scripts,
    never for a face (the faces import only names in ``__all__``, which this is not;
    ``tests/test_architecture.py`` checks it)."""

    store: Store
    frame_cache: FrameCache
    text_cache: TextCache
    query_log: QueryLog | None


def internals(library: Library) -> Internals:
    """The store, the caches and the query log of ``library`` (see :class:`Internals`)."""
    return Internals(library._store, library._frame_cache, library._text_cache,
                     library._query_log)


def _exists(path: str | os.PathLike[str]) -> bool:
    """Whether a path to index exists; False, not an error, for a ``~user`` nobody is or a
    name the file system cannot hold (``discover`` then reports why, one line per path)."""
    try:
        return os.path.exists(Path(path).expanduser())
    except (RuntimeError, ValueError):
        return False


def _filters_json(filters: SearchFilters | None) -> JsonObject | None:
    if filters is None or not filters.active:
        return None
    out: JsonObject = {"min_duration": filters.min_duration,
                           "max_duration": filters.max_duration,
                           "path_glob": filters.path_glob, "metadata": filters.metadata}
    if filters.video_ids is not None:
        out["video_ids"] = len(filters.video_ids)
    return out
