"""``framedex search``, ``select``, ``samplers``, ``stats`` and ``sql``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from framedex.cli._common import (
    DEFAULT_DB,
    Db,
    Device,
    Json,
    Model,
    app,
    as_options,
    check_writable,
    emit,
    file_name,
    handle_errors,
    note,
    open_library,
    out_console,
    print_table,
    write_output,
)
from framedex.errors import ConfigError
from framedex.library import parse_pairs
from framedex.rules import (
    COMPOSE_TEXT_WEIGHT,
    DEFAULT_LIMIT,
    DEFAULT_MAX_SIDE,
    DEFAULT_THRESHOLD,
    GROUP_BY,
    LIMITS,
    MAX_QUERY_IMAGES,
    PAYLOAD_FORMATS,
    THRESHOLDS,
    confidence_cuts,
    tier_costs_text,
)

if TYPE_CHECKING:
    from framedex.library import Moment, VideoHit


def _sampler_help() -> str:
    """--sampler's help, from the registry (never a hand-written list)."""
    from framedex.library import DEFAULT_SAMPLER, sampler_names

    return (f"Sampler: {', '.join(sampler_names())} (`framedex samplers` describes them). "
            f"Default: $FRAMEDEX_SAMPLER, else {DEFAULT_SAMPLER}.")


