"""Model families, registered by decorator: adding one = one module with one @register class.

A family knows how to build/fit an estimator from zoo params, save and load it in its native
format, predict natively, and convert to ONNX (onnxship.graph.standardize brings the graph to
onnxship.contract).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import INPUT, NATIVE_META, ModelIO, Prediction, Task
from onnxship.errors import ConfigError, ModelLoadError, UnknownEntryError
from onnxship.plugins import Registry


class Family:
    """One model family. Callers never name a family: whatever a family needs (other zoo entries
    for ensembles, a verdict on missing values) goes through these methods."""

    name: ClassVar[str]
    group: ClassVar[str] = "other"  # the family group the summary ranks it in
    # why native can beat every ONNX graph of this family at large batches, where it was measured
    # to (the summary says it beside the batch sizes where it does)
    native_faster_why: ClassVar[str] = ""
    native_file: ClassVar[str]  # file name inside models/native/<model>/
    # the top-level libraries load() needs: a cold start times importing them apart from the
    # load, and the benchmark's timing worker imports them before its load clock starts (what
    # load() imports beyond them counts as load)
    loader_imports: ClassVar[tuple[str, ...]] = ()
    converter: ClassVar[str]  # library that writes the ONNX graph
    estimator_types: ClassVar[tuple[str, ...]] = ()  # class names this family recognises
    accepts_nan: ClassVar[bool] = True  # native model takes NaN features (missing values)
    tasks: ClassVar[tuple[str, ...]] = (Task.REGRESSION, Task.CLASSIFICATION)
    # the data it takes: "rows" (a float feature matrix, or tensors), "columns" (a table of typed
    # columns, onnxship.data.columns: build_columns and native_frame)
    layouts: ClassVar[tuple[str, ...]] = ("rows",)
    # whether native_frame codes a table's categories by the model's own values (pandas
    # `category` columns): work a served call does on every request, so the benchmark times it
    codes_categories_per_call: ClassVar[bool] = False
    # why its converter cannot export a model of categories, in the converter's words, when it
    # cannot (such a model is reported with that reason and never registered)
    columns_export_gap: ClassVar[str | None] = None
    # whether the same training saves the same bytes (DVC compares outputs by content; a family
    # whose native format cannot is for brought files, never trained in the zoo)
    reproducible_bytes: ClassVar[bool] = True
    # a zoo entry (without `family`) that trains in well under a second: the completeness test
    # (tests/test_families.py) runs every registered family through every step with it
    tiny_spec: ClassVar[dict[str, Any]] = {}

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Any:
        """An unfitted estimator from its zoo entry; `zoo` is every entry (ensembles build their
        parts from it)."""
        return self.estimator(dict(spec.get("params") or {}), task, seed)

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        raise NotImplementedError(f"family '{self.name}' cannot be trained here; give a model file (path:)")

    def build_columns(
        self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int, columns: list[dict]
    ) -> Any:
        """An unfitted model of typed columns (numbers and categories, onnxship.data.columns)."""
        raise ConfigError(
            f"family '{self.name}' takes feature matrices only; a dataset of typed columns "
            "(layout: columns) needs family pipeline, lightgbm, xgboost or catboost"
        )

    def native_frame(self, est: Any, frame: Any, columns: list[dict]) -> Any:
        """A table of typed columns (strings with None missing) as this library takes it."""
        return frame

    def takes_missing_values(self, est: Any) -> bool:
        """Whether this fitted model takes NaN features (validate tests missing values only then)."""
        return self.accepts_nan

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        return est.fit(X, y)

    def make_reproducible(self, est: Any) -> None:
        """Drop what makes two identical trainings save to different bytes (run ids, timestamps):
        DVC compares outputs by content, and a changed file re-runs the model's whole chain."""

    def save(self, est: Any, path: Path) -> None:
        est.save_model(str(path))

    def bring(self, source: Path, spec: Mapping[str, Any], task: str) -> Any:
        """A model file a user brings (`path:`), loaded and so proven sound."""
        return self.load_checked(source, task)

    def store_brought(self, source: Path, est: Any, native: Path) -> None:
        """Put a brought model into the model folder: its own bytes, unless the family must add
        what later stages need to load it."""
        shutil.copyfile(source, native)

    def native_call(self, est: Any, meta: dict) -> Any:
        """What the benchmark times natively (onnxship.measure.calls.TimedCall): the library's own
        call (library_call) on the batch as the library takes it. Bringing the graph's feed into
        that form (the input array; a DataFrame of typed columns) is done once per batch, outside
        the clock, as ONNX Runtime's feed is built outside it; where that form codes categories
        by the model's own values (codes_categories_per_call), the coding is on the clock, as the
        graph's own coding of the strings is on ONNX Runtime's."""
        from onnxship.measure.calls import TimedCall

        library = self.library_call(est, meta["task"])
        if meta.get("layout") != "columns":
            return TimedCall(library, lambda feed: feed[INPUT])
        from onnxship.data.columns import frame_of

        columns = meta["columns"]
        if self.codes_categories_per_call:
            return TimedCall(
                lambda frame: library(self.native_frame(est, frame, columns)),
                lambda feed: frame_of(feed, columns),
            )
        return TimedCall(library, lambda feed: self.native_frame(est, frame_of(feed, columns), columns))

    def library_call(self, est: Any, task: str) -> Any:
        """The library's own prediction on a batch, as its users call it, the answer left as the
        library gives it: the benchmark times this, so no conversion of ours is on native's clock
        (predict converts answers for validate's comparison). scikit-learn's API by default."""
        return est.predict if task == Task.REGRESSION else est.predict_proba

    threads: int = 0  # set_threads' count (0: the library's default)

    def set_threads(self, threads: int) -> None:
        """Make native prediction use this many threads (the benchmark gives native the threads
        ONNX Runtime gets). By default: every OpenMP and BLAS pool loaded in this process, through
        threadpoolctl - scikit-learn's HistGradientBoosting, for one, runs an OpenMP pool whose
        sleeping threads (OMP_WAIT_POLICY=PASSIVE, the benchmark's no-spinning setting) cost ~18 ms
        a call to wake at 2 threads, 4 ms at 1 (measured here, diamonds, batch 1). Families whose
        library takes a thread count per call pass `self.threads` too."""
        if threads > 0:
            from threadpoolctl import threadpool_limits

            # process-wide, like the libraries' own settings: the benchmark's worker switches the
            # count through another instance of the family than the one its call was built on
            Family.threads = threads
            threadpool_limits(limits=threads)

    def load(self, path: Path, task: str) -> Any:
        raise NotImplementedError

    def predict(self, est: Any, X: np.ndarray, task: str) -> Prediction:
        """The library's own call (library_call, what the benchmark times), its answer as validate
        compares it: float64 values, or a classifier's probabilities and label."""
        answer = np.asarray(self.library_call(est, task)(X), dtype=np.float64)
        if task == Task.REGRESSION:
            return Prediction(answer.reshape(-1))
        # a binary booster answers P(class 1) alone
        proba = answer if answer.ndim == 2 else np.column_stack([1 - answer, answer])
        # the label as the class's index (what predict() answers, whatever the classes are: a
        # brought model may have string classes)
        return Prediction(proba.argmax(axis=1).astype(np.int64), proba)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        """The ONNX graph of a fitted estimator, for the I/O contract `io` (names may still be the
        converter's: onnxship.graph.standardize renames them)."""
        raise NotImplementedError

    def load_checked(self, path: Path, task: str) -> Any:
        """load(), turning library errors on a missing or corrupt file into ModelLoadError."""
        if not path.exists():  # a file, or a folder (checkpoints saved with save_pretrained)
            raise ModelLoadError(f"{self.name}: model file not found: {path}")
        try:
            return self.load(path, task)
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(
                f"{self.name}: cannot load {path} (corrupt or not a {self.name} model): "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err


FAMILIES: Registry[Family] = Registry("model family", __name__)
register, get, names = FAMILIES.register, FAMILIES.get, FAMILIES.names


def family_of(est: Any) -> Family:
    """The registered family whose estimator types include this fitted estimator's class."""
    kind = type(est).__name__
    for cls in FAMILIES.classes().values():
        if kind in cls.estimator_types:
            return cls()
    raise UnknownEntryError(f"no registered family handles estimator type {kind}")


def float_input(n_features: int, library: str = "skl2onnx") -> list:
    """initial_types for a converter: onnxmltools checks for its own FloatTensorType class."""
    if library == "onnxmltools":
        from onnxmltools.convert.common.data_types import FloatTensorType
    else:
        from skl2onnx.common.data_types import FloatTensorType

    return [("input", FloatTensorType([None, n_features]))]


def column_input(io: ModelIO, library: str = "skl2onnx") -> list:
    """initial_types for a converter of typed columns (ModelIO.of_columns): each [batch, 1],
    float or string."""
    if library == "onnxmltools":
        from onnxmltools.convert.common.data_types import FloatTensorType, StringTensorType
    else:
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (c.name, StringTensorType([None, 1]) if c.dtype == "string" else FloatTensorType([None, 1]))
        for c in io.inputs
    ]


def load_native(native_dir: Path) -> tuple[Family, Any, dict]:
    """(family, estimator, meta) of a trained model folder written by the train stage."""
    meta_path = Path(native_dir) / NATIVE_META
    if not meta_path.is_file():
        raise ModelLoadError(f"no {NATIVE_META} in {native_dir}: run the train stage first")
    meta = json.loads(meta_path.read_text())
    family = get(meta["family"])
    return family, family.load_checked(Path(native_dir) / meta["native_file"], meta["task"]), meta
