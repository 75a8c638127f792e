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


def test_mlp_only_method_takes_a_cnn_through_its_unrolling():
    net = random_cnn((1, 4, 4), (2,), seed=3, pool=False)
    b = estimate(net, "lipsdp-neuron")
    info = b.details["unrolled"]
    assert info["input_dim"] == 16 and info["hidden_units"] == sum(info["sizes"][1:-1]) == 32
    # the same bound as the method on the unrolled MLP itself, never below a certified lower
    from lipopt_suite.unroll import unroll

    assert b.value == pytest.approx(estimate(unroll(net).net, "lipsdp-neuron").value,
                                    rel=1e-9)
    assert b.value >= estimate(net, "gradient-ascent").value * (1 - 1e-9)


def test_unrolled_methods_take_domains_and_points_of_the_input_shape():
    net = random_cnn((1, 4, 4), (2,), seed=3, pool=False)
    rng = np.random.default_rng(0)
    centre = rng.standard_normal((1, 4, 4))
    box = Domain.box(centre, 0.5)
    b = estimate(net, "region-walk", domain=box, samples=200, restarts=2,
                 X=rng.standard_normal((5, 1, 4, 4)))
    assert b.domain is box and b.certified and "unrolled" in b.details
    a, c = b.details["witness"]["x"], b.details["witness"]["y"]
    assert bool(box.contains(np.stack([a, c])).all())
    secant = np.linalg.norm(net(a.reshape(1, 4, 4)) - net(c.reshape(1, 4, 4)))
    assert b.value <= secant / np.linalg.norm(a - c) * (1 + 1e-9)


def test_mlp_only_method_refuses_cnn_above_the_unroll_limit():
    net = random_cnn((1, 4, 4), (2,), seed=3, pool=False)
    with pytest.raises(UnsupportedError, match="needs an MLP: .*limit 10: option unroll_units"):
        estimate(net, "lipsdp-neuron", unroll_units=10)
    with pytest.raises(InputError, match="unroll_entries must be a positive integer"):
        estimate(net, "lipsdp-neuron", unroll_entries=0)
    with pytest.raises(InputError, match="no option 'unroll_units'"):
        estimate(net, "autolip", unroll_units=10)
    assert estimate(net, "lipsdp-layer", unroll_units=32).certified


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
