"""The plug-in registry shared by samplers and decode backends (timm's ``register_model`` idea).

One dict, a decorator, a sorted listing and a lookup; duplicate names raise, unknown names raise
:class:`~framedex.errors.UnknownNameError` with the known names and the closest one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from framedex.errors import UnknownNameError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Named plug-in classes of one kind.

    Args:
        kind: what the plug-ins are, in words used by error messages (``"sampler"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``cls`` under ``name`` and set ``cls.name``.

        Raises:
            ValueError: ``name`` is already registered.
        """

        def wrap(cls: T) -> T:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered by "
                                 f"{self._classes[name]!r}")
            setattr(cls, "name", name)  # noqa: B010 (T is any class: no attribute to type)
            self._classes[name] = cls
            return cls

        return wrap

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in being unloaded, or a test's fake).

        Raises:
            UnknownNameError: no such name.
        """
        self.get(name)
        del self._classes[name]

    def get(self, name: str) -> T:
        """The class registered as ``name``.

        Raises:
            UnknownNameError: no such name (lists the known ones, suggests the closest).
        """
        if name not in self._classes:
            raise UnknownNameError(self.kind, str(name), self._classes)
        return self._classes[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, class) pairs in registration order."""
        return iter(self._classes.items())

    def __contains__(self, name: object) -> bool:
        return name in self._classes
