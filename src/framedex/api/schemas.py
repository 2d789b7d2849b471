"""Pydantic request and response models of the HTTP API (separate from the core dataclasses).

These models parse a request's shape and types. The rules on its values (a question's length,
the budget's bounds, the names a client can pick) are the core's (``framedex.rules``): the
models *document* them in the OpenAPI schema, read from the same tables, and the ``Library``
checks them, once; a route reports the facade's error on a body field as that field's error
(:func:`framedex.api.errors.body_fields`). Sampler names come from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from framedex.rules import (
    DEFAULT_BUDGET,
    DEFAULT_LIMIT,
    DEFAULT_MAX_SIDE,
    DEFAULT_THRESHOLD,
    GROUP_BY,
    INCLUDE,
    JOB_STATUSES,
    LIMITS,
    MAX_PARTS,
    MAX_QUERY_ENTITIES,
    MAX_QUERY_IMAGES,
    MIN_TOKENS,
    OPERATORS,
    PAYLOAD_FORMATS,
    RATINGS,
    THRESHOLDS,
    confidence_cuts,
)

_STRICT = ConfigDict(extra="forbid")


def bounded(param: str, default: Any = ..., **field: Any) -> Any:
    """A field whose bounds are the core's rule ``LIMITS[param]``: documented in the schema,
    checked by the facade."""
    extra: dict[str, Any] = dict(LIMITS[param].json_schema())
    if LIMITS[param].kind == "length":
        extra["pattern"] = r"\S" if LIMITS[param].low >= 1 else ".*"
    return Field(default, json_schema_extra=extra, **field)


def choice(names: Sequence[str], default: Any = ..., **field: Any) -> Any:
    """A field that takes one of the core's ``names``: documented, checked by the facade."""
    return Field(default, json_schema_extra={"enum": list(names)}, **field)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema for a route's ``openapi_extra`` request body, self-contained.

    pydantic puts nested models under ``$defs`` and refers to them as ``#/$defs/Name``, which
    is relative to the schema's own root; embedded in an OpenAPI document the root is the
    document, so those references pointed nowhere and schema fuzzers skipped the bodies. The
    nested models are inlined instead (request models are not recursive).
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any, depth: int = 0) -> Any:
        if depth > 32:  # a recursive model would loop: fail loudly at app creation
            raise ValueError(f"{model.__name__}: $defs nest too deep to inline")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")], depth + 1),
                        **inline(rest, depth)}
            return {k: inline(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, depth) for v in node]
        return node

    out: dict[str, Any] = inline(schema)
    return out

MetaValue = str | int | float | bool


