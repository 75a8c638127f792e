"""`Network`: the one network type, an immutable sequence of layers.

Convention (as torch.nn.Linear): an affine layer's `W` has shape (out, in), and an MLP is
f(x) = W_{K-1} rho(... rho(W_0 x + b_0) ...) + b_{K-1}. Weights are float64 numpy arrays,
read-only. Activations carry their slope bounds [alpha, beta].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import numpy as np

from .errors import InputError, UnsupportedError

# Largest weight or bias magnitude accepted: products of a few dozen layer norms of such
# entries must stay inside float64.
MAX_ABS = 1e100
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
T = TypeVar("T")


def _frozen(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Affine:
    """x -> W x + b on flat inputs."""

    W: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        W = _frozen(self.W)
        b = _frozen(np.zeros(W.shape[0]) if self.b is None else self.b)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    type_name = "linear"


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution (cross-correlation, as torch) with zero padding."""

    weight: np.ndarray  # (out_ch, in_ch, kh, kw)
    bias: np.ndarray  # (out_ch,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        w = _frozen(self.weight)
        b = _frozen(np.zeros(w.shape[0]) if self.bias is None else self.bias)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))

    type_name = "conv2d"

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        _, h, w = shape
        kh, kw = self.weight.shape[2:]
        oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        return (self.weight.shape[0], oh, ow)


@dataclass(frozen=True)
class Activation:
    """Elementwise activation with slopes in [alpha, beta]."""

    name: str
    negative_slope: float = 0.01

    type_name = "activation"

    @property
    def slopes(self) -> tuple[float, float]:
        """The slope bounds [alpha, beta]: every difference quotient lies in this interval."""
        if self.name == "relu":
            return 0.0, 1.0
        if self.name == "leaky_relu":
            a = float(self.negative_slope)
            return min(a, 1.0), max(a, 1.0)
        if self.name == "tanh":
            return 0.0, 1.0
        if self.name == "sigmoid":
            return 0.0, 0.25
        raise UnsupportedError(f"unknown activation {self.name!r}: use one of {ACTIVATIONS}")

    @property
    def lipschitz(self) -> float:
        alpha, beta = self.slopes
        return max(abs(alpha), abs(beta))

    @property
    def piecewise_linear(self) -> bool:
        return self.name in ("relu", "leaky_relu")


