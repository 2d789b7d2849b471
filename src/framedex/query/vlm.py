"""The user's video LLM: any OpenAI-compatible chat-completions endpoint, called with the
``openai`` package.

vLLM (``vllm serve Qwen/Qwen2.5-VL-7B-Instruct`` -> ``http://host:8000/v1``), llama.cpp's
``llama-server`` (``/v1``), Ollama's OpenAI API (``http://localhost:11434/v1``) and OpenAI itself
(``https://api.openai.com/v1``) all take the request :func:`framedex.query.payload.openai_payload`
builds. framedex writes no HTTP of its own here: the ``openai`` client sends it, retries it and
parses the reply into its typed models.

Behaviour around the call:

- **The key** comes from an environment variable (``$FRAMEDEX_VLM_API_KEY`` unless
  ``api_key_env`` names another), read at call time and never stored in a setting, a log line,
  an error message or the answers table. A URL with credentials in it is refused.
- **Bounded waits**: each attempt waits at most ``timeout_s`` to connect and for each read;
  a stream also stops at ``timeout_s`` x (1 + ``retries``) in all. Connection errors, timeouts,
  408/409/429 and 5xx answers are retried ``retries`` times with the client's exponential
  backoff (0.5 s doubling, at most 8 s); other HTTP errors are not retried.
- **One error type**: every failure becomes a :class:`~framedex.errors.ModelEndpointError`
  whose one-line message names the endpoint and what went wrong (the CLI prints it, the API
  answers 502).

Example::

    endpoint = VLMEndpoint("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct")
    reply = complete(endpoint, body)          # body: an openai_payload(...) request
    reply.text, reply.prompt_tokens, reply.model_ms
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from framedex.errors import ModelEndpointError, check
from framedex.rules import LIMITS
from framedex.values import JsonObject

if TYPE_CHECKING:
    from openai import OpenAI

#: Where the endpoint's key is read from unless a setting names another variable.
DEFAULT_KEY_ENV = "FRAMEDEX_VLM_API_KEY"
#: Seconds one attempt may wait to connect and for each read.
DEFAULT_TIMEOUT_S = 60.0
#: Retries after a connection error, a timeout, 408/409/429 or a 5xx.
DEFAULT_RETRIES = 2
#: Longest part of an endpoint's error text quoted in a message.
_QUOTE = 300
#: What the client sends as a key when the variable is unset (local servers check none; the
#: openai client refuses to start without one).
_NO_KEY = "no-key"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class VLMEndpoint:
    """An OpenAI-compatible chat-completions endpoint and the model to ask there.

    Args:
        url: the API's base URL, the one the ``openai`` client takes (``.../v1``).
        model: the model name the server knows (``--served-model-name`` in vLLM, an Ollama
            tag, ``gpt-4o-mini``).
        api_key_env: the environment variable holding the key (unset: no key is sent).
        timeout_s: seconds one attempt may wait to connect and for each read.
        retries: retries of a failed attempt (see the module docstring).

    Raises:
        ConfigError: a URL that is not http(s) or carries credentials, an empty model, a bad
        variable name, timeout or retry count.
    """

    url: str
    model: str
    api_key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        check(isinstance(self.url, str) and self.url.startswith(("http://", "https://"))
              and len(self.url) <= 2048 and urlsplit(self.url).hostname is not None,
              "vlm_url", self.url, "must be the http(s) base URL of an OpenAI-compatible API, "
              "e.g. http://127.0.0.1:8000/v1")
        parts = urlsplit(self.url)
        check(parts.username is None and parts.password is None, "vlm_url",
              f"{parts.scheme}://***@{parts.hostname}", "must not carry credentials: put the "
              f"key in ${self.api_key_env}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        check(isinstance(self.model, str) and self.model.strip() != ""
              and LIMITS["model"].holds(len(self.model)), "vlm_model", self.model,
              f"must name the model the endpoint serves ({LIMITS['model'].rule()})")
        check(isinstance(self.api_key_env, str) and bool(_ENV_NAME.match(self.api_key_env)),
              "vlm_api_key_env", self.api_key_env, "must be an environment variable name")
        check(isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s <= 3600,
              "vlm_timeout", self.timeout_s, "must be seconds in (0, 3600]")
        check(isinstance(self.retries, int) and 0 <= self.retries <= 10, "vlm_retries",
              self.retries, "must be an integer in 0..10")

    @classmethod
    def create(cls, url: str, model: str, *, api_key_env: str | None = None,
               timeout_s: float | None = None, retries: int | None = None) -> VLMEndpoint:
        """An endpoint from settings where None means the default (the CLI's and the
        server's options)."""
        return cls(url, model,
                   api_key_env=DEFAULT_KEY_ENV if api_key_env is None else api_key_env,
                   timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
                   retries=DEFAULT_RETRIES if retries is None else retries)

    @property
    def name(self) -> str:
        """The endpoint as messages and the answers table name it: scheme, host, port, path
        (never a query string, where some servers take keys)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @property
    def deadline_s(self) -> float:
        """The most a streamed answer may take in all."""
        return self.timeout_s * (1 + self.retries)


@dataclass
class ChatReply:
    """What the model answered, as the chat-completions reply says it.

    ``prompt_tokens``/``completion_tokens`` are the server's ``usage`` (None when it sent
    none); ``model_ms`` is the wall time of the call, retries included.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model_ms: float = 0.0
    served_model: str | None = None


