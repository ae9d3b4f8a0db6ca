"""A float32 matrix product whose bytes do not depend on the CPU.

BLAS picks its kernels by CPU, and kernels sum in different orders: Chronos-2's folded Wv·Wo
(onnxship/chronos/group_shortcut.py) came out with other last bits on an AVX-512 host than on an
AVX2 one, so other model bytes. Here every element is the float32 rounding of the exact sum, as
any CPU finds it: each product of two float32 values is exact in float64, so BLAS's float64 sum
is within a known bound of the exact one (k·u·Σ|a·b|, any order, FMA or not). An element whose
float64 value lies farther than that from every float32 rounding midpoint rounds as the exact sum
does; the few that lie closer are summed again without error (math.fsum, rounded once to
float64, and in fractions where that lands on a midpoint) and rounded from there.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def rounded_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D float32 arrays: float32, each element the exact sum rounded to nearest (ties
    to even), whatever BLAS this CPU has."""
    a64, b64 = np.asarray(a, np.float32).astype(np.float64), np.asarray(b, np.float32).astype(np.float64)
    approx = a64 @ b64
    # twice the worst case: covers the bound's own rounding (|a|@|b| is a BLAS sum too)
    bound = (np.abs(a64) @ np.abs(b64)) * (2 * a64.shape[1] * np.finfo(np.float64).eps)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = approx.astype(np.float32)
        r64 = rounded.astype(np.float64)
        up = np.nextafter(rounded, np.float32(np.inf)).astype(np.float64)
        down = np.nextafter(rounded, np.float32(-np.inf)).astype(np.float64)
        gap = np.minimum(np.abs(approx - (r64 + up) / 2), np.abs(approx - (r64 + down) / 2))
    near = ~(gap > bound)  # NaN included: summed exactly
    for i, j in zip(*np.nonzero(near), strict=True):
        rounded[i, j] = exactly_rounded(a64[i], b64[:, j])
    return rounded


def exactly_rounded(row: np.ndarray, column: np.ndarray) -> np.float32:
    """The float32 nearest to the exact dot product of two float64 vectors (ties to even)."""
    products = (row * column).tolist()  # exact: each a product of two float32 values
    if not all(map(math.isfinite, products)):  # inf or NaN: as the float64 sum has it
        return np.float32(sum(products))
    total = math.fsum(products)  # the exact sum rounded to float64: on the same side of every
    # float32 midpoint as the exact sum, unless it is one
    guess = np.float32(total)
    if not np.isfinite(guess):  # beyond the largest float32, or its overflow midpoint
        return _overflow_rounded(products)
    if float(guess) == total:
        return guess
    neighbour = np.nextafter(guess, np.float32(np.inf if total > float(guess) else -np.inf))
    if not np.isfinite(neighbour) or (float(guess) + float(neighbour)) / 2 != total:
        return guess
    exact = sum((Fraction(p) for p in products), Fraction(0))  # on a midpoint: which side, exactly
    if exact == total:  # a true tie: to even
        return min(guess, neighbour, key=lambda c: int(c.view(np.uint32)) & 1)
    return max(guess, neighbour) if exact > total else min(guess, neighbour)


def _overflow_rounded(products: list[float]) -> np.float32:
    """A sum at or past float32's overflow midpoint (the largest float32 plus half its ulp, 2^103):
    below it, the largest float32; from it on, inf (ties go to inf, whose significand is even)."""
    largest = np.finfo(np.float32).max
    exact = sum((Fraction(p) for p in products), Fraction(0))
    below = abs(exact) < Fraction(float(largest)) + 2**103
    return np.float32(np.copysign(largest if below else np.inf, float(exact)))
