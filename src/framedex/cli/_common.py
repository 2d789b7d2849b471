"""What every ``framedex`` command shares: the typer app, common options, error handling,
output helpers and the one way to open a library.

Commands talk to :class:`framedex.library.Library` only (a test walks the imports). Errors are
one line on stderr with exit code 1; progress and notes go to stderr, so ``--json`` output on
stdout stays machine-readable.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from framedex.errors import ConfigError, FramedexError

if TYPE_CHECKING:
    from rich.console import Console

    from framedex.library import Library

app = typer.Typer(
    name="framedex",
    help="Embed a video library once; then search it and pick frames for a video LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEFAULT_DB = "framedex.db"

Db = Annotated[str, typer.Option("--db", envvar="FRAMEDEX_DB",
                                 help="Store location: a folder (or an s3:// etc. URI).")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Model = Annotated[str | None, typer.Option(
    "--model", help="Encoder spec: ARCH:TAG, ARCH:/path/ckpt, hf-hub:org/name, a model folder, "
                    "or synthetic-shapes. Default: the store's encoder, else "
                    "ViT-B-32:laion2b_s34b_b79k.")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda, mps, cpu), cpu, cuda, mps.")]
VlmUrl = Annotated[str | None, typer.Option(
    "--vlm-url", envvar="FRAMEDEX_VLM_URL",
    help="Base URL of an OpenAI-compatible video LLM (vLLM http://host:8000/v1, Ollama "
         "http://localhost:11434/v1, https://api.openai.com/v1).")]
VlmModel = Annotated[str | None, typer.Option(
    "--vlm-model", envvar="FRAMEDEX_VLM_MODEL", help="The model name at --vlm-url.")]
VlmKeyEnv = Annotated[str | None, typer.Option(
    "--vlm-api-key-env", help="Environment variable holding the endpoint's key (never "
                              "printed or stored). Default: FRAMEDEX_VLM_API_KEY.")]
VlmTimeout = Annotated[float | None, typer.Option(
    "--vlm-timeout", help="Seconds one model call waits to connect and for each read "
                          "(default 60).")]
VlmRetries = Annotated[int | None, typer.Option(
    "--vlm-retries", help="Retries after a connection error, timeout, 408/409/429 or 5xx "
                          "(default 2).")]

F = TypeVar("F", bound=Callable[..., Any])


#: ``-v`` of the running invocation (set by the app callback).
VERBOSE: contextvars.ContextVar[bool] = contextvars.ContextVar("framedex_verbose", default=False)
#: Libraries opened by the running command; closed (query log written) when it ends.
_OPENED: contextvars.ContextVar[list[Library] | None] = contextvars.ContextVar(
    "framedex_opened", default=None)


def verbose() -> bool:
    """True when ``-v`` was given."""
    return VERBOSE.get()


def handle_errors(fn: F) -> F:
    """One line on stderr and a non-zero exit for every error, never a traceback.

    framedex errors (user mistakes, bad files, bad stores) exit 1; anything else is a bug and
    exits 2 with a one-line summary (``-v`` shows the traceback). Libraries the command opened
    are closed when it ends, which writes their buffered query log.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opened: list[Library] = []
        token = _OPENED.set(opened)
        try:
            return _run(fn, args, kwargs)
        finally:
            for lib in opened:
                lib.close()
            _OPENED.reset(token)

    return wrapper  # type: ignore[return-value]


