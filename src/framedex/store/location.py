"""Where a store lives, and the one place where file-system and Lance I/O errors become
:class:`~framedex.errors.StoreError` lines that name the path and what to do.

A store is a LanceDB database: a local folder by default, or an object-store URI (``s3://``,
``gs://``, ``az://``) that is passed through to Lance with its ``storage_options``.

Example::

    loc = StoreLocation.parse("~/videos.db")
    with store_io(loc, "write to"):
        ...   # any OSError / Lance IO error -> StoreError("cannot write to the store at ...")
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from framedex.errors import ConfigError, StoreError, StoreNotFoundError

#: URI schemes passed through to Lance as they are.
REMOTE_SCHEMES = ("s3://", "s3+ddb://", "gs://", "az://", "abfs://", "memory://")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location.

    Attributes:
        uri: what Lance receives (a resolved absolute folder, or the URI as given).
        path: the local folder, or None for an object-store URI.
    """

    uri: str
    path: Path | None

    @classmethod
    def parse(cls, raw: str | os.PathLike) -> StoreLocation:
        """Parse ``--db``.

        Raises:
            ConfigError: empty, a NUL byte, an unknown URI scheme.
            StoreError: ``~user`` that does not exist, or a path that names a file.
        """
        text = os.fspath(raw)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("db='' is invalid: give a folder (or an s3://... URI) for the store")
        if "\x00" in text:
            raise ConfigError(f"db={text[:80]!r} is invalid: a path cannot contain a NUL byte")
        if "://" in text:
            if text.startswith("file://"):
                text = text[len("file://"):]
            elif not text.startswith(REMOTE_SCHEMES):
                scheme = text.split("://", 1)[0]
                raise ConfigError(f"db={text[:200]!r} is invalid: unknown URI scheme {scheme!r} "
                                  f"(use a folder or {', '.join(REMOTE_SCHEMES)})")
            else:
                return cls(text.rstrip("/"), None)
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # "~nosuchuser/x.db"
            raise StoreError(f"cannot use the store at {text[:200]!r}: the home folder in it "
                             "does not exist; give a full path with --db") from None
        path = Path(os.path.abspath(path))
        with store_io_path(path, "use"):
            if path.exists() and not path.is_dir():
                raise StoreError(f"cannot use the store at {_short(path)}: it is a file, not a "
                                 "folder; give a folder with --db")
        return cls(str(path), path)

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine."""
        return self.path is not None

    def exists(self) -> bool:
        """True when a store (a folder holding tables) is there.

        Object-store locations are assumed to exist; a missing table reads as empty.
        """
        if self.path is None:
            return True
        with store_io_path(self.path, "read"):
            return self.path.is_dir() and any(p.suffix == ".lance" for p in self.path.iterdir())

    def require(self) -> None:
        """Raise when there is no store here (for read-only commands).

        Raises:
            StoreNotFoundError: "no store at PATH".
        """
        if not self.exists():
            raise StoreNotFoundError(f"no store at {_short(self.path or self.uri)}: index videos "
                                     f"into it first (`framedex index PATH --db "
                                     f"{_short(self.path or self.uri)}`), or check --db")

    def create(self) -> list[Path]:
        """Create the local folder (and its parents) before the first write.

        Returns:
            the folders this call created, outermost first (for :meth:`remove_if_empty`).

        Raises:
            StoreError: the folder cannot be created (a parent is a file, no permission,
                a read-only or pseudo file system).
        """
        if self.path is None:
            return []
        made = [p for p in (self.path, *self.path.parents) if not p.exists()][::-1]
        with store_io_path(self.path, "create"):
            self.path.mkdir(parents=True, exist_ok=True)
            # a folder that exists is not yet one we may write into; one probe per process,
            # or two writers starting together unlink each other's (ENOENT: a flaky failure)
            probe = self.path / f".framedex-write-test-{os.getpid()}-{threading.get_ident()}"
            probe.touch()
            probe.unlink()
        return made

    @staticmethod
    def remove_if_empty(made: list[Path]) -> None:
        """Undo :meth:`create` when nothing was written (a failed first run)."""
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                return


def _short(path: object, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ADVICE = {
    errno.EACCES: "no permission; use a folder you can write, or fix its permissions",
    errno.EPERM: "not permitted (read-only or immutable); use another --db",
    errno.EROFS: "the file system is read-only; use another --db",
    errno.ENOENT: "a parent folder does not exist and cannot be created there",
    errno.ENOTDIR: "a parent of it is a file, not a folder",
    errno.ENAMETOOLONG: "the path (or one of its names) is too long",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


def _reason(ex: BaseException) -> str:
    code = getattr(ex, "errno", None)
    if code in _ADVICE:
        return _ADVICE[code]
    text = " ".join(str(ex).split())
    for needle, code in (("Permission denied", errno.EACCES),
                         ("Operation not permitted", errno.EPERM),
                         ("Read-only file system", errno.EROFS),
                         ("No space left", errno.ENOSPC),
                         ("File name too long", errno.ENAMETOOLONG),
                         ("Not a directory", errno.ENOTDIR)):
        if needle in text:
            return _ADVICE[code]
    # Lance messages carry a Rust source location after the reason; keep the reason.
    return text.split(", /")[0][:200]


@contextlib.contextmanager
def store_io_path(where: object, action: str) -> Iterator[None]:
    """Turn OS and Lance I/O errors inside the block into one :class:`StoreError` line.

    Args:
        where: the store's path or URI, for the message.
        action: what was being done, e.g. ``"write to"`` ("cannot write to the store at ...").
    """
    try:
        yield
    except StoreError:
        raise
    except OSError as ex:
        raise StoreError(f"cannot {action} the store at {_short(where)}: {_reason(ex)}") \
            from ex
    except (RuntimeError, ValueError) as ex:  # lancedb wraps Lance's IO errors in these
        if "lance" not in str(ex).lower():
            raise
        raise StoreError(f"cannot {action} the store at {_short(where)}: {_reason(ex)}") \
            from ex


def store_io(location: StoreLocation, action: str) -> contextlib.AbstractContextManager[None]:
    """:func:`store_io_path` for a :class:`StoreLocation`."""
    return store_io_path(location.path or location.uri, action)
