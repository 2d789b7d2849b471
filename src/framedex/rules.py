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
  decides (its scale, its token cost per model family, OpenAI's ``detail``, its plot colour).

This module imports nothing of framedex, so every layer may import it.
"""

from __future__ import annotations

import dataclasses
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
        scale: the fraction of the native frame side it is sent at (Q-Frame's official 1/2,
            1/4, 1/8).
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
    Tier("high", 1 / 2, {"gemini": GEMINI_FRAME_TOKENS, "qwen": 256}, "high", "#D55E00"),
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


# -- names a request may choose, and the states it reports ----------------------------------

#: How search results are grouped: each ``moment`` on its own, or one hit per ``video``.
GROUP_BY = ("moment", "video")
#: How the parts of a multi-part query combine: ``and`` ranks a video by the sum over the parts
#: of each part's best segment (LanceDB's MaxSim), ``or`` by its best single part.
OPERATORS = ("or", "and")
#: Chat request formats a selection can be delivered as: ``openai`` (Chat Completions; vLLM's
#: OpenAI-compatible server takes it too) and ``gemini`` (``generateContent``).
PAYLOAD_FORMATS = ("openai", "gemini")
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
    "FAILED", "FAMILIES", "FINISHED", "GEMINI_FRAME_TOKENS", "GROUP_BY", "INCLUDE", "INDEXED",
    "JOB_DONE", "JOB_FAILED", "JOB_QUEUED", "JOB_RUNNING", "JOB_STATUSES", "OPERATORS",
    "OUTCOME_STATUSES", "PAYLOAD_FORMATS", "RATINGS", "TIERS", "TIER_TABLE", "UNCHANGED",
    "UNFINISHED", "UNTIERED", "ModelFamily", "Tier", "tier", "tier_costs_text", "tier_tokens",
]
