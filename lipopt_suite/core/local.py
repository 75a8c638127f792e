"""Local Lipschitz bounds of ReLU networks anchored at a point, and certified l2 radii.

Avant & Morgansen bound the constant *anchored* at x0 over the ball B(x0, eps),
L(x0, eps) = sup_{x in B} ||f(x) - f(x0)|| / ||x - x0||, layer by layer. For an affine-ReLU
block y = A x + b, relu(y), whose input varies in {x0 + D d : ||d|| <= eps} (D zeroes the
coordinates known to be constant), the pre-activation is at most ybar_i = y0_i + eps ||a_i^T D||,
the ReLU's anchored slope r_i is 0, 1 or ybar_i / (ybar_i - y0_i), and ||R A D||_2 bounds the
block; eps is then multiplied by that bound for the next block, max pooling contributes its
overlap constant sqrt(ceil(k/s)^2), and the block bounds multiply.

Two refinements keep the bound sound and make it exact in the limit eps -> 0:
* consecutive layers whose ReLUs (and max-pooling windows) are all *stable* on the set -- each
  unit provably active or inactive, each window's maximum provably at one element -- act as
  one linear map there, so they are merged into one block (never looser than the product);
  with every unit stable the block is J(x0) itself;
* every block bound is certified: explicit block matrices get the top eigenvalue of their
  smaller Gram matrix and a shifted Cholesky certificate (`numerics.spectral`);
  convolutions too large to build densely are kept as sparse matrices (entries = weights)
  and the Gram matrix of R A D on the free inputs (or the active outputs) has its largest
  eigenvalue estimated by Lanczos and proven by a shifted Cholesky factorisation (Rump, BIT
  2006) -- dense, or banded in (row, column, channel) order, whichever is cheaper.
Floating-point errors of the nominal activations are propagated as elementwise intervals,
so stability decisions and slopes are upper bounds on the exact ones. Each block bound is also
capped by the product of the layers' global norms (AutoLip), so `local` <= `autolip`.

A certified l2 radius (Proposition 6): no perturbation with sqrt(2) L(x0, eps) eps < margin
changes the top class; `certify` finds the largest such eps by bisection and reports the
global-bound radius and attack upper bounds beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Activation, Affine, AvgPool2d, Conv2d, Flatten, MaxPool2d, Network
from ..numerics.psd import ERR_SAFETY, Gram, certify_gram
from ..numerics.rounding import UNIT_ROUNDOFF, down, gamma, up
from ..numerics.spectral import dense_spectral_bounds
from ..registry import method
from .linalg import layer_norm_bounds, layer_upper_bounds

U = UNIT_ROUNDOFF
# Block matrices with at most this many entries (free inputs x outputs) are built explicitly;
# larger linear layers are handled as operators (no merging across them).
EXPLICIT_MAX_ELEMENTS = 1 << 22
# Gram matrices up to this dimension are factored densely (torch, on the device); larger ones
# in banded form (LAPACK dpbtrf) when that is cheaper.
DENSE_GRAM_MAX = {"cpu": 2500, "cuda": 20000}
# Flops allowed for one certificate factorisation (about 3 s on one core); beyond it the
# layer's certified global norm is used for that block.
CHOLESKY_FLOP_BUDGET = 3e10
U = UNIT_ROUNDOFF


# ---------------------------------------------------------------------------- linear layers
@dataclass(frozen=True)
class _Linear:
    """A linear layer's maps on batches: the linear part, its |weights| counterpart, the bias
    (shaped like one output) and the length of its dot products."""

    layer: Any
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: torch.Tensor | None
    bias: torch.Tensor
    inner: int

    def fwd(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if isinstance(layer, Affine):
            return x @ self.weight.T
        if isinstance(layer, Conv2d):
            return F.conv2d(x, self.weight, stride=layer.stride, padding=layer.padding)
        return F.avg_pool2d(x, layer.kernel, layer.stride)

    def absfwd(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if isinstance(layer, Affine):
            return x @ self.weight.abs().T
        if isinstance(layer, Conv2d):
            return F.conv2d(x, self.weight.abs(), stride=layer.stride, padding=layer.padding)
        return F.avg_pool2d(x, layer.kernel, layer.stride)

    def row_norms(self, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(upper bounds on ||a_i^T D||, rows that are not identically zero), output-shaped."""
        mask = free.to(torch.float64)
        if isinstance(self.layer, Affine):
            W = self.weight[:, free.reshape(-1)]
            return _row_norms_up(W.T), (W != 0).any(1)
        if isinstance(self.layer, Conv2d):
            w = self.weight
            s = float(w.abs().max()) or 1.0
            sq = F.conv2d(mask[None], (w / s) ** 2, stride=self.layer.stride,
                          padding=self.layer.padding)[0]
            nz = F.conv2d(mask[None], (w != 0).to(torch.float64), stride=self.layer.stride,
                          padding=self.layer.padding)[0] > 0
            return sq.sqrt() * (s * (1 + (self.inner + 6) * U)), nz
        kh, kw = self.layer.kernel
        count = F.avg_pool2d(mask[None], self.layer.kernel, self.layer.stride)[0] * (kh * kw)
        count = count.round()
        return count.sqrt() / (kh * kw) * (1 + 8 * U), count > 0