def _run(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except FramedexError as ex:
        typer.echo(f"framedex: error: {_one_line(ex)}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("framedex: interrupted", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as ex:
        if verbose():
            raise
        typer.echo(f"framedex: internal error: {type(ex).__name__}: {_one_line(ex)} "
                   "(run with -v for the traceback, and please report it)", err=True)
        raise typer.Exit(2) from None


def _one_line(ex: BaseException) -> str:
    return " ".join(str(ex).split())


def emit(data: Any) -> None:
    """Print JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def console() -> Console:
    """A rich console on stderr (notes and progress; stdout stays machine-readable).

    Every console prints text as it is: framedex writes no rich markup of its own, and what
    it prints carries the user's text (file names, SQL results, metadata). With markup on,
    `[red]clip :x:.mp4` printed as a red `clip ❌.mp4` and `holiday [bold] 2024.mp4` lost its
    `[bold]`.
    """
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def out_console() -> Console:
    """A rich console on stdout, for human-readable results. Into a pipe or a file it is as
    wide as the content (rich would assume 80 columns and squeeze every table cell to `v…`)."""
    from rich.console import Console

    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 100_000
    return Console(soft_wrap=True, width=wide, markup=False, emoji=False, highlight=False)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A borderless table on stdout (``None`` cells print empty)."""
    from rich.table import Table

    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out_console().print(table)


def note(message: str) -> None:
    """One line of information on stderr."""
    typer.echo(f"framedex: {message}", err=True)


def open_library(db: str, *, model: str | None = None, device: str = "auto",
                 sampler: str | None = None, must_exist: bool = True,
                 log_queries: bool = True, rollout: str | None = None) -> Library:
    """The library at ``db``. Read-only commands refuse a missing store (``must_exist``)."""
    from framedex.library import Library, lease_ttl_from_env

    lib = Library(db, model=model, device=device, default_sampler=sampler,
                  must_exist=must_exist, log_queries=log_queries, rollout=rollout,
                  lease_ttl=lease_ttl_from_env())
    opened = _OPENED.get()
    if opened is not None:  # the query log is written when the command ends, after its output
        opened.append(lib)
    return lib


def vlm_endpoint(url: str | None, model: str | None, key_env: str | None = None,
                 timeout: float | None = None, retries: int | None = None, *,
                 required: bool = True) -> Any:
    """The ``VLMEndpoint`` the ``--vlm-*`` options name (None when neither is given and it is
    not ``required``; options left out take ``VLMEndpoint``'s defaults).

    Raises:
        ConfigError: one of --vlm-url / --vlm-model without the other, or a bad value.
    """
    from framedex.library import VLMEndpoint

    if url is None and model is None and not required:
        return None
    if url is None or model is None:
        missing = "--vlm-url" if url is None else "--vlm-model"
        raise ConfigError(f"{missing} is missing: give the video LLM's --vlm-url URL and "
                          "--vlm-model NAME (or $FRAMEDEX_VLM_URL and $FRAMEDEX_VLM_MODEL)")
    return VLMEndpoint.create(url, model, api_key_env=key_env, timeout_s=timeout,
                              retries=retries)


def check_writable(path: Path | None, option: str, *, folder: bool = False) -> None:
    """Fail before any work when an output the user asked for cannot be written there
    (``--plot /proc/x.png`` used to fail only after the selection had run).

    Raises:
        ConfigError: names the option, the path and the reason.
    """
    if path is None:
        return
    target = path if folder else path.parent
    try:
        make_folder(target, path, option)
        probe = target / f".framedex-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as ex:
        raise ConfigError(f"{option}={str(path)!r} is invalid: cannot write there "
                          f"({ex.strerror or ex})") from None


@contextlib.contextmanager
def as_options(names: Mapping[str, str]) -> Iterator[None]:
    """Name the library's error about a parameter by the command's option where they differ
    (``payload_format='x' is invalid`` -> ``--payload='x' is invalid``): the rule is the
    library's, checked once there; the user reads the option they typed."""
    try:
        yield
    except ConfigError as ex:
        param = ex.param or ""
        option = names.get(param)
        if option is None or type(ex) is not ConfigError or not str(ex).startswith(f"{param}="):
            raise
        raise ConfigError(option + str(ex)[len(param):], param=param) from None


def make_folder(folder: Path, path: Path, option: str) -> None:
    """Create ``folder`` (where an output goes) when only its last level is missing; a typo
    higher up is an error naming the missing folder (``--plot /nonexistent/dir/p.png`` used
    to create ``/nonexistent``).

    Raises:
        ConfigError: a folder above ``folder`` does not exist (names the option, the path and
            the outermost missing folder).
        OSError: the folder cannot be made.
    """
    folder = folder.expanduser()
    if folder.is_dir():
        return
    missing = [p for p in folder.absolute().parents if not p.exists()]
    if missing:
        raise ConfigError(f"{option}={str(path)!r} is invalid: the folder {missing[-1]} does "
                          "not exist (framedex creates only the last folder of an output path)")
    folder.mkdir(exist_ok=True)


def write_output(path: Path, data: bytes, option: str) -> None:
    """Write an output file the user asked for (``--plot``, ``--out``).

    Raises:
        ConfigError: the file cannot be written (names the option and the reason).
    """
    try:
        make_folder(path.parent, path, option)
        path.write_bytes(data)
    except OSError as ex:
        raise ConfigError(f"{option}={str(path)!r} is invalid: cannot write it "
                          f"({ex.strerror or ex})") from None


def read_json_file(path: Path, option: str) -> Any:
    """A JSON file's content.

    Raises:
        ConfigError: missing, unreadable or not JSON (naming the option).
    """
    from framedex.library import parse_json

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{option}={str(path)!r} is invalid: no such file") from None
    except OSError as ex:
        raise ConfigError(f"{option}={str(path)!r} is invalid: {ex.strerror or ex}") from None
    except UnicodeDecodeError as ex:
        raise ConfigError(f"{option}={str(path)!r} is invalid: not JSON ({ex})") from None
    return parse_json(text, f"{option}={str(path)!r}")


def file_name(path: str) -> str:
    """What tables show for a path: the file name (full paths are in ``--json``)."""
    return Path(path).name if "://" not in path else path.rsplit("/", 1)[-1]


def configure_logging(verbose: bool) -> None:
    """Libraries log errors on the root logger; the user gets our one-line message instead,
    unless they ask for the details."""
    level = logging.INFO if verbose else logging.CRITICAL
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # pylance sets its own logger to INFO ("Final create_index rust time"): filter at the
    # handler too, so the root level holds for every library.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


def stderr_is_tty() -> bool:
    """True when progress bars can be drawn."""
    return sys.stderr.isatty()