@app.command()
@handle_errors
def search(
    text: Annotated[str | None, typer.Argument(
        help="What to look for, in words (optional with --image, --entity or --and); "
             "<@ENTITY_ID> in it finds that entity.")] = None,
    db: Db = DEFAULT_DB,
    limit: Annotated[int, typer.Option(
        "--limit", "-n",
        help=f"Number of results ({LIMITS['limit'].rule().removeprefix('must be ')}).")
    ] = DEFAULT_LIMIT,
    group_by: Annotated[str, typer.Option(
        "--group-by", help=f"{' or '.join(GROUP_BY)}.")] = GROUP_BY[0],
    min_duration: Annotated[float | None, typer.Option(
        "--min-duration", help="Videos at least this long (s).")] = None,
    max_duration: Annotated[float | None, typer.Option(
        "--max-duration", help="Videos at most this long (s).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Glob on the video path.")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        "--meta", help="User metadata equality KEY=VALUE (repeatable).")] = None,
    image: Annotated[list[Path] | None, typer.Option(
        "--image", help="Search with an image file (alone, or as one more query part); "
                        f"repeatable, at most {MAX_QUERY_IMAGES}.")] = None,
    entity: Annotated[list[str] | None, typer.Option(
        "--entity", help="Find this entity (an id; repeatable), as <@ENTITY_ID> in TEXT "
                         "would: combined with the text.")] = None,
    compose: Annotated[bool, typer.Option(
        "--compose", help="Fuse TEXT, every --image and --entity into one query "
                          f"(text weight {COMPOSE_TEXT_WEIGHT}) instead of parts.")] = False,
    and_: Annotated[list[str] | None, typer.Option(
        "--and", help="Another text the videos must also show (repeatable): ranks videos by "
                      "the sum of each part's best segment; one row per part of each "
                      "video.")] = None,
    threshold: Annotated[str, typer.Option(
        "--threshold", help=f"The least confidence a result must have: "
                            f"{', '.join(THRESHOLDS)} (none: every result, however weak). "
                            "A result's confidence is its score's margin over the query's "
                            f"background: {confidence_cuts()}.")] = DEFAULT_THRESHOLD,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Search the whole library: ranked moments (start/end seconds, score, confidence), best
    first.

    With --group-by video, one row per video with its best moment and how many moments of it
    pass --threshold. With --and (or --image beside a text), the parts are what a video must
    all show (LanceDB's MaxSim over each video's segments): one row per part of each video,
    under the video's combined score. With --compose, the text, the images and the entities
    are one query ("this, doing that").
    """
    from framedex.library import SearchFilters

    if text is None and not image and not and_ and not entity:
        raise ConfigError("give what to look for: a text (framedex search \"a red car\"), "
                          "--image PATH or --entity ID")
    filters = SearchFilters(min_duration=min_duration, max_duration=max_duration,
                            path_glob=path, metadata=parse_pairs(meta, "--meta"))
    lib = open_library(db, model=model, device=device)
    texts = ([text] if text is not None else []) + list(and_ or [])
    pictures = lib.load_images(list(image), "--image") if image else []
    parts = lib.query_parts(texts, images=len(pictures), entity=list(entity or []),
                            compose=compose)
    # several parts rank videos: each result is a video and its parts' moments
    grouped = GROUP_BY[1] if len(parts) > 1 else group_by
    with as_options({"group_by": "--group-by", "threshold": "--threshold"}):
        hits: Sequence[Moment | VideoHit] = lib.search(
            texts, image=pictures, entity=list(entity or []), operator="and" if and_ else "or",
            compose=compose, limit=limit, group_by=grouped, filters=filters,
            threshold=threshold)
    for t in texts:
        for line in lib.query_notes(t):
            note(line)
    if as_json:
        emit([h.to_json() for h in hits])
        return
    if not hits:
        weaker = "" if threshold == THRESHOLDS[-1] else (
            f" of {threshold} confidence or better (--threshold none lists every result)")
        typer.echo(f"no match{weaker}")
        return
    from framedex.library import VideoHit

    if len(parts) > 1:
        _print_parts([h for h in hits if isinstance(h, VideoHit)], parts)
        return
    rows = []
    for rank, h in enumerate(hits, start=1):
        best = h.moments[0] if isinstance(h, VideoHit) else h
        row = [rank, f"{h.score:.4f}", h.confidence, f"{best.start:.1f}s", f"{best.end:.1f}s",
               h.video_id, file_name(h.path)]
        if isinstance(h, VideoHit):
            row.append(len(h.moments))
        rows.append(row)
    columns = ["#", "score", "confidence", "start", "end", "video_id", "file"]
    print_table(columns + (["moments"] if grouped == GROUP_BY[1] else []), rows)


def _print_parts(hits: Sequence[VideoHit], parts: Sequence[str]) -> None:
    """A multi-part result: each video once (rank, combined score, confidence, file), then
    one row per part with the part's best moment, in the parts' order."""
    rows: list[list[object]] = []
    for rank, h in enumerate(hits, start=1):
        by_part = {m.part: m for m in h.moments}
        first = True
        for p, name in enumerate(parts):
            m = by_part.get(p)
            head: list[object] = [rank, f"{h.score:.4f}", h.confidence, h.video_id,
                                  file_name(h.path)] if first else [None] * 5
            if m is None:  # the part shares a segment with a better part, or did not pass
                rows.append([*head, name, None, None, None, None])
            else:
                rows.append([*head, name, f"{m.score:.4f}", m.confidence, f"{m.start:.1f}s",
                             f"{m.end:.1f}s"])
            first = False
    print_table(("#", "score", "confidence", "video_id", "file", "part", "part score",
                 "part confidence", "start", "end"), rows)


@app.command()
@handle_errors
def select(
    video: Annotated[str, typer.Argument(help="A video id, unique id prefix (4+ characters) "
                                         "or a path it was indexed from.")],
    question: Annotated[str, typer.Argument(help="The question for the video LLM.")],
    db: Db = DEFAULT_DB,
    sampler: Annotated[str | None, typer.Option("--sampler", envvar="FRAMEDEX_SAMPLER",
                                                help=_sampler_help())] = None,
    budget: Annotated[int | None, typer.Option(
        "--budget", "-k", help="Frames to choose (K). Default 8.")] = None,
    tokens: Annotated[int | None, typer.Option(
        "--tokens", help=f"Token budget instead of K (Gemini {tier_costs_text()}).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Sampler parameter KEY=VALUE (repeatable; `framedex samplers NAME` "
                        "lists them).")] = None,
    frames_out: Annotated[Path | None, typer.Option(
        "--frames-out", help="Decode the chosen frames and write JPEGs into this folder.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG of the relevance curve and the chosen frames.")] = None,
    payload: Annotated[str | None, typer.Option(
        "--payload", help="Build a chat request for the chosen frames: "
                          f"{' or '.join(PAYLOAD_FORMATS)} (openai: also vLLM).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the --payload request body to this file (default: stdout).")] = None,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", help=f"Cap on the longer side of the frames sent, pixels (default "
                           f"{DEFAULT_MAX_SIDE}, as on every face; 8192: native). The high "
                           "tier is this size, mid and low smaller.")] = None,
    vlm_model: Annotated[str | None, typer.Option(
        "--vlm-model", help="The model an openai --payload names (default gpt-4o), e.g. your "
                            "vLLM model's name.")] = None,
    model: Model = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Pick the frames of one video a video LLM should see for a question (cached embeddings)."""
    from framedex.library import DeliveryOptions

    include = [name for name, wanted in (("frames", frames_out is not None),
                                         ("plot", plot is not None),
                                         ("payload", payload is not None)) if wanted]
    # checked once, before any work: the payload format and the size are the library's rules
    with as_options({"payload_format": "--payload", "vlm_model": "--vlm-model",
                     "max_side": "--max-side"}):
        options = DeliveryOptions(include=include, max_side=max_side, payload_format=(
            PAYLOAD_FORMATS[0] if payload is None else payload),
            payload_options={} if vlm_model is None else {"model": vlm_model})
    check_writable(frames_out, "--frames-out", folder=True)
    check_writable(plot, "--plot")
    check_writable(out, "--out")
    lib = open_library(db, model=model, device=device, sampler=sampler)
    result = lib.select(video, question, budget=budget, tokens=tokens,
                        params=parse_pairs(param, "--param"))
    delivery = lib.deliver(result, options)
    for line in [*lib.query_notes(question), *result.notes]:
        note(line)
    data: dict[str, Any] = result.to_json()
    data["cost"] = delivery.cost
    if frames_out is not None:
        data["frames"] = [str(p) for p in delivery.write_frames(frames_out)]
    if plot is not None and delivery.plot_png is not None:
        write_output(plot, delivery.plot_png, "--plot")
        data["plot"] = str(plot)
    if payload is not None:
        body = json.dumps(delivery.payload)
        if out is not None:
            write_output(out, body.encode(), "--out")
            data["payload"] = str(out)
        elif not as_json:
            typer.echo(body)  # the request body is the output
            return
        else:
            data["payload"] = delivery.payload
    if as_json:
        emit(data)
        return
    _print_selection(data)


