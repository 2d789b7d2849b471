"""Pydantic request and response models of the HTTP API (separate from the core dataclasses).

Validation that belongs to the domain (a sampler's parameters, a question's emptiness) stays in
the library and surfaces through its errors; these models check the shape of a request and the
names a client can pick (sampler names come from the registry, not from a list written here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from framedex.errors import UnknownNameError

_STRICT = ConfigDict(extra="forbid")


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
    path: str = Field(min_length=1, max_length=4096, description="Absolute server-side path.")
    fps: float | None = Field(None, gt=0, le=120, description="Frames per second to embed.")
    metadata: dict[str, MetaValue] = Field(default_factory=dict,
                                           description="User metadata stored with the video.")


class JobPublic(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
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
    min_duration: float | None = Field(None, ge=0)
    max_duration: float | None = Field(None, ge=0)
    path_glob: str | None = Field(None, min_length=1, max_length=1024)
    metadata: dict[str, MetaValue] = Field(default_factory=dict)


QueryText = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["text"]}, {"required": ["image_base64"]}]})
    text: QueryText | list[QueryText] | None = Field(
        None, description="What to look for (not only whitespace), or several texts: the "
                          "parts of a multi-part query (see `operator`).")
    image_base64: str | None = Field(
        None, min_length=1, max_length=1_000_000,
        description="An image to search with, base64 (or a data URL); one more query part. "
                    "Larger images: send multipart/form-data with an `image` file part.")
    operator: Literal["or", "and"] = Field(
        "or", description="How several parts combine: `and` ranks videos by the sum of each "
                          "part's best segment (LanceDB MaxSim), `or` by the best part.")
    limit: int = Field(10, ge=1, le=1000)
    group_by: Literal["moment", "video"] = "moment"
    filters: Filters | None = None

    @model_validator(mode="after")
    def _some_query(self, info: ValidationInfo) -> SearchRequest:
        texts = [self.text] if isinstance(self.text, str) else list(self.text or [])
        uploaded = bool(info.context and info.context.get("image_uploaded"))
        if not texts and self.image_base64 is None and not uploaded:
            raise ValueError("give text, image_base64, or both")
        if len(texts) > 10:
            raise ValueError("give at most 10 texts")
        return self

    @property
    def texts(self) -> list[str]:
        """The text parts as a list."""
        return [self.text] if isinstance(self.text, str) else list(self.text or [])


class SearchResponse(BaseModel):
    query: str
    group_by: str
    results: list[dict[str, Any]]
    notes: list[str] = Field(default_factory=list,
                             description="Warnings about the query (e.g. words the store's "
                                         "model cannot know).")


# -- select ---------------------------------------------------------------------------------


def _check_sampler(name: str | None) -> str | None:
    from framedex.library import sampler_names

    if name is not None and name not in sampler_names():
        raise ValueError(str(UnknownNameError("sampler", name, sampler_names())))
    return name


class SelectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "not": {"required": ["budget", "tokens"]},
        "description": "Give `budget` (frames) or `tokens` (a VLM token budget), not both; "
                       "neither means 8 frames."})
    question: str = Field(min_length=1, max_length=4000, pattern=r"\S",
                          description="The question (not only whitespace).")
    sampler: str | None = Field(None, description="A registered sampler (GET /v1/samplers); "
                                                  "default: the server's default sampler.")
    budget: int | None = Field(None, ge=1, le=10000, description="Frames to choose (default 8).")
    tokens: int | None = Field(None, ge=66, le=10_000_000,
                               description="A VLM token budget instead of a frame count (at "
                                           "least one low-tier frame, 66 tokens).")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Sampler parameters (GET /v1/samplers lists "
                                               "each sampler's).")
    include: list[Literal["frames", "payload", "plot"]] = Field(
        default_factory=list, max_length=3,
        description="frames: JPEG data-URLs at each frame's tier; payload: a chat request body; "
                    "plot: a PNG data-URL of the relevance curve and the chosen frames.")
    payload_format: Literal["openai", "gemini"] = "openai"
    frame_max_side: int = Field(512, ge=16, le=4096,
                                description="Cap on the longer side of returned frames, pixels "
                                            "(a frame's tier can make it smaller).")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        return _check_sampler(v)

    @model_validator(mode="after")
    def _one_budget(self) -> SelectRequest:
        if self.budget is not None and self.tokens is not None:
            raise ValueError("give budget (frames) or tokens, not both")
        return self


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


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "not": {"required": ["budget", "tokens"]},
        "description": "Select frames for the question, send them to the server's video LLM "
                       "(an OpenAI-compatible endpoint, `framedex serve --vlm-url`), and "
                       "return its answer; the same ask again returns the stored answer."})
    question: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    sampler: str | None = Field(None, description="A registered sampler; default: the "
                                                  "server's rollout arm for `rollout_key`, "
                                                  "else its default sampler.")
    budget: int | None = Field(None, ge=1, le=10000, description="Frames to send (default 8).")
    tokens: int | None = Field(None, ge=66, le=10_000_000,
                               description="A token budget instead of a frame count.")
    params: dict[str, Any] = Field(default_factory=dict, description="Sampler parameters.")
    start: float | None = Field(None, ge=0, description="Select frames at or after this "
                                                        "second of the video.")
    end: float | None = Field(None, gt=0, description="Select frames before this second.")
    model: str | None = Field(None, min_length=1, max_length=256,
                              description="Another model name at the server's endpoint.")
    max_tokens: int | None = Field(None, ge=1, description="Longest answer, in tokens.")
    temperature: float | None = Field(None, ge=0, le=2)
    response_format: dict[str, Any] | None = Field(
        None, description="An OpenAI response_format: {\"type\": \"json_object\"} or "
                          "{\"type\": \"json_schema\", \"json_schema\": {\"name\", "
                          "\"schema\"}}.")
    system: str | None = Field(None, min_length=1, max_length=4000,
                               description="A system message.")
    frame_max_side: int | None = Field(None, ge=16, le=4096,
                                       description="Cap on the longer side of the frames sent.")
    rollout_key: str | None = Field(None, min_length=1, max_length=256,
                                    description="Who asks (a user or session id): the rollout "
                                                "keeps one key on one arm. Default: the video "
                                                "and the question.")
    cache: bool = Field(True, description="Return a stored answer of the same ask (false: ask "
                                          "the model again).")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        return _check_sampler(v)

    @model_validator(mode="after")
    def _one_budget(self) -> AskRequest:
        if self.budget is not None and self.tokens is not None:
            raise ValueError("give budget (frames) or tokens, not both")
        return self


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
    rating: Literal["good", "bad"]
    comment: str | None = Field(None, description="Why (at most 2000 characters).")


class FeedbackResponse(BaseModel):
    answer_id: str
    rating: Literal["good", "bad"]
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
    text: str | list[str] = Field(description="One text or a list of up to 256 texts.")

    @field_validator("text")
    @classmethod
    def _texts(cls, v: str | list[str]) -> str | list[str]:
        texts = [v] if isinstance(v, str) else v
        if not 1 <= len(texts) <= 256:
            raise ValueError("give 1 to 256 texts")
        for t in texts:
            if not t.strip() or len(t) > 2000:
                raise ValueError("each text must be non-empty and at most 2000 characters")
        return v


class EmbedResponse(BaseModel):
    kind: Literal["text", "image"]
    dim: int
    vectors: list[list[float]]
    encoder: dict[str, Any]
