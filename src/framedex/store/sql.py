"""SQL and statistics over the store's small tables (DuckDB on Arrow), and the query log.

Tables ``videos``, ``video_paths``, ``query_log``, ``jobs``, ``answers`` and
``answer_feedback`` are registered in a fresh
in-memory DuckDB connection as the Lance datasets themselves (read-only scans with projection
and filter pushdown), so a malformed query cannot change the store.

Example::

    run_sql(store, "SELECT kind, count(*) FROM query_log GROUP BY kind")   # -> pa.Table
    query_stats(store)   # [{"kind": "select", "sampler": "bolt", "count": 3, "p50_ms": ...}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

import pyarrow as pa

from framedex.errors import ConfigError, check

if TYPE_CHECKING:
    from framedex.store.base import Store

#: The tables SQL can see, all small (one row per video, path, job, query, answer or rating).
SQL_TABLES = ("videos", "video_paths", "query_log", "jobs", "answers", "answer_feedback")


def run_sql(store: Store, query: str) -> pa.Table:
    """Run a DuckDB SQL query over the tables in :data:`SQL_TABLES`.

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


class QueryStats(TypedDict):
    """One group of :func:`query_stats`."""

    kind: str
    sampler: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    mean_results: float | None
    cache_hit_rate: float | None


def query_stats(store: Store) -> list[QueryStats]:
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
    return cast(list[QueryStats], rows)


# -- rollout arms ---------------------------------------------------------------------------

_ARM_ASKS_SQL = """
SELECT a.arm, a.sampler, a.cached, a.select_ms, a.model_ms, a.latency_ms,
       coalesce(a.prompt_tokens, 0) + coalesce(a.completion_tokens, 0) AS spent,
       (a.prompt_tokens IS NOT NULL OR a.completion_tokens IS NOT NULL) AS has_usage,
       f.rating
FROM answers a
LEFT JOIN (SELECT answer_id, arg_max(rating, ts) AS rating FROM answer_feedback
           GROUP BY answer_id) f USING (answer_id)
WHERE a.arm IS NOT NULL
"""

_ARM_SELECTS_SQL = """
SELECT arm, count(*) AS selects, quantile_cont(latency_ms, 0.5) AS select_p50_ms
FROM query_log WHERE kind = 'select' AND arm IS NOT NULL GROUP BY arm
"""

#: Two-sided confidence level of every interval ``arm_stats`` reports.
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the standard normal's 97.5 % quantile
#: Bootstrap resamples of a mean (seeded: the same rows give the same interval).
BOOTSTRAP_RESAMPLES = 2000
#: Above this many values a mean's interval is the normal one (the bootstrap's agrees there).
BOOTSTRAP_MAX_N = 5000
#: How ``arm_stats`` computes each interval (what ``framedex stats --by arm`` prints).
INTERVALS = {
    "good_rate": "Wilson score interval",
    "good_rate_diff": "Newcombe's hybrid score interval (from the two Wilson intervals)",
    "latency_p50": "distribution-free order-statistic interval of the median (binomial)",
    "tokens_mean": f"percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seeded; normal "
                   f"above n={BOOTSTRAP_MAX_N})",
}


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion ``k / n`` (None when ``n`` is 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + _Z ** 2 / n
    centre = (p + _Z ** 2 / (2 * n)) / denom
    half = _Z * ((p * (1 - p) / n + _Z ** 2 / (4 * n * n)) ** 0.5) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); the formula leaves rounding dust there
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float] | None:
    """95 % interval of ``k1/n1 - k2/n2`` (Newcombe 1998, method 10)."""
    a, b = wilson(k1, n1), wilson(k2, n2)
    if a is None or b is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    lo = d - ((p1 - a[0]) ** 2 + (b[1] - p2) ** 2) ** 0.5
    hi = d + ((a[1] - p1) ** 2 + (p2 - b[0]) ** 2) ** 0.5
    return max(-1.0, lo), min(1.0, hi)


def median_ci(values: Any) -> tuple[float, float] | None:
    """95 % distribution-free interval of the median: order statistics ``x(j)`` and
    ``x(n - j + 1)`` with the largest ``j`` such that ``P(Binomial(n, 1/2) < j) <= 2.5 %``
    (exact up to n = 1000, the normal approximation above). None below 6 values, where no
    such ``j`` exists."""
    import math

    import numpy as np

    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n < 6:
        return None
    if n <= 1000:
        total, cdf, j = 2 ** n, 0, 0
        while True:
            cdf += math.comb(n, j)  # P(B <= j) * 2^n
            if cdf * 40 > total:  # P(B <= j) > 2.5 %: x(j + 1) is the lower bound
                break
            j += 1
    else:
        j = math.floor(n / 2 - _Z * math.sqrt(n) / 2)
    j = max(j, 1)
    return float(x[j - 1]), float(x[n - j])


