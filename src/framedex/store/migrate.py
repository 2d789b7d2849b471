"""In-place upgrade of stores written by framedex 0.1 (schema version 1).

Version 2 adds ``generation`` to ``frames``, ``segments`` and ``videos`` (and ``file_size`` to
``videos``). Every 0.1 video has exactly one index, so its rows all become generation 0, which
its ``videos`` row then names. Lance adds a column as metadata plus one small file per
fragment; no vector is rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framedex.errors import StoreError
from framedex.store.location import store_io
from framedex.store.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY

if TYPE_CHECKING:
    from framedex.store.lance_store import LanceStore

_NEW_COLUMNS = {
    "frames": {"generation": "CAST(0 AS BIGINT)"},
    "segments": {"generation": "CAST(0 AS BIGINT)"},
    "videos": {"generation": "CAST(0 AS BIGINT)", "file_size": "CAST(NULL AS BIGINT)"},
    "query_log": {"cache_hit": "CAST(NULL AS BOOLEAN)"},
}


def migrate_v1(store: LanceStore) -> None:
    """Add the version-2 columns where they are missing, then stamp the schema version.

    Raises:
        StoreError: the store cannot be written (the upgrade needs write access once).
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
        raise StoreError(f"{ex} (the store was written by framedex 0.1 and needs a one-time "
                         "upgrade: run any framedex command on it once with write access)"
                         ) from ex
