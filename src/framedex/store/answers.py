"""Answers of a video LLM, kept in the store: the ``ask`` cache, its log, and users' ratings.

Every ``ask`` writes one ``answers`` row: the model's answer (``cached`` false), or the answer
it reused from the cache (``cached`` true, ``source_id`` naming the row it came from). A later
ask with the same ``cache_key`` (the key is built by ``framedex.query.ask.cache_key``: the
question, the video's id *and generation*, the sampler, its parameters and budget, the model,
the endpoint and the generation options) returns the newest model answer with that key without
calling the model.

Rows are written like the query log (:class:`~framedex.store.querylog.QueryLog`): buffered in
memory and flushed every second or 512 rows, off the request path. An in-process map of the
newest answers (by key and by id) serves hits that are not flushed yet; other processes see an
answer after its flush (at most a second later; until then they call the model once more).

Bounded like the query log: ``optimize`` deletes answers and ratings older than the retention
(30 days), and the answers of video generations that are no longer live, so a re-index (a new
generation: every key of the video changes) or a delete also frees their rows; from
:data:`INDEX_FROM_ROWS` answers on it keeps a BTREE index on ``cache_key``. Ratings go to
``answer_feedback`` at once (one small commit: they are rare and must not be lost).

Example::

    answers = AnswerLog(store)
    answers.record_answer(row)                 # an ANSWERS_SCHEMA row
    answers.lookup(key)                        # the newest model answer with that key, or None
    answers.add_feedback(row["answer_id"], "good")
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from framedex.errors import NotFoundError
from framedex.store.querylog import QueryLog
from framedex.store.schema import AnswerRow, now_utc, sql_str, sql_timestamp

if TYPE_CHECKING:
    from framedex.store.base import LanceParts, Store

#: Answers kept in memory per process for hits that are not flushed yet (and fast repeats).
RECENT_ANSWERS = 4096
#: From this many answers on, ``optimize`` keeps a BTREE index on ``cache_key`` (a lookup in
#: 100,000 answers: ~18 ms as a scan, 2-8 ms with the index; measured on the 2 dev cores).
INDEX_FROM_ROWS = 10_000


class AnswerLog(QueryLog):
    """The buffered writer and reader of the ``answers`` table of one store."""

    table = "answers"

    def __init__(self, store: Store, **options: Any):
        super().__init__(store, **options)
        self._recent_lock = threading.Lock()
        self._by_key: OrderedDict[str, AnswerRow] = OrderedDict()
        self._by_id: OrderedDict[str, AnswerRow] = OrderedDict()

    def record_answer(self, row: AnswerRow) -> None:
        """Buffer one ``answers`` row (no I/O); a model answer becomes the cache entry of its
        key at once in this process."""
        with self._recent_lock:
            if not row["cached"]:
                self._remember(self._by_key, row["cache_key"], row)
            self._remember(self._by_id, row["answer_id"], row)
        self._buffer(row)

    @staticmethod
    def _remember(table: OrderedDict[str, AnswerRow], key: str,
                  row: AnswerRow) -> None:
        table[key] = row
        table.move_to_end(key)
        while len(table) > RECENT_ANSWERS:
            table.popitem(last=False)

    def lookup(self, cache_key: str) -> AnswerRow | None:
        """The newest model answer (not a cached copy) with ``cache_key``, or None."""
        with self._recent_lock:
            row = self._by_key.get(cache_key)
        if row is not None:
            return row
        found = self.store.table_where(
            "answers", f"cache_key = {sql_str(cache_key)} AND cached = false").to_pylist()
        if not found:
            return None
        row = cast(AnswerRow, max(found, key=lambda r: r["ts"]))
        with self._recent_lock:
            self._remember(self._by_key, cache_key, row)
        return row

    def get(self, answer_id: str) -> AnswerRow:
        """One answer by id.

        Raises:
            NotFoundError: no such answer (never given, or expired).
        """
        with self._recent_lock:
            row = self._by_id.get(answer_id)
        if row is not None:
            return row
        found = self.store.table_where("answers",
                                       f"answer_id = {sql_str(answer_id)}").to_pylist()
        if not found:
            raise NotFoundError(f"no answer {answer_id[:64]!r}: answer ids come from ask; "
                                "answers are kept 30 days")
        return cast(AnswerRow, found[0])

    def add_feedback(self, answer_id: str, rating: str,
                     comment: str | None = None) -> dict[str, Any]:
        """Record a rating of an answer (written now, not buffered); the rating and the comment
        are the facade's to check (``Library.feedback``).

        Raises:
            NotFoundError: no such answer.
        """
        self.get(answer_id)
        row = {"answer_id": answer_id, "ts": now_utc(), "rating": rating, "comment": comment}
        self.store.append("answer_feedback", [row])
        return row


def expire_answers(store: LanceParts, retention: timedelta) -> int:
    """Delete answers and ratings older than ``retention``, and the answers of video
    generations that are not live (re-indexed or deleted videos). Deletes only what matches
    something (a delete that matches nothing still commits a version).

    Args:
        store: the store.
        retention: keep rows this long.

    Returns:
        the number of rows deleted.
    """
    old = f"ts < {sql_timestamp(now_utc() - retention)}"
    deleted = 0
    for name in ("answers", "answer_feedback"):
        ds = store.tables.writable(name)
        if ds is None:
            continue
        n = ds.count_rows(old)
        if n:
            ds.delete(old)
            deleted += int(n)
    ds = store.tables.writable("answers")
    if ds is None:
        return deleted
    live = {v.video_id: v.generation for v in store.list_videos()}
    pairs = ds.to_table(columns=["video_id", "generation"]).group_by(
        ["video_id", "generation"]).aggregate([("video_id", "count")])
    for vid, gen, n in zip(pairs.column("video_id").to_pylist(),
                           pairs.column("generation").to_pylist(),
                           pairs.column("video_id_count").to_pylist(), strict=True):
        if live.get(vid) != gen:
            ds.delete(f"video_id = {sql_str(vid)} AND generation = {int(gen)}")
            deleted += int(n)
    _index_keys(store)
    return deleted


def _index_keys(store: LanceParts) -> None:
    """A BTREE index on ``cache_key`` once the table is large enough to need one (later rows
    are folded in by the compaction ``optimize`` runs next; until then they are scanned)."""
    ds = store.tables.snapshot("answers")
    if ds is None or ds.count_rows() < INDEX_FROM_ROWS:
        return
    try:
        if any("cache_key" in (i.field_names or []) for i in ds.describe_indices()):
            return
    except (OSError, RuntimeError, ValueError):  # an index being built concurrently
        return
    from lancedb.index import BTree

    store.tables.table("answers").create_index("cache_key", config=BTree())


__all__ = ["INDEX_FROM_ROWS", "AnswerLog", "expire_answers"]
