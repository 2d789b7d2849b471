"""The index-engine contract and registry (below every engine: the Ray engine registers
itself here exactly as a third party would; ``indexer/engines.py`` lists and creates them).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar

from framedex.indexer.encoder import ImageEncoder
from framedex.indexer.records import IndexOptions, IndexOutcome, IndexReport, ProgressFn
from framedex.registry import Registry
from framedex.values import JsonObject

if TYPE_CHECKING:
    from framedex.store.base import Store


class IndexEngine(ABC):
    """One index job on one engine: ``start``, ``prepare``, ``index``, ``close`` (or use it
    as a context manager around ``prepare`` and ``index``).

    Args:
        options: how to index (validated by :class:`IndexOptions`; an engine refuses what it
            cannot do, e.g. NVDEC on the Ray engine).
        ray_address: the Ray cluster to join (the ``ray`` engine only).

    Raises:
        ConfigError: an option this engine cannot honour.
    """

    name: ClassVar[str]

    def __init__(self, options: IndexOptions, *, ray_address: str | None = None):
        self.options = options
        #: What the user should know about this run, one line each, filled by :meth:`start`
        #: (e.g. that the Ray cluster joined has no authentication).
        self.notes: list[str] = []

    def start(self) -> None:
        """Set up before anything touches the store or loads a model (the Ray engine starts
        or joins its cluster here, before Lance is imported)."""
        return None

    def close(self) -> None:
        """Release what :meth:`start` set up (idempotent)."""
        return None

    def __enter__(self) -> IndexEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def prepare(self, store: Store, model_spec: str, device: str,
                encoder: Callable[[], ImageEncoder]) -> str | None:
        """Set up the job's encoder and check (or record) the store's encoder identity.

        Args:
            store: the target store.
            model_spec: the encoder spec.
            device: the device asked for (``auto``, ``cpu``, ``cuda``...).
            encoder: returns the caller's loaded encoder (an engine that encodes in this
                process uses it; others load their own where they encode).

        Returns:
            where the job encodes, in words (``"cpu"``, ``"ray: 2 GPU encoder actors"``), or
            None when the model loads later, through ``encoder``, once a frame needs it.

        Raises:
            EncoderMismatchError: the store was built with another encoder.
            ModelLoadError / ConfigError: the model or the device cannot be used.
        """

    @abstractmethod
    def index(self, paths: Iterable[str | os.PathLike[str]], *, metadata: JsonObject,
              progress: ProgressFn | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        """Index every video under ``paths`` (after :meth:`prepare`); bad files are reported
        in the returned report, never raised."""


#: Every index engine by name.
ENGINES: Registry[type[IndexEngine]] = Registry("index engine")

#: Class decorator registering an engine under a name (duplicates raise).
register_engine = ENGINES.register