def mean_ci(values: Any) -> tuple[float, float] | None:
    """95 % interval of a mean: percentile bootstrap (seeded) up to
    :data:`BOOTSTRAP_MAX_N` values, the normal interval above. None below 2 values."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    if n > BOOTSTRAP_MAX_N:
        half = _Z * float(x.std(ddof=1)) / n ** 0.5
        return float(x.mean()) - half, float(x.mean()) + half
    rng = np.random.default_rng(0)
    means = np.concatenate([x[rng.integers(0, n, size=(200, n))].mean(axis=1)
                            for _ in range(BOOTSTRAP_RESAMPLES // 200)])
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def arm_stats(store: Store, rollout: str | None = None) -> dict[str, Any]:
    """Compare rollout arms on the asks and selections logged with an arm.

    Per arm: ``asks`` (answers served), ``cached`` and ``cache_hit_rate``; over the model
    calls (asks that were not cached): ``model_calls``, ``model_p50_ms`` and
    ``latency_p50_ms`` (the whole ask) with median intervals, ``select_p50_ms``, and
    ``tokens_mean`` (prompt + completion per call, from the servers' ``usage``) with its
    interval; ``ratings``, ``good`` and ``good_rate`` (the newest rating of each answer) with
    its Wilson interval, and ``good_rate_diff`` against the reference arm (the arm with the
    most asks) with Newcombe's interval; ``selects`` and ``select_log_p50_ms`` from the query
    log. Intervals are 95 %, ``[low, high]`` or None where too few values exist.

    Returns:
        ``{"rollout", "reference", "confidence", "intervals", "arms": [...]}`` (arms sorted
        by name; empty when nothing was logged with an arm).
    """
    import numpy as np

    asks = run_sql(store, _ARM_ASKS_SQL).to_pylist()
    names = set(store.sql_source("query_log").schema.names)
    selects = {r["arm"]: r for r in run_sql(store, _ARM_SELECTS_SQL).to_pylist()} \
        if "arm" in names else {}
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in asks:
        by_arm.setdefault(r["arm"], []).append(r)
    arms = sorted(set(by_arm) | set(selects))
    reference = max(arms, key=lambda a: (len(by_arm.get(a, [])), a == min(arms))) \
        if arms else None

    def ratings(rows: list[dict[str, Any]]) -> tuple[int, int]:
        rated = [r["rating"] for r in rows if r["rating"] is not None]
        return sum(1 for r in rated if r == "good"), len(rated)

    ref_good, ref_n = ratings(by_arm.get(reference, [])) if reference else (0, 0)
    out = []
    for arm in arms:
        rows = by_arm.get(arm, [])
        calls = [r for r in rows if not r["cached"]]
        model_ms = [r["model_ms"] for r in calls]
        total_ms = [r["latency_ms"] for r in calls]
        spent = [r["spent"] for r in calls if r["has_usage"]]
        good, rated = ratings(rows)
        sel = selects.get(arm, {})
        out.append({
            "arm": arm, "asks": len(rows), "cached": len(rows) - len(calls),
            "cache_hit_rate": (len(rows) - len(calls)) / len(rows) if rows else None,
            "model_calls": len(calls),
            "model_p50_ms": float(np.median(model_ms)) if model_ms else None,
            "model_p50_ci": median_ci(model_ms),
            "latency_p50_ms": float(np.median(total_ms)) if total_ms else None,
            "latency_p50_ci": median_ci(total_ms),
            "select_p50_ms": float(np.median([r["select_ms"] for r in calls])) if calls
            else None,
            "tokens_mean": float(np.mean(spent)) if spent else None,
            "tokens_ci": mean_ci(spent),
            "ratings": rated, "good": good, "good_rate": good / rated if rated else None,
            "good_rate_ci": wilson(good, rated),
            "good_rate_diff": (good / rated - ref_good / ref_n) if rated and ref_n
            and arm != reference else None,
            "good_rate_diff_ci": newcombe(good, rated, ref_good, ref_n)
            if arm != reference else None,
            "selects": int(sel.get("selects") or 0),
            "select_log_p50_ms": sel.get("select_p50_ms"),
        })
    return {"rollout": rollout, "reference": reference, "confidence": CONFIDENCE,
            "intervals": INTERVALS, "arms": out}