def _linear(layer: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
            device: Any) -> _Linear:
    if isinstance(layer, Affine):
        w = torch.as_tensor(np.array(layer.W), device=device)
        return _Linear(layer, in_shape, out_shape, w,
                       torch.as_tensor(np.array(layer.b), device=device), layer.W.shape[1])
    if isinstance(layer, Conv2d):
        w = torch.as_tensor(np.array(layer.weight), device=device)
        b = torch.as_tensor(np.array(layer.bias), device=device).reshape(-1, 1, 1)
        return _Linear(layer, in_shape, out_shape, w, b, int(np.prod(w.shape[1:])))
    kh, kw = layer.kernel
    zero = torch.zeros((1, 1, 1), dtype=torch.float64, device=device)
    return _Linear(layer, in_shape, out_shape, None, zero, kh * kw + 1)


def _row_norms_up(cols: torch.Tensor) -> torch.Tensor:
    """Upper bounds on the l2 norm of each row of the matrix whose columns are cols[k]
    (cols: (n, *shape)); scaled by the row's largest entry so nothing underflows."""
    n = cols.shape[0]
    if n == 0:
        return torch.zeros(cols.shape[1:], dtype=torch.float64, device=cols.device)
    s = cols.abs().amax(0)
    scaled = cols / torch.where(s > 0, s, torch.ones_like(s))
    return s * scaled.square().sum(0).sqrt() * (1 + (n + 6) * U)


# ---------------------------------------------------------------------------- the anchor
@dataclass
class Anchor:
    """What does not depend on the radius: the network on a device, the nominal activations
    at x0 with elementwise bounds on their rounding errors, and the per-layer global norms."""

    net: Network
    center: np.ndarray
    device: Any
    shapes: list[tuple[int, ...]]
    linears: dict[int, _Linear]
    values: list[torch.Tensor]  # values[i]: input of layer i (values[-1]: the output)
    errors: list[torch.Tensor]  # |computed - exact| <= errors[i], elementwise
    factors: list[float] | None  # certified global norm of each layer (None: no caps)
    global_bound: float | None  # their product: the AutoLip bound

    @property
    def logits(self) -> np.ndarray:
        return self.values[-1].reshape(-1).cpu().numpy()

    def margin(self, label: int) -> float:
        """A lower bound on f_label(x0) - max_{j != label} f_j(x0) (exact arithmetic)."""
        z = self.values[-1].reshape(-1)
        e = self.errors[-1].reshape(-1)
        if not 0 <= label < z.numel():
            raise InputError(f"label {label} is out of range: the network has {z.numel()} "
                             "outputs")
        lo = float(z[label] - e[label])
        others = torch.cat([z[:label] + e[:label], z[label + 1:] + e[label + 1:]])
        hi = float(others.max())
        scale = abs(float(z[label])) + float(e[label]) + abs(hi)
        return down(lo - hi - 4 * U * scale)


def _device(device: Any) -> torch.device:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda: no CUDA device is available here")
    return dev


