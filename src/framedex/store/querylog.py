"""The query log, off the hot path: rows are buffered in memory and written in batches.

Writing one ``query_log`` row per query was one Lance commit per query: ~6 ms of a ~13 ms
select, one data file and one version each (843 selects, 843 files), and lock waits between
concurrent queries. Now a query only appends to a list; a background thread writes the rows
every ``flush_seconds`` (or at once when ``flush_rows`` are waiting), and :meth:`QueryLog.close`
(called on shutdown and at interpreter exit) writes the rest.

A crash (kill -9) may lose at most the rows of the last ``flush_seconds``: the log is telemetry.
It never holds a video, a frame or an index.

Example::

    qlog = QueryLog(store)
    qlog.record(kind="select", query="when?", latency_ms=3.2, result_size=8, sampler="aks")
    qlog.close()
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from framedex.errors import FramedexError, check
from framedex.store.flusher import Flusher
from framedex.store.schema import now_utc

if TYPE_CHECKING:
    from framedex.store.base import Store

log = logging.getLogger(__name__)

#: Rows buffered before a flush is due regardless of time.
DEFAULT_FLUSH_ROWS = 512
#: Seconds between flushes (the most a crash can lose).
DEFAULT_FLUSH_SECONDS = 1.0


class QueryLog:
    """A buffered writer of ``query_log`` rows for one store.

    Args:
        store: the store to write to.
        flush_rows: flush when this many rows wait.
        flush_seconds: flush at least this often while rows wait.
    """

    #: The table the rows go to (a subclass writes another small table the same way).
    table = "query_log"

    def __init__(self, store: Store, *, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_seconds: float = DEFAULT_FLUSH_SECONDS):
        check(flush_rows >= 1, "flush_rows", flush_rows, "must be >= 1")
        check(flush_seconds > 0, "flush_seconds", flush_seconds, "must be > 0")
        self.store, self.flush_rows, self.flush_seconds = store, flush_rows, flush_seconds
        self._rows: list[Mapping[str, object]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flusher = Flusher(self.flush, flush_seconds, f"framedex-{self.table}")
        self.written = 0
        self.failed = 0

    def record(self, *, kind: str, query: str, latency_ms: float, result_size: int,
               sampler: str | None = None, budget: int | None = None,
               tokens: int | None = None, video_id: str | None = None,
               params: dict[str, Any] | None = None, cache_hit: bool | None = None,
               arm: str | None = None) -> None:
        """Buffer one row (no I/O here). ``arm``: the rollout arm that chose the sampler."""
        self._buffer({
            "ts": now_utc(), "kind": kind, "sampler": sampler, "budget": budget,
            "tokens": tokens, "video_id": video_id, "query": query,
            "latency_ms": float(latency_ms), "result_size": int(result_size),
            "params": json.dumps(params or {}, sort_keys=True, default=str),
            "cache_hit": cache_hit, "arm": arm,
        })

    def _buffer(self, row: Mapping[str, object]) -> None:
        """Queue one row of :attr:`table` for the next flush."""
        with self._lock:
            if self._flusher.closed:
                return
            self._rows.append(row)
            due = len(self._rows) >= self.flush_rows
        self._flusher.start()
        if due:
            self._flusher.nudge()

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write the buffered rows now. A failed write is logged, never raised: a query that
        succeeded must not fail because its log row could not be written (a read-only store).

        Returns:
            the number of rows written.
        """
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self.store.append(self.table, rows)
            except (FramedexError, OSError, RuntimeError, ValueError) as ex:
                self.failed += len(rows)
                log.warning("could not write %d %s row(s): %s", len(rows), self.table, ex)
                return 0
            self.written += len(rows)
            return len(rows)

    def close(self) -> None:
        """Write what is buffered and stop the background thread (idempotent)."""
        self._flusher.close()
