"""LipSDP for MLPs with GroupSort/MaxMin layers: the matrix inequality and its certificate.

A MaxMin pair (a, b) -> (min, max) is linear in (a, b) and r = relu(a - b):
min(a, b) = a - r and max(a, b) = b + r (sum preserving, a permutation on each side of
a = b). A larger group is sorted by a sorting network of such comparators
(`GroupSort.comparator_rounds`), one stage of disjoint comparators at a time. So every
hidden value of the network is a linear function of v = (x, r_1, ..., r_S), the input and
the outputs of the S stages of slope-restricted units (ReLU with slopes [0, 1] for the
comparators; an elementwise activation's own slopes for an elementwise layer, whose
output then replaces its input), and the unit inputs of stage s are u_s = B_s v, with B_s
reading only the blocks before r_s. The incremental quadratic constraint of slope
restriction (Fazlyab et al., NeurIPS 2019) holds for each unit j of stage s:
2 (dr_j - a du_j)(b du_j - dr_j) >= 0. With multipliers t >= 0 and the output map f = C v,

    M(rho, T) = C^T C - rho E_00 + sum_s Q_s(T_s)  <=  0,
    Q_s = -2ab B_s^T T_s B_s + (a + b)(B_s^T T_s S_s + S_s^T T_s B_s) - 2 S_s^T T_s S_s

(E_00 the input block, S_s selecting r_s) proves ||f(x) - f(y)||^2 <= rho ||x - y||^2 by the
S-procedure. The linear bypass (a - r, b + r) is what keeps MaxMin's constant at 1: for one
MaxMin layer t = 1 gives M = C^T C - I on the input exactly (the constraint is the
per-pair identity ||d(min, max)||^2 = ||d(a, b)||^2 - 2 dr (da - db - dr)), which a plain
residual-ReLU reading of the layer misses. Pauli, Havens, Araujo, Garg, Khorrami,
Allgöwer & Hu, "Novel quadratic constraints for extending LipSDP beyond slope-restricted
activations", ICLR 2024, derive GroupSort/MaxMin constraints from the same properties (sum
preservation, 1-Lipschitz groups); the constraints here are derived as above.

Certificate (`certify_groupsort`): B_s and C are products of the weights, formed in
float64 with a componentwise bound on their error (Higham, 3.5: |fl(W A) - W A| <=
gamma_n |W| |A|, propagated through the layers); for fixed multipliers the least rho comes
from a Schur complement, and -M(rho', T) > 0 at a slightly larger rho' is proven by the
rounding-aware Cholesky test of numerics/lmi.py (Rump, BIT 2006) with the entry errors of
the float64 matrix and of B_s, C bounded in the Frobenius norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedError
from ..network import GroupSort, Network
from .lmi import (
    CERT_ATTEMPTS,
    CERT_GROWTH,
    CERT_REL_MARGIN,
    Certificate,
    clip_multipliers,
)
from .psd import certify_positive_definite
from .rounding import UNIT_ROUNDOFF, gamma

# Bounds computed from non-negative float64 terms are inflated by this (their own rounding,
# at most a few hundred u relative for the sizes handled here).
BOUND_INFLATION = 1.01


@dataclass(frozen=True)
class Stage:
    """One stage of slope-restricted units: inputs u = B v (B of shape (m, N), in float64),
    slopes [a, b], error bound R >= |B_computed - B_exact| entrywise, outputs the block of v
    at columns offset .. offset + m."""

    B: np.ndarray
    R: np.ndarray
    slopes: tuple[float, float]
    offset: int
    what: str  # "sort" or the elementwise activation's name

    @property
    def size(self) -> int:
        return int(self.B.shape[0])


@dataclass(frozen=True, eq=False)
class SortLMIData:
    """The instance: input size, stages, the output map C (p, N) with its error bound."""

    n0: int
    stages: tuple[Stage, ...]
    C: np.ndarray
    RC: np.ndarray
    inner: int  # the longest inner product summed in B, C and M

    @property
    def dim(self) -> int:
        return int(self.C.shape[1])

    @property
    def num_vars(self) -> int:
        return sum(s.size for s in self.stages)


def _product(W: np.ndarray, A: np.ndarray, RA: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fl(W A) and a bound on |fl(W A) - W A_exact| given |A - A_exact| <= RA."""
    P = W @ A
    aW = np.abs(W)
    R = (gamma(W.shape[1] + 1) * (aW @ np.abs(A)) + aW @ RA) * BOUND_INFLATION
    return P, R