def _numerics(device: torch.device):
    """cuDNN may pick FFT or Winograd convolutions, whose rounding errors the bounds below do
    not model: use the plain kernels."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return nullcontext()


def prepare(net: Network, center: Any, *, device: Any = None, cap: bool = True) -> Anchor:
    """Check the network and the centre and run the nominal forward pass at x0."""
    net.validate()
    if not net.is_relu:
        names = sorted({a.name for a in net.activations if a.name != "relu"}
                       | ({"groupsort"} if net.has_groupsort else set()))
        raise UnsupportedError(f"local bounds need a ReLU network, this one has "
                               f"{', '.join(names)} activations")
    x0 = np.asarray(center, dtype=np.float64)
    if x0.size != net.input_dim:
        raise InputError(f"centre has {x0.size} entries but the network input has "
                         f"{net.input_dim} ({'x'.join(map(str, net.input_shape))})")
    if not np.all(np.isfinite(x0)):
        raise InputError("centre contains NaN or inf")
    dev = _device(device)
    shapes = net.shapes()
    linears: dict[int, _Linear] = {}
    with _numerics(dev), torch.no_grad():
        z = torch.as_tensor(x0.reshape(net.input_shape).copy(), device=dev)
        err = torch.zeros_like(z)
        values, errors = [z], [err]
        for i, layer in enumerate(net.layers):
            if isinstance(layer, (Affine, Conv2d, AvgPool2d)):
                lin = _linear(layer, shapes[i], shapes[i + 1], dev)
                linears[i] = lin
                zin = z[None]
                z = (lin.fwd(zin) + lin.bias)[0]
                rounding = lin.absfwd(zin.abs())[0] + lin.bias.abs()
                err = (lin.absfwd(err[None])[0] + gamma(lin.inner + 2) * rounding) * ERR_SAFETY
            elif isinstance(layer, Activation):
                if layer.name != "relu":
                    raise UnsupportedError(f"layer {i}: local bounds need ReLU activations, "
                                           f"got {layer.name}")
                # an exactly non-positive input gives exactly 0, computed or not
                err = torch.where(z + err <= 0, torch.zeros_like(err), err)
                z = torch.relu(z)
            elif isinstance(layer, MaxPool2d):
                z = F.max_pool2d(z[None], layer.kernel, layer.stride, layer.padding)[0]
                err = F.max_pool2d(err[None], layer.kernel, layer.stride, layer.padding)[0]
            elif isinstance(layer, Flatten):
                z, err = z.reshape(-1), err.reshape(-1)
            else:
                raise UnsupportedError(f"layer {i}: local bounds do not support "
                                       f"{type(layer).__name__}")
            values.append(z)
            errors.append(err)
    factors = global_bound = None
    if cap:
        factors = layer_caps(net, device=dev if dev.type == "cuda" else None)
        global_bound = math.prod(factors)
    return Anchor(net, x0.reshape(-1), dev, shapes, linears, values, errors, factors,
                  global_bound)


def layer_caps(net: Network, *, device: Any = None) -> list[float]:
    """Each layer's certified global l2 norm, the factors of AutoLip's product (the same
    numbers: `linalg.layer_upper_bounds`)."""
    return layer_upper_bounds(net, "2", device=device)


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BlockBound:
    """One block of consecutive layers [start, stop) and the bound used for it."""

    start: int
    stop: int
    value: float  # the bound used: min(local, cap)
    local: float  # the block's local bound
    cap: float | None  # product of the layers' global norms
    how: str
    eps_in: float  # radius of the block's input set
    free_in: int  # coordinates of the block's input that can vary
    unstable: int  # units (or pooling windows) closing the block that are not stable

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [self.start, self.stop], "value": self.value, "local": self.local,
                "cap": self.cap, "how": self.how, "eps_in": self.eps_in,
                "free_in": self.free_in, "unstable": self.unstable}


@dataclass(frozen=True)
class AnchoredBound:
    """A certified upper bound on the constant anchored at x0 over the ball of radius eps."""

    value: float
    eps: float
    certified: bool
    blocks: tuple[BlockBound, ...]
    global_bound: float | None
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the walk
class _Walk:
    """Layer-by-layer state of the bound: the current block's input set (radius, free
    coordinates) and its pending linear part, as explicit columns (the images of the free
    input coordinates' basis vectors, with elementwise error bounds) or as one operator."""

    def __init__(self, anchor: Anchor, eps: float, *, merge: bool, explicit_max: int,
                 dense_gram_max: int | None, cholesky_budget: float) -> None:
        self.a = anchor
        self.dev = anchor.device
        self.merge = merge
        self.explicit_max = int(explicit_max)
        self.dense_gram_max = (DENSE_GRAM_MAX.get(self.dev.type, DENSE_GRAM_MAX["cpu"])
                               if dense_gram_max is None else int(dense_gram_max))
        self.budget = float(cholesky_budget)
        self.eps = float(eps)
        self.total = 1.0
        self.certified = True
        self.blocks: list[BlockBound] = []
        self.start = 0
        self.shape = tuple(anchor.net.input_shape)
        self.free = torch.ones(self.shape, dtype=torch.bool, device=self.dev)
        self.mode = "identity"  # "identity", "explicit" or "operator"
        self.cols: torch.Tensor | None = None
        self.errs: torch.Tensor | None = None
        self.op: tuple[int, _Linear, torch.Tensor, torch.Tensor] | None = None
        self.op_free: torch.Tensor | None = None

    # -------------------------------------------------------------- pending linear part
    @property
    def n_free(self) -> int:
        return int(self.free.sum())

    def _basis(self) -> torch.Tensor:
        idx = torch.nonzero(self.free.reshape(-1)).reshape(-1)
        basis = torch.zeros((idx.numel(), self.free.numel()), dtype=torch.float64,
                            device=self.dev)
        basis[torch.arange(idx.numel(), device=self.dev), idx] = 1.0
        return basis.reshape((idx.numel(), *self.free.shape))

    def rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Upper bounds on the norms of the pending map's rows (how far each coordinate can
        move per unit of input radius) and which rows are not identically zero."""
        if self.mode == "identity":
            return self.free.to(torch.float64), self.free
        if self.mode == "explicit":
            rn = _row_norms_up(self.cols) + _row_norms_up(self.errs)
            return rn, (self.cols != 0).any(0)
        _, _, rn, nz = self.op
        return rn.reshape(self.shape), nz.reshape(self.shape)

    # -------------------------------------------------------------- closing a block
    def close(self, stop: int, r: torch.Tensor | None, next_free: torch.Tensor,
              unstable: int = 0) -> None:
        """End the current block before layer `stop` with ReLU slopes r (None: identity)."""
        if self.mode == "identity" and stop == self.start:
            self.free = next_free
            return
        free_in = self.n_free
        if self.mode == "identity":
            rr = self.free.to(torch.float64) if r is None else r * self.free
            local, how, ok = (float(rr.max()) if rr.numel() else 0.0), "slopes", True
        elif self.mode == "explicit":
            local, how, ok = _explicit_norm(self.cols, self.errs, r)
        else:
            i, lin, _, _ = self.op
            factors = self.a.factors

            def fallback() -> float:
                if factors is not None:
                    return factors[i]
                return layer_norm_bounds(lin.layer, lin.in_shape, "2").upper

            local, how, ok = _operator_norm(lin, self.op_free, r, dense_max=self.dense_gram_max,
                                            budget=self.budget, fallback=fallback,
                                            net=self.a.net)
        self.finish(stop, local, how, ok, free_in, unstable)
        self.free = next_free

    def finish(self, stop: int, local: float, how: str, ok: bool, free_in: int,
               unstable: int) -> None:
        cap = None
        if self.a.factors is not None:
            cap = math.prod(self.a.factors[self.start:stop])
        value = local if cap is None else min(local, cap)
        self.certified &= ok or (cap is not None and value == cap)
        self.blocks.append(BlockBound(self.start, stop, value, local, cap, how, self.eps,
                                      free_in, unstable))
        # a zero factor is exact; otherwise round the products up
        self.eps = up(self.eps * value) if value > 0 else 0.0
        self.total = up(self.total * value) if value > 0 else 0.0
        self.start = stop
        self.mode, self.cols, self.errs, self.op = "identity", None, None, None

    # -------------------------------------------------------------- layers
    def linear(self, i: int) -> None:
        lin = self.a.linears[i]
        out_numel = int(np.prod(lin.out_shape))
        if self.mode == "operator":
            _, _, _, nz = self.op
            self.close(i, None, nz.reshape(self.shape))
        if self.mode == "explicit" and self.cols.shape[0] * out_numel > self.explicit_max:
            self.close(i, None, (self.cols != 0).any(0))
        n = self.n_free if self.mode == "identity" else self.cols.shape[0]
        if n * out_numel <= self.explicit_max:
            if self.mode == "identity":
                cols = self._basis()
                errs = torch.zeros_like(cols)
            else:
                cols, errs = self.cols, self.errs
            self.cols = lin.fwd(cols)
            self.errs = lin.absfwd(errs + gamma(lin.inner + 1) * cols.abs()) * ERR_SAFETY
            self.mode = "explicit"
        else:
            free = self.free.reshape(lin.in_shape)
            rn, nz = lin.row_norms(free)
            self.op = (i, lin, rn, nz)
            self.op_free = free
            self.mode = "operator"
        self.shape = tuple(lin.out_shape)

    def flatten(self) -> None:
        self.shape = (int(np.prod(self.shape)),)
        if self.mode == "identity":
            self.free = self.free.reshape(-1)
        elif self.mode == "explicit":
            self.cols = self.cols.reshape(self.cols.shape[0], -1)
            self.errs = self.errs.reshape(self.errs.shape[0], -1)

    def relu(self, i: int) -> None:
        z, err = self.a.values[i], self.a.errors[i]
        rn, nz = self.rows()
        dev = rn * (self.eps * (1 + 4 * U))
        spread = (z.abs() + err + dev) * (4 * U)
        ybar = z + err + dev + spread
        ylo = z - err - dev - spread
        y0 = z + err + (z.abs() + err) * (4 * U)
        inactive = ybar <= 0
        active = ylo >= 0
        gap = (ybar - y0).clamp_min(torch.finfo(torch.float64).tiny)
        partial = (ybar / gap * (1 + 4 * U)).clamp(max=1.0)
        r = torch.where(inactive, torch.zeros_like(z),
                        torch.where(y0 >= 0, torch.ones_like(z), partial))
        stable = inactive | active | ~nz
        next_free = (r > 0) & nz
        if self.merge and self.mode == "explicit" and bool(stable.all()):
            keep = (active & ~inactive & nz).to(torch.float64)
            self.cols = self.cols * keep
            self.errs = self.errs * keep
            return
        self.close(i + 1, r, next_free, int((~stable).sum()))

    def maxpool(self, i: int, layer: MaxPool2d) -> None:
        z, err = self.a.values[i], self.a.errors[i]
        rn, nz = self.rows()
        dev = rn * (self.eps * (1 + 4 * U))
        winners, stable = _pool_winners(layer, z, err, dev)
        out_shape = self.a.shapes[i + 1]
        n = self.n_free if self.mode == "identity" else self.cols.shape[0]
        if (self.merge and self.mode != "operator" and bool(stable.all())
                and n * int(np.prod(out_shape)) <= self.explicit_max):
            if self.mode == "identity":
                self.cols = self._basis()
                self.errs = torch.zeros_like(self.cols)
            self.cols = _gather(self.cols, winners, out_shape)
            self.errs = _gather(self.errs, winners, out_shape)
            self.mode = "explicit"
            self.shape = tuple(out_shape)
            return
        if self.mode != "identity":
            self.close(i, None, nz)
        free = self.free
        value = maxpool_constant(layer, free)
        self.finish(i + 1, value, "maxpool", True, self.n_free, int((~stable).sum()))
        self.free = F.max_pool2d(free.to(torch.float64)[None], layer.kernel, layer.stride,
                                 layer.padding)[0] > 0
        self.shape = tuple(out_shape)


def _gather(cols: torch.Tensor, winners: torch.Tensor, out_shape: tuple[int, ...]
            ) -> torch.Tensor:
    n, c = cols.shape[0], cols.shape[1]
    flat = cols.reshape(n, c, -1)
    idx = winners.reshape(1, c, -1).expand(n, -1, -1)
    return flat.gather(2, idx).reshape((n, *out_shape))


def _pool_winners(layer: MaxPool2d, z: torch.Tensor, err: torch.Tensor, dev: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each pooling window: the input that is provably its maximum over the set (flat
    index within the channel) and whether such an input exists."""
    c, h, w = z.shape
    (kh, kw), (ph, pw) = layer.kernel, layer.padding
    spread = (z.abs() + err + dev) * (4 * U)
    lo = z - err - dev - spread
    up = z + err + dev + spread
    index = torch.arange(h * w, dtype=torch.float64, device=z.device).reshape(1, h, w)

    def windows(x: torch.Tensor, fill: float) -> torch.Tensor:
        xp = F.pad(x[None], (pw, pw, ph, ph), value=fill)
        return F.unfold(xp, (kh, kw), stride=layer.stride).reshape(x.shape[0], kh * kw, -1)

    wlo, wup = windows(lo, -math.inf), windows(up, -math.inf)
    widx = windows(index.expand(c, -1, -1), -1.0)
    best = wlo.argmax(1, keepdim=True)
    best_lo = wlo.gather(1, best)[:, 0]
    others = wup.scatter(1, best, -math.inf).amax(1)
    stable = best_lo >= others
    winners = widx.gather(1, best)[:, 0].long()
    return winners, stable


