"""onnxship.rounded_matmul: a float32 product whose every element is the exact sum rounded to
nearest, so folded weights (Chronos-2's Wv·Wo) are the same bytes whatever BLAS kernel a CPU
picks. Checked against exact rational arithmetic, on sums where rounding through float64 would
land on a float32 midpoint and round the wrong way."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from onnxship.rounded_matmul import rounded_matmul


def exact_float32(row: np.ndarray, column: np.ndarray) -> np.float32:
    """The float32 nearest to the exact dot product, ties to even: in fractions throughout."""
    exact = sum(
        (Fraction(float(x)) * Fraction(float(y)) for x, y in zip(row, column, strict=True)), Fraction(0)
    )
    guess = np.float32(float(exact))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.uint32)) & 1))


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[exact_float32(a[i], b[:, j]) for j in range(b.shape[1])] for i in range(a.shape[0])])


def test_each_element_is_the_exact_sum_rounded_to_float32():
    rng = np.random.default_rng(7)
    # magnitudes over many orders: sums that cancel, where summation order changes the last bits
    a = (rng.normal(size=(12, 96)) * np.exp(3 * rng.normal(size=(12, 96)))).astype(np.float32)
    b = (rng.normal(size=(96, 10)) * np.exp(3 * rng.normal(size=(96, 10)))).astype(np.float32)
    got = rounded_matmul(a, b)
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), reference(a, b).view(np.uint32))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_sum_just_past_a_midpoint_rounds_as_the_exact_sum_not_as_float64_would(sign):
    # 1 + 2^-24 + 2^-60: float64 drops 2^-60 and lands on the midpoint between 1 and 1 + 2^-23,
    # which ties to even (1); the exact sum is past it (1 + 2^-23). A true tie goes to even.
    a = sign * np.array([[1.0, 2.0**-24, 2.0**-60], [1.0, 2.0**-24, 0.0], [1.0 + 2.0**-23, 2.0**-24, 0.0]])
    b = np.ones((3, 1))
    got = rounded_matmul(a.astype(np.float32), b.astype(np.float32)).ravel()
    naive = (a @ b).astype(np.float32).ravel()
    expected = sign * np.array([1 + 2.0**-23, 1.0, 1 + 2.0**-22], dtype=np.float32)
    assert got.tolist() == expected.tolist()
    assert naive[0] != expected[0]  # what the float64 route gives


def test_overflow_and_infinities_round_as_ieee_says():
    from onnxship.rounded_matmul import exactly_rounded

    largest = float(np.finfo(np.float32).max)
    # just below float32's overflow midpoint (largest + 2^103): the largest float32; at it: inf
    assert exactly_rounded(np.array([largest, 2.0**103, -(2.0**60)]), np.ones(3)) == np.float32(largest)
    assert np.isinf(exactly_rounded(np.array([largest, 2.0**103]), np.ones(2)))
    assert exactly_rounded(np.array([-largest, -(2.0**103), 2.0**60]), np.ones(3)) == -np.float32(largest)
    with np.errstate(invalid="ignore"):
        both = rounded_matmul(np.array([[np.inf, -np.inf]], np.float32), np.ones((2, 1), np.float32))
    assert np.isnan(both[0, 0])  # as numpy's own product has it, not an error
