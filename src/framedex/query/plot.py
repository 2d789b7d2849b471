"""One picture of a frame selection: the relevance curve with the chosen frames, and the frames.

Top panel: relevance over time (the line), segment/shot boundaries (dotted verticals), the chosen
frames as markers (coloured by resolution tier when there are tiers). Bottom: a contact sheet of
the chosen frames, numbered 1..n in time order, each captioned with its timestamp and tier; the
same numbers mark them on the curve, so a glance links a peak to the picture behind it.

**Bounded cost, whatever the budget.** The API allows budgets up to 10,000 frames. The first
version drew one marker, one line and one label per chosen frame and a thumbnail of every one:
9.7 s at K = 250, 92.6 s at K = 1,000, and at K = 10,000 still running after 11 minutes with
8 GB of RSS. Now the sheet shows at most :data:`MAX_SHEET` frames, spread evenly in time over
the selection (its title says how many of how many), only those are numbered, and the markers
and lines of all K frames are drawn as one collection per tier.

matplotlib is imported inside :func:`plot_selection` with the non-interactive Agg backend, so
this works on servers without a display and costs nothing at import time.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.rules import TIERS, tier
from framedex.values import Array

_CURVE = "#555555"
_MAX_COLS = 8
#: Most thumbnails on the contact sheet (four rows of eight).
MAX_SHEET = 32


def sheet_members(chosen_timestamps: Sequence[float] | Array,
                  limit: int = MAX_SHEET) -> list[int]:
    """Which chosen frames get a thumbnail: all of them up to ``limit``, else ``limit`` spread
    evenly over the selection in time order.

    Returns:
        positions into the chosen frames (ascending time order).
    """
    order = np.argsort(np.asarray(chosen_timestamps, dtype=np.float64), kind="stable")
    if len(order) <= limit:
        return [int(i) for i in order]
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, limit)).astype(np.int64))
    return [int(order[i]) for i in picks]


def _clock(sec: float) -> str:
    s = float(sec)
    if s >= 3600:
        return f"{int(s // 3600)}:{int(s // 60 % 60):02d}:{s % 60:04.1f}"
    if s >= 60:
        return f"{int(s // 60)}:{s % 60:04.1f}"
    return f"{s:.1f}s"


def plot_selection(
    *,
    timestamps: Sequence[float] | Array,
    scores: Sequence[float] | Array | None,
    chosen_positions: Sequence[int],
    chosen_timestamps: Sequence[float] | None = None,
    boundaries: Sequence[float] | None = None,
    thumbnails: Sequence[Array] | None = None,
    sheet: Sequence[int] | None = None,
    tiers: Sequence[str | None] | None = None,
    title: str = "",
    dpi: int = 110,
) -> bytes:
    """Render the selection to a PNG.

    Args:
        timestamps: ``pts_sec`` of all N indexed frames, ascending.
        scores: relevance of all N frames, or None for query-free samplers (no curve).
        chosen_positions: positions into the N frames that were selected.
        chosen_timestamps: their ``pts_sec`` (default ``timestamps[chosen_positions]``).
        boundaries: segment/shot boundaries in seconds, drawn as dotted verticals.
        thumbnails: RGB arrays of the frames on the contact sheet: one per entry of
            ``sheet``, or (without ``sheet``) one per chosen frame, of which
            :func:`sheet_members` picks the ones shown; None = no contact sheet.
        sheet: which chosen frames the thumbnails are (positions into ``chosen_positions``,
            at most :data:`MAX_SHEET`; default :func:`sheet_members`).
        tiers: per chosen frame ``high``/``mid``/``low`` (or None): marker colour + caption.
        title: figure title.
        dpi: output resolution (the figure is 12 inches wide).

    Returns:
        the PNG file's bytes.

    Raises:
        ConfigError: mismatched lengths, positions out of range.
    """
    args = _Args.of(timestamps, scores, chosen_positions, chosen_timestamps, thumbnails,
                    sheet, tiers)
    n, k = len(args.ts), len(args.pos)
    check(n >= 1, "timestamps", n, "need at least one frame")
    check(args.sc is None or len(args.sc) == n, "scores",
          None if args.sc is None else len(args.sc), f"need one score per timestamp ({n})")
    check(all(0 <= p < n for p in args.pos), "chosen_positions", args.pos,
          f"must lie in [0, {n})")
    check(len(args.cts) == k, "chosen_timestamps", len(args.cts), f"need one per chosen ({k})")
    check(len(args.tiers) == k, "tiers", len(args.tiers), f"need one per chosen frame ({k})")
    check(all(t is None or t in TIERS for t in args.tiers), "tiers", args.tiers,
          f"must be in {TIERS}")
    if sheet is None:
        check(thumbnails is None or len(thumbnails) in (0, k), "thumbnails",
              len(thumbnails or []), f"need one per chosen frame ({k})")
    else:
        check(len(sheet) <= MAX_SHEET and all(0 <= int(i) < k for i in sheet), "sheet",
              [int(i) for i in sheet][:8],
              f"must be at most {MAX_SHEET} positions into the chosen frames")
        check(len(thumbnails or []) == len(sheet), "thumbnails", len(thumbnails or []),
              f"need one per sheet entry ({len(sheet)})")
    return _render(args.sheet_ordered(), boundaries, title, dpi)


def draw_selection(
    *,
    timestamps: Sequence[float] | Array,
    scores: Sequence[float] | Array | None,
    chosen_positions: Sequence[int],
    chosen_timestamps: Sequence[float] | None = None,
    thumbnails: Sequence[Array] | None = None,
    sheet: Sequence[int] | None = None,
    tiers: Sequence[str | None] | None = None,
    title: str = "",
    dpi: int = 110,
) -> bytes:
    """:func:`plot_selection` for a selection that is consistent by construction (the
    delivery step's: a sampler's output, its video's curve): the same picture, no checks."""
    args = _Args.of(timestamps, scores, chosen_positions, chosen_timestamps, thumbnails,
                    sheet, tiers)
    return _render(args.sheet_ordered(), None, title, dpi)


@dataclass
class _Args:
    """The plot's inputs as arrays and lists."""

    ts: Array
    sc: Array | None
    pos: list[int]
    cts: Array
    tiers: list[str | None]
    thumbs: list[Array]
    members: list[int] | None

    @classmethod
    def of(cls, timestamps: Sequence[float] | Array,
           scores: Sequence[float] | Array | None, chosen_positions: Sequence[int],
           chosen_timestamps: Sequence[float] | None, thumbnails: Sequence[Array] | None,
           sheet: Sequence[int] | None, tiers: Sequence[str | None] | None) -> _Args:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        pos = [int(p) for p in chosen_positions]
        return cls(
            ts=ts, sc=None if scores is None else np.asarray(scores, np.float64).reshape(-1),
            pos=pos,
            cts=(ts[pos] if chosen_timestamps is None
                 else np.asarray(chosen_timestamps, dtype=np.float64)),
            tiers=list(tiers) if tiers is not None else [None] * len(pos),
            thumbs=list(thumbnails) if thumbnails is not None else [],
            members=None if sheet is None else [int(i) for i in sheet])

    def sheet_ordered(self) -> _Args:
        """The contact sheet's members and thumbnails, in time order."""
        if self.members is None:
            members = sheet_members(self.cts) if self.thumbs else []
            thumbs = [self.thumbs[i] for i in members]
        else:
            given = self.members
            by_time = sorted(range(len(given)), key=lambda j: self.cts[given[j]])
            members = [given[j] for j in by_time]
            thumbs = [self.thumbs[j] for j in by_time]
        return dataclasses.replace(self, members=members, thumbs=thumbs)


def _render(args: _Args, boundaries: Sequence[float] | None, title: str, dpi: int) -> bytes:
    ts, sc, pos, cts, tr = args.ts, args.sc, args.pos, args.cts, args.tiers
    members, thumbs = args.members or [], args.thumbs
    order = sorted(range(len(pos)), key=lambda i: ts[pos[i]])  # number frames in time order

    import matplotlib

    matplotlib.use("Agg", force=False)
    # a bare Figure: no pyplot global state, thread-safe
    from matplotlib.figure import Figure, SubFigure

    cols = min(_MAX_COLS, max(1, len(thumbs)))
    rows = math.ceil(len(thumbs) / cols) if thumbs else 0
    aspect = (thumbs[0].shape[0] / thumbs[0].shape[1]) if thumbs else 1.0
    cell_h = 12.0 / cols * aspect + 0.35  # inches per sheet row: image + caption
    top_h = 3.0 if sc is not None else 1.2  # without scores the top panel is only a timeline
    fig = Figure(figsize=(12, top_h + 0.4 + rows * cell_h), dpi=dpi, layout="constrained")
    # Two subfigures, each laid out on its own: in one shared grid the constrained layout gave
    # the spanning curve axes no room for its y label (the thumbnails set column 0's margin).
    top: Figure | SubFigure = fig
    sheet_fig: Figure | SubFigure = fig
    if rows:
        halves = fig.subfigures(2, 1, height_ratios=[top_h + 0.4, rows * cell_h])
        top, sheet_fig = np.asarray(halves, dtype=object).ravel()
    ax = top.add_subplot(1, 1, 1)
    # numbered on the curve: the frames on the sheet (all K when there is no sheet, up to
    # MAX_SHEET; past that the numbers would only hide the curve)
    numbered = members if thumbs else order if len(order) <= MAX_SHEET else []
    _draw_curve(ax, ts, sc, pos, numbered, tr, boundaries)
    cell_px = max(8, int(12.0 / cols * dpi))  # a sheet cell's width in output pixels
    for k, i in enumerate(members):
        cell = sheet_fig.add_subplot(rows, cols, k + 1)
        cell.imshow(_shrink(thumbs[k], cell_px), interpolation="lanczos")
        cell.set_xticks([])
        cell.set_yticks([])
        colour = tier(tr[i]).color
        for side in cell.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(2.5)
        label = f"  [{tr[i]}]" if tr[i] else ""
        cell.set_title(f"#{k + 1}  {_clock(cts[i])}{label}", fontsize=9, color="#222222")
    if thumbs and len(members) < len(pos):
        sheet_fig.suptitle(f"{len(members)} of the {len(pos):,} chosen frames, evenly over the "
                           "selection", fontsize=9, color="#444444")
    if title:
        fig.suptitle(title, fontsize=13, fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _shrink(image: Array, width: int) -> Array:
    """A thumbnail no wider than its cell: Pillow shrinks it once, where matplotlib's own
    resampling of a full-size frame took most of a plot's time (0.1 s a frame at 640 px)."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    from PIL import Image

    size = (width, max(1, round(h * width / w)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
        size, Image.Resampling.LANCZOS))


def _draw_curve(ax, ts, sc, pos, numbered, tiers, boundaries) -> None:
    """The top panel: relevance line, boundaries, the chosen-frame markers (one collection per
    tier, whatever K), and the numbers of the ``numbered`` chosen frames (1.. in that order)."""
    for b in boundaries or ():
        ax.axvline(float(b), color="#999999", linestyle=":", linewidth=1.0, zorder=1)
    y = sc if sc is not None else np.zeros_like(ts)
    if sc is not None:
        ax.plot(ts, sc, color=_CURVE, linewidth=1.2, zorder=2, label="relevance")
        ax.fill_between(ts, sc, float(sc.min()), color=_CURVE, alpha=0.08, zorder=1)
        ax.set_ylabel("relevance (cosine)")
    else:
        ax.set_yticks([])
    span = float(np.ptp(y)) or 1.0
    low, high = float(y.min()) - 0.08 * span, float(y.max()) + 0.22 * span
    at = np.asarray(pos, dtype=np.int64)
    dense = min(1.0, MAX_SHEET / max(1, len(at)))  # hundreds of picks: thinner, fainter marks
    for name in dict.fromkeys(tiers):  # each tier once, in first-seen order
        mine = at[[t == name for t in tiers]]
        colour = tier(name).color
        ax.vlines(ts[mine], low, high, color=colour, alpha=max(0.03, 0.25 * dense),
                  linewidth=1.0, zorder=1)
        ax.scatter(ts[mine], y[mine], s=max(6.0, 46 * dense), color=colour,
                   edgecolor="white", linewidth=0.8 * dense, zorder=4)
    for k, i in enumerate(numbered):
        p = pos[i]
        ax.annotate(str(k + 1), (ts[p], y[p]), xytext=(0, 7), textcoords="offset points",
                    ha="center", fontsize=8, color="#222222", zorder=5)
    ax.set_ylim(low, high)
    t0, t1 = float(ts[0]), float(ts[-1]) if len(ts) > 1 else float(ts[0]) + 1.0
    pad = 0.01 * (t1 - t0)  # room for a marker on the first/last frame
    ax.set_xlim(t0 - pad, t1 + pad)
    ax.set_title("relevance over time" if sc is not None else "chosen frames over time",
                 loc="left", fontsize=10, color="#444444")
    ax.set_xlabel("time (s)")
    ax.grid(axis="y", color="#eeeeee", linewidth=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    _legend(ax, tiers, sc is not None, bool(boundaries))


def _legend(ax, tiers, has_curve: bool, has_bounds: bool) -> None:
    from matplotlib.lines import Line2D

    handles = []
    if has_curve:
        handles.append(Line2D([], [], color=_CURVE, linewidth=1.2, label="relevance"))
    used: list[str | None] = [t for t in TIERS if t in tiers] or [None]
    for t in used:
        label = f"chosen ({t})" if t else "chosen frame"
        handles.append(Line2D([], [], marker="o", linestyle="", color=tier(t).color,
                              markersize=7, label=label))
    if has_bounds:
        handles.append(Line2D([], [], color="#999999", linestyle=":", label="shot boundary"))
    # Above the axes, not inside: inside it would hide the peaks people look for.
    # Above the axes, beside the panel title (whose row reserves the room), not inside: inside
    # it would hide the peaks people look for. Kept out of the layout solver, which otherwise
    # squeezes the y label off the figure to make room for a wide legend.
    leg = ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                    frameon=False, ncol=len(handles), borderaxespad=0.1)
    leg.set_in_layout(False)


__all__ = ["MAX_SHEET", "draw_selection", "plot_selection", "sheet_members"]
