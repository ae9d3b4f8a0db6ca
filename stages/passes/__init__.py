"""Optimization passes, registered by decorator: adding one = one module with one @register class.

A pass reads an ONNX file and writes a new one: run(src, dst, options) -> dict of what it did.
Variants (conf/optimize) chain passes by name; options are checked before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from stages.common.errors import ConfigError
from stages.common.registry import Registry

__all__ = ["ConfigError", "Pass", "get", "names", "register"]


class Pass:
    name: ClassVar[str]
    lossy: ClassVar[bool] = False  # changes numerics on purpose (fp16, int8): task metric gate applies
    options: ClassVar[dict[str, tuple[Any, ...]]] = {}  # option -> allowed values (first = default)

    def check(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.options)
        if unknown:
            raise ConfigError(
                f"pass '{self.name}': unknown option(s) {sorted(unknown)} "
                f"(known: {sorted(self.options) or 'none'})"
            )
        resolved = {}
        for key, allowed in self.options.items():
            value = options.get(key, allowed[0])
            if value not in allowed:
                raise ConfigError(f"pass '{self.name}': {key}={value!r} (allowed: {list(allowed)})")
            resolved[key] = value
        return resolved

    def run(self, src: Path, dst: Path, options: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


PASSES: Registry[Pass] = Registry("optimization pass", __name__)
register, get, names = PASSES.register, PASSES.get, PASSES.names
