"""lipopt_suite: upper bounds, lower bounds and exact values of neural-network Lipschitz
constants, side by side."""

from __future__ import annotations

from ._version import __version__
from .bound import Bound, Domain, Norm
from .errors import InputError, UnsupportedError
from .io import from_torch, load, load_problem, save
from .network import Network
from .registry import estimate, method, methods

__all__ = [
    "Bound", "Domain", "Norm", "InputError", "UnsupportedError", "Network", "load",
    "load_problem", "save", "from_torch", "estimate", "method", "methods", "compare",
    "sandwich", "GroupSortModule", "train", "__version__",
]


def __getattr__(name: str):
    """`GroupSortModule` (network.py), the torch module of the GroupSort layer, imported
    with torch on first use."""
    if name == "GroupSortModule":
        from . import network

        return network.GroupSortModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compare(*args, **kwargs):
    """Run methods x problems and write a report (see lipopt_suite.harness.runner.compare)."""
    from .harness.runner import compare as _compare

    return _compare(*args, **kwargs)


def train(*args, **kwargs):
    """Train a classifier under a Lipschitz regulariser (see
    lipopt_suite.harness.trainer.train)."""
    from .harness.trainer import train as _train

    return _train(*args, **kwargs)


def sandwich(*args, **kwargs):
    """The tightest certified interval on a network's Lipschitz constant within a time
    budget (see lipopt_suite.harness.sandwich.sandwich)."""
    from .harness.sandwich import sandwich as _sandwich

    return _sandwich(*args, **kwargs)
