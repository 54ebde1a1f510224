"""A small name -> class registry in papermill's style: built-ins register exactly like plugins.

Plugins come from an entry-point group; an unknown name fails with "No <kind> named 'x'; known: ...".
Built-ins that live in modules importing the registry (so it cannot import them first) are named in `builtins`:
those modules are imported at the first lookup, and register themselves as they load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from lab.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type, group: str,
                 unknown: Callable[[str, str, list[str]], Exception] = UnknownNameError, builtins: Sequence[str] = ()):
        self.kind, self.base, self.group, self.unknown = kind, base, group, unknown
        self.builtins = tuple(builtins)
        self._classes: dict[str, type[T]] = {}
        self._plugins_loaded = False

    def register(self, name: str, cls: type[T] | None = None):
        """Register `cls` under `name`; without `cls`, return a class decorator."""
        def add(klass: type[T]) -> type[T]:
            if not (isinstance(klass, type) and issubclass(klass, self.base)):
                raise TypeError(f"{self.kind} {name!r} must be a {self.base.__name__} subclass, not {klass!r}")
            klass.name = name  # type: ignore[attr-defined]
            self._classes[name] = klass
            return klass
        return add(cls) if cls is not None else add

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in self.builtins:
            import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._classes:
                self.register(ep.name, ep.load())

    def get(self, name: str) -> type[T]:
        if name not in self._classes:
            self._load_plugins()
        try:
            return self._classes[name]
        except KeyError:
            raise self.unknown(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self.names()
