"""The registry: lookup, applicability checks, timing."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Domain, InputError, UnsupportedError, estimate
from lipopt_suite.harness.nets import random_cnn, random_mlp
from lipopt_suite.registry import get, methods

# Names agreed in DESIGN.md section 5 that the foundation registers.
FOUNDATION = {"frobenius", "autolip", "seqlip", "seqlip-greedy", "data", "random",
              "gradient-ascent", "annealing", "grid", "clever", "regions"}


def test_foundation_methods_are_registered_with_docstrings():
    names = {m.name for m in methods()}
    assert FOUNDATION <= names
    for m in methods():
        doc = m.fn.__doc__ or ""
        assert "Guarantee:" in doc, m.name
        assert m.kind in ("upper", "lower", "exact", "estimate")


def test_unknown_method_lists_valid_ones():
    with pytest.raises(InputError, match="valid methods: .*autolip"):
        get("nope")


def test_unsupported_norm():
    with pytest.raises(UnsupportedError, match="norm inf"):
        estimate(random_mlp([2, 3, 1]), "frobenius", norm="inf")


def test_relu_only_method_refuses_tanh():
    with pytest.raises(UnsupportedError, match="tanh"):
        estimate(random_mlp([2, 3, 1], activation="tanh"), "regions")


def test_mlp_only_method_refuses_cnn():
    with pytest.raises(UnsupportedError, match="MLP"):
        estimate(random_cnn(), "seqlip")


def test_domain_rules():
    net = random_mlp([2, 3, 1])
    with pytest.raises(InputError, match="needs a domain"):
        estimate(net, "clever")
    with pytest.raises(InputError, match="global bounds only"):
        estimate(net, "autolip", domain=Domain.ball([0.0, 0.0], 1.0))
    with pytest.raises(InputError, match="centre has 3 entries"):
        estimate(net, "random", domain=Domain.ball([0.0, 0.0, 0.0], 1.0))
    with pytest.raises(UnsupportedError, match="ball domain"):
        estimate(net, "regions", domain=Domain.ball([0.0, 0.0], 1.0))


def test_data_needs_points():
    with pytest.raises(InputError, match="needs X"):
        estimate(random_mlp([2, 3, 1]), "data")


def test_estimate_stamps_time():
    b = estimate(random_mlp([2, 3, 1]), "autolip", norm=np.inf)
    assert b.norm == "inf" and b.seconds > 0


def test_a_nan_value_is_never_passed_on_as_certified(monkeypatch):
    import dataclasses

    from lipopt_suite.bound import Bound
    from lipopt_suite.registry import METHODS

    info = get("autolip")

    def overflowing(net, *, norm="2", domain=None, **options):
        return Bound("autolip", "upper", float("nan"), norm, certified=True)

    monkeypatch.setitem(METHODS, "autolip", dataclasses.replace(info, fn=overflowing))
    b = estimate(random_mlp([2, 3, 1]), "autolip")
    assert not b.certified and b.status == "inaccurate" and "NaN" in b.details["message"]


@pytest.mark.parametrize("options, match", [
    ({"samples": 0}, "> 0"), ({"samples": 2.5}, "integer"), ({"radius": float("inf")}, "> 0"),
    ({"seed": -3}, ">= 0"), ({"X": np.zeros((3, 4))}, "3 columns")])
def test_option_values_are_checked_before_running(options, match):
    with pytest.raises(InputError, match=match):
        estimate(random_mlp([3, 4, 1]), "random", **options)


@pytest.mark.parametrize("method, options, valid", [
    ("regions", {"max_regoins": 1}, "max_regions"),
    ("autolip", {"time_limt": 5}, "device"),
    ("gradient-ascent", {"restartz": 3}, "restarts"),
])
def test_a_misspelled_option_is_refused_naming_the_valid_ones(method, options, valid):
    net = random_mlp([2, 3, 1])
    with pytest.raises(InputError, match=f"has no option '{next(iter(options))}'") as info:
        estimate(net, method, **options)
    assert valid in str(info.value) and "\n" not in str(info.value)


def test_norm_and_domain_are_not_options():
    from lipopt_suite.registry import option_names

    for m in methods():
        names = option_names(m)
        assert "norm" not in names and "domain" not in names and "net" not in names, m.name
