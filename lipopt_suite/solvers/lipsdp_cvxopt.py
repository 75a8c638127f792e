"""LipSDP with CVXOPT's interior-point cone solver, using the LMI's low-rank structure.

The LipSDP program min rho s.t. -M(rho, T) >= 0, T >= 0 is handed to `cvxopt.solvers.conelp`
with its constraint map G given as a function and with a KKT solver of its own, the use
CVXOPT documents for structured problems (Andersen, Dahl & Vandenberghe, "CVXOPT", and
"Implementation of nonsymmetric interior-point methods...", Math. Prog. Comp. 2010). Each
multiplier's coefficient matrix has rank two (one neuron: the row w of W in the previous
layer's block and a unit vector at the neuron), so the Schur complement
H_ij = tr(A_i S A_j S) of every Newton step is assembled from the products V^T S V of the
N x 2m matrix of those vectors, in O(N^2 m + N m^2) instead of the O(m N^3) of a generic
dense SDP (N the LMI side, m the number of multipliers). Everything else (Nesterov-Todd
scalings, steps, stopping) is CVXOPT's own.

The caller passes a compressed and normalised instance (solvers/lipsdp.py); the answer is
only a proposal, certified afterwards by numerics/lmi.py.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..numerics.blas import single_threaded
from ..numerics.lmi import LMIData
from ..quiet import native_silence

# CVXOPT tolerances for the default run: the certified value must land within 2e-4 of the
# SDP optimum, and interior iterates stop well inside the cone at these settings.
DEFAULT_RELTOL = 1e-6
ABSTOL = 1e-9
FEASTOL = 1e-7
MAX_ITERS = 100
# Iterates kept for a time-limited run: the best one that certifies is returned.
KEEP_ITERATES = 8


class _Deadline(Exception):
    """Raised inside CVXOPT's iteration when the time limit has passed."""


@dataclass
class Answer:
    """What one structured solve returned: x = (rho, t) of the normalised instance."""

    status: str  # "optimal", "inaccurate", "timeout", "error"
    x: np.ndarray | None = None
    iterations: int | None = None
    message: str = ""
    candidates: list[np.ndarray] = field(default_factory=list)


