"""Request models of the ``/v1.3`` surface, shaped as the ``twelvelabs`` SDK (1.3.6) sends them,
and the rules that name what a visual-only, self-hosted server does not offer.

Shape errors are 400 ``parameter_invalid``; a well-formed request for a feature framedex lacks
(audio, transcription, Pegasus, fused embeddings...) is 400 ``unsupported`` with
a message naming it. Domain rules (a text's length, an image's size, a segment length) are
the core's (``framedex.rules``): these models document them in the schema and the
:class:`~framedex.library.Library`, the one place that owns them, checks them once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from framedex.api.schemas import QueryText, bounded, choice
from framedex.errors import ConfigError, UnsupportedError
from framedex.rules import (
    DEFAULT_THRESHOLD,
    LIMITS,
    MAX_ENTITY_ASSETS,
    MAX_QUERY_IMAGES,
    OPERATORS,
    THRESHOLDS,
)

#: Model names accepted for this server's encoder (the response reports which one it is).
MARENGO = ("marengo3.0", "marengo3.5")
#: Model options an index may enable.
VISUAL = "visual"

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
MetaValue = str | int | float | bool | None
_LAX = ConfigDict(extra="ignore")


def require_marengo(name: str, field: str = "model_name") -> None:
    """Accept a Marengo name for the server's encoder; refuse Pegasus and unknown models.

    Raises:
        UnsupportedError: a Pegasus (generative) model. ConfigError: an unknown model.
    """
    if name.lower().startswith("pegasus"):
        raise UnsupportedError(f"{field}={name!r} is not supported: framedex indexes with its "
                               "own encoder; to ask questions about a video, use "
                               "POST /v1.3/analyze, which sends the chosen frames to the "
                               "video LLM this server is configured with (--vlm-url)")
    if name not in MARENGO:
        raise ConfigError(f"{field}={name!r} is invalid: use one of {', '.join(MARENGO)} "
                          "(both name this server's own encoder)")


def require_visual(options: list[str] | None, field: str) -> None:
    """Accept the ``visual`` option only; ``audio``/``transcription`` are unsupported.

    Raises:
        UnsupportedError: audio or transcription. ConfigError: an unknown option.
    """
    for option in options or []:
        if option in ("audio", "transcription"):
            raise UnsupportedError(f"{field}={option!r} is not supported: framedex embeds the "
                                   "visual stream only (no audio, no speech); use 'visual'")
        if option != VISUAL:
            raise ConfigError(f"{field}={option!r} is invalid: use 'visual'")


# -- indexes --------------------------------------------------------------------------------


class IndexModel(BaseModel):
    model_config = _LAX
    model_name: str = Field(min_length=1, max_length=64)
    model_options: list[str] = Field(min_length=1, max_length=4)


class IndexCreate(BaseModel):
    model_config = _LAX
    index_name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    models: list[IndexModel] = Field(min_length=1, max_length=4)
    addons: list[str] | None = Field(None, max_length=4)

    def require_supported(self) -> None:
        """Raises UnsupportedError / ConfigError for what an index here cannot be."""
        for i, model in enumerate(self.models):
            require_marengo(model.model_name, f"models[{i}].model_name")
            require_visual(model.model_options, f"models[{i}].model_options")
        for addon in self.addons or []:
            if addon != "thumbnail":
                raise UnsupportedError(f"addons={addon!r} is not supported (only 'thumbnail': "
                                       "search results carry frame thumbnails)")


class IndexUpdate(BaseModel):
    model_config = _LAX
    index_name: str = Field(min_length=1, max_length=200, pattern=r"\S")


# -- assets and indexing --------------------------------------------------------------------


class AssetForm(BaseModel):
    model_config = _LAX
    method: str = Field(min_length=1, max_length=32)
    url: str | None = Field(None, max_length=4096)
    filename: str | None = Field(None, min_length=1, max_length=1024)
    enable_hls: bool | None = None
    enable_thumbnail: bool | None = None
    user_metadata: str | None = Field(None, max_length=65536)

    def require_supported(self) -> None:
        """Only ``direct`` (an uploaded file) and ``url`` (an allowed URL) assets exist here."""
        if self.method == "multipart":
            raise UnsupportedError("method='multipart' is not supported: multipart uploads "
                                   "through presigned URLs need an object store; send the file "
                                   "with method='direct'")
        if self.method not in ("direct", "url"):
            raise ConfigError(f"method={self.method!r} is invalid: use 'direct' or 'url'")


class IndexedAssetCreate(BaseModel):
    model_config = _LAX
    asset_id: Id
    enable_video_stream: bool | None = None
    user_metadata: dict[str, MetaValue] | None = None


class TaskForm(BaseModel):
    model_config = _LAX
    index_id: Id
    video_url: str | None = Field(None, max_length=4096)
    enable_video_stream: bool | None = None
    user_metadata: str | None = Field(None, max_length=65536)


# -- entity collections and entities -------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
AssetIds = Annotated[list[Id], Field(json_schema_extra={
    "minItems": int(LIMITS["asset_ids"].low), "maxItems": MAX_ENTITY_ASSETS})]


class EntityCollectionCreate(BaseModel):
    model_config = _LAX
    name: Name
    description: str | None = bounded("description", None)


class EntityCollectionUpdate(BaseModel):
    model_config = _LAX
    name: Name | None = None
    description: str | None = bounded("description", None)


class EntityCreate(BaseModel):
    model_config = _LAX
    name: Name
    asset_ids: AssetIds
    description: str | None = bounded("description", None)
    metadata: dict[str, MetaValue] | None = None


class EntityBulkCreate(BaseModel):
    model_config = _LAX
    entities: list[EntityCreate] = Field(min_length=1, max_length=100)


class EntityUpdate(BaseModel):
    model_config = _LAX
    name: Name | None = None
    description: str | None = bounded("description", None)
    metadata: dict[str, MetaValue] | None = None


class EntityAssets(BaseModel):
    model_config = _LAX
    asset_ids: AssetIds


# -- search ---------------------------------------------------------------------------------


class SearchForm(BaseModel):
    """The search form. Without ``operator``, the query is *composed*: its text (entity
    references included) and images are fused into one query vector, as Twelve Labs does;
    with ``operator``, each text and image is a part (framedex's multi-part search)."""

    model_config = _LAX
    index_id: Id
    search_options: list[str] = Field(min_length=1, max_length=3)
    query_text: list[QueryText] = Field(default_factory=list, max_length=10)
    query_media_type: str | None = Field(None, max_length=32)
    query_media_url: list[Annotated[str, Field(min_length=1, max_length=4096)]] = \
        Field(default_factory=list, max_length=MAX_QUERY_IMAGES)
    group_by: Literal["clip", "video"] = "clip"
    operator: str | None = choice(OPERATORS, None)
    page_limit: int = Field(10, ge=1, le=50)
    threshold: str = choice(THRESHOLDS, DEFAULT_THRESHOLD)
    filter: str | None = Field(None, max_length=65536)
    include_user_metadata: bool = False
    transcription_options: list[str] | None = Field(None, max_length=2)

    def require_supported(self, media: int) -> None:
        """Visual search by text and/or image only; ``media`` is the number of images sent."""
        require_visual(self.search_options, "search_options")
        if self.transcription_options:
            raise UnsupportedError("transcription_options is not supported: framedex does "
                                   "not transcribe speech")
        if self.query_media_type not in (None, "image"):
            raise UnsupportedError(f"query_media_type={self.query_media_type!r} is not "
                                   "supported: search with text and/or images")
        if media and self.query_media_type != "image":
            raise ConfigError("query_media_type is invalid: set it to 'image' with "
                              "query_media_file or query_media_url")
        if not self.query_text and not media:
            raise ConfigError("query_text is invalid: give query_text, an image "
                              "(query_media_type=image with query_media_file or "
                              "query_media_url), or both")


# -- embeddings -----------------------------------------------------------------------------


class MediaSource(BaseModel):
    model_config = _LAX
    base64_string: str | None = Field(None, min_length=1)
    url: str | None = Field(None, min_length=1, max_length=4096)
    asset_id: Id | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MediaSource:
        given = [x for x in (self.base64_string, self.url, self.asset_id) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of base64_string, url, asset_id")
        return self


class TextInput(BaseModel):
    model_config = _LAX
    input_text: str = bounded("text")


class ImageInput(BaseModel):
    model_config = _LAX
    media_source: MediaSource


class MultiSource(BaseModel):
    model_config = _LAX
    name: str | None = Field(None, max_length=200)
    media_type: str = Field(min_length=1, max_length=32)
    url: str | None = None
    base64_string: str | None = None
    asset_id: str | None = None


class MultiInput(BaseModel):
    model_config = _LAX
    input_text: str | None = bounded("text", None)
    media_sources: list[MultiSource] | None = Field(None, max_length=10)


InputType = Literal["text", "image", "text_image", "audio", "video", "multi_input"]


class EmbedRequest(BaseModel):
    """``POST /embed-v2`` (JSON)."""

    model_config = _LAX
    input_type: InputType
    model_name: str = Field(min_length=1, max_length=64)
    text: TextInput | None = None
    image: ImageInput | None = None
    multi_input: MultiInput | None = None
    embedding_dimension: int | None = Field(None, ge=1, le=8192)
    embedding_uncertainty: bool | None = None
    auto_truncate: bool | None = None
    text_image: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    video: dict[str, Any] | None = None

    def require_supported(self) -> None:
        """Text, image (base64/asset/URL) and text-only ``multi_input``."""
        require_marengo(self.model_name)
        if self.input_type in ("audio", "text_image"):
            what = "audio" if self.input_type == "audio" else "text_image (fused text+image)"
            raise UnsupportedError(f"input_type={self.input_type!r} is not supported: "
                                   f"framedex does not embed {what}; embed the text and the "
                                   "image separately")
        if self.input_type == "video":
            raise UnsupportedError("input_type='video' is not supported on the synchronous "
                                   "endpoint: create a task with POST /embed-v2/tasks")
        if self.embedding_uncertainty:
            raise UnsupportedError("embedding_uncertainty is not supported")
        needed = {"text": self.text, "image": self.image,
                  "multi_input": self.multi_input}[self.input_type]
        if needed is None:
            raise ConfigError(f"{self.input_type} is invalid: input_type="
                              f"{self.input_type!r} needs the {self.input_type!r} object")
        if self.input_type == "multi_input":
            assert self.multi_input is not None
            if self.multi_input.media_sources:
                raise UnsupportedError("multi_input with media_sources is not supported: "
                                       "framedex embeds text-only multi_input")
            if not self.multi_input.input_text:
                raise ConfigError("multi_input.input_text is invalid: give the text")


class FixedSegmentation(BaseModel):
    model_config = _LAX
    duration_sec: int = Field(ge=1, le=3600)


class DynamicSegmentation(BaseModel):
    model_config = _LAX
    min_duration_sec: int = Field(ge=1, le=3600)


class Segmentation(BaseModel):
    model_config = _LAX
    strategy: Literal["fixed", "dynamic"] | None = None
    fixed: FixedSegmentation | None = None
    dynamic: DynamicSegmentation | None = None
    temporal: dict[str, Any] | None = None

    def resolve(self) -> tuple[str, float]:
        """``(segmentation, seconds)``: fixed windows or shots of at least ``seconds``.

        Raises:
            ConfigError: the strategy's object is missing.
        """
        if self.temporal is not None:
            inner = Segmentation.model_validate(self.temporal)
            return inner.resolve()
        strategy = self.strategy or ("dynamic" if self.dynamic is not None else "fixed")
        if strategy == "fixed":
            if self.fixed is None:
                raise ConfigError("segmentation.fixed is invalid: give {duration_sec}")
            return "fixed", float(self.fixed.duration_sec)
        if self.dynamic is None:
            raise ConfigError("segmentation.dynamic is invalid: give {min_duration_sec}")
        return "dynamic", float(self.dynamic.min_duration_sec)


class AsyncVideoInput(BaseModel):
    model_config = _LAX
    media_source: MediaSource
    start_sec: float | None = Field(None, ge=0)
    end_sec: float | None = Field(None, gt=0)
    segmentation: Segmentation | None = None
    embedding_option: list[str] | None = Field(None, max_length=3)
    embedding_scope: list[Literal["clip", "asset", "local"]] | None = Field(None, max_length=3)
    embedding_type: list[str] | None = Field(None, max_length=2)
    time_based_metadata: list[dict[str, Any]] | None = None


class EmbedTaskRequest(BaseModel):
    """``POST /embed-v2/tasks`` (JSON)."""

    model_config = _LAX
    input_type: Literal["video", "audio", "image", "document"]
    model_name: str = Field(min_length=1, max_length=64)
    video: AsyncVideoInput | None = None
    embedding_dimension: int | None = Field(None, ge=1, le=8192)
    embedding_uncertainty: bool | None = None
    audio: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    document: dict[str, Any] | None = None

    def require_supported(self) -> AsyncVideoInput:
        """A video, visual, separate embeddings; returns the video input."""
        require_marengo(self.model_name)
        if self.input_type != "video":
            raise UnsupportedError(f"input_type={self.input_type!r} is not supported by "
                                   "embedding tasks here: framedex embeds videos (use "
                                   "POST /embed-v2 for a text or an image)")
        if self.video is None:
            raise ConfigError("video is invalid: input_type='video' needs the video object")
        if self.embedding_uncertainty:
            raise UnsupportedError("embedding_uncertainty is not supported")
        video = self.video
        require_visual(video.embedding_option, "video.embedding_option")
        if "fused_embedding" in (video.embedding_type or []):
            raise UnsupportedError("embedding_type='fused_embedding' is not supported: only "
                                   "separate (visual) embeddings")
        if "local" in (video.embedding_scope or []):
            raise UnsupportedError("embedding_scope='local' is not supported: use clip or "
                                   "asset")
        if video.time_based_metadata:
            raise UnsupportedError("time_based_metadata is not supported")
        if video.start_sec is not None and video.end_sec is not None \
                and video.end_sec <= video.start_sec:
            raise ConfigError(f"video.end_sec={video.end_sec} is invalid: must be > "
                              f"start_sec={video.start_sec}")
        return video


# -- analyze --------------------------------------------------------------------------------


class AnalyzeVideo(BaseModel):
    """``video``: exactly the source its ``type`` names."""

    model_config = _LAX
    type: Literal["asset_id", "url", "base64_string"]
    asset_id: Id | None = None
    url: str | None = Field(None, min_length=1, max_length=4096)
    base64_string: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _source(self) -> AnalyzeVideo:
        if getattr(self, self.type) is None:
            raise ValueError(f"type {self.type} needs the field {self.type}")
        return self


class AnalyzeFormat(BaseModel):
    model_config = _LAX
    type: str = Field(min_length=1, max_length=32)
    json_schema: dict[str, Any] | None = None


class AnalyzeRequest(BaseModel):
    """What ``client.analyze`` / ``client.analyze_stream`` send (``stream`` defaults to true,
    as on Twelve Labs' API)."""

    model_config = _LAX
    model_name: str | None = bounded("model", None)
    video: AnalyzeVideo | None = None
    image: list[Any] | None = None
    prompt: str | None = bounded("question", None)
    prompt_v2: Any = None
    temperature: float | None = None
    response_format: AnalyzeFormat | None = None
    max_tokens: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    stream: bool = True

    def require_supported(self) -> AnalyzeVideo:
        """The video to analyze.

        Raises:
            UnsupportedError: images or ``prompt_v2``. ConfigError: no video, no prompt, a
            response format other than ``json_schema``, a window shorter than 1 s.
        """
        if self.image is not None:
            raise UnsupportedError("image is not supported: framedex analyzes indexed videos "
                                   "(send images to your video LLM directly)")
        if self.prompt_v2 is not None:
            raise UnsupportedError("prompt_v2 is not supported: reference images in prompts "
                                   "are not offered; use prompt")
        if self.video is None:
            raise ConfigError("video is invalid: give {\"type\": \"asset_id\", \"asset_id\": "
                              "...} (or type url / base64_string)")
        if self.prompt is None or not self.prompt.strip():
            raise ConfigError("prompt is invalid: give the question or instruction, as text")
        if self.response_format is not None and (
                self.response_format.type != "json_schema"
                or not isinstance(self.response_format.json_schema, dict)):
            raise ConfigError("response_format is invalid: give {\"type\": \"json_schema\", "
                              "\"json_schema\": {a JSON schema}}")
        if self.start_time is not None and self.end_time is not None \
                and self.end_time - self.start_time < 1:
            raise ConfigError(f"end_time={self.end_time!r} is invalid: the window must be at "
                              "least 1 second")
        return self.video

    def openai_format(self) -> dict[str, Any] | None:
        """``response_format`` as the OpenAI chat API takes it."""
        if self.response_format is None or self.response_format.json_schema is None:
            return None
        return {"type": "json_schema",
                "json_schema": {"name": "response", "schema": self.response_format.json_schema}}
