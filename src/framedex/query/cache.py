"""In-memory caches of the query path: videos' frame matrices, and query-text embeddings.

"Cached multi-query QA" asks many questions about the same video. Reading its frames matrix
from Lance (14-17 ms for an hour at 1 fps) was most of a select; a 3,600 x 512 matrix-vector
product is ~1 ms. :class:`FrameCache` keeps recently used videos' :class:`FrameArrays` in
memory, bounded by bytes, least recently used out first.

Never stale: the key is ``(video_id, generation)``, and the generation comes from the
``videos`` row read at the table's newest version on every request. A re-index commits a new
generation and a delete removes the row, so an old entry can never be found again (it just
ages out). Ingesting *other* videos does not touch the key, so a busy ingest does not flush
the cache.

Both caches are thread-safe: the API's worker threads share the library's caches.

Example::

    cache = FrameCache(max_bytes=256 << 20)
    frames, hit = cache.get_or_load((vid, gen), lambda: store.read_frames(vid))
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np

from framedex.errors import check
from framedex.rules import MAX_TEXT
from framedex.store.base import FrameArrays
from framedex.values import Array

#: Default bound of the frames cache: ~55 hours of 512-d frames at 1 fps.
DEFAULT_CACHE_BYTES = 256 << 20
#: Default number of query texts whose embeddings are kept.
DEFAULT_TEXT_CACHE = 1024

V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    """Counters of one cache (what ``framedex stats`` and ``/health`` show).

    Attributes:
        size: what the cache holds, in ``unit``; ``max_size`` its bound.
        unit: ``bytes`` (the frames cache) or ``entries`` (the text cache, bounded by count:
            its JSON once called the count ``bytes``).
        memory, max_memory: the bytes such a cache holds, and their bound.
    """

    hits: int
    misses: int
    entries: int
    size: int
    max_size: int
    unit: str = "bytes"
    #: Bytes held and their bound, for a cache whose ``unit`` is not bytes (None: the size).
    memory: int | None = None
    max_memory: int | None = None

    @property
    def hit_rate(self) -> float | None:
        """hits / lookups, or None before the first lookup."""
        lookups = self.hits + self.misses
        return None if lookups == 0 else self.hits / lookups

    def to_json(self) -> dict[str, float | int | None]:
        """A JSON-ready dict."""
        out: dict[str, float | int | None] = {"hits": self.hits, "misses": self.misses,
                                               "entries": self.entries}
        if self.unit == "bytes":
            out.update(bytes=self.size, max_bytes=self.max_size)
        else:  # a count bound: the entries are the size
            out["max_entries"] = self.max_size
        if self.memory is not None:
            out.update(memory_bytes=self.memory, max_memory_bytes=self.max_memory)
        out["hit_rate"] = None if self.hit_rate is None else round(self.hit_rate, 4)
        return out


class _LRU(Generic[V]):
    """A thread-safe LRU map bounded by a total size."""

    def __init__(self, max_size: int, size_of: Callable[[V], int], unit: str = "bytes"):
        self.max_size, self._size_of, self._unit = max_size, size_of, unit
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item[0]

    def peek(self, key: Hashable) -> V | None:
        """Like :meth:`get`, without counting a hit or a miss."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def count(self, *, hit: bool) -> None:
        """Record a lookup resolved by the caller (see :meth:`FrameCache.get_or_load`)."""
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def put(self, key: Hashable, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_size:  # never fits (or the cache is off): do not keep it
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, size)
            self._size += size
            while self._size > self.max_size:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._items), self._size,
                              self.max_size, self._unit)

    def held(self) -> list[tuple[Hashable, V]]:
        """The entries, least recently used first (a copy)."""
        with self._lock:
            return [(k, v) for k, (v, _) in self._items.items()]


class FrameCache:
    """Frames matrices of recently used videos, bounded by ``max_bytes`` (0 disables it).

    Args:
        max_bytes: the most bytes of arrays kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        check(isinstance(max_bytes, int) and max_bytes >= 0, "cache_bytes", max_bytes,
              "must be an integer >= 0 (0 turns the cache off)")
        self._lru: _LRU[FrameArrays] = _LRU(max_bytes, lambda f: f.nbytes)
        # One loader per key at a time: eight API threads asking for the same cold video
        # read it once, not eight times (the others wait for it and count as hits).
        self._loading: dict[Hashable, threading.Lock] = {}
        self._loading_lock = threading.Lock()

    def get_or_load(self, key: Hashable,
                    load: Callable[[], FrameArrays]) -> tuple[FrameArrays, bool]:
        """The cached arrays for ``key``, else ``load()`` (kept when they fit).

        The arrays are shared between callers: they are made read-only, so a sampler cannot
        change what the next request sees.

        Returns:
            the arrays, and whether they came from the cache.
        """
        frames = self._lru.peek(key)
        if frames is not None:
            self._lru.count(hit=True)
            return frames, True
        with self._loading_lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            frames = self._lru.peek(key)  # another thread may have loaded it meanwhile
            if frames is not None:
                self._lru.count(hit=True)
                return frames, True
            self._lru.count(hit=False)
            try:
                frames = load()
                for arr in (frames.pos, frames.frame_idx, frames.pts_sec, frames.vectors):
                    arr.flags.writeable = False
                self._lru.put(key, frames)
            finally:
                with self._loading_lock:
                    self._loading.pop(key, None)
        return frames, False

    def stats(self) -> CacheStats:
        """Hits, misses, entries and bytes held."""
        return self._lru.stats()


class TextCache:
    """Query-text embeddings (small LRU by count; ``max_items=0`` disables it).

    Args:
        max_items: the most texts kept.
    """

    def __init__(self, max_items: int = DEFAULT_TEXT_CACHE):
        check(isinstance(max_items, int) and max_items >= 0, "text_cache", max_items,
              "must be an integer >= 0")
        self._lru: _LRU[Array] = _LRU(max_items, lambda _v: 1, unit="entries")

    def get_or_encode(self, text: str, encode: Callable[[list[str]], Array]) -> Array:
        """The (D,) embedding of ``text``, from the cache or ``encode([text])[0]``."""
        vec = self._lru.get(text)
        if vec is None:
            vec = np.asarray(encode([text]), dtype=np.float32)[0]
            vec.flags.writeable = False
            self._lru.put(text, vec)
        return vec

    def stats(self) -> CacheStats:
        """Hits, misses, entries and the most entries kept (``max_entries``), and the memory
        they hold (vectors and texts; bounded through the count: ``max_entries`` entries of
        the longest text allowed)."""
        counts = self._lru.stats()
        held = self._lru.held()
        size = sum(vec.nbytes + len(str(text)) for text, vec in held)
        per_vector = held[0][1].nbytes if held else 0
        return replace(counts, memory=size,
                       max_memory=counts.max_size * (per_vector + MAX_TEXT))
