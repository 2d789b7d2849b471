"""framedex.store: the LanceDB store (videos, frame and segment embeddings, jobs, query log).

Example::

    from framedex.store import Store
    store = Store("framedex.db")
    for video in store.list_videos():
        frames = store.read_frames(video.video_id)   # (N, D) vectors + timestamps, one read
"""

from __future__ import annotations

from framedex.store.lance_store import FrameArrays as FrameArrays
from framedex.store.lance_store import SegmentArrays as SegmentArrays
from framedex.store.lance_store import Store as Store
from framedex.store.schema import VideoRecord as VideoRecord