@dataclass
class ChatStream:
    """A streamed reply: iterate for text fragments; :attr:`reply` is complete afterwards."""

    endpoint: VLMEndpoint
    chunks: Iterable[object] = field(repr=False)
    started: float = 0.0
    reply: ChatReply = field(default_factory=lambda: ChatReply(""))

    def __iter__(self) -> Iterator[str]:
        deadline = self.started + self.endpoint.deadline_s
        parts: list[str] = []
        try:
            for chunk in self.chunks:
                if time.perf_counter() > deadline:
                    raise ModelEndpointError(
                        f"the video LLM at {self.endpoint.name} was still streaming after "
                        f"{self.endpoint.deadline_s:g} s (vlm_timeout x (1 + retries)); "
                        "stopped")
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self.reply.prompt_tokens = _count(getattr(usage, "prompt_tokens", None))
                    self.reply.completion_tokens = _count(
                        getattr(usage, "completion_tokens", None))
                self.reply.served_model = getattr(chunk, "model", None) or \
                    self.reply.served_model
                for choice in getattr(chunk, "choices", None) or []:
                    if getattr(choice, "finish_reason", None):
                        self.reply.finish_reason = str(choice.finish_reason)
                    text = getattr(getattr(choice, "delta", None), "content", None)
                    if isinstance(text, str) and text:
                        parts.append(text)
                        yield text
        except ModelEndpointError:
            raise
        except Exception as ex:
            if not _client_failure(ex):
                raise
            raise _endpoint_error(self.endpoint, ex) from None
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        self.reply.text = "".join(parts)
        self.reply.model_ms = (time.perf_counter() - self.started) * 1000.0
        if not parts and self.reply.finish_reason is None:
            raise ModelEndpointError(f"the video LLM at {self.endpoint.name} streamed no "
                                     "chat-completion chunk (is it an OpenAI-compatible "
                                     "endpoint?)")


def _count(value: object) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@functools.lru_cache(maxsize=16)
def _client(url: str, key: str, timeout_s: float, retries: int) -> OpenAI:
    """One ``openai.OpenAI`` per endpoint setting (its connection pool is reused). The timeout
    is a plain number: openai 1.x builds it on ``httpx``, newer releases on ``httpx2``, and
    both take seconds."""
    import openai

    return openai.OpenAI(base_url=url, api_key=key, max_retries=retries, timeout=timeout_s)


def _client_for(endpoint: VLMEndpoint) -> OpenAI:
    key = os.environ.get(endpoint.api_key_env) or _NO_KEY
    return _client(endpoint.url, key, float(endpoint.timeout_s), endpoint.retries)


