"""A name -> class registry filled by a decorator, for plug-in packages (families, passes).

The package's modules are imported on first lookup, so adding an entry is one new module with
one decorated class; a failed lookup lists what is registered.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from onnxship.errors import UnknownEntryError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str) -> None:
        self.kind, self.package = kind, package
        self._classes: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        if name in self._classes:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._classes[name] = cls
        return cls

    def classes(self) -> dict[str, type[T]]:
        if not self._loaded:
            module = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(module.__path__):
                importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return self._classes

    def get(self, name: str) -> T:
        classes = self.classes()
        if name not in classes:
            known = ", ".join(sorted(classes))
            raise UnknownEntryError(f"unknown {self.kind} '{name}' (registered: {known})")
        return classes[name]()

    def names(self) -> list[str]:
        return sorted(self.classes())