def _print_selection(out: dict[str, Any]) -> None:
    con = out_console()
    head = f"{out['sampler']} chose {len(out['indices'])} of {out['num_frames']} frames " \
           f"of {out['video_id']} in {out['latency_ms']:.1f} ms"
    if out.get("tokens_used") is not None:
        head += f", {out['tokens_used']} tokens"
        if out.get("tokens") is not None:
            head += f" of {out['tokens']}"
    con.print(head)
    if out.get("decision"):
        con.print(f"decision: {out['decision']} ({out.get('reason')})")
    tiers = out.get("tiers") or [None] * len(out["indices"])
    scores = out.get("scores") or [None] * len(out["indices"])
    for pos, t, f, s, tier in zip(out["indices"], out["timestamps"], out["frame_idx"], scores,
                                  tiers, strict=True):
        score = "" if s is None else f"  score {s:.4f}"
        con.print(f"  pos {pos:6d}  t {t:9.3f}s  frame {f:7d}{score}"
                  f"{'  ' + tier if tier else ''}")
    con.print(out["cost"]["text"])
    if out.get("frames"):
        con.print(f"frames: {Path(out['frames'][0]).parent}")
    for key in ("plot", "payload"):
        if out.get(key):
            con.print(f"{key}: {out[key]}")


@app.command()
@handle_errors
def scenes(
    video: Annotated[str, typer.Argument(help="A video id, unique id prefix (4+ characters) "
                                         "or a path it was indexed from.")],
    db: Db = DEFAULT_DB,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="A `shots` sampler parameter KEY=VALUE (threshold, z, min_drop; "
                        "`framedex samplers shots`).")] = None,
    as_json: Json = False,
) -> None:
    """The scenes (shots) the `shots` sampler sees in a video, as CSV (scene, start and end
    seconds, first frame_idx, indexed frames), or JSON with --json.

    A scene starts where the cosine between neighbouring indexed frames drops (see
    `framedex samplers shots`); times are the indexed frames' timestamps, the last scene ends
    at the video's end.
    """
    lib = open_library(db, log_queries=False)
    record, rows = lib.scenes(video, parse_pairs(param, "--param"))
    if as_json:
        emit({"video_id": record.video_id, "path": record.path, "scenes": rows})
        return
    typer.echo("scene,start,end,frame_idx,frames")
    for r in rows:
        typer.echo(f"{r['scene']},{r['start']:.3f},{r['end']:.3f},{r['frame_idx']},"
                   f"{r['frames']}")


@app.command()
@handle_errors
def samplers(
    name: Annotated[str | None, typer.Argument(help="One sampler to describe.")] = None,
    as_json: Json = False,
) -> None:
    """List the samplers with their parameters, defaults and what they do."""
    from framedex.library import DEFAULT_SAMPLER, sampler_infos

    infos = sampler_infos(name)
    if as_json:
        emit({"default": DEFAULT_SAMPLER, "samplers": [i.to_json() for i in infos]})
        return
    con = out_console()
    for info in infos:
        default = "  (default)" if info.name == DEFAULT_SAMPLER else ""
        con.print(f"{info.name:<10} {info.description}{default}")
        if name is None:
            continue
        for p in info.params:
            con.print(f"  {p.name} ({p.type}, default {p.default!r}): {p.doc}")
        if not info.params:
            con.print("  (no parameters)")
    if name is None:
        con.print("`framedex samplers NAME` shows a sampler's parameters; set them with "
                  "--param KEY=VALUE.")


