"""A small video LLM for the synthetic world: an OpenAI-compatible chat server that answers
questions about coloured shapes **only from the images it is sent**.

It is the model ``framedex eval --qa`` and the tests ask through ``ask``, and what
``framedex serve-vlm`` serves. No truth file is read and nothing is looked up: a sampler that
sends the wrong frames gets a wrong answer, exactly as with a real video LLM.

**Seeing.** Every image of a request goes through the shipped ``synthetic-shapes`` open_clip
model zero-shot, the way CLIP classifies: its embedding is compared with the 24 prompts
``"a {colour} {shape}"`` and the 3 prompts ``"an empty {background} screen"``. A frame is
empty when an empty-screen prompt scores above every object prompt; otherwise it shows its
best object and every object within :data:`OBJECT_MARGIN` of it (on held-out 128 px renders:
empty frames are always told apart, the best object of a one-object frame is always right,
and 97 % of the objects listed in busier frames are there). Frames are read at the size they
are sent, so a low-resolution tier reads worse, as it would for a real model.

**Time.** framedex labels every image ``"Frame i at 12.0s:"``; the model reads those labels
(images without one keep their order).

**Reasoning**, over the frames in time order (:func:`answer_question`):

- "What colour is the star?": the colour of the star with the highest prompt score;
- "What shape appears after the red circle?": the best object of the first frame after the
  last frame showing the red circle that shows something else (also "before");
- "How many times does the purple star appear?": runs of frames where it is the most
  prominent object; two sightings belong to one appearance when no frame between them lacks it
  and they are at most :data:`SAME_APPEARANCE_S` seconds apart (no synthetic scene is longer);
- "Which came first, the A or the B?", "When is there a A?", "Is there a A?", "What shapes /
  colours appear in this video?"; anything else gets a description of what it saw.

Answers are short ("purple", "triangle", "2", "the red circle"). The server is deterministic:
``temperature`` is accepted and has no effect; ``max_tokens`` cuts the answer
(``finish_reason: length``); ``response_format`` ``json_object`` returns ``{"answer": ...}`` and
``json_schema`` fills the schema's first string property; ``stream`` sends server-sent events
with ``usage`` in the last chunk when ``stream_options.include_usage`` asks for it. ``usage``
counts text with the CLIP tokenizer and each image as Qwen2.5-VL would (one token per 28 x 28
pixels), so the counts grow with resolution like a real model's.

Example::

    with AnswererServer() as vlm:             # http://127.0.0.1:PORT/v1, model ANSWERER_MODEL
        lib.ask(video, "what colour is the star?", vlm=VLMEndpoint(vlm.url, ANSWERER_MODEL))
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Request  # resolved by name in the route's annotations (postponed)

from framedex.synth.spec import BACKGROUNDS, COLORS, SHAPES

#: The model name the server answers to.
ANSWERER_MODEL = "framedex-shapes-vlm"
#: Objects scoring within this of a frame's best object are seen too (cosine units; the
#: shipped model's prompt scores of present objects sit 0.18-0.25, absent ones lower).
OBJECT_MARGIN = 0.02
#: Two sightings of an object at most this far apart, with no frame between them that lacks
#: it, are one appearance (no synthetic scene lasts longer; the eval's longest is 24 s).
SAME_APPEARANCE_S = 30.0
#: Most images one request may carry, and the largest request body.
MAX_IMAGES = 256
MAX_BODY_BYTES = 64 << 20
#: Pixels per image token (Qwen2.5-VL: 14 px patches merged 2 x 2).
IMAGE_TOKEN_PX = 28

Obj = tuple[str, str]  # (shape, colour), the order the synthetic truth uses

_SHAPE = "|".join(SHAPES)
_COLOR = "|".join(COLORS)
_ART = r"(?:the |a |an |any )?"
_OBJ = rf"(?P<{{p}}color>{_COLOR}) (?P<{{p}}shape>{_SHAPE})s?\b"


def _obj(prefix: str = "") -> str:
    return _OBJ.format(p=prefix)


_QUESTIONS: list[tuple[str, re.Pattern[str]]] = [
    ("after", re.compile(rf"\b(?P<rel>after|before) {_ART}{_obj()}")),
    ("count", re.compile(rf"\bhow (?:many times|often) (?:does|do|did|is|was) {_ART}{_obj()}")),
    ("first", re.compile(rf"\bwhich (?:one )?(?:came|comes|appeared|appears|was seen) first\W+"
                         rf"{_ART}{_obj('a')}\W+or {_ART}{_obj('b')}")),
    ("colour", re.compile(rf"\bwhat colou?r (?:is|was|are|were|does) {_ART}"
                          rf"(?P<shape>{_SHAPE})s?\b")),
    ("when", re.compile(rf"\bwhen (?:is|does|do|did|was) (?:there )?{_ART}{_obj()}")),
    ("exists", re.compile(rf"\b(?:is|are|was|were) there {_ART}{_obj()}")),
    ("shapes", re.compile(r"\bwhat (?:shapes|kinds? of shapes?) (?:appear|are|do)")),
    ("colours", re.compile(r"\bwhat colou?rs (?:appear|are|do)")),
]
_TIME_LABEL = re.compile(r"\bat (\d+(?:\.\d+)?)\s*s\b")


@dataclass
class Reading:
    """What the model saw in one frame: when (seconds, or its position when unlabelled),
    whether it is empty, its objects, best first, and their prompt scores."""

    t: float
    empty: bool
    objects: list[Obj] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def shows(self, obj: Obj) -> bool:
        """``obj`` is among what the frame shows."""
        return obj in self.objects

    def features(self, obj: Obj) -> bool:
        """``obj`` is the frame's most prominent object (a sighting sure enough to count)."""
        return bool(self.objects) and self.objects[0] == obj


