"""Optimization passes, registered by decorator: adding one = one module with one @register class.

A pass reads an ONNX file and writes a new one: run(src, dst, options) -> dict of what it did.
Its options are a pydantic model (`Options`, unknown keys refused), validated for every variant
before any pass runs; variants (conf/optimize) chain passes by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from onnxship.errors import ConfigError
from onnxship.plugins import Registry

__all__ = ["NoOptions", "Pass", "get", "names", "register"]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pass:
    name: ClassVar[str]
    lossy: ClassVar[bool] = False  # changes numerics on purpose (fp16, int8): task metric gate applies
    Options: ClassVar[type[BaseModel]] = NoOptions

    def options(self, given: Mapping[str, Any], where: str = "") -> BaseModel:
        """The typed options, or ConfigError naming the pass, the option and the problem."""
        try:
            return self.Options.model_validate(dict(given))
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in err.errors()[:5]
            )
            raise ConfigError(f"{where or 'pass'} '{self.name}': {problems}") from None

    def run(self, src: Path, dst: Path, options: Any) -> dict[str, Any]:
        raise NotImplementedError


PASSES: Registry[Pass] = Registry("optimization pass", __name__)
register, get, names = PASSES.register, PASSES.get, PASSES.names