def maxpool_constant(layer: MaxPool2d, free: torch.Tensor) -> float:
    """sqrt of the largest number of pooling windows holding one free input (`free`: a
    (C, H, W) mask of the inputs that may vary): an upper bound on the Lipschitz constant of
    max pooling restricted to those inputs, and its exact value when all inputs are free
    (Avant & Morgansen, Theorem 3; it is sqrt(ceil(kh/sh) ceil(kw/sw)) once the input is
    large enough, Proposition 5). |max_W x - max_W y| <= max_{i in W} |x_i - y_i|, so
    ||mp(x) - mp(y)||^2 <= sum over windows of sum over their free inputs of (x_i - y_i)^2."""
    counts = window_counts(layer, tuple(free.shape[1:]), device=free.device)
    any_free = free.any(0)
    if not bool(any_free.any()):
        return 0.0
    return up(math.sqrt(float(counts[any_free].max())))


def window_counts(layer: MaxPool2d, hw: tuple[int, int], *, device: Any = None
                  ) -> torch.Tensor:
    """Number of pooling windows holding each input position (H, W)."""
    h, w = hw
    (kh, kw), (ph, pw) = layer.kernel, layer.padding
    oh = (h + 2 * ph - kh) // layer.stride[0] + 1
    ow = (w + 2 * pw - kw) // layer.stride[1] + 1
    ones = torch.ones((1, kh * kw, oh * ow), dtype=torch.float64, device=device)
    full = F.fold(ones, (h + 2 * ph, w + 2 * pw), (kh, kw), stride=layer.stride)
    return full[0, 0, ph:ph + h, pw:pw + w]