class ShapesReader:
    """Zero-shot reading of frames with an open_clip model (the shipped ``synthetic-shapes``).

    Args:
        model: the encoder spec.
        device: the encoder's device.
    """

    def __init__(self, model: str = "synthetic-shapes", device: str = "cpu"):
        from framedex.library import load_encoder

        self.encoder = load_encoder(model, device=device)
        self.objects: list[Obj] = [(s, c) for c in COLORS for s in SHAPES]
        self._objects = self.encoder.encode_text([f"{_article(c)} {c} {s}"
                                                  for s, c in self.objects])
        self._empty = self.encoder.encode_text([f"an empty {bg} screen" for bg in BACKGROUNDS])
        self._lock = threading.Lock()

    def read(self, images: Sequence[np.ndarray], times: Sequence[float]) -> list[Reading]:
        """One :class:`Reading` per RGB image (in the given order)."""
        if not images:
            return []
        with self._lock:
            vectors = self.encoder.encode_images(list(images))
        obj_scores = vectors @ self._objects.T
        empty_scores = (vectors @ self._empty.T).max(axis=1)
        out = []
        for t, scores, empty in zip(times, obj_scores, empty_scores, strict=True):
            best = float(scores.max())
            if float(empty) >= best:
                out.append(Reading(float(t), True))
                continue
            order = [int(j) for j in np.argsort(-scores, kind="stable")
                     if scores[j] >= best - OBJECT_MARGIN]
            out.append(Reading(float(t), False, [self.objects[j] for j in order],
                               [float(scores[j]) for j in order]))
        return out


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _name(obj: Obj) -> str:
    return f"{obj[1]} {obj[0]}"


def answer_question(question: str, frames: Sequence[Reading]) -> str:
    """Answer ``question`` from what was seen in ``frames`` (see the module docstring).

    Args:
        question: the user's question (instructions around it are ignored).
        frames: readings of the frames sent, in any order.

    Returns:
        A short answer.
    """
    frames = sorted(frames, key=lambda r: r.t)
    text = " ".join(question.lower().replace("grey", "gray").split())
    if not frames:
        return "I was not sent any frames."
    for kind, pattern in _QUESTIONS:
        m = pattern.search(text)
        if m is None:
            continue
        groups = m.groupdict()
        obj = (groups["shape"], groups["color"]) if groups.get("color") else None
        if kind == "colour":
            return _colour_of(groups["shape"], frames)
        if kind == "after":
            assert obj is not None
            return _next_to(obj, frames, after=groups["rel"] == "after")
        if kind == "count":
            assert obj is not None
            return str(count_appearances(obj, frames))
        if kind == "first":
            return _which_first((groups["ashape"], groups["acolor"]),
                                (groups["bshape"], groups["bcolor"]), frames)
        if kind == "when":
            assert obj is not None
            seen = [r.t for r in frames if r.shows(obj)]
            return f"at {seen[0]:.1f}s" if seen else f"I do not see the {_name(obj)}."
        if kind == "exists":
            assert obj is not None
            return "yes" if any(r.shows(obj) for r in frames) else "no"
        if kind == "shapes":
            return _listing([o[0] for r in frames for o in r.objects]) or "none"
        if kind == "colours":
            return _listing([o[1] for r in frames for o in r.objects]) or "none"
    return describe(frames)


