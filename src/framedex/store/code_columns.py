"""Segment codes laid out by segment position, for fast per-video maxima.

A multi-part ``and`` search scores every video of the codebook: per part, the best of its
segments' centroid scores. Stored row by row (each video's codes one after the other), that is
a gather and a ``reduceat`` over every segment: 7.1 ms for 2 parts at 1M segments. Laid out by
position instead (column ``s`` holds segment ``s`` of every video that has one, the videos
with the most segments first, so each column is a prefix of the same order), it is one gather
and one element-wise maximum per column over contiguous memory: 2.5 ms for 2 parts
(``scripts/bench_multivector.py layout``).

Columns that only a few videos reach (one long video among thousands of clips) would cost a
Python step each for little work, so segments past the last column of at least
:data:`COLUMN_MIN_ROWS` videos stay row by row (the *tail*) and take the ``reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A position becomes a column when at least this many videos have a segment there; below,
#: the per-column overhead (~3 us) costs more than the ``reduceat`` it replaces.
COLUMN_MIN_ROWS = 2048


@dataclass(frozen=True)
class CodeColumns:
    """Codes of R rows (videos), each of at least one segment, by segment position.

    Attributes:
        order: (R,) int64: the rows, most segments first (ties in row order).
        columns: column ``s`` holds the code of segment ``s`` of rows ``order[:len(column)]``.
        tail_codes: the codes of the segments after the last column, row by row, of rows
            ``order[:len(tail_starts)]`` (those with more segments than there are columns).
        tail_starts: offsets of those rows' codes in ``tail_codes``.
    """

    order: np.ndarray
    columns: tuple[np.ndarray, ...]
    tail_codes: np.ndarray
    tail_starts: np.ndarray

    @classmethod
    def from_rows(cls, codes: np.ndarray, starts: np.ndarray,
                  min_column: int = COLUMN_MIN_ROWS) -> CodeColumns:
        """The layout of rows stored one after the other: row ``r``'s codes are
        ``codes[starts[r]:starts[r + 1]]``, and no row is empty."""
        lengths = np.diff(starts)
        order = np.argsort(-lengths, kind="stable")
        by_length = lengths[order]
        longest = int(by_length[0]) if len(by_length) else 0
        # rows reaching position s: a prefix of `order`, shrinking with s
        reach = np.searchsorted(-by_length, -np.arange(1, longest + 1), side="right")
        width = int(np.sum(reach >= max(1, min_column))) if longest else 0
        if width == 0 and longest:
            width = 1  # every row has a first segment: one column always pays
        columns = tuple(codes[starts[order[:int(reach[s])]] + s] for s in range(width))
        tail_rows = order[:int(np.sum(by_length > width))]
        tail_lengths = lengths[tail_rows] - width
        tail_starts = np.concatenate([[0], np.cumsum(tail_lengths)[:-1]]).astype(np.int64) \
            if len(tail_rows) else np.zeros(0, dtype=np.int64)
        at = np.repeat(starts[tail_rows] + width - tail_starts, tail_lengths) \
            + np.arange(int(tail_lengths.sum()))
        tail_codes = codes[at]
        return cls(order.astype(np.int64), columns, tail_codes.astype(codes.dtype),
                   tail_starts)

    @property
    def nbytes(self) -> int:
        return int(self.order.nbytes + sum(c.nbytes for c in self.columns)
                   + self.tail_codes.nbytes + self.tail_starts.nbytes)

    def best(self, table: np.ndarray) -> np.ndarray:
        """Each row's best code score per part: ``table`` (P, C) float32 holds each part's
        score of each code; the result is (R, P) float32 in row order."""
        rows = len(self.order)
        out = np.empty((rows, len(table)), dtype=np.float32)
        if rows == 0:
            return out
        for p, scores in enumerate(table):
            scores = np.ascontiguousarray(scores, dtype=np.float32)
            best = np.take(scores, self.columns[0])
            for column in self.columns[1:]:
                head = best[:len(column)]
                np.maximum(head, np.take(scores, column), out=head)
            if len(self.tail_starts):
                tail = np.maximum.reduceat(np.take(scores, self.tail_codes), self.tail_starts)
                head = best[:len(tail)]
                np.maximum(head, tail, out=head)
            out[self.order, p] = best
        return out
