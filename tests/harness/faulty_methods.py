"""Methods that misbehave on purpose, for the harness's fault tests.

Not part of the package registry: the runner imports this module in its workers only when
asked (`compare(..., imports=["tests.harness.faulty_methods"])`), and removes the methods
from the calling process's registry after the run.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from lipopt_suite.bound import Bound
from lipopt_suite.registry import method

SLOW_SECONDS = 0.15  # per job of test-slow: long enough for a kill to land mid-batch


def _product(net: Any) -> float:
    """A deterministic value: the product of the layers' Frobenius norms."""
    value = 1.0
    for layer in net.layers:
        W = getattr(layer, "W", None)
        if W is not None:
            value *= float(np.linalg.norm(W))
    return value


@method("test-raise", kind="upper", norms=("2",), domain="never",
        summary="raises an exception (fault test)")
def raise_always(net: Any, *, norm: str = "2", domain: Any = None, **options: Any) -> Bound:
    """Fault test. Guarantee: none, it raises."""
    raise RuntimeError("deliberate failure")


@method("test-sleep", kind="upper", norms=("2",), domain="never",
        summary="sleeps far past any time limit (fault test)")
def sleep_forever(net: Any, *, norm: str = "2", domain: Any = None, **options: Any) -> Bound:
    """Fault test. Guarantee: none, it hangs."""
    time.sleep(3600)
    raise AssertionError("unreachable")


@method("test-crash", kind="upper", norms=("2",), domain="never",
        summary="kills its own process (fault test)")
def crash(net: Any, *, norm: str = "2", domain: Any = None, **options: Any) -> Bound:
    """Fault test. Guarantee: none, the process dies."""
    os._exit(3)


@method("test-slow", kind="upper", norms=("2", "inf", "1"), domain="never",
        summary="a deterministic value after a short sleep (fault test)")
def slow(net: Any, *, norm: str = "2", domain: Any = None, **options: Any) -> Bound:
    """Fault test: the Frobenius product after SLOW_SECONDS. Guarantee: upper bound for l2."""
    time.sleep(SLOW_SECONDS)
    return Bound("test-slow", "upper", _product(net), norm, certified=False)