def _colour_of(shape: str, frames: Sequence[Reading]) -> str:
    """The colour of the clearest sighting of ``shape`` (its highest prompt score)."""
    best: tuple[float, str] | None = None
    for r in frames:
        for (s, c), score in zip(r.objects, r.scores, strict=True):
            if s == shape and (best is None or score > best[0]):
                best = (score, c)
    return best[1] if best is not None else f"I do not see a {shape} in these frames."


def _next_to(anchor: Obj, frames: Sequence[Reading], *, after: bool) -> str:
    marks = [i for i, r in enumerate(frames) if r.shows(anchor)]
    if not marks:
        return f"I do not see the {_name(anchor)} in these frames."
    order = range(marks[-1] + 1, len(frames)) if after else range(marks[0] - 1, -1, -1)
    for i in order:
        others = [o for o in frames[i].objects if o != anchor]
        if others:
            return others[0][0]
    where = "after" if after else "before"
    return f"Nothing appears {where} the {_name(anchor)} in these frames."


def count_appearances(obj: Obj, frames: Sequence[Reading]) -> int:
    """Appearances of ``obj`` in time-ordered ``frames``: sightings where it is the most
    prominent object (an object only listed beside a better one is too often a binding
    mistake to count), grouped as :data:`SAME_APPEARANCE_S` says."""
    count, last = 0, None
    for r in frames:
        if not r.features(obj):
            last = None
            continue
        if last is None or r.t - last > SAME_APPEARANCE_S:
            count += 1
        last = r.t
    return count


def _which_first(a: Obj, b: Obj, frames: Sequence[Reading]) -> str:
    ta = next((r.t for r in frames if r.shows(a)), math.inf)
    tb = next((r.t for r in frames if r.shows(b)), math.inf)
    if math.isinf(ta) and math.isinf(tb):
        return f"I see neither the {_name(a)} nor the {_name(b)}."
    return f"the {_name(a if ta <= tb else b)}"


def _listing(words: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(words))


def describe(frames: Sequence[Reading]) -> str:
    """What was seen, frame by frame (the answer to a question the model cannot parse)."""
    parts = []
    for r in frames:
        what = "an empty screen" if r.empty else " and ".join(
            f"{_article(o[1])} {_name(o)}" for o in r.objects)
        parts.append(f"{r.t:.1f}s: {what}")
    return "I see " + "; ".join(parts) + "."


# -- the OpenAI-compatible server -----------------------------------------------------------