# ---------------------------------------------------------------------------- block norms
def _explicit_norm(cols: torch.Tensor, errs: torch.Tensor, r: torch.Tensor | None
                   ) -> tuple[float, str, bool]:
    """Certified ||R M|| for the explicit block M (columns `cols`, entrywise error `errs`)."""
    n = cols.shape[0]
    M = cols.reshape(n, -1)
    E = errs.reshape(n, -1)
    if r is not None:
        rr = r.reshape(1, -1)
        M, E = M * rr, E * rr
    keep = (M != 0).any(0)
    M, E = M[:, keep], E[:, keep]
    if M.numel() == 0:
        return 0.0, "zero", True
    upper, how, ok = matrix_norm_upper(M)
    fro_e = float(torch.linalg.vector_norm(E)) * (1 + (E.numel() + 4) * U)
    fro_m = float(torch.linalg.vector_norm(M)) * (1 + (M.numel() + 4) * U)
    # |fl(r m) - r m| <= u |r m|, and ||.||_2 <= ||.||_F for the error terms
    value = up(up(upper + fro_e) + up(U * fro_m))
    return value, "explicit:" + how, ok


def matrix_norm_upper(M: torch.Tensor) -> tuple[float, str, bool]:
    """Certified upper bound on ||M||_2 for a dense matrix (`numerics.spectral`:
    top eigenpair of the smaller Gram matrix, proven by a shifted Cholesky factorisation)."""
    nb = dense_spectral_bounds(M, device=M.device)
    return nb.upper, nb.how, nb.certified


