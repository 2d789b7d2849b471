"""The rules a request is held to, one table each; every face derives from these.

A rule written in two places drifts (the first versions capped a search text at 2,000
characters in the API and 4,000 in the library, and the budget on one side only). So each rule
lives here once: the facade (:class:`~framedex.library.Library`, through
:mod:`framedex.validate`) checks it, once per request; the HTTP API's request models document
it in their JSON schema (bounds, choices, defaults), the CLI builds its help from it, the viewer
its forms, and the layers below the facade trust what they are handed.

Its tables:

- the names a request may choose (:data:`GROUP_BY`, :data:`OPERATORS`,
  :data:`PAYLOAD_FORMATS`, :data:`INCLUDE`, :data:`RATINGS`) and the states it reports
  (:data:`OUTCOME_STATUSES`, :data:`JOB_STATUSES`);
- :data:`TIER_TABLE`: the resolution tiers a frame can be sent at, with everything a tier
  decides (its scale, its token cost per model family, OpenAI's ``detail``, its plot colour);
- :data:`LIMITS`: the numeric bounds of request values (:class:`Limit`), keyed by parameter,
  and the defaults a request gets when it names none;
- :data:`CONFIDENCE_TABLE`: the confidence levels of a search result and their cut points
  (the ``threshold`` a search may ask, :data:`DEFAULT_THRESHOLD` when it names none).

This module imports nothing of framedex, so every layer may import it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

# -- model families and tiers -------------------------------------------------------------------

#: Tokens Gemini bills for one image, or one frame of a video, at its default media resolution
#: (Gemini API, "media resolution"); 66 at low.
GEMINI_FRAME_TOKENS = 258


@dataclass(frozen=True)
class ModelFamily:
    """What sending a whole video natively costs a family of video LLMs (the cost line's
    comparison).

    Attributes:
        name: the key of :attr:`Tier.tokens` (``gemini``, ``qwen``).
        label: the name the cost line prints.
        video_fps: the rate the model samples a video at.
        video_frame_tokens: tokens per sampled video frame.
        frames_per_patch: frames merged into one temporal patch (a video is padded to a whole
            number of patches).
    """

    name: str
    label: str
    video_fps: float
    video_frame_tokens: int
    frames_per_patch: int = 1


#: Gemini samples a video at 1 fps, each frame at :data:`GEMINI_FRAME_TOKENS`.
#: Qwen2.5-VL: ViT patch 14 with a 2x2 token merge, so one token per 28x28 pixels; videos are
#: sampled at 2 fps (qwen-vl-utils' default FPS) and two consecutive frames are merged into one
#: temporal patch (temporal_patch_size=2). Assumed input size: 448x448, a typical per-frame
#: size for long videos under its total-pixel cap. Then one 2-frame group is (448/28)^2 = 256
#: tokens, i.e. 128 tokens per video frame.
FAMILIES: Mapping[str, ModelFamily] = {
    "gemini": ModelFamily("gemini", "Gemini", 1.0, GEMINI_FRAME_TOKENS),
    "qwen": ModelFamily("qwen", "Qwen2.5-VL", 2.0, 128, frames_per_patch=2),
}


@dataclass(frozen=True)
class Tier:
    """One resolution tier a chosen frame can be sent at.

    Attributes:
        name: ``high``, ``mid`` or ``low`` (None: :data:`UNTIERED`).
        scale: the fraction of the native frame side it is sent at (``mid`` and ``low``:
            Q-Frame's official 1/4 and 1/8; ``high``: 1, the untiered size).
        tokens: what one frame costs, per model family (:data:`FAMILIES`). Gemini's are the
            costs a :class:`~framedex.query.samplers.TokenBudget` counts by default.
        openai_detail: the OpenAI image ``detail`` (``high``: the tiled high-res read;
            ``low``: the fixed 512 px / 85-token read; ``auto``: the server's choice).
        color: the plot's marker colour (colour-blind-safe Okabe-Ito).
    """

    name: str | None
    scale: float
    tokens: Mapping[str, int]
    openai_detail: str
    color: str


#: The tiers, best first. Qwen2.5-VL: a frame sent as a separate *image* is not merged with a
#: neighbour (the processor repeats it to fill the temporal patch), so it costs 256 at 448x448;
#: each tier halves the side, a quarter of the tokens: 256 (448 px), 64 (224 px), 16 (112 px).
TIER_TABLE: tuple[Tier, ...] = (
    # high is the untiered size (the request's caps only): Q-Frame's 1/2 made a 128 px
    # video's high frames 64 px, worse than an untiered one
    Tier("high", 1.0, {"gemini": GEMINI_FRAME_TOKENS, "qwen": 256}, "high", "#D55E00"),
    Tier("mid", 1 / 4, {"gemini": 130, "qwen": 64}, "auto", "#E69F00"),
    Tier("low", 1 / 8, {"gemini": 66, "qwen": 16}, "low", "#0072B2"),
)
#: A frame sent without a tier: at the request's size caps only, costed as a full image (the
#: best tier's tokens and colour), OpenAI ``detail`` left to the server.
UNTIERED = dataclasses.replace(TIER_TABLE[0], name=None, scale=1.0, openai_detail="auto")
#: Tier names, best first.
TIERS: tuple[str, ...] = tuple(str(t.name) for t in TIER_TABLE)
_BY_NAME = {t.name: t for t in TIER_TABLE}


def tier(name: str | None) -> Tier:
    """The tier named ``name`` (None: :data:`UNTIERED`). ``name`` must be one of
    :data:`TIERS`: names come from a sampler or a checked request (KeyError otherwise)."""
    return UNTIERED if name is None else _BY_NAME[name]


def tier_tokens(family: str = "gemini") -> dict[str, int]:
    """Tokens per frame at each tier for one model family, e.g. ``{"high": 258, ...}``."""
    return {str(t.name): t.tokens[family] for t in TIER_TABLE}


def tier_costs_text(family: str = "gemini") -> str:
    """``"258/130/66 per high/mid/low"``: the costs in words, for help texts."""
    costs = tier_tokens(family)
    return f"{'/'.join(str(c) for c in costs.values())} per {'/'.join(costs)}"


# -- limits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """The inclusive bounds of a request value: an integer, a number, or a text's length.

    Attributes:
        param: the parameter, as the Python API and the HTTP API name it.
        low: the smallest value (the shortest length) accepted.
        high: the largest, or None for no upper bound.
        unit: what the value counts, in words (``frames``, ``characters``).
        kind: ``int``, ``number`` or ``length`` (of a text).
        why: the reason for the bound, when errors should say it.
    """

    param: str
    low: float
    high: float | None
    unit: str
    kind: str = "int"
    why: str = ""

    def holds(self, value: float) -> bool:
        """Whether ``value`` (a length, for a text) is within the bounds."""
        return value >= self.low and (self.high is None or value <= self.high)

    def rule(self) -> str:
        """The bounds in words, as errors and help texts say them."""
        what = {"int": "an integer", "number": "a number", "length": "text"}[self.kind]
        if self.kind == "length":
            empty = "non-empty " if self.low >= 1 else ""
            bounds = f" of at most {_num(self.high)} {self.unit}" if self.high is not None else ""
            text = f"must be {empty}{what}{bounds}"
        elif self.high is None:
            text = f"must be {what} >= {_num(self.low)}" + (f" ({self.unit})" if self.unit else "")
        else:
            text = f"must be {what} from {_num(self.low)} to {_num(self.high)} {self.unit}"
        return text.rstrip() + (f", {self.why}" if self.why else "")

    def json_schema(self) -> dict[str, float]:
        """The bounds as JSON-schema keywords (``minLength``/``maxLength`` for a text)."""
        lo, hi = ("minLength", "maxLength") if self.kind == "length" else ("minimum", "maximum")
        out = {lo: self.low}
        if self.high is not None:
            out[hi] = self.high
        return out


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


#: Frames chosen when a request gives neither ``budget`` nor ``tokens``.
DEFAULT_BUDGET = 8
#: Results a search returns when it names no ``limit``.
DEFAULT_LIMIT = 10
#: Longer side of delivered frames when a request names none, on every face: the CLI's
#: ``--max-side``, the API's ``frame_max_side``, the viewer and ``Library.deliver`` (the CLI
#: used to send native 1280x720 frames where the API sent 512 px ones). A VLM reads a 512 px
#: frame in one tile (OpenAI's ``low`` detail is 512 px); ``--max-side 8192`` sends the native
#: size. The ``high`` tier is this size, ``mid`` and ``low`` are smaller.
DEFAULT_MAX_SIDE = 512
#: JPEG quality of delivered frames (budget-sized sets: a few dozen frames at most).
DEFAULT_QUALITY = 85
#: Index rate when a run names none.
DEFAULT_INDEX_FPS = 1.0
#: Frames per encoder batch when a run names none.
DEFAULT_BATCH_SIZE = 64

#: One rule per request value; every face reads its bounds here. Where the faces used to
#: disagree, the rule chosen and why:
#:
#: - ``text``/``question``: 4,000 characters on every face (the API took 2,000 for a search
#:   text, the library and the CLI 4,000). A question goes to a video LLM whole and may be
#:   long; a search text is encoded once per request and the tokenizer truncates it, so the
#:   longer bound costs nothing.
#: - ``budget``: 1 to 10,000 frames on every face (the API capped it, the library and the CLI
#:   did not: ``--budget 100000`` was accepted where the API answered 422). Every chosen frame
#:   may be decoded and encoded as a JPEG; the cap bounds what one request can cost.
#: - ``tokens``: from the cheapest tier's cost on every face (the API said 66, the library 1,
#:   but a sampler then refused anything that cannot buy one frame at the cheapest tier, so 66
#:   is what was accepted in practice), to 10,000,000 (the API's cap).
#: - ``max_side``/``width``: 8 to 8,192 pixels (the frame route took 8 to 8,192, select 16 to
#:   4,096, the library 8 with no cap). Frames are never upscaled, so the cap only refuses
#:   typos; the union refuses nothing that was accepted on the route that serves single frames.
#: - ``fps``: 0.001 to 240 frames per second (the library's and the CLI's rule; the ingest route
#:   capped it at 120).
#: - ``parts``: 11 parts (texts and images) in one search (Twelve Labs takes up to 10 images
#:   plus a text; the API counted 10 texts on top of the library's rule).
#: - ``images``: 10 query images in one search, as parts or composed (Twelve Labs' documented
#:   limit for repeated ``query_media_file``/``query_media_url``); ``entities``: 10 entities
#:   referenced by one search (each is a store read); ``asset_ids``: 1 to 50 reference images
#:   per entity (each is decoded and embedded once, when it is added).
#: - ``image_side``: a query or reference image's shorter side is at least 8 pixels (smaller
#:   carries nothing to match); ``image_bytes``: one image file is at most 32 MB (Twelve
#:   Labs' Marengo 3.5 limit for one media source; its older image search took 5 MB).
_TEXT = Limit("text", 1, 4000, "characters", "length")
_SIDE = Limit("max_side", 8, 8192, "pixels")
_NAME = Limit("model", 1, 256, "characters", "length")
_RESULTS = Limit("limit", 1, 1000, "results")
_CHEAPEST = min(tier_tokens().values())
_COMMENT = Limit("comment", 0, 2000, "characters", "length")
LIMITS: Mapping[str, Limit] = {limit.param: limit for limit in (
    _TEXT,
    dataclasses.replace(_TEXT, param="question"),
    dataclasses.replace(_TEXT, param="system"),
    Limit("budget", 1, 10_000, "frames"),
    Limit("tokens", _CHEAPEST, 10_000_000, "tokens",
          why=f"at least one frame at the cheapest tier ({_CHEAPEST} tokens)"),
    _RESULTS,
    dataclasses.replace(_RESULTS, param="page", unit="items per page"),
    Limit("parts", 1, 11, "query parts (texts and images)"),
    _SIDE,
    dataclasses.replace(_SIDE, param="width"),
    Limit("quality", 1, 95, "(JPEG quality: above 95 only grows the file)"),
    Limit("fps", 0.001, 240, "frames per second", "number"),
    Limit("batch_size", 1, None, "frames"),
    Limit("decode_workers", 1, 256, ""),
    Limit("embed_texts", 1, 256, "texts"),
    Limit("image_bytes", 1, 32 << 20, "bytes"),
    Limit("image_side", 8, None, "pixels"),
    Limit("images", 1, 10, "query images"),
    Limit("entities", 1, 10, "entities"),
    Limit("asset_ids", 1, 50, "reference images"),
    Limit("path", 1, 4096, "characters", "length"),
    _NAME,
    dataclasses.replace(_NAME, param="rollout_key"),
    Limit("max_tokens", 1, 32768, "tokens"),
    Limit("temperature", 0, 2, "", "number"),
    _COMMENT,
    dataclasses.replace(_COMMENT, param="description"),
    Limit("seconds", 0, None, "seconds", "number"),
    Limit("path_glob", 1, 1024, "characters", "length"),
)}

#: Longest text of any kind a request carries (a question, a search text, a text to embed).
MAX_TEXT = int(LIMITS["text"].high or 0)
#: Most frames one request may choose.
MAX_BUDGET = int(LIMITS["budget"].high or 0)
#: Fewest tokens a token budget may have: one frame at the cheapest tier.
MIN_TOKENS = int(LIMITS["tokens"].low)
#: Most parts (texts and images) in one search.
MAX_PARTS = int(LIMITS["parts"].high or 0)
#: Largest image file accepted (a query image, an entity's reference image).
MAX_IMAGE_BYTES = int(LIMITS["image_bytes"].high or 0)
#: Smallest side, in pixels, of an image accepted as a query or a reference.
MIN_IMAGE_SIDE = int(LIMITS["image_side"].low)
#: Most query images in one search (parts or composed).
MAX_QUERY_IMAGES = int(LIMITS["images"].high or 0)
#: Most entities one search may reference.
MAX_QUERY_ENTITIES = int(LIMITS["entities"].high or 0)
#: Most reference images (assets) of one entity.
MAX_ENTITY_ASSETS = int(LIMITS["asset_ids"].high or 0)

#: How a composed query (a text with images or entities, fused into one vector) weighs its
#: text against its visual side (the normalised mean of its images' and entities' vectors):
#: ``q = normalise(w * text + (1 - w) * visual)``. A text's cosines with frames spread about
#: half as wide as an image's (CLIP's modality gap), so an equal sum is an image query with a
#: hint of text; 0.7 was best of 0.3-0.9 on the synthetic world for "this object, on that
#: background" (hit@1 0.83; 0.6: 0.56, 0.8: 0.76; docs/twelvelabs.md,
#: ``scripts/bench_entities.py``).
COMPOSE_TEXT_WEIGHT = 0.7


# -- confidence of a search result --------------------------------------------------------


@dataclass(frozen=True)
class Confidence:
    """A confidence level of a search result (Twelve Labs' high/medium/low).

    Attributes:
        name: ``high``, ``medium`` or ``low``.
        margin: the least *margin* a result needs for this level: its cosine minus the
            query's background (the query's cosine with the library's mean frame, which
            search already computes). A margin, not a raw cosine: the background varies per
            query (0.008 to 0.054 over the synthetic world's 24 object queries), so one raw
            cut would be strict for one query and loose for another.
        rule: how the cut point was chosen, in words.
    """

    name: str
    margin: float
    rule: str


#: The levels, best first, calibrated on the synthetic world with the shipped model
#: (``scripts/calibrate_confidence.py``; the table and the method: docs/search.md, "Confidence").
#: A model other than ``synthetic-shapes`` gets the same cut points: they are margins over the
#: query's own background, but they were measured on that model only.
CONFIDENCE_TABLE: tuple[Confidence, ...] = (
    Confidence("high", 0.17, "the least margin where >= 90 % of the moments kept are true"),
    Confidence("medium", 0.11, "the least margin where >= 50 % of the moments kept are true"),
    Confidence("low", 0.06, "the largest margin that keeps >= 99 % of the true moments"),
)
#: Confidence level names, best first; a result below the lowest is ``none``.
CONFIDENCES: tuple[str, ...] = tuple(c.name for c in CONFIDENCE_TABLE)
NO_CONFIDENCE = "none"
#: What a search may ask as its ``threshold``: the least confidence a result must have
#: (``none``: every result, however weak).
THRESHOLDS: tuple[str, ...] = (*CONFIDENCES, NO_CONFIDENCE)
#: A search that names no threshold lists results of ``low`` confidence and better, so
#: near-zero and negative scores (a video without the object) are not listed.
DEFAULT_THRESHOLD = "low"


def confidence(margin: float) -> str:
    """The confidence level of a result whose score is ``margin`` above its query's
    background (``none`` below the lowest level)."""
    for level in CONFIDENCE_TABLE:
        if margin >= level.margin:
            return level.name
    return NO_CONFIDENCE


def threshold_margin(threshold: str) -> float:
    """The least margin a result needs to pass ``threshold`` (one of :data:`THRESHOLDS`;
    ``none``: -inf). KeyError for another name: names come from a checked request."""
    if threshold == NO_CONFIDENCE:
        return -math.inf
    return {c.name: c.margin for c in CONFIDENCE_TABLE}[threshold]


def confidence_cuts() -> str:
    """The levels' cut points in words (``high >= 0.17, ...``), for help texts."""
    return ", ".join(f"{c.name} >= {c.margin:g}" for c in CONFIDENCE_TABLE)


def passes(level: str, threshold: str) -> bool:
    """Whether a result of confidence ``level`` passes ``threshold``."""
    return THRESHOLDS.index(level) <= THRESHOLDS.index(threshold)


# -- memory bounds of a reader (a server, a query process) -----------------------------------

#: Lance's cache of opened vector and scalar indexes, per store. It must hold the segment
#: index of the largest library served or every query reloads it from disk (~370 ms at 1M
#: frames): IVF_HNSW_SQ on 10M frames' 1.67M segments is ~1.1 GB (512 bytes of SQ codes and
#: ~160 bytes of graph per segment). Lance's own default is 6 GiB.
LANCE_INDEX_CACHE_BYTES = 2 << 30
#: Lance's cache of manifests, file footers and page tables, per store (its default: 1 GiB).
#: A compacted 10M-frame store needs a few MB; a busy ingest's many small fragments more.
LANCE_METADATA_CACHE_BYTES = 256 << 20

# -- names a request may choose, and the states it reports ----------------------------------

#: How search results are grouped: each ``moment`` on its own, or one hit per ``video``.
GROUP_BY = ("moment", "video")
#: How the parts of a multi-part query combine: ``and`` ranks a video by the sum over the parts
#: of each part's best segment (LanceDB's MaxSim), ``or`` by its best single part.
OPERATORS = ("or", "and")
#: Chat request formats a selection can be delivered as: ``openai`` (Chat Completions; vLLM's
#: OpenAI-compatible server takes it too) and ``gemini`` (``generateContent``).
PAYLOAD_FORMATS = ("openai", "gemini")
OPENAI, GEMINI = PAYLOAD_FORMATS
#: What a delivery can include besides the cost line: the frames (JPEGs at their tiers), the
#: chat ``payload``, the ``plot`` of the relevance curve.
INCLUDE = ("frames", "payload", "plot")
#: How an answer can be rated.
RATINGS = ("good", "bad")
#: What became of one file in an index run.
OUTCOME_STATUSES = ("indexed", "unchanged", "failed")
INDEXED, UNCHANGED, FAILED = OUTCOME_STATUSES
#: An ingest job's states, in order; the first two are unfinished.
JOB_STATUSES = ("queued", "running", "done", "failed")
JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED = JOB_STATUSES
UNFINISHED = (JOB_QUEUED, JOB_RUNNING)
FINISHED = (JOB_DONE, JOB_FAILED)


__all__ = [
    "COMPOSE_TEXT_WEIGHT",
    "CONFIDENCES",
    "CONFIDENCE_TABLE",
    "DEFAULT_THRESHOLD",
    "FAILED",
    "FAMILIES",
    "FINISHED",
    "GEMINI",
    "GEMINI_FRAME_TOKENS",
    "GROUP_BY",
    "INCLUDE",
    "INDEXED",
    "JOB_DONE",
    "JOB_FAILED",
    "JOB_QUEUED",
    "JOB_RUNNING",
    "JOB_STATUSES",
    "NO_CONFIDENCE",
    "OPENAI",
    "OPERATORS",
    "OUTCOME_STATUSES",
    "PAYLOAD_FORMATS",
    "RATINGS",
    "THRESHOLDS",
    "TIERS",
    "TIER_TABLE",
    "UNCHANGED",
    "UNFINISHED",
    "UNTIERED",
    "Confidence",
    "ModelFamily",
    "Tier",
    "confidence",
    "confidence_cuts",
    "passes",
    "threshold_margin",
    "tier",
    "tier_costs_text",
    "tier_tokens",
]