def network_sort_data(net: Network) -> SortLMIData:
    """The instance of an MLP whose hidden activations are GroupSort or elementwise (slope
    restricted): stages in order, C the output map, all as functions of v."""
    weights, _, acts = net.mlp(groupsort=True)
    n0 = weights[0].shape[1]
    # unit count first, so that every row has its final length N
    counts = []
    for W, act in zip(weights, acts):
        n = W.shape[0]
        if isinstance(act, GroupSort):
            counts += [len(r) for r in act.comparator_rounds(n)]
        else:
            counts.append(n)
    N = n0 + sum(counts)
    A = np.zeros((n0, N))
    A[:, :n0] = np.eye(n0)
    RA = np.zeros_like(A)
    inner = 1
    stages: list[Stage] = []
    offset = n0
    for W, act in zip(weights, acts):
        inner = max(inner, W.shape[1] + 1)
        P, RP = _product(W, A, RA)
        if isinstance(act, GroupSort):
            V, RV = P, RP
            for rnd in act.comparator_rounds(W.shape[0]):
                i = np.array([c[0] for c in rnd])
                j = np.array([c[1] for c in rnd])
                B = V[i] - V[j]
                RB = (RV[i] + RV[j] + UNIT_ROUNDOFF * np.abs(B)) * BOUND_INFLATION
                stages.append(Stage(B, RB, (0.0, 1.0), offset, "sort"))
                V = V.copy()
                cols = offset + np.arange(len(rnd))
                # the columns of this stage's outputs are zero in V so far: exact entries
                V[i, cols] = -1.0
                V[j, cols] = 1.0
                offset += len(rnd)
            A, RA = V, RV
        else:
            stages.append(Stage(P, RP, act.slopes, offset, act.name))
            m = W.shape[0]
            A = np.zeros((m, N))
            A[np.arange(m), offset + np.arange(m)] = 1.0
            RA = np.zeros_like(A)
            offset += m
    C, RC = _product(weights[-1], A, RA)
    inner = max(inner, weights[-1].shape[1] + 1, C.shape[0], max((s.size for s in stages),
                                                                  default=1))
    if not (np.all(np.isfinite(C)) and all(np.all(np.isfinite(s.B)) for s in stages)):
        raise UnsupportedError("lipsdp-groupsort: the products of the weights overflow float64")
    return SortLMIData(n0, tuple(stages), C, RC, inner)


def split_multipliers(data: SortLMIData, t: np.ndarray) -> list[np.ndarray]:
    """One multiplier vector per stage from the solver's flat vector."""
    t = np.asarray(t, np.float64).ravel()
    out, pos = [], 0
    for s in data.stages:
        out.append(t[pos:pos + s.size].copy())
        pos += s.size
    return out


