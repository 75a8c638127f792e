"""Branch-and-bound exact values: against region enumeration and the MIP (never against
bab itself), anytime intervals that contain the exact value, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Domain, InputError, Network, UnsupportedError, estimate
from lipopt_suite.harness.nets import lipmip_width, random_mlp, residual_mlp
from lipopt_suite.unroll import unroll

from ..test_sandwich import REGIONS_UNROLLED, tiny_net, tiny_pool_net, tiny_sort_net

# Both sides are float64 Jacobian norms of the same regions; bab closes its gap to 1e-9
# relative and reports a certified secant, so the two agree within a few times that.
EXACT_RTOL = 1e-8
SEEDS = range(0, 32, 3)
# the sandwich nets are tiny: bab finishes them in well under a second each
LIMIT = 60.0


def box_of(net: Network, seed: int) -> Domain:
    rng = np.random.default_rng(seed)
    return Domain.box(rng.uniform(-1, 1, net.input_dim), rng.uniform(0.3, 1.5))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_equals_region_enumeration_global_and_on_a_box(seed: int, norm: str) -> None:
    net = tiny_net(seed)
    for domain in (None, box_of(net, seed)):
        exact = estimate(net, "regions", norm=norm, domain=domain)
        b = estimate(net, "bab", norm=norm, domain=domain, time_limit=LIMIT)
        assert exact.kind == "exact" and b.kind == "exact" and b.certified
        assert b.value == pytest.approx(exact.value, rel=EXACT_RTOL, abs=1e-12)
        assert b.details["lower"] <= exact.value * (1 + EXACT_RTOL)
        assert b.details["upper"] >= exact.value * (1 - EXACT_RTOL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_dead_first_layer_unit_does_not_hide_the_regions_near_the_origin(seed: int) -> None:
    # weight decay leaves rows of norm 1e-17 whose kink lies 1e16 away; a global chart that
    # wide returned 0.70 for a constant of 1.05 here
    (W0, *Ws), bs, _ = random_mlp([4, 8, 8, 2], seed=seed).mlp()
    W0, b0 = W0.copy(), bs[0].copy()
    W0[0], b0[0] = 1e-17, 0.1
    net = Network.from_mlp([W0, *Ws], [b0, *bs[1:]], "relu")
    exact = estimate(net, "regions")
    b = estimate(net, "bab", time_limit=LIMIT)
    assert exact.kind == "exact" and b.kind == "exact"
    assert b.value == pytest.approx(exact.value, rel=EXACT_RTOL)


@pytest.mark.parametrize("norm", ["inf", "1"])
def test_equals_the_mip_on_the_lipmip_box(norm: str) -> None:
    net = lipmip_width(1)
    box = Domain.box(np.full(2, 0.5), 0.5)
    m = estimate(net, "mip", norm=norm, domain=box)
    b = estimate(net, "bab", norm=norm, domain=box, time_limit=LIMIT)
    assert m.kind == "exact" and b.kind == "exact"
    assert b.value == pytest.approx(m.value, rel=1e-6)  # the MIP's own exactness criterion


def test_a_ball_domain_lies_between_the_box_inside_and_the_box_outside() -> None:
    net = tiny_net(5)
    c = np.zeros(net.input_dim)
    r = 0.8
    ball = estimate(net, "bab", domain=Domain.ball(c, r), time_limit=LIMIT)
    inner = estimate(net, "regions", domain=Domain.box(c, r / np.sqrt(net.input_dim)))
    outer = estimate(net, "regions", domain=Domain.box(c, r))
    assert ball.kind == "exact"
    assert inner.value * (1 - EXACT_RTOL) <= ball.value <= outer.value * (1 + EXACT_RTOL)


@pytest.mark.parametrize("limits", [{"node_limit": 2}, {"time_limit": 1e-3}])
def test_a_stopped_run_returns_a_certified_interval_holding_the_exact_value(limits) -> None:
    net = random_mlp([3, 10, 10, 1], seed=7)
    exact = estimate(net, "regions").value
    b = estimate(net, "bab", **limits)
    assert b.kind == "upper" and b.certified and b.status == "timeout"
    low = b.details["lower"]
    assert low <= exact * (1 + EXACT_RTOL) and exact <= b.value * (1 + EXACT_RTOL)
    assert b.details["gap"] >= 0
    w = b.details["witness"]
    if low > 0:  # the lower end is a secant of its witness pair
        y = net(np.stack([w["x"], w["y"]]))
        ratio = np.linalg.norm(y[0] - y[1]) / np.linalg.norm(np.asarray(w["x"]) - w["y"])
        assert low <= ratio * (1 + 1e-9)


def test_leaky_relu_and_one_hidden_layer_and_a_linear_map() -> None:
    leaky = random_mlp([2, 6, 6, 1], seed=3, activation="leaky_relu")
    assert estimate(leaky, "bab").value == pytest.approx(
        estimate(leaky, "regions").value, rel=EXACT_RTOL)
    one = random_mlp([3, 9, 2], seed=1)
    assert estimate(one, "bab").value == pytest.approx(
        estimate(one, "hypercube").value, rel=EXACT_RTOL)
    W = np.random.default_rng(0).standard_normal((3, 4))
    lin = estimate(Network.from_mlp([W], [np.zeros(3)]), "bab")
    assert lin.kind == "exact" and lin.value == pytest.approx(np.linalg.norm(W, 2))


@pytest.mark.parametrize("left, width", [(0.0, 1e-9), (1000.0, 1e-6)])
def test_a_region_too_thin_to_resolve_is_never_called_exact_zero(left, width) -> None:
    net = Network.from_mlp([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
                           [np.array([-left, -left - width]), np.zeros(1)])
    b = estimate(net, "bab", time_limit=LIMIT)
    # the true constant is 1 (slope 1 on the thin region)
    assert b.value >= 1.0 * (1 - EXACT_RTOL) or b.kind == "upper" and b.value >= 1.0


def test_bad_options_and_inputs_are_refused_in_one_line() -> None:
    net = tiny_net(0)
    for options, match in (({"node_limit": 0}, "node_limit"), ({"rtol": 2.0}, "rtol"),
                           ({"time_limt": 1}, "has no option")):
        with pytest.raises(InputError, match=match):
            estimate(net, "bab", **options)
    with pytest.raises(UnsupportedError):
        estimate(random_mlp([2, 4, 1], activation="tanh"), "bab")
    with pytest.raises(UnsupportedError):
        estimate(net, "bab", domain=Domain.ball(np.zeros(net.input_dim), 1.0, anchored=True))


def test_the_progress_bar_goes_to_stderr_only_when_asked(capfd) -> None:
    net = tiny_net(2)
    estimate(net, "bab")
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    estimate(net, "bab", progress=True)
    loud = capfd.readouterr()
    assert loud.out == "" and "gap" in loud.err


def _contains(b, exact: float) -> bool:
    return (b.details["lower"] <= exact * (1 + EXACT_RTOL) + 1e-12
            and exact <= b.details["upper"] * (1 + EXACT_RTOL) + 1e-12)


def _fail(*args, **kwargs):
    raise RuntimeError("forced failure")


@pytest.mark.parametrize("target", ["lp", "bounds", "nnls"])
def test_a_failing_subsolve_leaves_a_valid_interval_never_called_exact(monkeypatch, target):
    from lipopt_suite.solvers import bab as bab_module
    from lipopt_suite.solvers import bab_geometry

    if target == "lp":
        monkeypatch.setattr(bab_geometry.Chebyshev, "ball_in", _fail)
    elif target == "bounds":
        monkeypatch.setattr(bab_module, "exact_completions", _fail)
        monkeypatch.setattr(bab_module, "completion_bounds", _fail)
    else:
        import scipy.optimize

        monkeypatch.setattr(scipy.optimize, "nnls", _fail)
    unresolved = 0
    for net in (tiny_net(4), tiny_net(9), tiny_net(20), tiny_net(25)):
        exact = estimate(net, "regions").value
        b = estimate(net, "bab", time_limit=LIMIT, lipsdp=False, walk=False)
        assert b.certified and _contains(b, exact)
        if b.details.get("unresolved"):
            unresolved += 1
            assert b.kind == "upper" and b.status != "ok"
        elif target == "nnls":  # a refit lost is only a looser certificate of emptiness
            assert b.kind == "exact"
    # the failure was met (the test would otherwise prove nothing)
    assert unresolved > 0 or target == "nnls"


# Nets of fuzz_mlp: shapes, depths, bias scales, degenerate rows and activations vary.
FUZZ_SEEDS = range(40)


def test_fuzzed_nets_raise_nothing_and_their_intervals_hold_the_exact_value() -> None:
    from lipopt_suite.harness.nets import fuzz_mlp

    for seed in FUZZ_SEEDS:
        net = fuzz_mlp(seed)
        norm = ("2", "inf", "1")[seed % 3]
        domain = None if seed % 2 == 0 else box_of(net, seed)
        b = estimate(net, "bab", norm=norm, domain=domain, time_limit=0.2)
        exact = estimate(net, "regions", norm=norm, domain=domain).value
        assert b.certified and _contains(b, exact), (seed, b.details, exact)
        assert not b.details.get("failed_subsolves"), (seed, b.details["failures"])
        if b.kind == "exact":
            assert b.value == pytest.approx(exact, rel=EXACT_RTOL, abs=1e-12), seed


def test_a_neuron_constant_on_the_whole_input_space_is_not_lost() -> None:
    # a zero row (pre-activation 0 everywhere) beside live neurons: no ball clears it, yet
    # the node is not empty
    rng = np.random.default_rng(3)
    W0 = rng.standard_normal((5, 3))
    W0[2] = 0.0
    b0 = np.zeros(5)
    net = Network.from_mlp([W0, rng.standard_normal((4, 5)), rng.standard_normal((1, 4))],
                           [b0, 0.1 * rng.standard_normal(4), np.zeros(1)])
    exact = estimate(net, "regions").value
    b = estimate(net, "bab", time_limit=LIMIT)
    assert b.kind == "exact" and b.value == pytest.approx(exact, rel=EXACT_RTOL)


def test_a_stopped_run_is_never_wider_than_lipsdp_and_region_walk() -> None:
    net = random_mlp([3, 10, 10, 1], seed=7)
    b = estimate(net, "bab", node_limit=2)
    up = estimate(net, "lipsdp-neuron")
    low = estimate(net, "region-walk")
    assert up.certified and low.certified
    assert b.details["upper"] <= up.value and b.details["lower"] >= low.value
    assert set(b.details["root_bounds"]) == {"lipsdp-neuron", "region-walk"}
    assert b.details["lower_from"] in ("bab", "region-walk")
    assert b.details["upper_from"] in ("bab", "lipsdp-neuron")
    alone = estimate(net, "bab", node_limit=2, lipsdp=False, walk=False)
    assert "root_bounds" not in alone.details and alone.details["upper_from"] == "bab"
    with pytest.raises(InputError, match="lipsdp"):
        estimate(net, "bab", lipsdp="yes")


def test_node_lipsdp_and_root_bounds_from_the_start_keep_the_exact_values(monkeypatch):
    from lipopt_suite.solvers import bab as bab_module

    # the toolkit's bounds join at once and every node on top gets its LipSDP bound
    monkeypatch.setattr(bab_module, "ROOT_BOUNDS_AFTER", 0.0)
    monkeypatch.setattr(bab_module, "NODE_SDP_SHARE", 1e9)
    used = 0
    nets = [tiny_net(20), tiny_net(25), random_mlp([2, 8, 8, 2], seed=2)]
    for net in nets:
        exact = estimate(net, "regions").value
        b = estimate(net, "bab", time_limit=LIMIT)
        assert b.kind == "exact" and b.value == pytest.approx(exact, rel=EXACT_RTOL)
        used += b.details.get("node_lipsdp", {}).get("nodes", 0)
    assert used > 0


def test_a_run_left_with_unresolved_nodes_still_takes_the_toolkits_bounds(monkeypatch):
    from lipopt_suite.solvers import bab_geometry

    monkeypatch.setattr(bab_geometry.Chebyshev, "ball_in", _fail)
    net = random_mlp([3, 10, 10, 1], seed=7)
    b = estimate(net, "bab", time_limit=LIMIT)
    assert b.details["unresolved"] > 0 and b.kind == "upper"
    assert b.details["upper"] <= estimate(net, "lipsdp-neuron").value
    assert b.details["lower"] >= estimate(net, "region-walk").value
    assert _contains(b, estimate(net, "regions").value)


# GroupSort nets enter as their sorting networks of ReLU comparators (unroll, sorts="relu");
# the values passed through a ReLU layer become identity units inside bab
# (`merge_identity_pairs`), so each of these tiny nets finishes in well under a second


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_groupsort_nets_equal_region_enumeration(seed: int, norm: str) -> None:
    net = tiny_sort_net(seed)
    truth = estimate(net, "regions", norm=norm).value
    b = estimate(net, "bab", norm=norm, time_limit=LIMIT)
    assert b.kind == "exact" and b.status == "ok"
    assert b.value == pytest.approx(truth, rel=EXACT_RTOL)
    assert b.details["unrolled"]["comparator_units"] > 0
    assert b.details["identity_units"] > 0


@pytest.mark.parametrize("seed", [0, 10, 11])
def test_a_stopped_run_on_a_groupsort_net_holds_the_exact_value(seed: int) -> None:
    net = tiny_sort_net(seed)
    truth = estimate(net, "regions", norm="2").value
    b = estimate(net, "bab", norm="2", node_limit=1, lipsdp=False, walk=False)
    low, high = b.details["lower"], b.details["upper"]
    assert low <= truth * (1 + EXACT_RTOL) and truth <= high * (1 + EXACT_RTOL)


@pytest.mark.parametrize("seed", range(6))
def test_identity_pairs_merge_into_the_same_function(seed: int) -> None:
    from lipopt_suite.solvers.bab_bounds import merge_identity_pairs

    net = residual_mlp(seed=seed) if seed % 2 else tiny_sort_net(seed)
    mlp = unroll(net, sorts="relu").net
    ws, bs, _ = mlp.mlp()
    mw, mb, ident = merge_identity_pairs(ws, bs, [0.0] * (len(ws) - 1))
    assert sum(int(m.sum()) for m in ident) > 0
    assert sum(W.shape[0] for W in mw) < sum(W.shape[0] for W in ws)
    X = np.random.default_rng(seed).standard_normal((200, net.input_dim)) * 3
    v = X.T
    for k, (W, b) in enumerate(zip(mw, mb)):
        v = W @ v + b[:, None]
        if k < len(ident):
            v = np.where(ident[k][:, None], v, np.maximum(v, 0.0))
    ref = net(X)
    assert np.abs(v.T - ref).max() <= 1e-12 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("seed", [1, 2])
def test_max_pool_nets_equal_region_enumeration(seed: int) -> None:
    # a ReLU output carried past a max-pool gadget is >= 0: an identity unit inside bab
    net = tiny_pool_net(seed)
    truth = estimate(net, "regions", norm="2", **REGIONS_UNROLLED).value
    b = estimate(net, "bab", norm="2", time_limit=LIMIT)
    assert b.kind == "exact" and b.value == pytest.approx(truth, rel=EXACT_RTOL)
    assert b.details["identity_units"] > 0
