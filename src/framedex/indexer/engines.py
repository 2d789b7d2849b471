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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from framedex.errors import check

# Built-ins register exactly as a third party would: by importing their module.
from framedex.indexer import ray_engine as ray_engine  # registers "ray"
from framedex.indexer.encoder import ImageEncoder, LazyEncoder, encoder_device, files_identity
from framedex.indexer.engine_base import ENGINES, IndexEngine, register_engine
from framedex.indexer.records import IndexOptions, IndexOutcome, IndexReport, ProgressFn
from framedex.values import JsonObject

if TYPE_CHECKING:
    from framedex.indexer.pipeline import Indexer
    from framedex.store.base import Store

__all__ = ["IndexEngine", "LocalEngine", "create_engine", "list_engines", "register_engine"]


def list_engines() -> list[str]:
    """Names of the registered engines, sorted."""
    return ENGINES.names()


def create_engine(name: str, options: IndexOptions, *,
                  ray_address: str | None = None) -> IndexEngine:
    """The engine registered as ``name``, for one job with ``options``.

    Raises:
        UnknownNameError: no engine has that name (the known ones are listed).
        ConfigError: an option the engine cannot honour.
    """
    return ENGINES.get(name)(options, ray_address=ray_address)


@register_engine("local")
class LocalEngine(IndexEngine):
    """This machine: decode workers, one encoder, this process writing (``indexer/run.py``)."""

    def __init__(self, options: IndexOptions, *, ray_address: str | None = None):
        check(ray_address is None, "ray_address", ray_address,
              "applies to engine='ray' only (--engine ray)")
        super().__init__(options)
        self._indexer: Indexer | None = None

    def prepare(self, store: Store, model_spec: str, device: str,
                encoder: Callable[[], ImageEncoder]) -> str | None:
        """The store's identity check from the model's files; the model itself loads when
        the first frame needs encoding (a run of unchanged files loads nothing). A model
        whose files cannot tell its identity without torch loads here."""
        from framedex.indexer.pipeline import Indexer

        identity = files_identity(model_spec)
        if identity is None:
            loaded = encoder()
            self._indexer = Indexer(store, loaded, self.options)
            return encoder_device(loaded)
        self._indexer = Indexer(store, LazyEncoder(identity, encoder), self.options)
        return None

    def index(self, paths: Iterable[str | os.PathLike[str]], *, metadata: JsonObject,
              progress: ProgressFn | None = None,
              on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        assert self._indexer is not None, "index() before prepare()"
        return self._indexer.index_paths(paths, metadata=metadata, progress=progress,
                                         on_file=on_file)