def _operator_norm(lin: _Linear, free: torch.Tensor, r: torch.Tensor | None, *,
                   dense_max: int, budget: float, fallback: Callable[[], float],
                   net: Network) -> tuple[float, str, bool]:
    """Certified ||R A D|| for one linear layer too large to build as a block matrix."""
    if isinstance(lin.layer, Affine):
        W = lin.weight[:, free.reshape(-1)]
        if r is not None:
            W = W * r.reshape(-1, 1)
        W = W[(W != 0).any(1)]
        if W.numel() == 0:
            return 0.0, "zero", True
        upper, how, ok = matrix_norm_upper(W)
        fro = float(torch.linalg.vector_norm(W)) * (1 + (W.numel() + 4) * U)
        return up(upper + up(U * fro)), "matrix:" + how, ok
    gram = _sparse_gram(lin, free, r, net=net)
    value, how = certify_gram(gram, dense_max=dense_max, budget=budget)
    if value is None:
        # over budget: ||R A D|| <= ||A||, the layer's certified global norm
        return fallback(), f"global-norm(n={gram.n} over budget)", True
    return value, how, True


# ---------------------------------------------------------------------------- Gram matrices


def _conv_sparse(lin: _Linear, net: Network) -> Any:
    """The matrix of a convolution or average pooling (no bias) as scipy CSR, rows and columns
    in (row, column, channel) order; entries are the weights themselves (no rounding).
    Memoised on the network, per layer."""
    index = next(i for i, layer in enumerate(net.layers) if layer is lin.layer)
    return net.memo(__name__, ("sparse", index), lambda: _build_conv_sparse(lin))


