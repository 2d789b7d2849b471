"""``ask``'s leaf types: its options, its result, and the key of the answers cache.

``Library.ask`` runs select -> deliver (the one delivery step builds the OpenAI request) ->
the user's video LLM (:mod:`framedex.query.vlm`) and returns an :class:`AskResult`. The types
live here, below the library, so the store, the API and the CLI share them without a cycle.

**The cache key** (:func:`cache_key`) is the SHA-256 of the canonical JSON of everything that
decides what the model is shown and asked:

- the video's id and its index *generation* (a re-index writes a new generation, so every key
  of the video changes: its old answers are never served again, and ``optimize`` deletes them);
- the question, with runs of whitespace collapsed (otherwise exact: case and punctuation count);
- the sampler (after the rollout chose it), its parameters, the frame or token budget, the
  time span, the frame size cap;
- the model name and the endpoint's URL;
- the generation options: ``max_tokens``, ``temperature``, ``response_format``, ``system``;
- :data:`ASK_FORMAT`, the version of the prompt layout (bumped when the request framedex
  builds changes, so answers to an older prompt stop matching).

The same key returns the newest stored answer without calling the model (``cache=False``
asks the model again and stores the fresh answer). A sampled answer (``temperature`` > 0) is
cached like any other: ask with ``cache=False`` for a new sample.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from framedex.errors import check
from framedex.rules import LIMITS
from framedex.validate import check_limit, check_span, check_text
from framedex.values import Json, JsonObject

#: Version of the request layout framedex sends (part of every cache key).
ASK_FORMAT = 1
#: Largest ``response_format`` (its JSON), in bytes.
MAX_FORMAT_BYTES = 64 << 10
#: The ``response_format`` types of the chat-completions API.
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


@dataclass(frozen=True)
class AskOptions:
    """How to ask: generation options sent to the model, and what frames to send.

    Args:
        max_tokens: longest answer, in the model's tokens (None: the server's default).
        temperature: sampling temperature in [0, 2] (None: the server's default).
        response_format: an OpenAI ``response_format`` (``{"type": "json_schema",
            "json_schema": {"name": ..., "schema": {...}}}`` or ``{"type": "json_object"}``).
        system: a system message.
        max_side: cap on the longer side of the frames sent (pixels; the delivery options
            check it: here it is part of the cache key).
        start: select only frames at or after this time (seconds of the video).
        end: select only frames before this time.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    response_format: JsonObject | None = None
    system: str | None = None
    max_side: int | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        check_limit(self.max_tokens, LIMITS["max_tokens"])
        check_limit(self.temperature, LIMITS["temperature"])
        if self.system is not None:
            check_text("system", self.system)
        check_span(self.start, self.end)
        if self.response_format is not None:
            check_response_format(self.response_format)

    def request_fields(self) -> JsonObject:
        """What goes into the chat request besides the messages (the delivery step puts
        ``max_tokens`` and ``system`` in the payload it builds)."""
        out: JsonObject = {}
        if self.temperature is not None:
            out["temperature"] = float(self.temperature)
        if self.response_format is not None and self.response_format.get("type") != "text":
            out["response_format"] = self.response_format
        return out

    def to_json(self) -> JsonObject:
        """The options as a JSON-ready dict (None fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_response_format(value: object) -> JsonObject:
    """Validate an OpenAI ``response_format``.

    Raises:
        ConfigError: not one of the three shapes, or too large.
    """
    check(isinstance(value, Mapping) and value.get("type") in RESPONSE_FORMATS,
          "response_format", value, f"must be an object with type {', '.join(RESPONSE_FORMATS)}")
    assert isinstance(value, Mapping)
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        size = -1
    check(0 <= size <= MAX_FORMAT_BYTES, "response_format", "...",
          f"must be JSON of at most {MAX_FORMAT_BYTES} bytes")
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        check(isinstance(spec, Mapping) and isinstance(spec.get("name"), str)
              and bool(spec.get("name")) and isinstance(spec.get("schema"), Mapping),
              "response_format.json_schema", spec,
              "must be {\"name\": ..., \"schema\": {a JSON schema}}")
    return dict(value)


def normalise_question(question: str) -> str:
    """The question as the cache key sees it: runs of whitespace collapsed, ends trimmed."""
    return " ".join(question.split())


def cache_key(*, video_id: str, generation: int, question: str, sampler: str,
              params: Mapping[str, Json], budget: int | None, tokens: int | None, model: str,
              endpoint: str, options: AskOptions) -> str:
    """The answers cache key of one ask (see the module docstring for what it covers).

    Returns:
        64 hex characters.
    """
    canonical = json.dumps({
        "format": ASK_FORMAT, "video_id": video_id, "generation": int(generation),
        "question": normalise_question(question), "sampler": sampler,
        "params": dict(params), "budget": budget, "tokens": tokens, "model": model,
        "endpoint": endpoint, "options": options.to_json(),
    }, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class AskResult:
    """One answer of a video LLM about one video, and what it cost.

    Attributes:
        answer_id: id of this answer (for feedback: ``Library.feedback``).
        answer: the model's text.
        cached: served from the answers cache, without calling the model; ``source_id`` is
            the answer it reused, and the token counts are that answer's.
        timestamps / frame_idx / tiers: the frames the model saw (seconds, native numbers,
            resolution tiers under a token budget).
        arm: the rollout arm that chose the sampler (None: the request named it).
        prompt_tokens / completion_tokens: the server's ``usage`` (None if it sent none).
        select_ms / deliver_ms / model_ms / latency_ms: the sampler, decoding and encoding
            the frames, the model call, and the whole ask (a cache hit has only the last).
        finish_reason: ``stop``, ``length`` (cut at ``max_tokens``)...
    """

    answer_id: str
    answer: str
    video_id: str
    question: str
    sampler: str
    model: str
    endpoint: str
    cache_key: str
    cached: bool = False
    source_id: str | None = None
    arm: str | None = None
    budget: int | None = None
    tokens: int | None = None
    timestamps: list[float] = field(default_factory=list)
    frame_idx: list[int] = field(default_factory=list)
    tiers: list[str] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    select_ms: float = 0.0
    deliver_ms: float = 0.0
    model_ms: float = 0.0
    latency_ms: float = 0.0

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens (None when the server reported no usage)."""
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def to_json(self) -> JsonObject:
        """A JSON-ready dict (what ``framedex ask --json`` and ``/v1`` return)."""
        return {
            "answer_id": self.answer_id, "answer": self.answer, "video_id": self.video_id,
            "question": self.question, "sampler": self.sampler, "arm": self.arm,
            "model": self.model, "endpoint": self.endpoint, "cached": self.cached,
            "source_id": self.source_id, "budget": self.budget, "tokens": self.tokens,
            "timestamps": [round(t, 6) for t in self.timestamps], "frame_idx": self.frame_idx,
            "tiers": self.tiers, "finish_reason": self.finish_reason,
            "usage": {"prompt_tokens": self.prompt_tokens,
                      "completion_tokens": self.completion_tokens,
                      "total_tokens": self.total_tokens},
            "latency_ms": {"select": round(self.select_ms, 3),
                           "deliver": round(self.deliver_ms, 3),
                           "model": round(self.model_ms, 3), "total": round(self.latency_ms, 3)},
            "cache_key": self.cache_key,
        }


__all__ = ["ASK_FORMAT", "RESPONSE_FORMATS", "AskOptions", "AskResult",
           "cache_key", "check_response_format", "normalise_question"]
