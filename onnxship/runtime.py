"""ONNX Runtime sessions built one way for validate, benchmark and serving, so what is measured
is what is served. Inputs are checked here, before ONNX Runtime sees them."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

CPU = "CPUExecutionProvider"

LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    # independent branches (e.g. a stacking ensemble's base models) run side by side
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}
FLOAT32 = np.dtype(np.float32)
FLOAT32_MAX = float(np.finfo(np.float32).max)
SMALL_CHECK = 64  # values up to which the input check sums in Python (at 4 rows x 19 the two tied)
# the input check's fast path converts to float32, then sums the values (a few, in Python floats)
# or their squares (more, one dot): a value beyond float32 becomes inf in the conversion, a square
# beyond it in the dot, and numpy warns of either overflow; the detailed path then refuses or
# accepts the value by name. The filter costs nothing per call (np.errstate ~3 us in context);
# where warnings are errors, the check catches the warning instead
for _overflow in ("overflow encountered in cast", "overflow encountered in dot"):
    warnings.filterwarnings("ignore", _overflow, RuntimeWarning, __name__)


class InputError(ValueError):
    """Inference input does not fit the model (shape, dtype, range); the message names what."""


@dataclass(frozen=True)
class InferenceSettings:
    providers: tuple[str, ...] = (CPU,)
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization_level: str = "all"
    allow_spinning: bool = False
    execution_mode: str = "sequential"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> InferenceSettings:
        known = {
            k: data[k]
            for k in (
                "intra_op_threads",
                "inter_op_threads",
                "graph_optimization_level",
                "allow_spinning",
                "execution_mode",
            )
            if k in data
        }
        if known.get("graph_optimization_level", "all") not in LEVELS:
            raise ValueError(f"graph_optimization_level must be one of {list(LEVELS)}")
        if known.get("execution_mode", "sequential") not in EXECUTION_MODES:
            raise ValueError(f"execution_mode must be one of {list(EXECUTION_MODES)}")
        return cls(providers=tuple(data.get("providers", cls.providers)), **known)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["providers"] = list(self.providers)
        return out


def create_session(model: str | Path | bytes, settings: InferenceSettings) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = settings.intra_op_threads
    so.inter_op_num_threads = settings.inter_op_threads
    so.graph_optimization_level = LEVELS[settings.graph_optimization_level]
    so.execution_mode = EXECUTION_MODES[settings.execution_mode]
    so.log_severity_level = 3  # errors only: shape-declaration warnings are noise at serve time
    if not settings.allow_spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    providers = [p for p in settings.providers if p in available]
    if not providers:
        raise RuntimeError(
            f"none of the providers {list(settings.providers)} is available "
            f"(this onnxruntime has {sorted(available)})"
        )
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, so, providers=providers)


class OnnxModel:
    """A loaded graph of the project's contract (onnxship.contract) with checked inputs."""

    def __init__(
        self, model: str | Path | bytes, settings: InferenceSettings | None = None, allow_nan: bool = True
    ) -> None:
        self.settings = settings or InferenceSettings()
        started = time.perf_counter()
        self.session = create_session(model, self.settings)
        self.load_seconds = time.perf_counter() - started
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        # one example's shape: [n_features] for rows, e.g. [1, 8, 8] for images (None = any size)
        self.input_shape = [d if isinstance(d, int) else None for d in first.shape[1:]]
        width = self.input_shape[0] if len(self.input_shape) == 1 else None
        self.n_features = width
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.allow_nan = allow_nan
        # one input fed by its own name: InferenceSession.run's Python check of the feed (and, with
        # a GPU provider, its fallback to the CPU) is not needed on the CPU, and calling the C++
        # session directly saved ~2.5 us of a ~20 us LightGBM call (tools/bench_check.py). Feeds
        # of several inputs (run_feed) keep the public call: it names a missing input
        inner = getattr(self.session, "_sess", None)
        one_input = len(self.session.get_inputs()) == 1
        if inner is not None and one_input and self.session.get_providers() == [CPU]:
            self._run_one = lambda feed: inner.run(self.output_names, feed, None)
        else:
            self._run_one = lambda feed: self.session.run(self.output_names, feed)

    def check(self, X: Any) -> np.ndarray:
        """float32 [rows, n_features], or InputError naming what is wrong."""
        # the case serving builds and the benchmark feeds, in a few attribute reads: float32 rows
        # of the model's width, C-ordered, a few finite values (their sum in Python floats, as
        # below). It took the checked call of one LightGBM row from ~6 to ~4 us above the bare
        # session call (tools/bench_check.py)
        if (
            type(X) is np.ndarray
            and X.dtype is FLOAT32
            and X.ndim == 2
            and X.shape[1] == self.n_features
            and 0 < X.size <= SMALL_CHECK
            and X.flags.c_contiguous
            and math.isfinite(sum(X.ravel().tolist()))
        ):
            return X
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as err:
            raise InputError(f"input is not a numeric array: {err}") from None
        if arr.ndim == 1 and len(self.input_shape) == 1:
            arr = arr.reshape(1, -1)
        if len(self.input_shape) != 1:  # tensors, e.g. images
            expected = [d or "any" for d in self.input_shape]
            if arr.ndim != 1 + len(self.input_shape) or any(
                d is not None and a != d for a, d in zip(arr.shape[1:], self.input_shape, strict=False)
            ):
                raise InputError(f"input has shape {list(arr.shape)}, the model expects [rows, {expected}]")
        elif arr.ndim != 2:
            raise InputError(f"input must be 2-D [rows, features], got {arr.ndim}-D")
        elif self.n_features is not None and arr.shape[1] != self.n_features:
            raise InputError(f"input has {arr.shape[1]} features, the model expects {self.n_features}")
        if arr.shape[0] == 0:
            raise InputError("input has no rows")
        if arr.dtype.kind not in "fiub":
            raise InputError(f"input dtype {arr.dtype} is not numeric")
        # the common case in one conversion and one BLAS pass: float32 (float64 and integers are
        # converted, as the graph needs) and all finite needs no range check. A NaN or inf makes
        # the sum of squares NaN or inf, and so does a float64 beyond the float32 range (it
        # converts to inf); so can |x| > 1.8e19 (finite, overflowing the square): those rare
        # cases take the detailed path below, on the values as given. A dot rather than a float64
        # sum: the sum's reduction slowed the ORT call after it by ~8 us on a ~20 us LightGBM call
        # (tools/bench_check.py measures the paths)
        try:  # C order at once: one copy for float64 or Fortran-ordered rows, none for float32 rows
            arr32 = np.ascontiguousarray(arr, dtype=np.float32)
            flat = arr32.reshape(-1)
            # a few values: their sum in Python floats (float64: finite float32 values cannot
            # overflow it). A numpy reduction just before a small ORT call slowed that call by
            # ~2-7 us, far beyond its own cost; the Python sum by ~1 us (tools/bench_check.py)
            if flat.size <= SMALL_CHECK:
                fast = math.isfinite(sum(flat.tolist()))
            else:
                fast = math.isfinite(float(np.dot(flat, flat)))
        except (RuntimeWarning, FloatingPointError):  # an overflow where warnings (or numpy's
            # floating-point errors) are made errors: the detailed path names the value
            arr32, fast = None, False
        if fast:
            return arr32
        arr64 = arr.astype(np.float64, copy=False)
        finite = np.isfinite(arr64)
        if not finite.all():
            if np.isinf(arr64).any():
                raise InputError("input contains +/-inf")
            if not self.allow_nan:
                raise InputError("input contains NaN and this model does not accept missing values")
        if (np.abs(arr64[finite]) > FLOAT32_MAX).any():
            raise InputError(f"input has values beyond the float32 range (|x| > {FLOAT32_MAX:.3g})")
        return arr32 if arr32 is not None else np.ascontiguousarray(arr, dtype=np.float32)

    def run(self, X: Any) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._run_one({self.input_name: self.check(X)})))  # noqa: B905

    def run_feed(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every named input at once, checked by the caller (serving builds and checks its own
        feeds). A feed of the one input the graph takes goes the way `run` calls, so serving's call
        is the benchmark's; several inputs (forecasters, tables) take the public call, which names
        a missing one."""
        if len(feed) == 1 and self.input_name in feed:
            return self._run_one(feed)
        return self.session.run(self.output_names, feed)

    def run_unchecked(self, X32: np.ndarray) -> list[np.ndarray]:
        """The raw session call, for timing against the checked path."""
        return self._run_one({self.input_name: X32})
