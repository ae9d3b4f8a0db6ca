"""Optimization passes, registered by decorator: adding one = one module with one @register class.

A pass reads an ONNX file and writes a new one: run(src, dst, options) -> dict of what it did.
Its options are a pydantic model (`Options`, unknown keys refused), validated for every variant
before any pass runs; variants (conf/optimize) chain passes by name.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx
from pydantic import BaseModel, ConfigDict, ValidationError

from onnxship.contract import BASE_VARIANT
from onnxship.errors import ConfigError
from onnxship.plugins import Registry

__all__ = ["NoOptions", "Pass", "apply_chain", "get", "names", "plan", "register"]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pass:
    name: ClassVar[str]
    lossy: ClassVar[bool] = False  # changes numerics on purpose (fp16, int8): task metric gate applies
    # writes ONNX Runtime's own fused ops (e.g. SimplifiedLayerNormalization), which the ONNX
    # checker does not know: its output is checked by loading it into ONNX Runtime instead
    runtime_ops: ClassVar[bool] = False
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


Chain = list[tuple[Pass, object]]


def plan(variants: Mapping[str, Any]) -> dict[str, Chain]:
    """Every variant's passes with their typed options, resolved before any work starts."""
    out = {}
    for variant, steps in variants.items():
        if variant == BASE_VARIANT:
            raise ConfigError(f"optimize.variants: '{BASE_VARIANT}' is reserved for the exported graph")
        chain = []
        for i, step in enumerate(steps):
            step = dict(step)
            name = step.pop("pass", None)
            if not name:
                raise ConfigError(f"optimize.variants.{variant}[{i}]: each step needs `pass: <name>`")
            pass_ = get(name)
            chain.append((pass_, pass_.options(step, f"optimize.variants.{variant}[{i}]")))
        out[variant] = chain
    return out


def apply_chain(src: Path, dst: Path, chain: Chain) -> tuple[list[dict], float]:
    steps, current, started = [], src, time.perf_counter()
    nodes = len(onnx.load(str(src)).graph.node)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (pass_, options) in enumerate(chain):
            target = Path(tmp) / f"step{i}.onnx"
            did = pass_.run(current, target, options)
            if pass_.runtime_ops:
                import onnxruntime as ort

                ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            else:
                onnx.checker.check_model(str(target))
            after = len(onnx.load(str(target)).graph.node)
            steps.append(
                {
                    "pass": pass_.name,
                    **options.model_dump(),
                    **did,
                    "nodes_before": nodes,
                    "nodes_after": after,
                }
            )
            current, nodes = target, after
        shutil.copyfile(current, dst)
    return steps, time.perf_counter() - started
