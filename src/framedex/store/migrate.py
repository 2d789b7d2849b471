"""In-place upgrade of stores written by older framedex versions.

Version 2 adds ``generation`` to ``frames``, ``segments`` and ``videos`` (and ``file_size`` to
``videos``). Every 0.1 video has exactly one index, so its rows all become generation 0, which
its ``videos`` row then names. Version 3 adds the source file's identity to ``videos``
(``file_dev``, ``file_ino``, ``file_mtime_ns``), null for videos indexed before: their source
is then checked by path and size, as version 2 did. Lance adds a column as metadata plus one
small file per fragment; no vector is rewritten.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from framedex.errors import StoreError
from framedex.store.location import store_io
from framedex.store.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY

if TYPE_CHECKING:
    from framedex.store.base import LanceParts

log = logging.getLogger(__name__)

_NEW_COLUMNS = {
    "frames": {"generation": "CAST(0 AS BIGINT)"},
    "segments": {"generation": "CAST(0 AS BIGINT)"},
    "videos": {"generation": "CAST(0 AS BIGINT)", "file_size": "CAST(NULL AS BIGINT)",
               "file_dev": "CAST(NULL AS BIGINT)", "file_ino": "CAST(NULL AS BIGINT)",
               "file_mtime_ns": "CAST(NULL AS BIGINT)"},
    "query_log": {"cache_hit": "CAST(NULL AS BOOLEAN)"},
}


def upgrade(store: LanceParts, version: str) -> None:
    """Add the columns of later schema versions where they are missing, then stamp the schema
    version.

    Args:
        store: the store.
        version: the schema version it was written with ("1" or "2").

    Raises:
        StoreError: a version-1 store cannot be written (its upgrade needs write access once).
        A version-2 store that cannot be written is read as it is: the columns it lacks are
        optional (a video's file identity), and reads do without them.
    """
    try:
        with store.writing(), store_io(store.location, "upgrade"):
            for name, columns in _NEW_COLUMNS.items():
                ds = store.tables.writable(name)
                if ds is None:
                    continue
                missing = {c: sql for c, sql in columns.items() if c not in ds.schema.names}
                if missing:
                    ds.add_columns(missing)
            frames = store.tables.writable("frames")
            if frames is not None:
                frames.update_schema_metadata({SCHEMA_VERSION_KEY.decode(): SCHEMA_VERSION})
    except StoreError as ex:
        if version != "1":
            log.warning("store %s keeps schema version %s (%s): videos indexed into it need "
                        "write access once", store.uri, version, ex)
            return
        raise StoreError(f"{ex} (the store was written by framedex 0.1 and needs a one-time "
                         "upgrade: run any framedex command on it once with write access)"
                         ) from ex
