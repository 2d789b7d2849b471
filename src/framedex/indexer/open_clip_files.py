"""Files of the installed open_clip package, read without importing it.

``import open_clip`` takes seconds (it imports torch, torchvision, timm). The query path only
needs three of its data files: the built-in model configs, the BPE merges and the version.
``importlib.util.find_spec`` locates a top-level package without executing it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The merges file of CLIP's tokenizer, shipped inside open_clip.
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=1)
def package_dir() -> Path | None:
    """The installed open_clip package folder, or None when open_clip is not installed."""
    import importlib.util

    found = importlib.util.find_spec("open_clip")
    locations = list(found.submodule_search_locations or []) if found else []
    return Path(locations[0]) if locations else None


def bpe_vocab() -> Path | None:
    """Path of open_clip's BPE merges file, or None if missing."""
    folder = package_dir()
    path = folder / BPE_FILE if folder else None
    return path if path and path.is_file() else None


def builtin_config(arch: str) -> dict[str, Any] | None:
    """open_clip's built-in config for ``arch`` (``model_configs/ARCH.json``), or None.

    open_clip registers a JSON file only if it has ``embed_dim``, ``vision_cfg`` and
    ``text_cfg``, and looks names up with "/" replaced by "-"; so does this.
    """
    folder = package_dir()
    if folder is None:
        return None
    try:
        cfg = json.loads((folder / "model_configs" / f"{arch.replace('/', '-')}.json")
                         .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg"))
    return cfg if ok else None


def version() -> str | None:
    """``open_clip.__version__``, read from the ``version.py`` it comes from; None if absent.

    Not ``importlib.metadata``: the file is what ``open_clip.__version__`` is, so the two agree
    even where installed metadata is stale (a source checkout), and reading it costs ~0.1 ms
    where importing importlib.metadata costs ~40 ms.
    """
    folder = package_dir()
    try:
        text = (folder / "version.py").read_text(encoding="utf-8") if folder else ""
    except OSError:
        return None
    match = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
    return match.group(1) if match else None
