"""framedex.store: the LanceDB store (videos, frame and segment embeddings, jobs, query log).

Example::

    from framedex.store import open_store
    store = open_store("framedex.db")
    for video in store.list_videos():
        frames = store.read_frames(video.video_id)   # (N, D) vectors + timestamps, one read
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Lance 13 warns on every index statistics read (which optimize does) that centroids will
# leave the statistics; framedex never reads them, so take the future default now, quietly.
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

from framedex.store.base import FrameArrays as FrameArrays
from framedex.store.base import SegmentArrays as SegmentArrays
from framedex.store.base import Store as Store
from framedex.store.jobs import Job as Job
from framedex.store.jobs import JobFilter as JobFilter
from framedex.store.jobs import JobStore as JobStore
from framedex.store.lance_store import LanceStore as LanceStore
from framedex.store.leases import lease_ttl_from_env as lease_ttl_from_env
from framedex.store.querylog import QueryLog as QueryLog
from framedex.store.schema import AssetRecord as AssetRecord
from framedex.store.schema import EntityCollectionRecord as EntityCollectionRecord
from framedex.store.schema import EntityRecord as EntityRecord
from framedex.store.schema import IndexRecord as IndexRecord
from framedex.store.schema import MemberRecord as MemberRecord
from framedex.store.schema import VideoRecord as VideoRecord
from framedex.store.tables import is_missing_file as is_missing_file


def open_store(uri: str | os.PathLike, *,
               storage_options: Mapping[str, str] | None = None,
               lease_ttl: float | None = None, consistency_s: float | None = None) -> Store:
    """Open the store at ``uri`` (a folder, created on the first write, or an object-store URI).

    Args:
        storage_options: object-store settings (credentials, endpoint, region).
        lease_ttl: seconds a writer's claim lives without a heartbeat (None: 30 s).
        consistency_s: how stale reads may be, in seconds (None: 0 locally, 1 s on object
            storage).

    Raises:
        ConfigError / StoreError: an unusable location.
    """
    return LanceStore(uri, storage_options=storage_options, lease_ttl=lease_ttl,
                      consistency_s=consistency_s)