def _build_conv_sparse(lin: _Linear) -> Any:
    import scipy.sparse as sp

    layer = lin.layer
    c, h, w = lin.in_shape
    co, ho, wo = lin.out_shape
    if isinstance(layer, Conv2d):
        K = np.asarray(layer.weight)
        pad = layer.padding
    else:
        kh, kw = layer.kernel
        K = np.zeros((co, c, kh, kw))
        K[np.arange(c), np.arange(c)] = 1.0 / (kh * kw)
        pad = (0, 0)
    kh, kw = K.shape[2:]
    sh, sw = layer.stride
    oc = np.arange(co)[:, None, None, None]
    oh = np.arange(ho)[None, :, None, None]
    ow = np.arange(wo)[None, None, :, None]
    ic = np.arange(c)[None, None, None, :]
    rows, cols, vals = [], [], []
    for u in range(kh):
        for v in range(kw):
            ih = oh * sh - pad[0] + u
            iw = ow * sw - pad[1] + v
            tap = np.broadcast_to(K[:, :, u, v][:, None, None, :], (co, ho, wo, c))
            ok = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w) & (tap != 0)
            row = np.broadcast_to((oh * wo + ow) * co + oc, ok.shape)
            col = np.broadcast_to((ih * w + iw) * c + ic, ok.shape)
            rows.append(row[ok])
            cols.append(col[ok])
            vals.append(tap[ok])
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(co * ho * wo, c * h * w))
    return A


