"""One JSON number -> float32, with the field named when it does not fit (shared by every route)."""

from __future__ import annotations

import math

from onnxship.runtime import FLOAT32_MAX


class InvalidInput(ValueError):
    """422: the message names the field."""


def null_policy(allow_nan: bool) -> str | None:
    """The `null` argument of float32_value for a model: why null is refused, or None."""
    return None if allow_nan else "and this model does not accept missing values"


def float32_value(value: object, field: str, null: str | None = None) -> float:
    """`value` as a float; null -> NaN unless `null` says why it is refused here."""
    if value is None:
        if null is not None:
            raise InvalidInput(f"{field}: null, {null}")
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{field}: Input should be a number or null")
    # abs() before isfinite(): JSON integers are unbounded, and math.isfinite(10**400) overflows
    if abs(value) > FLOAT32_MAX or not math.isfinite(value):
        raise InvalidInput(f"{field}: not a finite float32 number (|x| <= {FLOAT32_MAX:.4g})")
    return value
