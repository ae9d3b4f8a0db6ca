"""Any dataset of conf/data or conf/datasets, prepared by its kind: typed columns (`layout:
columns`, onnxship.data.columns), or feature rows and series (onnxship.data.tables)."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from onnxship.data.columns import prepare_columns
from onnxship.data.tables import load_raw
from onnxship.data.tables import prepare as prepare_rows


def prepare(data: DictConfig) -> tuple[dict[str, pd.DataFrame], dict]:
    """The dataset's splits (or series) and its schema."""
    if data.get("layout") == "columns":
        raw, origin = load_raw(data)
        return prepare_columns(raw, data, origin)
    return prepare_rows(data)
