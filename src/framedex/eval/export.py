"""Export framedex's frame selections for real benchmarks (Video-MME, MLVU, LongVideoBench).

Input: a manifest, a JSON list of ``{"question_id", "video_path", "question"}`` (what a
benchmark item reduces to). Videos are indexed once (bad videos are reported, the rest go on);
each question's text is encoded and the chosen sampler picks frames on the cached 1 fps grid.

Output layouts, read from the official code (not copied):

``bolt`` (default): the layout BOLT's lmms-eval fork reads with
``--model_args ...,frame_indices_json=OUT.json`` (github sming256/BOLT at
8a9ba455e8c7668ae4443b3273bbf283b700cc7f, ``select_frames.py`` writes it; the reader is
github sming256/lmms-eval at dabbce6915767da86e259c8825354c9f1e73bdff,
``lmms_eval/models/simple/llava_onevision.py`` ``sample_frames``, and the same logic in
``models/simple/qwen2_5_vl.py`` + ``qwen_vl_utils.vision_process.sample_frames``)::

    {"<video name>": [{"question_id": ..., "question": "...", "frames": [12.0, 57.0, ...]}]}

- ``<video name>`` is ``video_path.split("/")[-1].split(".")[0]``: the reader's key, i.e.
  the file name up to its *first* dot.
- ``frames`` are **seconds** (rounded to 2 decimals, as the official writer does). The
  reader converts them with ``round(sec * decord_avg_fps)`` into native frame indices, sorts
  and clips them. We write ``frame_idx / frame_rate``, so that conversion gives back exactly our
  native ``frame_idx`` (checked per frame; a mismatch is reported).
- The reader picks the entry whose ``question`` is a substring of the lmms-eval prompt, so
  ``question`` must be the benchmark's raw question text; and it asserts
  ``len(frames) == max_frames_num``: a video shorter than K seconds has fewer grid frames, so
  its entry is short (reported under ``short``).
- Extra keys are ignored by the reader; we add ``frame_idx`` (native frame indices),
  ``pts_sec`` (stored timestamps), ``grid_pos`` (positions on the 1 fps grid), ``video_path``,
  ``sampler``, ``budget``, and per-frame ``tiers`` when the sampler assigns them.

``aks``: the layout of AKS's lmms-eval integration (github ncTimTang/AKS at
46675011a0ad67ad65559ac98235f2ce82102a2e: ``frame_select.py`` writes ``selected_frames.json``,
``evaluation/change_score.py`` copies entry i into ``doc["frame_idx"]`` of the i-th item of the
task's ``include_frame_idx.json``, and ``evaluation/llava_vid.py`` ``load_video_index`` reads
``vr.get_batch(sorted(doc["frame_idx"][:max_frames_num]))``): a JSON list, one list per
manifest item **in manifest order**, of **native frame indices** (decord's index space). No
extra fields fit in that layout. A failed video gets ``[]``, which the reader treats as "too
few frames" and replaces by uniform sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framedex.errors import ConfigError, check
from framedex.rules import FAILED, TIERS

if TYPE_CHECKING:
    from framedex.library import Library, SelectResult

FORMATS = ("bolt", "aks")

_ITEM_BOLT = {
    "type": "object",
    "required": ["question_id", "question", "frames"],
    "properties": {
        "question_id": {"type": ["string", "integer"]},
        "question": {"type": "string"},
        "frames": {"type": "array", "items": {"type": "number", "minimum": 0}},
        "frame_idx": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "pts_sec": {"type": "array", "items": {"type": "number"}},
        "grid_pos": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "tiers": {"type": "array", "items": {"enum": list(TIERS)}},
        "video_path": {"type": "string"},
        "sampler": {"type": "string"},
        "budget": {"type": "integer", "minimum": 1},
    },
}
#: JSON Schema of the ``bolt`` layout (video name -> list of per-question entries).
SCHEMA_BOLT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "framedex export-selections, BOLT lmms-eval layout (frame_indices_json)",
    "type": "object",
    "additionalProperties": {"type": "array", "items": _ITEM_BOLT},
}
#: JSON Schema of the ``aks`` layout (one list of native frame indices per manifest item).
SCHEMA_AKS: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "framedex export-selections, AKS selected_frames.json layout",
    "type": "array",
    "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
}


@dataclass
class ExportReport:
    """What an export did: output data, failed videos, short selections, bad items."""

    data: Any
    failed: list[dict[str, str]] = field(default_factory=list)
    short: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    questions: int = 0
    videos: int = 0

    def summary(self) -> dict[str, Any]:
        """The fields ``framedex export-selections --json`` prints."""
        return {"questions": self.questions, "videos": self.videos, "failed": self.failed,
                "short": self.short, "mismatched": self.mismatched}


def video_key(video_path: str) -> str:
    """The reader's key for a video: the file name up to its first dot (BOLT's lmms-eval)."""
    return str(video_path).replace("\\", "/").split("/")[-1].split(".")[0]


def load_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a manifest (a JSON list of {question_id, video_path, question}).

    Raises:
        ConfigError: unreadable, not JSON, not a list, or an item missing a field (named).
    """
    from framedex.library import parse_json

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"manifest={str(p)!r} is invalid: no such file") from None
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"manifest={str(p)!r} is invalid: cannot read it ({ex})") from None
    items = parse_json(text, f"manifest={str(p)!r}")  # nesting bounded: no RecursionError
    check(isinstance(items, list), "manifest", str(p),
          "must be a JSON list of {question_id, video_path, question}")
    for i, it in enumerate(items):
        check(isinstance(it, dict), f"manifest[{i}]", it, "must be an object")
        for key in ("question_id", "video_path", "question"):
            check(key in it, f"manifest[{i}].{key}", None, "is required")
        check(isinstance(it["question"], str) and it["question"].strip() != "",
              f"manifest[{i}].question", it["question"], "must be a non-empty string")
        check(isinstance(it["video_path"], str), f"manifest[{i}].video_path", it["video_path"],
              "must be a string path")
    return items