class LipSDPStructure:
    """The affine map (rho, t) -> M(rho, T) - F0 of one instance, its adjoint and the
    Schur complement of CVXOPT's scaled KKT systems."""

    def __init__(self, data: LMIData, variant: str):
        self.data = data
        self.variant = variant
        self.N = data.dim
        self.n0 = data.sizes[0]
        self.layers = []  # (W, a, b, p, q, r, first neuron index)
        off = data.offsets
        first = 0
        for k in range(1, len(data.weights)):
            a, b = data.slopes[k - 1]
            self.layers.append((data.weights[k - 1], a, b, off[k - 1], off[k], off[k + 1],
                                first))
            first += data.weights[k - 1].shape[0]
        self.neurons = first
        self.m = data.num_vars(variant)
        # P maps per-layer multipliers to per-neuron ones (layer variant)
        if variant == "layer":
            P = np.zeros((self.neurons, self.m))
            for k, (W, *_rest, start) in enumerate(self.layers):
                P[start:start + W.shape[0], k] = 1.0
            self.P: np.ndarray | None = P
        else:
            self.P = None
        c00, c01, c11 = [], [], []
        for W, a, b, *_ in self.layers:
            nk = W.shape[0]
            c00.append(np.full(nk, -2 * a * b))
            c01.append(np.full(nk, a + b))
            c11.append(np.full(nk, -2.0))
        self.C = (np.concatenate(c00), np.concatenate(c01), np.concatenate(c11))
        WL = data.weights[-1]
        self.F0 = np.zeros((self.N, self.N))
        s = off[len(data.weights) - 1]
        self.F0[s:, s:] = WL.T @ WL

    # -------------------------------------------------------------- the map and adjoint
    def neuron_t(self, t: np.ndarray) -> np.ndarray:
        return t if self.P is None else self.P @ t

    def apply(self, rho: float, t: np.ndarray) -> np.ndarray:
        """L(rho, t) = M(rho, T) - F0, dense N x N."""
        tn = self.neuron_t(t)
        L = np.zeros((self.N, self.N))
        i0 = np.arange(self.n0)
        L[i0, i0] = -rho
        for W, a, b, p, q, r, start in self.layers:
            tk = tn[start:start + W.shape[0]]
            WT = W.T * tk
            if a * b != 0.0:
                L[p:q, p:q] -= 2 * a * b * (WT @ W)
            L[p:q, q:r] = (a + b) * WT
            L[q:r, p:q] = L[p:q, q:r].T
            idx = np.arange(q, r)
            L[idx, idx] -= 2 * tk
        return L

    def adjoint(self, Z: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
        """(<A_0, Y>, <A_j, Y>...) for Y = Z, or Y = Z @ right when `right` is given (only
        the blocks of the product that the LMI touches are formed): the adjoint of
        `apply`, for symmetric Y."""
        def block(rs: slice, cs: slice) -> np.ndarray:
            return Z[rs, cs] if right is None else Z[rs] @ right[:, cs]

        def diag(rs: slice) -> np.ndarray:
            if right is None:
                return np.diag(Z[rs, rs]).copy()
            return np.einsum("ij,ji->i", Z[rs], right[:, rs])

        out = np.empty(1 + self.neurons)
        out[0] = -float(np.sum(diag(slice(0, self.n0))))
        for W, a, b, p, q, r, start in self.layers:
            v = 2 * (a + b) * np.einsum("ji,ji->j", W, block(slice(q, r), slice(p, q)))
            v -= 2 * diag(slice(q, r))
            if a * b != 0.0:
                v -= 2 * a * b * np.einsum("ji,ji->j", W @ block(slice(p, q), slice(p, q)), W)
            out[1 + start:1 + start + W.shape[0]] = v
        if self.P is None:
            return out
        return np.concatenate([out[:1], self.P.T @ out[1:]])

    # -------------------------------------------------------------- Schur complement
    # A_j = V_j C_j V_j^T with V_j = [w_j, e_j] (the row of W in the previous block, the
    # neuron's unit vector) and C_j = [[-2ab, a+b], [a+b, -2]]; rho's A_0 = -E_0 E_0^T. With
    # CVXOPT's scaling W(u) = r^T u r and rti = r^{-T}, the scaled columns are
    # rti^T A_j rti = Q_j C_j Q_j^T, Q = rti^T V: everything below works on the rows of Q^T
    # (never on rti rti^T, whose condition number is the square of rti's).
    def scaled_rows(self, rti: np.ndarray) -> np.ndarray:
        """Q^T = V^T rti (rows: input unit vectors, then all W-rows, then all neurons)."""
        n0, nn = self.n0, self.neurons
        Qt = np.empty((n0 + 2 * nn, self.N))
        Qt[:n0] = rti[:n0]
        for W, _a, _b, p, q, r, start in self.layers:
            rows = slice(n0 + start, n0 + start + W.shape[0])
            Qt[rows] = W @ rti[p:q]
            Qt[n0 + nn + start:n0 + nn + start + W.shape[0]] = rti[q:r]
        return Qt

    def schur(self, Qt: np.ndarray) -> np.ndarray:
        """H_ij = <rti^T A_i rti, rti^T A_j rti> over x = (rho, t), from Q^T."""
        n0, nn = self.n0, self.neurons
        K = Qt @ Qt.T
        K00 = K[:n0, :n0]
        K0w = K[:n0, n0:n0 + nn]
        K0e = K[:n0, n0 + nn:]
        Kww = K[n0:n0 + nn, n0:n0 + nn]
        Kwe = K[n0:n0 + nn, n0 + nn:]
        Kee = K[n0 + nn:, n0 + nn:]
        Kb = {(0, 0): Kww, (0, 1): Kwe, (1, 0): Kwe.T, (1, 1): Kee}
        c00, c01, c11 = self.C
        c = {(0, 0): c00, (0, 1): c01, (1, 0): c01, (1, 1): c11}
        H = np.zeros((1 + nn, 1 + nn))
        Hn = H[1:, 1:]
        for a_ in (0, 1):
            for b_ in (0, 1):
                for c_ in (0, 1):
                    for d_ in (0, 1):
                        Hn += np.outer(c[a_, b_], c[c_, d_]) * Kb[b_, c_] * Kb[a_, d_]
        H[0, 0] = float(np.sum(K00 * K00))
        K0 = (K0w, K0e)
        h0 = np.zeros(nn)
        for c_ in (0, 1):
            for d_ in (0, 1):
                h0 -= c[c_, d_] * np.einsum("aj,aj->j", K0[c_], K0[d_])
        H[0, 1:] = h0
        H[1:, 0] = h0
        return self._aggregate(H)

    def scaled_adjoint(self, Qt: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """(<rti^T A_i rti, Y>)_i for symmetric Y, from Q^T."""
        n0, nn = self.n0, self.neurons
        P = Qt @ Y
        w, e = slice(n0, n0 + nn), slice(n0 + nn, None)
        d00 = np.einsum("ij,ij->i", P[w], Qt[w])
        d01 = np.einsum("ij,ij->i", P[w], Qt[e])
        d11 = np.einsum("ij,ij->i", P[e], Qt[e])
        c00, c01, c11 = self.C
        out = np.empty(1 + nn)
        out[0] = -float(np.einsum("ij,ij->", P[:n0], Qt[:n0]))
        out[1:] = c00 * d00 + 2 * c01 * d01 + c11 * d11
        if self.P is None:
            return out
        return np.concatenate([out[:1], self.P.T @ out[1:]])

    def _aggregate(self, H: np.ndarray) -> np.ndarray:
        if self.P is None:
            return H
        Pf = np.zeros((1 + self.neurons, 1 + self.m))
        Pf[0, 0] = 1.0
        Pf[1:, 1:] = self.P
        return Pf.T @ H @ Pf


def _sym_from_lower(z: np.ndarray, N: int) -> np.ndarray:
    Z = z.reshape((N, N), order="F")
    L = np.tril(Z)
    return L + np.tril(Z, -1).T


def solve_structured(data: LMIData, variant: str, *, eps: float | None = None,
                     deadline: float | None = None) -> Answer:
    """Solve one (compressed, normalised) LipSDP instance with CVXOPT's conelp."""
    from cvxopt import matrix, solvers

    st = LipSDPStructure(data, variant)
    N, m = st.N, st.m
    n = 1 + m
    dims = {"l": m, "q": [], "s": [N]}
    c = matrix(np.eye(1, n).ravel())
    h = matrix(np.concatenate([np.zeros(m), (-st.F0).ravel(order="F")]))
    seen: collections.deque[np.ndarray] = collections.deque(maxlen=KEEP_ITERATES)
    iterations = [0]

    def Gf(x: Any, y: Any, alpha: float = 1.0, beta: float = 0.0, trans: str = "N") -> None:
        xv = np.array(x).ravel()
        yv = np.array(y).ravel()
        if trans == "N":
            seen.append(xv.copy())
            out = np.concatenate([-xv[1:], st.apply(xv[0], xv[1:]).ravel(order="F")])
        else:
            Z = _sym_from_lower(xv[m:], N)
            out = st.adjoint(Z)
            out[1:] -= xv[:m]
        res = alpha * out + (beta * yv if beta != 0.0 else 0.0)
        y[:] = matrix(res)

    def kktsolver(W: dict) -> Any:
        if deadline is not None and time.perf_counter() > deadline:
            raise _Deadline
        iterations[0] += 1
        d = np.array(W["d"]).ravel()
        rti = np.array(W["rti"][0])
        Qt = st.scaled_rows(rti)
        H = st.schur(Qt)
        H[1:, 1:] += np.diag(1.0 / d ** 2)
        try:
            factor = _cholesky(H)
        except np.linalg.LinAlgError as exc:
            raise ArithmeticError("singular KKT matrix") from exc

        def f(x: Any, y: Any, z: Any) -> None:
            from scipy.linalg import cho_solve

            bx = np.array(x).ravel()
            zv = np.array(z).ravel()
            bl, Bs = zv[:m], _sym_from_lower(zv[m:], N)
            Y = rti.T @ Bs @ rti  # W^{-T} bz
            rhs = bx + st.scaled_adjoint(Qt, Y)
            rhs[1:] -= bl / d ** 2
            ux = cho_solve(factor, rhs)
            zs = rti.T @ st.apply(ux[0], ux[1:]) @ rti - Y
            zl = (-ux[1:] - bl) / d
            x[:] = matrix(ux)
            z[:] = matrix(np.concatenate([zl, ((zs + zs.T) / 2).ravel(order="F")]))

        return f

    opts = {"show_progress": False, "maxiters": MAX_ITERS, "abstol": ABSTOL,
            "reltol": DEFAULT_RELTOL if eps is None else float(eps), "feastol": FEASTOL}
    try:
        with native_silence(), single_threaded():
            sol = solvers.conelp(c, Gf, h, dims, kktsolver=kktsolver, options=opts)
    except _Deadline:
        return Answer("timeout", None, iterations[0], "time limit reached", list(seen))
    except (ArithmeticError, ValueError) as exc:
        return Answer("error", None, iterations[0], " ".join(str(exc).split())[:300],
                      list(seen))
    x = None if sol.get("x") is None else np.array(sol["x"]).ravel()
    status = "optimal" if sol["status"] == "optimal" else "inaccurate"
    return Answer(status, x, int(sol.get("iterations") or iterations[0]),
                  "" if status == "optimal" else str(sol["status"]), list(seen))


def _cholesky(H: np.ndarray) -> Any:
    from scipy.linalg import cho_factor

    return cho_factor((H + H.T) / 2, lower=True, check_finite=True)
