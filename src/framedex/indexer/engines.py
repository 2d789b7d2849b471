"""Index engines: where an index run's decoding, encoding and writing happen.

- ``local`` (the default): this process, its decode workers and its encoder
  (``indexer/run.py``);
- ``ray``: a Ray cluster, local or joined (``indexer/ray_engine.py``).

Both follow the store's write protocol (``store/base.py``) with the same shared steps
(``planner.admit``, ``planner.video_record``, ``batching.fixed_segments``): a video indexed by
one is ``unchanged`` for the other, and a run killed under either leaves only whole videos.

Engines register like samplers and decode backends: one :class:`~framedex.registry.Registry`,
``@register_engine(name)``, :func:`list_engines`, :func:`create_engine`; an unknown name raises
:class:`~framedex.errors.UnknownNameError` listing the known ones. Creating an engine imports
nothing heavy: the Ray engine imports ray (and, after ``ray.init``, Lance) in :meth:`start`.

Example::

    with create_engine("ray", IndexOptions()) as engine:    # starts or joins the cluster
        engine.prepare(store, "synthetic-shapes", "auto", lambda: load_encoder(...))
        report = engine.index(["videos/"])
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from framedex.errors import check
from framedex.registry import Registry

if TYPE_CHECKING:
    from framedex.indexer.pipeline import IndexOptions, IndexOutcome, IndexReport, ProgressFn
    from framedex.store import Store


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
                encoder: Callable[[], Any]) -> str:
        """Set up the job's encoder and check (or record) the store's encoder identity.

        Args:
            store: the target store.
            model_spec: the encoder spec.
            device: the device asked for (``auto``, ``cpu``, ``cuda``...).
            encoder: returns the caller's loaded encoder (an engine that encodes in this
                process uses it; others load their own where they encode).

        Returns:
            where the job encodes, in words (``"cpu"``, ``"ray: 2 GPU encoder actors"``).

        Raises:
            EncoderMismatchError: the store was built with another encoder.
            ModelLoadError / ConfigError: the model or the device cannot be used.
        """

    @abstractmethod
    def index(self, paths: Iterable[str | os.PathLike], *, metadata: dict[str, Any],
              progress: ProgressFn | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        """Index every video under ``paths`` (after :meth:`prepare`); bad files are reported
        in the returned report, never raised."""


_ENGINES: Registry[type[IndexEngine]] = Registry("index engine")

#: Class decorator registering an engine under a name (duplicates raise).
register_engine = _ENGINES.register


def list_engines() -> list[str]:
    """Names of the registered engines, sorted."""
    return _ENGINES.names()


def create_engine(name: str, options: IndexOptions, *,
                  ray_address: str | None = None) -> IndexEngine:
    """The engine registered as ``name``, for one job with ``options``.

    Raises:
        UnknownNameError: no engine has that name (the known ones are listed).
        ConfigError: an option the engine cannot honour.
    """
    return _ENGINES.get(name)(options, ray_address=ray_address)


@register_engine("local")
class LocalEngine(IndexEngine):
    """This machine: decode workers, one encoder, this process writing (``indexer/run.py``)."""

    def __init__(self, options: IndexOptions, *, ray_address: str | None = None):
        check(ray_address is None, "ray_address", ray_address,
              "applies to engine='ray' only (--engine ray)")
        super().__init__(options)
        self._indexer: Any = None

    def prepare(self, store: Store, model_spec: str, device: str,
                encoder: Callable[[], Any]) -> str:
        from framedex.indexer.pipeline import Indexer

        loaded = encoder()
        self._indexer = Indexer(store, loaded, self.options)
        return str(getattr(loaded, "device", device))

    def index(self, paths: Iterable[str | os.PathLike], *, metadata: dict[str, Any],
              progress: ProgressFn | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        assert self._indexer is not None, "index() before prepare()"
        return self._indexer.index_paths(paths, metadata=metadata, progress=progress,
                                         on_file=on_file)


# Built-ins register exactly as a third party would: by importing their module.
from framedex.indexer import ray_engine as _ray_engine  # noqa: E402, F401 - registers "ray"
