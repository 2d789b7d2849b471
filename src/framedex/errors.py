"""The one error hierarchy of framedex.

Every error a user can cause derives from :class:`FramedexError` and also from the
builtin it resembles (``ValueError``, ``LookupError``, ...), so callers may catch either.
Messages name the value, the rule and what to do. The CLI turns these into one line and a
non-zero exit; the API maps them once into a JSON error envelope (``api/errors.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FramedexError(Exception):
    """Base class of every error framedex raises on purpose."""

    #: HTTP status the API answers with for this error type.
    http_status: int = 400
    #: Short machine-readable code used in the API's error envelope.
    code: str = "framedex_error"


class ConfigError(FramedexError, ValueError):
    """A parameter or setting has an invalid value.

    Args:
        message: what is wrong and what to do.
        param: the parameter it is about, when one is (:func:`check` sets it), so a face can
            point at its own field (the HTTP API's ``body.budget``).
    """

    http_status = 422
    code = "invalid_parameter"

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param


class MalformedJSONError(ConfigError):
    """JSON text a parameter carries cannot be parsed, or nests deeper than the limit (HTTP
    400, like a malformed JSON body)."""

    http_status = 400
    code = "malformed_json"


class NotFoundError(FramedexError, LookupError):
    """Something named by the caller (video, job, sampler, model...) does not exist."""

    http_status = 404
    code = "not_found"


class UnknownNameError(NotFoundError):
    """A registry lookup failed; the message lists the known names and the closest match."""

    http_status = 422
    code = "unknown_name"

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        folded = {k.lower(): k for k in known}
        close = [folded[name.lower()]] if name.lower() in folded else \
            difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}")
        self.kind, self.name, self.known = kind, name, known


class VideoNotFoundError(NotFoundError):
    """No indexed video has this id or path."""

    code = "video_not_found"


class VideoOpenError(FramedexError, OSError):
    """A file could not be opened or decoded as a video (corrupt, truncated, no stream...)."""

    http_status = 422
    code = "bad_video"


class DecodeError(VideoOpenError):
    """Decoding failed after the file was opened (seek failure, truncated data)."""

    code = "decode_failed"


class ModelLoadError(FramedexError, RuntimeError):
    """An encoder could not be created or its weights could not be loaded."""

    http_status = 503
    code = "model_unavailable"


class UnsupportedModelError(ModelLoadError):
    """A model the numpy text encoder cannot run exactly; the torch encoder can still load it.

    ``load_text_encoder`` catches it and falls back to ``load_encoder``, recording the reason.
    """

    code = "model_unsupported"


class EncoderMismatchError(FramedexError, ValueError):
    """The store was built with a different encoder than the one asked for."""

    http_status = 409
    code = "encoder_mismatch"


class StoreError(FramedexError, RuntimeError):
    """The store is missing, empty, or in a state that forbids the operation."""

    http_status = 409
    code = "store_error"


class StoreNotFoundError(StoreError, LookupError):
    """There is no store at the given location (a read-only command on a mistyped --db)."""

    http_status = 404
    code = "store_not_found"


class BusyError(StoreError):
    """Another writer holds what this operation needs (a video being indexed): try again
    when it is done (HTTP 409)."""

    code = "busy"


class LeaseLostError(StoreError):
    """A writer's claim expired while it stalled and another writer took over; its work is
    dropped, nothing half-written is visible (HTTP 409)."""

    code = "lease_lost"


class StoreUnavailableError(StoreError):
    """The store cannot be read right now (deleted, replaced or unreachable under a running
    server); the server answers 503 and recovers on its own when the store is back."""

    http_status = 503
    code = "store_unavailable"


class EmptyLibraryError(NotFoundError):
    """A query was made against a store that has no indexed video (nothing to find)."""

    code = "empty_library"


class InUseError(FramedexError):
    """What a delete names is still used (an asset a video was indexed from, a file a job is
    reading); the message says how to delete it anyway (HTTP 409)."""

    http_status = 409
    code = "resource_in_use"


class PermissionDeniedError(FramedexError, PermissionError):
    """A path outside the configured roots, or a missing or wrong API key."""

    http_status = 403
    code = "forbidden"


class AuthenticationError(PermissionDeniedError):
    """No API key, or a wrong one, on a route that needs it (HTTP 401)."""

    http_status = 401
    code = "unauthorized"


class PayloadTooLargeError(FramedexError, ValueError):
    """A request body (an upload) is larger than the configured limit (HTTP 413)."""

    http_status = 413
    code = "payload_too_large"


class UnsupportedError(FramedexError, NotImplementedError):
    """A feature framedex does not offer (audio search on a visual-only server, a generative
    model...). The message names the feature and what to use instead (HTTP 400)."""

    http_status = 400
    code = "unsupported"


class NotReadyError(FramedexError, RuntimeError):
    """What a request needs is still being made (a video still indexing); try again later
    (HTTP 409). The message says what to wait for."""

    http_status = 409
    code = "not_ready"


class ModelEndpointError(FramedexError, RuntimeError):
    """The video LLM endpoint an ``ask`` calls failed: unreachable, too slow, an HTTP error
    after the retries, or a reply that is not a chat completion. The message names the
    endpoint (never its key); the API answers 502."""

    http_status = 502
    code = "model_endpoint_error"


def check(condition: object, name: str, value: object, rule: str) -> None:
    """Raise :class:`ConfigError` naming ``name``, ``value`` and ``rule`` unless ``condition``.

    Args:
        condition: the rule holds (anything truthy: a numpy bool too).
        name: the parameter's name as the user wrote it.
        value: the value the user gave.
        rule: the rule in words, e.g. ``"must be >= 1"``.

    Raises:
        ConfigError: when ``condition`` is false.
    """
    if not condition:
        raise ConfigError(f"{name}={value!r} is invalid: {rule}", param=name)
