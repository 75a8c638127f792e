"""Floating-point rounding: the unit roundoff, Higham's gamma_n and directed steps.

Every certified value in the project is a float64 computation followed by a margin that
covers its rounding; these are the shared pieces of those margins.
"""

from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
SQRT2_UP = math.nextafter(math.sqrt(2.0), math.inf)


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term sum or dot
    product in floating point."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def up(x: float) -> float:
    """The next float above x: an upper bound on the exact result of one rounded operation."""
    return math.nextafter(float(x), math.inf)


def down(x: float) -> float:
    """The next float below x."""
    return math.nextafter(float(x), -math.inf)


def abs_sum_upper(total: float, terms: int) -> float:
    """A computed sum of `terms` non-negative float64 numbers is at most (1 + terms u) too
    small: this inflates it past the exact sum."""
    return total * (1 + 2 * (terms + 1) * UNIT_ROUNDOFF)


def rounded_up_product(factors: list[float]) -> float:
    """A float >= the exact product of non-negative factors: each multiplication rounds by
    at most half an ulp, and a product that underflows to 0 becomes the least positive
    float."""
    value = math.prod(factors)
    if value == 0.0 and factors and all(f > 0 for f in factors):
        return math.ulp(0.0)
    return value * (1 + 2 * len(factors) * UNIT_ROUNDOFF) if math.isfinite(value) else value
