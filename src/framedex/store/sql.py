"""SQL and statistics over the store's small tables (DuckDB on Arrow), and the query log.

Tables ``videos``, ``video_paths``, ``query_log`` and ``jobs`` are registered in a fresh
in-memory DuckDB connection as the Lance datasets themselves (read-only scans with projection
and filter pushdown), so a malformed query cannot change the store.

Example::

    run_sql(store, "SELECT kind, count(*) FROM query_log GROUP BY kind")   # -> pa.Table
    query_stats(store)   # [{"kind": "select", "sampler": "bolt", "count": 3, "p50_ms": ...}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from framedex.errors import ConfigError, check

if TYPE_CHECKING:
    from framedex.store.base import Store

#: The tables SQL can see, all small (one row per video, path, job or query).
SQL_TABLES = ("videos", "video_paths", "query_log", "jobs")


def run_sql(store: Store, query: str) -> pa.Table:
    """Run a DuckDB SQL query over the ``videos``, ``video_paths``, ``query_log`` and ``jobs``
    tables.

    DuckDB scans the Lance datasets directly (they are Arrow datasets), so only the columns
    and rows a query needs are read: ``stats`` over a million logged queries reads four
    columns, not the query texts.

    Args:
        store: a :class:`~framedex.store.Store`.
        query: one SQL statement.

    Returns:
        The result as a pyarrow Table (empty with no columns for statements without rows).

    Raises:
        ConfigError: empty or invalid SQL (the DuckDB message, on one line).
    """
    import duckdb

    check(isinstance(query, str) and query.strip() != "", "sql", query, "must be a SQL query")
    con = duckdb.connect(":memory:")
    try:
        for name in SQL_TABLES:
            con.register(name, store.sql_source(name))
        try:
            relation = con.sql(query)
            if relation is None:  # a statement without a result set
                return pa.table({})
            # DuckDB 2.x names it to_arrow_table(); 1.x arrow().
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            table = fetch()
        except duckdb.Error as ex:
            # DuckDB messages span lines (caret diagrams); the CLI promises one line.
            message = " ".join(str(ex).split())
            raise ConfigError(f"sql is invalid: {message}") from None
        return table.read_all() if isinstance(table, pa.RecordBatchReader) else table
    finally:
        con.close()


_STATS_SQL = """
SELECT kind,
       coalesce(sampler, '') AS sampler,
       count(*) AS count,
       quantile_cont(latency_ms, 0.5) AS p50_ms,
       quantile_cont(latency_ms, 0.95) AS p95_ms,
       avg(result_size) AS mean_results,
       avg(CASE WHEN cache_hit THEN 1.0 ELSE 0.0 END) FILTER (WHERE cache_hit IS NOT NULL)
           AS cache_hit_rate
FROM query_log
GROUP BY kind, coalesce(sampler, '')
ORDER BY kind, sampler
"""


def query_stats(store: Store) -> list[dict[str, Any]]:
    """Count and p50/p95 latency of logged queries per (kind, sampler).

    Returns:
        One dict per group: ``kind``, ``sampler`` ("" for searches), ``count``, ``p50_ms``,
        ``p95_ms``, ``mean_results``, ``cache_hit_rate`` (share of selects whose frames came
        from the in-memory cache; None for searches); sorted by kind then sampler. Empty when
        nothing is logged.
    """
    rows = run_sql(store, _STATS_SQL).to_pylist()
    for row in rows:
        for key in ("p50_ms", "p95_ms", "mean_results", "cache_hit_rate"):
            row[key] = None if row[key] is None else round(float(row[key]), 3)
        row["count"] = int(row["count"])
    return rows