@app.command()
@handle_errors
def stats(
    db: Db = DEFAULT_DB,
    by: Annotated[str, typer.Option(
        "--by", help="sampler: logged queries per (kind, sampler); arm: the rollout's arms "
                     "compared on latency, tokens and good ratings, with 95 % intervals.")]
    = "sampler",
    as_json: Json = False,
) -> None:
    """Logged queries: count and p50/p95 latency per (kind, sampler); --by arm compares the
    rollout's arms."""
    if by not in ("sampler", "arm"):
        raise ConfigError(f"--by={by!r} is invalid: must be sampler or arm")
    lib = open_library(db, log_queries=False)
    if by == "arm":
        _print_arms(lib.arm_stats(), as_json, db)
        return
    rows = lib.stats()
    if as_json:
        emit({"queries": rows, "disk_bytes": lib.disk_usage()})
        return
    if not rows:
        typer.echo(f"no logged query in {db}")
        return
    print_table(("kind", "sampler", "count", "p50 ms", "p95 ms", "cache hits"),
                ((r["kind"], r["sampler"] or "-", r["count"], f"{r['p50_ms']:.2f}",
                  f"{r['p95_ms']:.2f}",
                  "-" if r["cache_hit_rate"] is None else f"{100 * r['cache_hit_rate']:.0f} %")
                 for r in rows))


def _interval(ci: Sequence[float] | None, fmt: str) -> str:
    return "" if ci is None else f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _print_arms(data: dict[str, Any], as_json: bool, db: str) -> None:
    if as_json:
        emit(data)
        return
    arms = data["arms"]
    if not arms:
        typer.echo(f"no ask or select logged with a rollout arm in {db} (use --rollout, or "
                   "framedex serve --rollout)")
        return

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    def points(ci: Sequence[float] | None, sign: str = "") -> str:
        return "" if ci is None else f" [{100 * ci[0]:{sign}.0f}, {100 * ci[1]:{sign}.0f}]"

    rows = []
    for a in arms:
        good = "-" if a["good_rate"] is None else (
            f"{pct(a['good_rate'])}{points(a['good_rate_ci'])} of {a['ratings']}")
        diff = "ref" if a["arm"] == data["reference"] else (
            "-" if a["good_rate_diff"] is None else
            f"{100 * a['good_rate_diff']:+.0f} pt{points(a['good_rate_diff_ci'], '+')}")
        model = "-" if a["model_p50_ms"] is None else \
            f"{a['model_p50_ms']:.0f}{_interval(a['model_p50_ci'], '{:.0f}')}"
        total = "-" if a["latency_p50_ms"] is None else \
            f"{a['latency_p50_ms']:.0f}{_interval(a['latency_p50_ci'], '{:.0f}')}"
        spent = "-" if a["tokens_mean"] is None else \
            f"{a['tokens_mean']:,.0f}{_interval(a['tokens_ci'], '{:,.0f}')}"
        rows.append((a["arm"], a["asks"], pct(a["cache_hit_rate"]), model, total, spent, good,
                     diff, a["selects"]))
    print_table(("arm", "asks", "cached", "model p50 ms", "ask p50 ms", "tokens/call",
                 "good", "vs ref", "selects"), rows)
    sys.stdout.flush()  # the notes below go to stderr, after the table
    if data.get("rollout"):
        typer.echo(f"rollout: {data['rollout']}", err=True)
    typer.echo("95 % intervals: " + "; ".join(f"{k}: {v}" for k, v in
                                              data["intervals"].items()), err=True)


@app.command()
@handle_errors
def sql(
    query: Annotated[str, typer.Argument(help="DuckDB SQL over videos, video_paths, query_log, "
                                         "jobs, answers and answer_feedback.")],
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Run SQL (DuckDB) over the videos, video_paths, query_log, jobs, answers and
    answer_feedback tables."""
    table = open_library(db, log_queries=False).sql(query)
    rows = table.to_pylist()
    if as_json:
        emit(rows)
        return
    print_table(table.column_names, (row.values() for row in rows))
    typer.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)
