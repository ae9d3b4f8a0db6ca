"""Optimization passes, registered by decorator: adding one = one module with one @register class.

A pass reads an ONNX file and writes a new one: run(src, dst, options, context) -> dict of what it
did. Its options are a pydantic model (`Options`, unknown keys refused), validated for every variant
before any pass runs; variants (conf/optimize) chain passes by name, optionally only for some
families. The context brings what a pass may need beyond the graph: calibration inputs from the
validation split (static INT8) and the model's family.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import onnx
from pydantic import BaseModel, ConfigDict, ValidationError

from onnxship.contract import BASE_VARIANT
from onnxship.errors import ConfigError
from onnxship.plugins import Registry

__all__ = [
    "NoOptions",
    "Pass",
    "PassContext",
    "PassOptions",
    "apply_chain",
    "get",
    "names",
    "plan",
    "register",
]

Feeds = list[dict[str, Any]]


@dataclass(frozen=True)
class PassContext:
    family: str = ""
    # real inputs for calibration (the validation split, never test): n -> feeds, one per batch
    calibration: Callable[[int], Feeds] | None = None


class PassOptions(BaseModel):
    """A pass's options: an unknown key is an error naming it, and options never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(PassOptions):
    pass


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

    def run(self, src: Path, dst: Path, options: Any, context: PassContext) -> dict[str, Any]:
        raise NotImplementedError


PASSES: Registry[Pass] = Registry("optimization pass", __name__)
register, get, names = PASSES.register, PASSES.get, PASSES.names


Chain = list[tuple[Pass, object]]


def load_without_shapes(src: Path) -> onnx.ModelProto:
    """The graph without its recorded intermediate shapes (value_info). Exporters record shapes
    of initializers too; a pass that rewrites a weight (a Gemm's transposed weight quantized) then
    contradicts them and shape inference fails. Shapes are inferred again from the graph itself."""
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    return model


def steps_of(variant: str, spec: Any) -> tuple[list, list[str] | None]:
    """A variant is a list of steps (every family), or {passes: [...], families: [...]}."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"passes", "families"})
        if unknown or "passes" not in spec:
            raise ConfigError(
                f"optimize.variants.{variant}: expected keys passes (and families), got {unknown}"
            )
        families = spec.get("families")
        return list(spec["passes"]), (list(families) if families is not None else None)
    return list(spec), None


def for_family(variants: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The variants that apply to a family (e.g. calibration-based INT8 only where it pays)."""
    out = {}
    for variant, spec in variants.items():
        families = steps_of(variant, spec)[1]
        if families is None or family in families:
            out[variant] = spec
    return out


def plan(variants: Mapping[str, Any]) -> dict[str, Chain]:
    """Every variant's passes with their typed options, resolved before any work starts."""
    out = {}
    for variant, spec in variants.items():
        if variant == BASE_VARIANT:
            raise ConfigError(f"optimize.variants: '{BASE_VARIANT}' is reserved for the exported graph")
        steps, _families = steps_of(variant, spec)
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


def apply_chain(
    src: Path, dst: Path, chain: Chain, context: PassContext | None = None
) -> tuple[list[dict], float]:
    context = context or PassContext()
    steps, current, started = [], src, time.perf_counter()
    nodes = len(onnx.load(str(src)).graph.node)
    runtime_ops = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, (pass_, options) in enumerate(chain):
            target = Path(tmp) / f"step{i}.onnx"
            did = pass_.run(current, target, options, context)
            runtime_ops = runtime_ops or pass_.runtime_ops  # fused ops stay in the graph
            if runtime_ops:
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
