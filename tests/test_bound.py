"""Bound and Domain: the result type."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lipopt_suite import Bound, Domain, InputError
from lipopt_suite.bound import check_norm


def test_bound_is_frozen_and_round_trips_through_json():
    d = Domain.ball([0.0, 1.0], 0.5, anchored=True)
    b = Bound("x", "upper", 2.5, "2", certified=True, domain=d,
              details={"v": np.arange(3), "f": np.float64(1.5)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.value = 3.0  # type: ignore[misc]
    text = json.dumps(b.to_dict())
    back = Bound.from_dict(json.loads(text))
    assert back.value == 2.5 and back.quantity == "anchored"
    assert back.details["v"] == [0, 1, 2]
    np.testing.assert_array_equal(back.domain.center, d.center)


def test_quantity_follows_domain():
    assert Bound("x", "lower", 1.0).quantity == "global"
    assert Bound("x", "lower", 1.0, domain=Domain.box([0.0], 1.0)).quantity == "local"


def test_domain_checks():
    with pytest.raises(InputError, match="positive"):
        Domain.ball([0.0], -1.0)
    with pytest.raises(InputError, match="NaN"):
        Domain.ball([np.nan], 1.0)
    box = Domain.from_bounds([0.0, -1.0], [2.0, 1.0])
    np.testing.assert_allclose(box.lower, [0.0, -1.0])
    assert box.contains(np.array([[1.0, 0.0], [3.0, 0.0]])).tolist() == [True, False]


@pytest.mark.parametrize("given, norm", [(2, "2"), ("inf", "inf"), (float("inf"), "inf"),
                                         ("1", "1"), ("L2", "2")])
def test_norm_aliases(given, norm):
    assert check_norm(given) == norm


def test_unknown_norm():
    with pytest.raises(InputError, match="unknown norm"):
        check_norm(3)
