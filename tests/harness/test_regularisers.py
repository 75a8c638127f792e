"""Training under a Lipschitz budget: each penalty's value by hand on tiny nets, ALP's
direction search against finite differences, and one short training run per regulariser
(designs certified below their budget)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lipopt_suite import estimate, load_problem
from lipopt_suite.errors import InputError, UnsupportedError
from lipopt_suite.harness import regularisers as regs
from lipopt_suite.harness.trainer import train

# float64 autograd on nets of a few units: round-off only
ROUNDING = 1e-12
# central differences with step 1e-5 on a tanh net: O(h^2) truncation, ~1e-10 round-off
FD_STEP = 1e-5
FD_TOL = 1e-6
# the power method after 40 iterations on a 4x4 J^T J with a clear eigengap
ALIGNMENT = 1 - 1e-6
# the certified upper bound of a designed net may meet its budget to a few ulps
CERT_RTOL = 1e-9


def _linear(n_in: int, n_out: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out).double()


def _points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).standard_normal((n, d)))


def test_gradient_penalty_of_a_linear_model_is_norm_minus_one_squared() -> None:
    lin = _linear(5, 1, 0)
    w = lin.weight.detach().numpy().ravel()
    pen, norms = regs.gradient_penalty(lin, _points(7, 5, 1))
    assert float(pen.detach()) == pytest.approx((np.linalg.norm(w) - 1) ** 2, rel=ROUNDING)
    np.testing.assert_allclose(norms.numpy(), np.linalg.norm(w), rtol=ROUNDING)
    # several outputs: the Frobenius norm of the Jacobian, against target 2
    lin3 = _linear(4, 3, 2)
    pen3, _ = regs.gradient_penalty(lin3, _points(6, 4, 3), target=2.0)
    fro = np.linalg.norm(lin3.weight.detach().numpy())
    assert float(pen3.detach()) == pytest.approx((fro - 2.0) ** 2, rel=ROUNDING)
    pen3.backward()  # differentiable in the weights (double backward)
    assert lin3.weight.grad is not None and torch.all(torch.isfinite(lin3.weight.grad))


def test_lipschitz_penalty_on_pairs_of_a_linear_model_by_hand() -> None:
    lin = _linear(3, 2, 4)
    W = lin.weight.detach().numpy()
    x, y = _points(8, 3, 5), _points(8, 3, 6)
    pen, ratios = regs.lipschitz_penalty(lin, x, y, target=0.5)
    d = (x - y).numpy()
    hand = np.linalg.norm(d @ W.T, axis=1) / np.linalg.norm(d, axis=1)
    np.testing.assert_allclose(ratios.numpy(), hand, rtol=ROUNDING)
    by_hand = np.mean(np.maximum(hand - 0.5, 0) ** 2)
    assert float(pen.detach()) == pytest.approx(by_hand, rel=ROUNDING)
    # one-sided: a target above every ratio costs nothing
    assert float(regs.lipschitz_penalty(lin, x, y, target=hand.max() + 1)[0].detach()) == 0.0


def test_pairs_are_pairs_of_the_batch_and_near_points() -> None:
    x = _points(10, 4, 7)
    a, b = regs.pairs(x, torch.Generator().manual_seed(0), radius=0.3)
    far = len(a) - 10  # rows paired with themselves by the permutation are left out
    assert a.shape == b.shape and 0 < far <= 10
    near = (a[far:] - b[far:]).norm(dim=1)
    assert torch.all(near > 0) and torch.all(near <= 0.3 + ROUNDING)
    assert torch.equal(a[far:], x)
    rows = {tuple(r) for r in x.numpy()}
    assert all(tuple(r) in rows for r in b[:far].numpy())
    assert torch.all((a[:far] - b[:far]).norm(dim=1) > 0)


def _fd_jacobian(f: nn.Module, x: np.ndarray) -> np.ndarray:
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = FD_STEP
        with torch.no_grad():
            hi = f(torch.as_tensor(x + e)[None]).numpy()[0]
            lo = f(torch.as_tensor(x - e)[None]).numpy()[0]
        cols.append((hi - lo) / (2 * FD_STEP))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("hvp", ["difference", "autograd"])
def test_alp_direction_is_the_top_eigenvector_of_the_fd_jacobian_gram(hvp: str) -> None:
    torch.manual_seed(3)
    f = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Tanh()).double()
    X = np.random.default_rng(8).standard_normal((5, 4))
    d = regs.alp_direction(f, torch.as_tensor(X), iterations=40, xi=1e-6, hvp=hvp,
                           generator=torch.Generator().manual_seed(1)).numpy()
    for x, r in zip(X, d):
        J = _fd_jacobian(f, x)
        vals, vecs = np.linalg.eigh(J.T @ J)
        assert vals[-1] - vals[-2] > 1e-3 * vals[-1]  # the top direction is well defined
        assert np.linalg.norm(r) == pytest.approx(1.0, rel=ROUNDING)
        assert abs(r @ vecs[:, -1]) >= ALIGNMENT
        # the secant along it approaches the top singular value of J
        eps = 1e-4
        with torch.no_grad():
            ratio = regs.secant_ratios(f, torch.as_tensor(x + eps * r)[None],
                                       torch.as_tensor(x)[None])
        assert float(ratio) == pytest.approx(np.sqrt(vals[-1]), rel=FD_TOL * 1e2)


def test_alp_direction_one_step_is_one_power_iteration() -> None:
    lin = _linear(4, 3, 9)
    W = lin.weight.detach().numpy()
    x = _points(2, 4, 10)
    g = torch.Generator().manual_seed(5)
    start = regs._unit_rows(torch.randn(x.shape, generator=torch.Generator().manual_seed(5),
                                        dtype=x.dtype)).numpy()
    d = regs.alp_direction(lin, x, iterations=1, generator=g).numpy()
    hand = start @ (W.T @ W)  # H v = 2 W^T W v, normalised
    hand /= np.linalg.norm(hand, axis=1, keepdims=True)
    np.testing.assert_allclose(d, hand, atol=1e-8)


def test_adversarial_penalty_of_a_linear_model_by_hand() -> None:
    lin = _linear(3, 2, 11)
    W = lin.weight.detach().numpy()
    x = _points(4, 3, 12)
    u = regs._unit_rows(_points(4, 3, 13))
    lengths = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=torch.float64)
    pen, ratios = regs.adversarial_lipschitz_penalty(lin, x, u, lengths, target=0.2)
    hand = np.linalg.norm(u.numpy() @ W.T, axis=1)  # the ratio of a linear map: ||W u||
    np.testing.assert_allclose(ratios.numpy(), hand, rtol=1e-10)
    assert float(pen.detach()) == pytest.approx(np.mean(np.maximum(hand - 0.2, 0) ** 2), rel=1e-10)


def test_weight_decay_and_clipping_touch_weights_only() -> None:
    lin = _linear(3, 2, 14)
    W, b = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
    assert float(regs.weight_decay(lin).detach()) == pytest.approx(np.sum(W ** 2), rel=ROUNDING)
    with torch.no_grad():
        regs.clip_weights(lin, 0.1)
    np.testing.assert_array_equal(lin.weight.detach().numpy(), np.clip(W, -0.1, 0.1))
    np.testing.assert_array_equal(lin.bias.detach().numpy(), b)


def test_strengths_are_checked() -> None:
    with pytest.raises(InputError, match="unknown regulariser"):
        regs.get_regulariser("dropout")
    assert regs.REGULARISERS["none"].check(0) == 0.0
    for name, bad in (("none", 1.0), ("clipping", 0.0), ("clipping", 11.0),
                      ("gradient-penalty", -1.0), ("bjorck", float("nan")),
                      ("spectral", True)):
        with pytest.raises(InputError):
            regs.REGULARISERS[name].check(bad)


# ------------------------------------------------------------------ short training runs
def _toy_data(path, n: int = 60, d: int = 5, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    means = 2 * rng.standard_normal((classes, d))
    X = means[y] + 0.5 * rng.standard_normal((n, d))
    np.savez(path, X=X, y=y)
    return path


FAST = dict(hidden=(6, 6), epochs=3, batch_size=16, progress=False)


@pytest.mark.parametrize("name", list(regs.REGULARISERS))
def test_one_short_run_per_regulariser(name: str, tmp_path) -> None:
    data = _toy_data(tmp_path / "toy.npz")
    strength = {"none": 0.0, "clipping": 0.2, "weight-decay": 0.01}.get(name, 1.5)
    # a target below the nets' ratios keeps the one-sided penalties active
    run = train(name, strength, data=data, out=tmp_path / "net.npz", target=0.1, **FAST)
    again = train(name, strength, data=data, target=0.1, **FAST)
    for a, b in zip(run.net.layers, again.net.layers):  # seeded: the same weights
        if hasattr(a, "W"):
            assert np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
    info = run.info
    assert info["regulariser"] == name and info["sizes"] == [5, 6, 6, 3]
    assert info["n_train"] == 48 and info["n_test"] == 12 and len(info["losses"]) == 3
    assert 0 <= info["test_accuracy"] <= 1 and np.isfinite(info["estimate"]["value"])
    net, extras = load_problem(tmp_path / "net.npz")
    assert extras["X"].shape == (12, 5)
    with np.load(tmp_path / "net.npz", allow_pickle=False) as z:
        assert z["y"].shape == (12,)
    assert (tmp_path / "net.json").exists()
    reg = regs.REGULARISERS[name]
    if reg.kind == "penalty":
        assert all(e["penalty"] > 0 for e in info["losses"])
    if name == "clipping":
        assert all(np.abs(layer.W).max() <= 0.2 for layer in net.layers if hasattr(layer, "W"))
    if name in regs.DESIGNED:
        assert info["design_bound"] == 1.5 and info["estimate"]["guaranteed"]
        # the promise, certified: an upper bound in the design's norm below the budget
        methods = ("lipsdp-groupsort",) if name == "bjorck" else (
            ("lipsdp-neuron",) if reg.norm == "2" else ())
        for m in ("autolip",) + methods:
            b = estimate(net, m, norm=reg.norm)
            assert b.certified and b.value <= 1.5 * (1 + CERT_RTOL), (m, b.value)


def test_penalties_lower_the_certified_constant(tmp_path) -> None:
    data = _toy_data(tmp_path / "toy.npz", n=90)
    kw = dict(hidden=(8,), epochs=15, batch_size=16, progress=False, data=data)
    plain = estimate(train("none", **kw).net, "lipsdp-neuron").value
    for name in ("gradient-penalty", "adversarial-lipschitz"):
        penalised = estimate(train(name, 10.0, target=0.5, **kw).net, "lipsdp-neuron").value
        assert penalised < plain, name


def test_cnn_trains_with_a_penalty_and_refuses_constraints(tmp_path) -> None:
    data = _toy_data(tmp_path / "img.npz", n=30, d=64, classes=2)
    run = train("gradient-penalty", 0.5, model="cnn", data=data, epochs=1, batch_size=16,
                progress=False)
    assert run.net.input_shape == (1, 8, 8) and run.info["sizes"] == [64, 2]
    with pytest.raises(UnsupportedError, match="dense layers"):
        train("projection-l2", 1.0, model="cnn", data=data, epochs=1, progress=False)
    with pytest.raises(InputError, match="do not match the CNN"):
        train("none", model="cnn", data=_toy_data(tmp_path / "t.npz"), epochs=1,
              progress=False)


def test_bad_data_and_settings_are_refused(tmp_path) -> None:
    good = _toy_data(tmp_path / "toy.npz")
    np.savez(tmp_path / "noy.npz", X=np.zeros((20, 3)))
    np.savez(tmp_path / "float.npz", X=np.zeros((20, 3)), y=np.linspace(0, 1, 20))
    np.savez(tmp_path / "short.npz", X=np.zeros((20, 3)), y=np.zeros(19))
    np.savez(tmp_path / "nan.npz", X=np.full((20, 3), np.nan), y=np.zeros(20))
    (tmp_path / "text.npz").write_text("not a zip")
    for f in ("noy", "float", "short", "nan", "text", "missing"):
        with pytest.raises(InputError):
            train("none", data=tmp_path / f"{f}.npz", epochs=1, progress=False)
    for kw in (dict(epochs=0), dict(lr=-1.0), dict(seed=-1), dict(device="tpu"),
               dict(hidden=(0,)), dict(sizes=(4, 6, 3)), dict(sizes=(5, 6, 2)),
               dict(model="rnn"), dict(target=0.0)):
        with pytest.raises(InputError):
            train("gradient-penalty", data=good, progress=False, **kw)
    with pytest.raises(InputError, match="group size"):
        train("bjorck", data=good, hidden=(5,), epochs=1, progress=False)