class RequestError(ValueError):
    """A request the server refuses (400 in the OpenAI error shape)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def _decode_image(url: object, index: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise RequestError(f"image {index}: only data:image/...;base64 URLs are read (this "
                           "model fetches nothing)", "messages")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise RequestError(f"image {index}: not a readable image", "messages") from None


@dataclass
class ParsedRequest:
    """The parts of a chat request the model uses."""

    question: str
    images: list[np.ndarray]
    times: list[float]
    text_tokens: int


def parse_messages(messages: object, count_tokens: Any) -> ParsedRequest:
    """The question (the last text of the last user message), the images in order with the
    times of their ``Frame i at 12.0s`` labels, and the text's token count.

    Raises:
        RequestError: no user message, or a malformed part or image.
    """
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", "messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RequestError("messages needs a user message", "messages")
    tokens = 0
    for m in messages:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            tokens += count_tokens(m["content"])
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise RequestError("a message's content must be text or a list of parts", "messages")
    question, label = "", None
    images: list[np.ndarray] = []
    times: list[float] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            text = part["text"]
            if not isinstance(content, str):
                tokens += count_tokens(text)
            m = _TIME_LABEL.search(text)
            label = float(m.group(1)) if m and text.lower().startswith("frame") else None
            question = text
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url") if isinstance(
                part.get("image_url"), dict) else part.get("image_url")
            images.append(_decode_image(url, len(images)))
            times.append(label if label is not None else float(len(images) - 1))
            label = None
        else:
            raise RequestError(f"unsupported content part type {kind!r} (text and image_url "
                               "only)", "messages")
    if len(images) > MAX_IMAGES:
        raise RequestError(f"at most {MAX_IMAGES} images per request", "messages")
    if not question.strip():
        raise RequestError("the user message has no text question", "messages")
    return ParsedRequest(question, images, times, tokens)


def _schema_property(response_format: object) -> str | None:
    """The property of a ``json_schema``/``json_object`` response to put the answer in (None
    for plain text).

    Raises:
        RequestError: a format this model cannot fill.
    """
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise RequestError("response_format must be an object", "response_format")
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "answer"
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        props = schema.get("properties") if isinstance(schema, dict) else None
        if isinstance(props, dict):
            for name, prop in props.items():
                if isinstance(prop, dict) and prop.get("type") == "string":
                    return str(name)
        raise RequestError("this model fills JSON schemas with a string property only",
                           "response_format")
    raise RequestError(f"unknown response_format type {kind!r}", "response_format")


class Answerer:
    """The chat-completions logic (no HTTP): reads the frames and answers.

    Args:
        reader: the zero-shot frame reader.
        model_name: the model name requests must use.
    """

    def __init__(self, reader: ShapesReader, model_name: str = ANSWERER_MODEL):
        from framedex.library import ClipTokenizer

        self.reader, self.model_name = reader, model_name
        self._tokenizer = ClipTokenizer()
        self._calls_lock = threading.Lock()
        #: Chat completions answered (what a cache hit must not add to).
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text))

    def image_tokens(self, image: np.ndarray) -> int:
        h, w = image.shape[:2]
        return math.ceil(w / IMAGE_TOKEN_PX) * math.ceil(h / IMAGE_TOKEN_PX)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion for a request body (also the data of a streamed one).

        Raises:
            RequestError: a request this model refuses.
        """
        with self._calls_lock:
            self.calls += 1
        model = body.get("model")
        if model != self.model_name:
            raise RequestError(f"The model {model!r} does not exist (this server serves "
                               f"{self.model_name!r})", "model", 404, "model_not_found")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise RequestError("max_tokens must be an integer >= 1", "max_tokens")
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float))
                                        or not 0 <= temperature <= 2):
            raise RequestError("temperature must be a number in [0, 2]", "temperature")
        prop = _schema_property(body.get("response_format"))
        req = parse_messages(body.get("messages"), self.count_tokens)
        text = answer_question(req.question, self.reader.read(req.images, req.times))
        finish = "stop"
        if max_tokens is not None:
            text, cut = self._cut(text, max_tokens)
            finish = "length" if cut else "stop"
        content = json.dumps({prop: text}) if prop else text
        prompt = req.text_tokens + sum(self.image_tokens(im) for im in req.images)
        completion = self.count_tokens(content)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    def _cut(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """The longest prefix of whole words within ``max_tokens`` tokens."""
        if self.count_tokens(text) <= max_tokens:
            return text, False
        words = text.split(" ")
        while words and self.count_tokens(" ".join(words)) > max_tokens:
            words.pop()
        return " ".join(words), True

    def chunks(self, reply: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
        """A reply as ``chat.completion.chunk`` events (one per word)."""
        base = {"id": reply["id"], "object": "chat.completion.chunk",
                "created": reply["created"], "model": reply["model"]}
        choice = reply["choices"][0]
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}
        words = choice["message"]["content"].split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece},
                                        "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {},
                                    "finish_reason": choice["finish_reason"]}]}
        if include_usage:
            yield {**base, "choices": [], "usage": reply["usage"]}


def create_answerer_app(answerer: Answerer) -> Any:
    """The FastAPI app: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="framedex shapes VLM", docs_url=None, redoc_url=None)

    def error(ex: RequestError) -> JSONResponse:
        return JSONResponse({"error": {"message": str(ex), "type": "invalid_request_error",
                                       "param": ex.param, "code": ex.code}},
                            status_code=ex.status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": answerer.model_name, "calls": answerer.calls}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": answerer.model_name, "object": "model",
                                            "created": 0, "owned_by": "framedex"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return error(RequestError(f"the request is over {MAX_BODY_BYTES} bytes", None, 413))
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            reply = await run_in_threadpool(answerer.complete, body)
        except json.JSONDecodeError:
            return error(RequestError("the request body is not JSON"))
        except RequestError as ex:
            return error(ex)
        if not body.get("stream"):
            return reply
        options = body.get("stream_options") or {}
        usage = bool(options.get("include_usage")) if isinstance(options, dict) else False

        def events() -> Iterator[bytes]:
            for chunk in answerer.chunks(reply, usage):
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class AnswererServer:
    """The answering server on loopback in a background thread (for the eval and the tests).

    Args:
        model: the encoder spec it sees with.
        device: the encoder's device.
        port: the port (0: a free one).
    """

    def __init__(self, model: str = "synthetic-shapes", device: str = "cpu", port: int = 0):
        import socket

        import uvicorn

        self.answerer = Answerer(ShapesReader(model, device))
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(create_answerer_app(self.answerer), log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="framedex-answerer")

    def __enter__(self) -> AnswererServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the answering server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


__all__ = ["ANSWERER_MODEL", "OBJECT_MARGIN", "SAME_APPEARANCE_S", "Answerer",
           "AnswererServer", "Reading", "ShapesReader", "answer_question",
           "count_appearances", "create_answerer_app", "describe", "parse_messages"]