def validate(data: Any, fmt: str = "bolt") -> None:
    """Check ``data`` against the layout's schema (``jsonschema`` if installed, else by hand).

    Raises:
        ConfigError: the first violation, with its path.
    """
    check(fmt in FORMATS, "format", fmt, f"must be one of {FORMATS}")
    schema = SCHEMA_BOLT if fmt == "bolt" else SCHEMA_AKS
    try:
        import jsonschema
    except ImportError:
        _hand_validate(data, fmt)
        return
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as ex:
        where = "/".join(str(p) for p in ex.absolute_path)
        raise ConfigError(f"export at {where or '<root>'} is invalid: {ex.message}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _hand_validate(data: Any, fmt: str) -> None:
    if fmt == "aks":
        check(isinstance(data, list), "export", type(data).__name__, "must be a list")
        for i, frames in enumerate(data):
            check(isinstance(frames, list) and all(_is_int(f) and f >= 0 for f in frames),
                  f"export[{i}]", frames, "must be a list of integers >= 0")
        return
    check(isinstance(data, dict), "export", type(data).__name__, "must be an object")
    for key, entries in data.items():
        check(isinstance(entries, list), f"export[{key!r}]", entries, "must be a list")
        for j, e in enumerate(entries):
            where = f"export[{key!r}][{j}]"
            check(isinstance(e, dict), where, e, "must be an object")
            for req in _ITEM_BOLT["required"]:
                check(req in e, f"{where}.{req}", None, "is required")
            check(isinstance(e["question_id"], (str, int)), f"{where}.question_id",
                  e["question_id"], "must be a string or an integer")
            check(isinstance(e["question"], str), f"{where}.question", e["question"],
                  "must be a string")
            check(isinstance(e["frames"], list) and all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0
                for f in e["frames"]), f"{where}.frames", e["frames"],
                "must be a list of seconds >= 0")
            for name in ("frame_idx", "grid_pos"):
                if name in e:
                    check(isinstance(e[name], list) and all(_is_int(f) and f >= 0
                                                            for f in e[name]),
                          f"{where}.{name}", e[name], "must be a list of integers >= 0")