def complete(endpoint: VLMEndpoint, body: JsonObject) -> ChatReply:
    """Send one chat-completions request and return the answer.

    Args:
        endpoint: where to send it.
        body: the request (``messages``, ``model`` and generation options).

    Returns:
        The :class:`ChatReply`.

    Raises:
        ModelEndpointError: unreachable, timed out, an HTTP error after the retries, or a
        reply without a text answer.
    """
    started = time.perf_counter()
    try:
        reply = _client_for(endpoint).chat.completions.create(**body)
    except Exception as ex:
        if not _client_failure(ex):
            raise
        raise _endpoint_error(endpoint, ex) from None
    model_ms = (time.perf_counter() - started) * 1000.0
    choices = getattr(reply, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise ModelEndpointError(f"the video LLM at {endpoint.name} sent a reply without "
                                 "choices (is it an OpenAI-compatible chat-completions "
                                 "endpoint?)")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        refusal = getattr(message, "refusal", None)
        why = f": it refused ({str(refusal)[:_QUOTE]})" if refusal else ""
        raise ModelEndpointError(f"the video LLM at {endpoint.name} sent no text answer{why}")
    usage = getattr(reply, "usage", None)
    return ChatReply(text=text, finish_reason=getattr(choices[0], "finish_reason", None),
                     prompt_tokens=_count(getattr(usage, "prompt_tokens", None)),
                     completion_tokens=_count(getattr(usage, "completion_tokens", None)),
                     model_ms=model_ms, served_model=getattr(reply, "model", None))


def open_stream(endpoint: VLMEndpoint, body: JsonObject) -> ChatStream:
    """Start a streamed chat completion (``stream_options.include_usage`` asks for the token
    counts in the last chunk). Connection errors, timeouts and HTTP errors raise here, before
    the first fragment.

    Raises:
        ModelEndpointError: as :func:`complete`.
    """
    started = time.perf_counter()
    try:
        chunks = _client_for(endpoint).chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True})
    except Exception as ex:
        if not _client_failure(ex):
            raise
        raise _endpoint_error(endpoint, ex) from None
    return ChatStream(endpoint, chunks, started)


def _client_failure(ex: BaseException) -> bool:
    """True for what a call to an endpoint can raise: the ``openai`` errors, the transport's
    (``httpx``, ``httpx2``, ``httpcore``: openai wraps them, but not always while a stream is
    read), sockets, and a body that does not parse."""
    import openai

    module = type(ex).__module__ or ""
    return isinstance(ex, (openai.OpenAIError, OSError, ValueError)) or \
        module.split(".", 1)[0] in ("httpx", "httpx2", "httpcore", "h11")


def _endpoint_error(endpoint: VLMEndpoint, ex: BaseException) -> ModelEndpointError:
    """One line naming the endpoint and the failure (the key is never part of it)."""
    import openai

    where = f"the video LLM at {endpoint.name}"
    tries = f" ({endpoint.retries} retr{'y' if endpoint.retries == 1 else 'ies'})" \
        if endpoint.retries else ""
    if isinstance(ex, openai.APITimeoutError) or "timeout" in type(ex).__name__.lower():
        return ModelEndpointError(f"{where} did not answer within {endpoint.timeout_s:g} s"
                                  f"{tries}; raise --vlm-timeout or check the server")
    if isinstance(ex, openai.APIConnectionError):
        cause = ex.__cause__ or ex
        why = " ".join(str(cause).split())[:_QUOTE] or type(cause).__name__
        return ModelEndpointError(f"cannot reach {where}{tries}: {why}")
    if isinstance(ex, openai.APIStatusError):
        status = ex.status_code
        detail = " ".join(str(getattr(ex, "message", "") or "").split())[:_QUOTE]
        hint = ""
        if status in (401, 403):
            hint = f"; set ${endpoint.api_key_env} to the endpoint's key"
        elif status == 404:
            hint = (f"; check --vlm-url (OpenAI-compatible servers serve under /v1) and that "
                    f"it serves the model {endpoint.model!r}")
        retried = tries if status in (408, 409, 429) or status >= 500 else ""
        return ModelEndpointError(f"{where} answered HTTP {status}{retried}: {detail}{hint}")
    if isinstance(ex, openai.APIResponseValidationError):
        return ModelEndpointError(f"{where} sent a reply that is not a chat completion "
                                  f"(HTTP {ex.status_code})")
    text = " ".join(str(ex).split())[:_QUOTE]
    return ModelEndpointError(f"{where} failed: {type(ex).__name__}: {text} (is it an "
                              "OpenAI-compatible chat-completions endpoint?)")


__all__ = ["DEFAULT_KEY_ENV", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "ChatReply",
           "ChatStream", "VLMEndpoint", "complete", "open_stream"]
