"""Size-limited multipart uploads streamed straight to a file.

Starlette's ``request.form()`` spools a whole upload to a temporary file before the route
runs, so a limit could only be checked afterwards. Here the body is fed chunk by chunk to
python-multipart's push parser and the file part is written to its destination while its bytes
are counted; the request fails with 413 as soon as the count passes the limit (or at once when
``Content-Length`` already says so), and the partial file is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from framedex.errors import ConfigError, PayloadTooLargeError
from framedex.library import parse_json

#: Largest non-file form field (fps, metadata...).
MAX_FIELD_BYTES = 64 * 1024
#: Most bytes of all non-file fields together, and most parts, in one request: chunked
#: bodies declare no length, so without these a client could send megabytes of small fields.
MAX_FIELDS_BYTES = 256 * 1024
MAX_PARTS = 16
#: Largest JSON request body.
MAX_JSON_BYTES = 1 << 20
#: Slack for multipart boundaries and part headers when checking Content-Length.
_OVERHEAD = 64 * 1024


@dataclass
class Upload:
    """What a multipart request carried.

    ``fields`` holds the last value of each non-file field, ``lists`` every value in order
    (a field repeated for a list); ``path``/``filename`` are the first file part, ``files``
    all of them (``max_files`` > 1), and ``size`` their bytes together.
    """

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    lists: dict[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, Path]] = field(default_factory=list)


class _Collector:
    """Callbacks of the push parser: one file part goes to disk, other parts to memory."""

    def __init__(self, file_field: str, dest: Path, max_bytes: int, max_files: int = 1):
        self.file_field, self.dest, self.max_bytes = file_field, dest, max_bytes
        self.max_files = max_files
        self.upload = Upload()
        self.error: Exception | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._buf = bytearray()
        self._fh: Any = None
        self._parts = 0
        self._field_bytes = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._buf = {}, None, False, bytearray()
        self._parts += 1
        if self._parts > MAX_PARTS and self.error is None:
            self.error = PayloadTooLargeError(f"the form has more than {MAX_PARTS} parts")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        if self._name == self.file_field and filename is not None and self._fh is None \
                and (self.upload.path is None or self.max_files > 1):
            n = len(self.upload.files)
            if n >= self.max_files:
                if self.error is None:
                    self.error = ConfigError(f"{self.file_field} is invalid: at most "
                                             f"{self.max_files} files")
                return
            self._is_file = True
            name = filename.decode("utf-8", "replace")
            dest = self.dest if n == 0 else self.dest.with_name(f"{self.dest.name}-{n}")
            self.upload.files.append((name, dest))
            if n == 0:
                self.upload.filename = name
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(dest, "wb")  # noqa: SIM115 (closed in on_part_end/close)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        n = end - start
        if self._is_file:
            self.upload.size += n
            if self.upload.size > self.max_bytes:
                self.error = PayloadTooLargeError(
                    f"upload is larger than the limit of {self.max_bytes} bytes "
                    "(the server's --max-upload-mb)")
                return
            self._fh.write(data[start:end])
        else:
            self._buf += data[start:end]
            self._field_bytes += n
            if len(self._buf) > MAX_FIELD_BYTES:
                self.error = PayloadTooLargeError(
                    f"form field {self._name!r} is larger than {MAX_FIELD_BYTES} bytes")
            elif self._field_bytes > MAX_FIELDS_BYTES:
                self.error = PayloadTooLargeError(
                    f"the form's fields are larger than {MAX_FIELDS_BYTES} bytes together")

    def on_part_end(self) -> None:
        if self._is_file and self._fh is not None:
            self._fh.close()
            self._fh = None
            if self.upload.path is None:
                self.upload.path = self.dest
        elif self._name and self.error is None:
            value = self._buf.decode("utf-8", "replace")
            self.upload.fields[self._name] = value
            self.upload.lists.setdefault(self._name, []).append(value)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_upload(request: Request, *, file_field: str, dest: Path,
                         max_bytes: int, require_file: bool = True,
                         max_files: int = 1) -> Upload:
    """Stream a ``multipart/form-data`` body; the part named ``file_field`` goes to ``dest``.

    Args:
        request: the request.
        file_field: the name of the file part.
        dest: where the (first) file goes; further files (``max_files`` > 1) go beside it
            as ``<dest>-1``, ``<dest>-2``...
        max_bytes: most bytes of all files together.
        require_file: refuse a body without a file part.
        max_files: most file parts named ``file_field``.

    Raises:
        PayloadTooLargeError: the file (or the declared body) is over ``max_bytes`` (413).
        ConfigError: not multipart, no boundary, a malformed body, no file part (when
            required) or too many (422).
    """
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    boundary = opts.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ConfigError("content-type is invalid: send multipart/form-data with a boundary")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + _OVERHEAD:
        raise PayloadTooLargeError(f"upload of {declared} bytes is larger than the limit of "
                                   f"{max_bytes} bytes (the server's --max-upload-mb)")
    collector = _Collector(file_field, dest, max_bytes, max_files)

    def discard() -> None:
        dest.unlink(missing_ok=True)
        for _, extra in collector.upload.files:
            extra.unlink(missing_ok=True)

    callbacks: Any = collector.callbacks()  # python-multipart types them as a TypedDict
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if collector.error is not None:
                raise collector.error
        parser.finalize()
    except (PayloadTooLargeError, ConfigError):
        collector.close()
        discard()
        raise
    except Exception as ex:  # python-multipart raises its own parse errors
        collector.close()
        discard()
        raise ConfigError(f"body is invalid: malformed multipart data ({ex})") from None
    collector.close()
    if collector.upload.path is None and require_file:
        discard()
        raise ConfigError(f"{file_field} is invalid: the multipart body has no file part "
                          f"named {file_field!r}")
    return collector.upload


def json_field(upload: Upload, name: str) -> Any:
    """A form field holding JSON (e.g. ``metadata``), or None when absent.

    Raises:
        ConfigError: not JSON.
    """
    return json_text(upload.fields.get(name), name)


def json_text(raw: str | None, name: str) -> Any:
    """The JSON value of a text parameter ``name``, or None when it is absent or empty.

    Raises:
        MalformedJSONError: not JSON, or nested too deep (names the parameter; 400).
    """
    if raw is None or raw == "":
        return None
    return parse_json(raw, name)


def json_object(raw: str | None, name: str) -> dict[str, Any] | None:
    """Like :func:`json_text`, for a parameter that must hold a JSON object.

    Raises:
        ConfigError: not JSON, or not an object.
    """
    value = json_text(raw, name)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{name} is invalid: must be a JSON object")
    return value


async def read_json_body(request: Request, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The request body, at most ``max_bytes`` (also when it is chunked).

    Raises:
        PayloadTooLargeError: the body is larger (413).
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the JSON body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLargeError(f"the JSON body is larger than {max_bytes} bytes")
    return bytes(body)