def _index_videos(items: list[dict[str, Any]], library: Library,
                  progress: Callable[[str], None] | None) -> tuple[dict[str, Any], list]:
    """Index each distinct video once: {video_path: IndexOutcome}, failures."""
    outcomes, failed = {}, []
    for path in dict.fromkeys(it["video_path"] for it in items):
        if not Path(path).expanduser().is_file():
            failed.append({"video_path": path, "error": f"no such file: {path}"})
            continue
        o = library.index_file(path)
        if o.status == FAILED:
            failed.append({"video_path": path, "error": o.error or "failed"})
            continue
        outcomes[path] = o
        if progress:  # what happened, as `framedex index` says it (a reused video is
            # `unchanged`, not `index PATH`)
            progress(f"{o.status:<10} {o.video_id}  {path}")
    return outcomes, failed


def export_selections(items: list[dict[str, Any]], library: Library, sampler: str,
                      budget: int, fmt: str = "bolt",
                      progress: Callable[[str], None] | None = None,
                      **sampler_params: Any) -> ExportReport:
    """Index the manifest's videos and select frames for every question.

    Args:
        items: manifest items (:func:`load_manifest`).
        library: the library (videos already indexed there with the same encoder are reused).
        sampler: sampler name.
        budget: frames per question (K).
        fmt: ``bolt`` or ``aks`` (see the module docstring).
        progress: called with a short status line per video.
        **sampler_params: the sampler's parameters.

    Returns:
        An :class:`ExportReport` whose ``data`` is the JSON-ready output (validated).

    Raises:
        UnknownNameError: unknown sampler. ConfigError: bad budget, format or parameters.
    """
    check(fmt in FORMATS, "format", fmt, f"must be one of {FORMATS}")
    check(isinstance(budget, int) and budget >= 1, "budget", budget, "must be an integer >= 1")
    from framedex.library import sampler_infos

    sampler_infos(sampler)  # unknown names fail before any indexing
    outcomes, failed = _index_videos(items, library, progress)
    report = ExportReport(data={} if fmt == "bolt" else [], failed=failed,
                          questions=len(items), videos=len(outcomes))
    for it in items:
        path = it["video_path"]
        if path not in outcomes:
            if fmt == "aks":
                report.data.append([])
            continue
        result = library.select(outcomes[path].video_id, it["question"], sampler=sampler,
                                budget=budget, params=sampler_params)
        rate = result.record.frame_rate if result.record is not None else 0.0
        entry = _entry(it, result, rate, sampler, budget, report)
        if fmt == "aks":
            report.data.append(entry["frame_idx"])
        else:
            report.data.setdefault(video_key(path), []).append(entry)
    validate(report.data, fmt)
    return report


def _entry(item: dict[str, Any], sel: SelectResult, frame_rate: float, sampler: str,
           budget: int, report: ExportReport) -> dict[str, Any]:
    pos = [int(i) for i in sel.indices]
    frame_idx = [int(f) for f in sel.frame_idx]
    seconds = [round(f / frame_rate, 2) for f in frame_idx]
    # The reader turns seconds back into frames with round(sec * fps): check it lands on ours.
    if any(round(s * frame_rate) != f for s, f in zip(seconds, frame_idx, strict=True)):
        report.mismatched.append(str(item["question_id"]))
    if len(pos) < budget:
        report.short.append(str(item["question_id"]))
    entry = {"question_id": item["question_id"], "question": item["question"],
             "frames": seconds, "frame_idx": frame_idx,
             "pts_sec": [round(float(t), 6) for t in sel.timestamps], "grid_pos": pos,
             "video_path": item["video_path"], "sampler": sampler, "budget": budget}
    if sel.tiers:
        entry["tiers"] = list(sel.tiers)
    return entry


__all__ = ["FORMATS", "SCHEMA_AKS", "SCHEMA_BOLT", "ExportReport", "export_selections",
           "load_manifest", "validate", "video_key"]