def lmi_matrix(data: SortLMIData, T: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """X = M(0, T) in float64 and a matrix bounding the absolute terms summed in each
    entry (from the computed B_s, C)."""
    C = data.C
    X = C.T @ C
    Xabs = np.abs(C).T @ np.abs(C)
    for s, t in zip(data.stages, T):
        a, b = s.slopes
        B, aB = s.B, np.abs(s.B)
        cols = s.offset + np.arange(s.size)
        if a * b != 0.0:
            X -= 2 * a * b * (B.T * t) @ B
            Xabs += 2 * abs(a * b) * (aB.T * t) @ aB
        BT = (a + b) * (B.T * t)  # (N, m): column j is (a + b) t_j B_j
        X[:, cols] += BT
        X[cols, :] += BT.T
        Xabs[:, cols] += np.abs(BT)
        Xabs[cols, :] += np.abs(BT).T
        X[cols, cols] -= 2 * t
        Xabs[cols, cols] += 2 * t
    return X, Xabs


def input_error(data: SortLMIData, T: list[np.ndarray]) -> np.ndarray:
    """A bound on |M_exact(0, T) - M(0, T) formed from the computed B_s, C| entrywise (the
    errors of B_s and C themselves)."""
    C, RC = data.C, data.RC
    aC = np.abs(C)
    E = RC.T @ (aC + RC) + aC.T @ RC
    for s, t in zip(data.stages, T):
        a, b = s.slopes
        aB, R = np.abs(s.B), s.R
        cols = s.offset + np.arange(s.size)
        if a * b != 0.0:
            E += 2 * abs(a * b) * ((R.T * t) @ (aB + R) + (aB.T * t) @ R)
        side = abs(a + b) * (R.T * t)
        E[:, cols] += side
        E[cols, :] += side.T
    return E * BOUND_INFLATION


def schur_rho(data: SortLMIData, X: np.ndarray) -> float | None:
    """Least rho with -M(rho, T) >= 0 for X = M(0, T), by a float64 Schur complement over
    the hidden blocks (None when -X_hh is not positive definite): an estimate that
    `certify_groupsort` proves."""
    from scipy.linalg import cho_factor, cho_solve, eigh

    n0 = data.n0
    H = -X[n0:, n0:]
    if H.shape[0] == 0:
        S = X
    else:
        try:
            factor = cho_factor(H, lower=True)
        except np.linalg.LinAlgError:
            return None
        X0h = X[:n0, n0:]
        S = X[:n0, :n0] + X0h @ cho_solve(factor, X0h.T)
    return max(float(eigh((S + S.T) / 2, eigvals_only=True)[-1]), 0.0)


def _round_up_sqrt(x: float) -> float:
    return math.nextafter(math.nextafter(math.sqrt(x), math.inf), math.inf)


def certify_groupsort(data: SortLMIData, multipliers: list[np.ndarray]) -> Certificate:
    """The certified value of fixed multipliers T (clipped to >= 0): -M(rho, T) > 0 proven
    for the exact weights at rho = rho_min (1 + margin) + shift, so L_2 <= sqrt(rho)."""
    T = clip_multipliers(multipliers)
    if len(T) != len(data.stages) or any(t.shape != (s.size,) for t, s in zip(T,
                                                                             data.stages)):
        raise ValueError("one multiplier per unit of every stage is needed")
    X, Xabs = lmi_matrix(data, T)
    if not np.all(np.isfinite(X)):
        return Certificate(False, math.inf, math.inf, reason="the LMI is not finite")
    rho_min = schur_rho(data, X)
    if rho_min is None:
        return Certificate(False, math.inf, math.inf,
                           reason="hidden part of the LMI is not negative definite")
    n0 = data.n0
    # X's own rounding: inner products of length <= inner, then at most 3 + 3 S additions
    rounding = gamma(data.inner + 3 * len(data.stages) + 6) * BOUND_INFLATION
    err_fixed = float(np.linalg.norm(rounding * Xabs + input_error(data, T)))
    idx = np.arange(n0)
    diag = float(np.abs(np.diag(X)).max(initial=0.0))
    margin = CERT_REL_MARGIN
    for attempt in range(1, CERT_ATTEMPTS + 1):
        scale = max(rho_min, diag, 1e-300)
        rho = rho_min * (1 + margin) + margin * scale
        Y = -X
        Y[idx, idx] += rho
        # rho added on the diagonal: one rounding of each of those entries
        error = err_fixed + 2 * UNIT_ROUNDOFF * (rho + diag)
        if certify_positive_definite(Y, error):
            return Certificate(True, rho, _round_up_sqrt(rho), rho_min, attempt)
        margin *= CERT_GROWTH
    return Certificate(False, math.inf, math.inf, rho_min, CERT_ATTEMPTS,
                       reason="Cholesky certificate failed at every margin")
