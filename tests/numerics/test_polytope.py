"""Interval and LP bounds over boxes, and the largest ball in a linear region."""

from __future__ import annotations

import numpy as np

from lipopt_suite.harness.nets import lipmip_width
from lipopt_suite.numerics.polytope import interval_bounds, lp_bounds, region_ball

# LP bounds are widened by 1e-7 relative; sampled pre-activations must stay inside.
BOUND_ATOL = 1e-9


def test_interval_and_lp_bounds_contain_sampled_preactivations():
    net = lipmip_width(1)
    ws, bs, _ = net.mlp()
    lo, hi = np.zeros(2), np.ones(2)
    ibp, lp = interval_bounds(ws, bs, lo, hi), lp_bounds(ws, bs, lo, hi)
    a = np.random.default_rng(0).random((5000, 2)).T
    for k, ((l1, h1), (l2, h2)) in enumerate(zip(ibp, lp)):
        z = ws[k] @ a + bs[k][:, None]
        assert np.all(z >= l2[:, None] - BOUND_ATOL) and np.all(z <= h2[:, None] + BOUND_ATOL)
        assert np.all(l2 >= l1 - BOUND_ATOL) and np.all(h2 <= h1 + BOUND_ATOL)
        a = np.maximum(z, 0)
    unstable = [int(((l < 0) & (h > 0)).sum()) for l, h in lp]
    assert sum(unstable) < sum(int(((l < 0) & (h > 0)).sum()) for l, h in ibp)



def test_unrealisable_pattern_has_no_ball():
    W1 = np.array([[1.0], [1.0]])
    net_w = [W1, np.ones((1, 2))]
    net_b = [np.array([0.0, -1.0]), np.zeros(1)]
    lo, hi = np.array([-2.0]), np.array([2.0])
    # x > 0 and x < 1 is a real region; x < 0 and x > 1 is not
    assert region_ball(net_w, net_b, [np.array([1.0, 0.0])], lo, hi)[0] > 0.4
    assert region_ball(net_w, net_b, [np.array([0.0, 1.0])], lo, hi)[0] <= 0
