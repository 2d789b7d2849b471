"""framedex: embed a video library once, then search it and pick frames for a video LLM.

Example::

    from framedex import Library
    lib = Library("framedex.db", model="synthetic-shapes")
    lib.index(["clips/"])
    lib.search("a red circle")
"""

from __future__ import annotations

__version__ = "0.1.0"

from framedex.errors import FramedexError as FramedexError


def __getattr__(name: str):
    # The facade pulls in lancedb; keep ``import framedex`` light (no torch, no lance).
    if name == "Library":
        from framedex.library import Library

        return Library
    raise AttributeError(f"module 'framedex' has no attribute {name!r}")