@dataclass(frozen=True)
class Pool2d:
    """Common shape logic of the pooling layers (not a layer by itself)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "kernel"))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = shape
        oh = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return (c, oh, ow)

    @property
    def overlap(self) -> int:
        """Most windows any one input element belongs to: ceil(k/s) per axis, multiplied."""
        return math.ceil(self.kernel[0] / self.stride[0]) * math.ceil(
            self.kernel[1] / self.stride[1])


@dataclass(frozen=True)
class MaxPool2d(Pool2d):
    """Max pooling (piecewise linear, Lipschitz)."""

    type_name = "maxpool2d"


@dataclass(frozen=True)
class AvgPool2d(Pool2d):
    """Average pooling without padding (a linear layer)."""

    type_name = "avgpool2d"


@dataclass(frozen=True)
class Flatten:
    type_name = "flatten"


Layer = Union[Affine, Conv2d, Activation, MaxPool2d, AvgPool2d, Flatten]  # noqa: UP007
LINEAR_TYPES = (Affine, Conv2d, AvgPool2d)


def _layer_repr(layer: Layer) -> str:
    """One line per layer: type, shapes and settings, never the weights themselves."""
    if isinstance(layer, Affine):
        return f"Affine({layer.W.shape[1]} -> {layer.W.shape[0]})"
    if isinstance(layer, Conv2d):
        oc, ic, kh, kw = layer.weight.shape
        return (f"Conv2d({ic} -> {oc}, kernel {kh}x{kw}, stride {layer.stride}, "
                f"padding {layer.padding})")
    if isinstance(layer, Activation):
        extra = f", negative_slope={layer.negative_slope:g}" if layer.name == "leaky_relu" else ""
        return f"Activation({layer.name}{extra})"
    if isinstance(layer, Pool2d):
        return (f"{type(layer).__name__}(kernel {layer.kernel}, stride {layer.stride}, "
                f"padding {layer.padding})")
    return f"{type(layer).__name__}()"


def _describe(index: int, layer: Layer, ordinal: dict[int, int]) -> str:
    name = getattr(layer, "type_name", type(layer).__name__)
    if isinstance(layer, Activation):
        name = layer.name
    if index in ordinal:
        return f"layer {index} ({name}, W{ordinal[index]})"
    return f"layer {index} ({name})"


@dataclass(frozen=True, eq=False)
class Network:
    """An immutable feed-forward network: layers in order and the shape of one input.

    Values derived from the weights alone (shapes, the MLP view, torch modules, certified
    layer norms, region enumerations) are memoised on the network through `memo`, each
    under the name of the module that computes it; only that module reads its entries.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mlp(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        activation: str | Sequence[str] = "relu",
        *,
        negative_slope: float = 0.01,
    ) -> Network:
        """An MLP from weight matrices W_k of shape (out, in); biases default to zero."""
        weights = [np.asarray(W, dtype=np.float64) for W in weights]
        if not weights:
            raise InputError("empty network: no weight matrices")
        if biases is None:
            biases = [np.zeros(W.shape[0]) for W in weights]
        if len(biases) != len(weights):
            raise InputError(f"{len(weights)} weight matrices but {len(biases)} biases")
        acts = [activation] * (len(weights) - 1) if isinstance(activation, str) else list(
            activation)
        if len(acts) != len(weights) - 1:
            raise InputError(f"{len(weights)} layers need {len(weights) - 1} activations")
        layers: list[Layer] = []
        for k, (W, b) in enumerate(zip(weights, biases)):
            if W.ndim != 2:
                raise InputError(f"W{k} must be a matrix, got shape {W.shape}")
            layers.append(Affine(W, b))
            if k < len(weights) - 1:
                layers.append(Activation(acts[k], negative_slope))
        return cls(tuple(layers), (weights[0].shape[1],))

    def memo(self, owner: str, key: Hashable, compute: Callable[[], T], *,
             keep: Callable[[T], bool] | None = None) -> T:
        """`compute()` once per (owner, key) for this network: the value is a function of the
        (immutable) weights, so it is kept and returned again. `owner` is the computing
        module's `__name__`; `keep(value)` False leaves an incomplete value uncached."""
        full = (owner, key)
        if full in self._memo:
            return self._memo[full]
        value = compute()
        if keep is None or keep(value):
            self._memo[full] = value
        return value

    def memoised(self, owner: str, key: Hashable) -> bool:
        """Whether `memo(owner, key, ...)` has a value kept for this network."""
        return (owner, key) in self._memo

    def __repr__(self) -> str:
        lines = [f"Network(input_shape={self.input_shape}, {len(self.layers)} layers:"]
        for i, layer in enumerate(self.layers):
            lines.append(f"  {i}: {_layer_repr(layer)}")
        return "\n".join(lines) + ")"

    # ------------------------------------------------------------------ shapes
    def _ordinals(self) -> dict[int, int]:
        """Index of each affine/conv layer among the weight layers (W0, W1, ...)."""
        out, k = {}, 0
        for i, layer in enumerate(self.layers):
            if isinstance(layer, (Affine, Conv2d)):
                out[i] = k
                k += 1
        return out

    def shapes(self) -> list[tuple[int, ...]]:
        """Shape of one sample before the first layer and after each layer."""
        return list(self.memo(__name__, "shapes", self._compute_shapes))

    def _compute_shapes(self) -> list[tuple[int, ...]]:
        ordinal = self._ordinals()
        shape = self.input_shape
        shapes = [shape]
        for i, layer in enumerate(self.layers):
            where = _describe(i, layer, ordinal)
            if isinstance(layer, Affine):
                W = layer.W
                if W.ndim != 2:
                    raise InputError(f"{where}: weight must be a matrix, got shape {W.shape}")
                if len(shape) != 1:
                    raise InputError(f"{where}: input of shape {shape} must be flattened first")
                if W.shape[1] != shape[0]:
                    raise InputError(f"{where}: weight has {W.shape[1]} columns but the input "
                                     f"has {shape[0]} features")
                if layer.b.shape != (W.shape[0],):
                    raise InputError(f"{where}: bias has shape {layer.b.shape}, expected "
                                     f"({W.shape[0]},)")
                shape = (W.shape[0],)
            elif isinstance(layer, Conv2d):
                w = layer.weight
                if w.ndim != 4:
                    raise InputError(f"{where}: conv weight must have 4 dimensions, got {w.shape}")
                if len(shape) != 3 or shape[0] != w.shape[1]:
                    raise InputError(f"{where}: expects ({w.shape[1]}, H, W) input, got {shape}")
                if layer.bias.shape != (w.shape[0],):
                    raise InputError(f"{where}: bias has shape {layer.bias.shape}, expected "
                                     f"({w.shape[0]},)")
                if min(layer.stride) < 1 or min(layer.padding) < 0:
                    raise InputError(f"{where}: stride must be >= 1 and padding >= 0")
                shape = layer.out_shape(shape)
                if min(shape[1:]) < 1:
                    raise InputError(f"{where}: kernel larger than the padded input")
            elif isinstance(layer, Pool2d):
                if len(shape) != 3:
                    raise InputError(f"{where}: expects (C, H, W) input, got {shape}")
                if min(layer.stride) < 1 or min(layer.kernel) < 1 or min(layer.padding) < 0:
                    raise InputError(f"{where}: kernel and stride must be >= 1")
                if isinstance(layer, AvgPool2d) and max(layer.padding) > 0:
                    raise UnsupportedError(f"{where}: padded average pooling is not supported")
                shape = layer.out_shape(shape)
                if min(shape[1:]) < 1:
                    raise InputError(f"{where}: pooling window larger than the input")
            elif isinstance(layer, Flatten):
                shape = (int(np.prod(shape)),)
            elif isinstance(layer, Activation):
                if layer.name not in ACTIVATIONS:
                    raise UnsupportedError(f"{where}: unknown activation {layer.name!r} "
                                           f"(supported: {', '.join(ACTIVATIONS)})")
                if not math.isfinite(layer.negative_slope):
                    raise InputError(f"{where}: negative slope must be finite")
            else:
                raise UnsupportedError(f"layer {i}: unsupported layer type {type(layer).__name__}")
            shapes.append(shape)
        return shapes

    def validate(self) -> Network:
        """Check the network: non-empty, finite weights, consistent shapes. Returns self."""
        if not self.layers:
            raise InputError("empty network: no layers")
        if not self.input_shape or min(self.input_shape) < 1:
            raise InputError(f"invalid input shape {self.input_shape}")
        if not any(isinstance(layer, LINEAR_TYPES) for layer in self.layers):
            raise InputError("network has no affine or convolution layer")
        ordinal = self._ordinals()
        for i, layer in enumerate(self.layers):
            for arr_name in ("W", "b", "weight", "bias"):
                arr = getattr(layer, arr_name, None)
                if isinstance(arr, np.ndarray) and not np.all(np.isfinite(arr)):
                    raise InputError(f"{_describe(i, layer, ordinal)}: {arr_name} contains "
                                     f"NaN or inf")
                if isinstance(arr, np.ndarray) and arr.size and np.abs(arr).max() > MAX_ABS:
                    raise InputError(f"{_describe(i, layer, ordinal)}: {arr_name} has entries "
                                     f"up to {np.abs(arr).max():.3g}; above {MAX_ABS:g} "
                                     "products of layer norms overflow float64 (rescale it)")
        self.shapes()
        return self

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    def points(self, X: Any, what: str = "X") -> np.ndarray:
        """Input points as a finite float64 matrix (k, input_dim): rows of input_dim values,
        arrays of the input shape, or one such point; anything else is an InputError naming
        `what`."""
        try:
            P = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{what} is not a numeric array") from None
        n = self.input_dim
        if P.shape in ((n,), tuple(self.input_shape)):  # one point
            P = P.reshape(1, n)
        if P.ndim < 2 or P.shape[1:] not in ((n,), tuple(self.input_shape)):
            raise InputError(f"{what} has shape {P.shape}; expected rows of {n} columns "
                             f"or arrays of the input shape {tuple(self.input_shape)}")
        if not np.all(np.isfinite(P)):
            raise InputError(f"{what} contains NaN or inf")
        return P.reshape(-1, n)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1]

    @property
    def output_dim(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def activations(self) -> list[Activation]:
        return [layer for layer in self.layers if isinstance(layer, Activation)]

    @property
    def is_relu(self) -> bool:
        """Piecewise linear with ReLU as its only activation (max/avg pooling allowed)."""
        return all(a.name == "relu" for a in self.activations)

    @property
    def is_piecewise_linear(self) -> bool:
        return all(a.piecewise_linear for a in self.activations)

    @property
    def is_mlp(self) -> bool:
        try:
            self.mlp()
        except InputError:
            return False
        return True

    @property
    def num_linear(self) -> int:
        return sum(isinstance(layer, (Affine, Conv2d)) for layer in self.layers)

    def mlp(self) -> tuple[list[np.ndarray], list[np.ndarray], list[Activation]]:
        """(weights, biases, activations) of an MLP: affine layers with one activation between
        consecutive ones. Raises UnsupportedError naming the first layer that does not fit."""
        return self.memo(__name__, "mlp", self._compute_mlp)

    def _compute_mlp(self) -> tuple[list[np.ndarray], list[np.ndarray], list[Activation]]:
        layers = list(self.layers)
        if len(self.input_shape) != 1:
            raise UnsupportedError(f"not an MLP: input shape {self.input_shape} is not flat")
        weights, biases, acts = [], [], []
        expect_affine = True
        for i, layer in enumerate(layers):
            if isinstance(layer, Flatten):
                continue
            if expect_affine and isinstance(layer, Affine):
                weights.append(layer.W)
                biases.append(layer.b)
                expect_affine = False
            elif not expect_affine and isinstance(layer, Activation):
                acts.append(layer)
                expect_affine = True
            else:
                raise UnsupportedError(
                    f"not an MLP: layer {i} ({getattr(layer, 'type_name', '?')}) where "
                    f"{'an affine layer' if expect_affine else 'an activation'} was expected "
                    "(this method needs Linear/activation layers only)")
        if expect_affine:
            raise UnsupportedError("not an MLP: the network must end with an affine layer")
        return weights, biases, acts

    def describe(self) -> str:
        """Short human-readable summary, e.g. 'mlp 2-10-30-20-2 relu'."""
        if self.is_mlp:
            ws, _, acts = self.mlp()
            sizes = [ws[0].shape[1]] + [W.shape[0] for W in ws]
            names = sorted({a.name for a in acts}) or ["linear"]
            return f"mlp {'-'.join(map(str, sizes))} {'/'.join(names)}"
        kinds = [layer.name if isinstance(layer, Activation) else layer.type_name
                 for layer in self.layers]
        return f"net {self.input_shape} -> {self.output_shape}: " + ", ".join(kinds)

    # ------------------------------------------------------------------ torch
    def to_torch(self, device: Any = None, dtype: Any = None):
        """An nn.Sequential computing the same function on batches (B, *input_shape)."""
        import torch

        dtype = dtype or torch.float64
        return self.memo(__name__, ("torch", str(device), str(dtype)),
                         lambda: self._build_torch(device, dtype))

    def _build_torch(self, device: Any, dtype: Any):
        import torch
        from torch import nn

        self.validate()
        mods: list[nn.Module] = []
        for layer in self.layers:
            if isinstance(layer, Affine):
                m = nn.Linear(layer.W.shape[1], layer.W.shape[0])
                m.weight.data = torch.from_numpy(np.array(layer.W))
                m.bias.data = torch.from_numpy(np.array(layer.b))
            elif isinstance(layer, Conv2d):
                oc, ic, kh, kw = layer.weight.shape
                m = nn.Conv2d(ic, oc, (kh, kw), stride=layer.stride, padding=layer.padding)
                m.weight.data = torch.from_numpy(np.array(layer.weight))
                m.bias.data = torch.from_numpy(np.array(layer.bias))
            elif isinstance(layer, Activation):
                m = (nn.LeakyReLU(layer.negative_slope) if layer.name == "leaky_relu" else
                     {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[layer.name]())
            elif isinstance(layer, AvgPool2d):
                m = nn.AvgPool2d(layer.kernel, layer.stride)
            elif isinstance(layer, MaxPool2d):
                m = nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)
            else:
                m = nn.Flatten(start_dim=1)
            mods.append(m)
        module = nn.Sequential(*mods).to(device=device, dtype=dtype).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate in float64 on a batch (B, *input_shape) or one sample; returns numpy."""
        import torch

        arr = np.asarray(x, dtype=np.float64)
        single = arr.shape == self.input_shape
        batch = arr.reshape((-1, *self.input_shape))
        with torch.no_grad():
            out = self.to_torch()(torch.from_numpy(np.array(batch))).numpy()
        return out[0] if single else out
