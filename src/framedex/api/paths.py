"""How server-side paths are shown to clients: never the server's own layout.

A file under an ``--allow-root`` shows as ``<root name>/<path inside it>``, an upload as
``uploads/<name>``, anything else (indexed from the CLI) by its file name only. Job errors,
video records, search hits and selections all go through :meth:`PathView.public`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PathView:
    """Turns server paths into public ones.

    Args:
        roots: the allowed roots (resolved).
        upload_dir: the upload folder (resolved), or None.
    """

    roots: tuple[Path, ...] = ()
    upload_dir: Path | None = None

    def public(self, path: str) -> str:
        """The public form of a server path (see the module docstring)."""
        if not path or "://" in path:
            return path
        p = Path(os.path.abspath(path))
        if self.upload_dir is not None and p.parent == self.upload_dir:
            return f"uploads/{p.name}"
        for root in self.roots:
            if p.is_relative_to(root):
                return f"{root.name}/{p.relative_to(root).as_posix()}"
        return p.name