def _hwc(x: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor flattened in (row, column, channel) order, as numpy."""
    return x.permute(1, 2, 0).reshape(-1).cpu().numpy()


def _sparse_gram(lin: _Linear, free: torch.Tensor, r: torch.Tensor | None, *,
                 net: Network) -> Gram:
    """Gram matrix of M = R A D with A sparse: M^T M on the free inputs or M M^T on the rows
    with r > 0, whichever has the cheaper factorisation (dimension times bandwidth^2)."""
    import scipy.sparse as sp

    A = _conv_sparse(lin, net)
    free_hwc = _hwc(free)
    if r is None:
        rr = np.ones(A.shape[0])
    else:
        rr = _hwc(r.reshape(lin.out_shape)) * (1 + 4 * U)
    M = A[rr > 0][:, free_hwc].tocsr()
    M.data = M.data * np.repeat(rr[rr > 0], np.diff(M.indptr))
    n_in, n_out = M.shape[1], M.shape[0]
    c, _, w = lin.in_shape
    co, _, wo = lin.out_shape
    kh, kw = (lin.layer.weight.shape[2:] if isinstance(lin.layer, Conv2d)
              else lin.layer.kernel)
    # bandwidth estimates: inputs couple within (k - 1) rows, outputs within (k - 1) / s rows
    frac_in = n_in / max(free.numel(), 1)
    frac_out = n_out / max(A.shape[0], 1)
    bw_in = ((kh - 1) * w + kw) * c * frac_in
    bw_out = (((kh - 1) // lin.layer.stride[0]) * wo + kw) * co * frac_out
    side = "inputs" if n_in * bw_in ** 2 <= n_out * bw_out ** 2 else "outputs"
    G = (M.T.tocsr() @ M) if side == "inputs" else (M @ M.T.tocsc())
    G = sp.tril(G).tocoo()
    inner = max(c, co) * kh * kw + 2  # terms per entry, plus the rounding of r a
    return Gram(G.row.astype(np.int64), G.col.astype(np.int64), G.data.astype(np.float64),
                 G.shape[0], inner, side, free.device)


# ---------------------------------------------------------------------------- the bound
def anchored_bound(anchor: Anchor, eps: float, *, merge: bool = True,
                   explicit_max: int = EXPLICIT_MAX_ELEMENTS, dense_gram_max: int | None = None,
                   cholesky_budget: float = CHOLESKY_FLOP_BUDGET) -> AnchoredBound:
    """Certified upper bound on sup_{||x - x0|| <= eps} ||f(x) - f(x0)|| / ||x - x0||."""
    if not (math.isfinite(eps) and eps > 0):
        raise InputError(f"radius must be positive and finite, got {eps}")
    walk = _Walk(anchor, eps, merge=merge, explicit_max=explicit_max,
                 dense_gram_max=dense_gram_max, cholesky_budget=cholesky_budget)
    with _numerics(anchor.device), torch.no_grad():
        for i, layer in enumerate(anchor.net.layers):
            if walk.n_free == 0 and walk.mode == "identity":
                break  # the rest of the network sees a constant input
            if isinstance(layer, (Affine, Conv2d, AvgPool2d)):
                walk.linear(i)
            elif isinstance(layer, Activation):
                walk.relu(i)
            elif isinstance(layer, MaxPool2d):
                walk.maxpool(i, layer)
            else:
                walk.flatten()
        n_layers = len(anchor.net.layers)
        if walk.n_free == 0 and walk.mode == "identity":
            walk.total = 0.0
        else:
            walk.close(n_layers, None, torch.ones(anchor.shapes[-1], dtype=torch.bool,
                                                   device=anchor.device))
    value = walk.total
    if anchor.global_bound is not None:
        value = min(value, anchor.global_bound)
    return AnchoredBound(value, float(eps), walk.certified, tuple(walk.blocks),
                         anchor.global_bound,
                         {"merged_layers": sum(b.stop - b.start for b in walk.blocks
                                               if b.how.startswith("explicit"))})


@method("local", kind="upper", cost="cheap", norms=("2",), relu_only=True, domain="required",
        domain_kinds=("ball",), anchored="only",
        summary="Avant & Morgansen local bound anchored at the centre of an l2 ball")
def local(net: Network, *, norm: str = "2", domain: Domain | None = None, device: Any = None,
          cap: bool = True, merge: bool = True, explicit_max: int = EXPLICIT_MAX_ELEMENTS,
          dense_gram_max: int | None = None, cholesky_budget: float = CHOLESKY_FLOP_BUDGET
          ) -> Bound:
    """Upper bound on the l2 Lipschitz constant anchored at x0 over the ball B(x0, eps).

    Reference: T. Avant and K. A. Morgansen, "Analytical bounds on the local Lipschitz
    constants of ReLU networks", IEEE Transactions on Neural Networks and Learning Systems,
    2023 (Theorems 2-3, Propositions 4-5, Algorithm 1).
    Idea: per affine-ReLU block, ||R A D||_2 with the ReLUs' anchored slopes R and the
    inputs known to be constant removed (D); eps grows by each block's bound. Layers whose
    units are all stable on the ball are merged into one block.
    Guarantee: certified upper bound on the anchored constant (every block norm proven by an
    SVD or Gram-matrix Cholesky certificate; rounding of the nominal pass accounted for).
    """
    if norm != "2":
        raise UnsupportedError(f"method local supports the l2 norm only, not {norm}")
    if domain is None:
        raise InputError("method local needs a domain: give --center FILE and --radius R")
    if domain.kind != "ball":
        raise UnsupportedError("method local needs an l2 ball domain")
    if not domain.anchored:
        raise UnsupportedError("method local bounds the constant anchored at the centre only "
                               "(use an anchored domain)")
    start = time.perf_counter()
    anchor = prepare(net, domain.center, device=device, cap=cap)
    res = anchored_bound(anchor, float(domain.radius), merge=merge, explicit_max=explicit_max,
                         dense_gram_max=dense_gram_max, cholesky_budget=cholesky_budget)
    details = {"blocks": [b.to_dict() for b in res.blocks], "global_bound": res.global_bound,
               "device": str(anchor.device), **res.details}
    return Bound("local", "upper", res.value, "2", certified=res.certified,
                 seconds=time.perf_counter() - start, domain=domain, details=details)