class ErrorInfo(BaseModel):
    code: str
    message: str
    detail: Any | None = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "detail"?}}``."""

    error: ErrorInfo


# -- health ---------------------------------------------------------------------------------


class StoreInfo(BaseModel):
    name: str = Field(description="The store folder's name (never a server path).")
    videos: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    encoder: dict[str, Any] = Field(description="Model identity, device, and `synthetic`: "
                                                "true for the shipped toy model.")
    store: StoreInfo
    cache: dict[str, Any] = Field(description="Hit rates of the frames and text caches.")
    notes: list[str] = Field(default_factory=list)
    vlm_model: str | None = Field(None, description="The model `ask` and `/v1.3/analyze` "
                                                    "call (null: none configured).")
    rollout: str | None = Field(None, description="The sampler rollout, e.g. "
                                                  "aks=0.9,bolt=0.1.")


# -- videos and jobs ------------------------------------------------------------------------


class IngestPath(BaseModel):
    """Ingest a file that is already on the server, under one of its ``--allow-root`` folders."""

    model_config = _STRICT
    path: str = bounded("path", description="Absolute server-side path.")
    fps: float | None = bounded("fps", None, description="Frames per second to embed.")
    metadata: dict[str, MetaValue] = Field(default_factory=dict,
                                           description="User metadata stored with the video.")


class JobPublic(BaseModel):
    job_id: str
    status: str = choice(JOB_STATUSES)
    progress: float = Field(ge=0, le=1)
    source: str
    video_id: str | None = None
    error: str | None = None
    attempts: int
    created_at: datetime
    updated_at: datetime


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


class VideoPublic(BaseModel):
    video_id: str
    path: str
    duration: float
    frame_rate: float
    num_frames: int
    width: int
    height: int
    start_sec: float
    is_vfr: bool
    index_fps: float
    num_indexed: int
    decoder: str
    encoder: str
    metadata: dict[str, Any]
    created_at: datetime


class VideosPublic(BaseModel):
    data: list[VideoPublic]
    count: int = Field(description="Total number of indexed videos (not just this page).")
    limit: int
    offset: int


# -- search ---------------------------------------------------------------------------------


class Filters(BaseModel):
    model_config = _STRICT
    min_duration: float | None = bounded("seconds", None)
    max_duration: float | None = bounded("seconds", None)
    path_glob: str | None = bounded("path_glob", None)
    metadata: dict[str, MetaValue] = Field(default_factory=dict)


#: A text (of a list) bounded by the core's text rule.
QueryText = Annotated[str, bounded("text")]


Base64Image = Annotated[str, Field(min_length=1, max_length=1_000_000)]
EntityId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["text"]}, {"required": ["image_base64"]},
                  {"required": ["entity"]}]})
    text: QueryText | Annotated[list[QueryText], Field(json_schema_extra={
        "maxItems": MAX_PARTS})] | None = Field(
        None, description="What to look for (not only whitespace), or several texts: the "
                          f"parts of a multi-part query (see `operator`); at most {MAX_PARTS} "
                          "parts, texts and images together. `<@ENTITY_ID>` in a text finds "
                          "that entity (combined with the rest of the text).")
    image_base64: Base64Image | Annotated[list[Base64Image], Field(json_schema_extra={
        "maxItems": MAX_QUERY_IMAGES})] | None = Field(
        None, description="An image to search with, base64 (or a data URL), or several (at "
                          f"most {MAX_QUERY_IMAGES}); each is one more query part, unless "
                          "`compose`. Larger images: send multipart/form-data with `image` "
                          "file parts.")
    entity: EntityId | Annotated[list[EntityId], Field(json_schema_extra={
        "maxItems": MAX_QUERY_ENTITIES})] | None = Field(
        None, description="Entity ids to find, as if written `<@ENTITY_ID>` in the first "
                          "text (a part of their own without a text).")
    compose: bool = Field(False, description="Fuse the texts, images and entities into one "
                                             "query vector (\"this, doing that\") instead of "
                                             "parts combined by `operator`.")
    operator: str = choice(
        OPERATORS, OPERATORS[0],
        description="How several parts combine: `and` ranks videos by the sum of each "
                    "part's best segment (LanceDB MaxSim), `or` by the best part.")
    limit: int = bounded("limit", DEFAULT_LIMIT)
    group_by: str = choice(GROUP_BY, GROUP_BY[0])
    threshold: str = choice(
        THRESHOLDS, DEFAULT_THRESHOLD,
        description="The least `confidence` a result must have (`none`: every result, "
                    "however weak). A result's confidence is its score's margin over the "
                    "query's background: " + confidence_cuts() + " (calibrated on the "
                    "synthetic world: docs/search.md).")
    filters: Filters | None = None

    @model_validator(mode="after")
    def _some_query(self, info: ValidationInfo) -> SearchRequest:
        uploaded = bool(info.context and info.context.get("image_uploaded"))
        if not self.texts and not self.images_base64 and not self.entities and not uploaded:
            raise ValueError("give text, image_base64 or entity (or several)")
        return self

    @property
    def texts(self) -> list[str]:
        """The text parts as a list."""
        return [self.text] if isinstance(self.text, str) else list(self.text or [])

    @property
    def images_base64(self) -> list[str]:
        """The base64 images as a list."""
        given = self.image_base64
        return [given] if isinstance(given, str) else list(given or [])

    @property
    def entities(self) -> list[str]:
        """The entity ids as a list."""
        return [self.entity] if isinstance(self.entity, str) else list(self.entity or [])


class SearchResponse(BaseModel):
    query: str
    group_by: str
    threshold: str = Field(description="The least confidence the results have.")
    results: list[dict[str, Any]]
    notes: list[str] = Field(default_factory=list,
                             description="Warnings about the query (e.g. words the store's "
                                         "model cannot know).")


# -- select ---------------------------------------------------------------------------------


class SelectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "not": {"required": ["budget", "tokens"]},
        "description": "Give `budget` (frames) or `tokens` (a VLM token budget), not both; "
                       f"neither means {DEFAULT_BUDGET} frames."})
    question: str = bounded("question", description="The question (not only whitespace).")
    sampler: str | None = Field(None, description="A registered sampler (GET /v1/samplers); "
                                                  "default: the server's default sampler.")
    budget: int | None = bounded("budget", None,
                                 description=f"Frames to choose (default {DEFAULT_BUDGET}).")
    tokens: int | None = bounded(
        "tokens", None, description="A VLM token budget instead of a frame count (at least one "
                                    f"low-tier frame, {MIN_TOKENS} tokens).")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Sampler parameters (GET /v1/samplers lists "
                                               "each sampler's).")
    include: list[Annotated[str, choice(INCLUDE)]] = Field(
        default_factory=list, json_schema_extra={"maxItems": len(INCLUDE)},
        description="frames: JPEG data-URLs at each frame's tier; payload: a chat request body; "
                    "plot: a PNG data-URL of the relevance curve and the chosen frames.")
    payload_format: str = choice(PAYLOAD_FORMATS, PAYLOAD_FORMATS[0])
    vlm_model: str | None = bounded("model", None, description=(
        "The `model` of an openai payload (default gpt-4o), e.g. your vLLM model's name; a "
        "Gemini request names its model in the URL."))
    frame_max_side: int = bounded("max_side", DEFAULT_MAX_SIDE,
                                  description="Cap on the longer side of returned frames, "
                                              f"pixels (default {DEFAULT_MAX_SIDE}, as on every "
                                              "face); the high tier is this size, mid and "
                                              "low smaller.")


class SelectResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    video_id: str
    path: str
    question: str
    sampler: str
    budget: int | None = Field(description="Frames asked for; null when `tokens` was given.")
    tokens: int | None
    indices: list[int]
    timestamps: list[float]
    frame_idx: list[int]
    scores: list[float] | None
    tiers: list[str] | None = None
    tokens_used: int | None = None
    decision: str | None = None
    reason: str | None = None
    latency_ms: float
    params: dict[str, Any]
    cost: dict[str, Any]
    frames: list[str] | None = None
    frame_sizes: list[list[int]] | None = None
    payload: dict[str, Any] | None = None
    plot: str | None = None
    notes: list[str] = Field(default_factory=list, description="What to know about the "
                             "selection, e.g. a budget that takes every indexed frame.")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "not": {"required": ["budget", "tokens"]},
        "description": "Select frames for the question, send them to the server's video LLM "
                       "(an OpenAI-compatible endpoint, `framedex serve --vlm-url`), and "
                       "return its answer; the same ask again returns the stored answer."})
    question: str = bounded("question")
    sampler: str | None = Field(None, description="A registered sampler; default: the "
                                                  "server's rollout arm for `rollout_key`, "
                                                  "else its default sampler.")
    budget: int | None = bounded("budget", None,
                                 description=f"Frames to send (default {DEFAULT_BUDGET}).")
    tokens: int | None = bounded("tokens", None,
                                 description="A token budget instead of a frame count.")
    params: dict[str, Any] = Field(default_factory=dict, description="Sampler parameters.")
    start: float | None = bounded("seconds", None, description="Select frames at or after "
                                                               "this second of the video.")
    end: float | None = bounded("seconds", None, description="Select frames before this second.")
    model: str | None = bounded("model", None,
                                description="Another model name at the server's endpoint.")
    max_tokens: int | None = bounded("max_tokens", None, description="Longest answer, in tokens.")
    temperature: float | None = bounded("temperature", None)
    response_format: dict[str, Any] | None = Field(
        None, description="An OpenAI response_format: {\"type\": \"json_object\"} or "
                          "{\"type\": \"json_schema\", \"json_schema\": {\"name\", "
                          "\"schema\"}}.")
    system: str | None = bounded("system", None, description="A system message.")
    frame_max_side: int | None = bounded("max_side", None,
                                         description="Cap on the longer side of the frames "
                                                     f"sent (null: {DEFAULT_MAX_SIDE}).")
    rollout_key: str | None = bounded("rollout_key", None,
                                      description="Who asks (a user or session id): the rollout "
                                                  "keeps one key on one arm. Default: the video "
                                                  "and the question.")
    cache: bool = Field(True, description="Return a stored answer of the same ask (false: ask "
                                          "the model again).")


class AskUsage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


class AskLatency(BaseModel):
    select: float = Field(description="The sampler, ms.")
    deliver: float = Field(description="Decoding and encoding the frames, ms.")
    model: float = Field(description="The video LLM's call, ms.")
    total: float = Field(description="The whole ask, ms.")


class AskResponse(BaseModel):
    answer_id: str = Field(description="For POST /v1/answers/{answer_id}/feedback.")
    answer: str
    video_id: str
    question: str
    sampler: str
    arm: str | None = Field(description="The rollout arm that chose the sampler.")
    model: str
    endpoint: str
    cached: bool = Field(description="Served from the answers cache, without a model call.")
    source_id: str | None = Field(description="The stored answer a cached one reuses.")
    budget: int | None
    tokens: int | None
    timestamps: list[float] = Field(description="The frames the model saw, seconds.")
    frame_idx: list[int]
    tiers: list[str] | None
    finish_reason: str | None
    usage: AskUsage
    latency_ms: AskLatency
    cache_key: str


class FeedbackRequest(BaseModel):
    model_config = _STRICT
    rating: str = choice(RATINGS)
    comment: str | None = bounded("comment", None, description="Why.")


class FeedbackResponse(BaseModel):
    answer_id: str
    rating: str = choice(RATINGS)
    comment: str | None


class SamplersPublic(BaseModel):
    data: list[str]
    default: str
    samplers: list[dict[str, Any]] = Field(default_factory=list,
                                           description="Each sampler's description and "
                                                       "parameters (name, type, default, doc).")


# -- embed ----------------------------------------------------------------------------------


class EmbedRequest(BaseModel):
    model_config = _STRICT
    text: QueryText | Annotated[list[QueryText], Field(json_schema_extra={
        "minItems": LIMITS["embed_texts"].low, "maxItems": LIMITS["embed_texts"].high})] = \
        Field(description="One text or a list of texts.")


class EmbedResponse(BaseModel):
    kind: Literal["text", "image"]
    dim: int
    vectors: list[list[float]]
    encoder: dict[str, Any]
