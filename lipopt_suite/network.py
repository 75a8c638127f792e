"""`Network`: the one network type, an immutable sequence of layers or a computation graph.

Convention (as torch.nn.Linear): an affine layer's `W` has shape (out, in), and an MLP is
f(x) = W_{K-1} rho(... rho(W_0 x + b_0) ...) + b_{K-1}. Weights are float64 numpy arrays,
read-only. Activations carry their slope bounds [alpha, beta].

A network is either sequential (`layers`, in order) or a computation graph (`nodes`): node
k >= 1 applies its op to the outputs of earlier nodes (id 0 is the input), and the last
node is the output, as the graph (g_1, ..., g_K) of Scaman & Virmaux (NeurIPS 2018,
Algorithm 2). A sequential network is the chain special case (`as_nodes`). Graph nodes may
also add, subtract or scale their inputs (`Add`), concatenate them (`Concat`), normalise
channels (`BatchNorm`, eval mode) and apply the activations of `GRAPH_ACTIVATIONS`.

`GroupSort` (contiguous groups of the features sorted ascending; MaxMin is group size 2) is
a layer of sequential networks and a graph op. It is not elementwise: `mlp()` refuses it,
and only methods that handle it ask for `mlp(groupsort=True)`.
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
# elementwise functions a graph node may apply (sequential layers keep to ACTIVATIONS)
GRAPH_ACTIVATIONS = ACTIVATIONS + ("softplus", "abs", "sin", "cos")
# [alpha, beta] with alpha <= (s(x) - s(y)) / (x - y) <= beta for all x != y: the
# derivative bounds of each elementwise function (softplus' = sigmoid in (0, 1); |sin'|,
# |cos'| <= 1); leaky_relu's depend on its slope
SLOPES = {"relu": (0.0, 1.0), "tanh": (0.0, 1.0), "sigmoid": (0.0, 0.25),
          "softplus": (0.0, 1.0), "abs": (-1.0, 1.0), "sin": (-1.0, 1.0), "cos": (-1.0, 1.0)}
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
        if self.name in SLOPES:
            return SLOPES[self.name]
        raise UnsupportedError(f"unknown activation {self.name!r}: use one of "
                               f"{GRAPH_ACTIVATIONS}")

    @property
    def lipschitz(self) -> float:
        alpha, beta = self.slopes
        return max(abs(alpha), abs(beta))

    @property
    def piecewise_linear(self) -> bool:
        return self.name in ("relu", "leaky_relu", "abs")


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


@dataclass(frozen=True)
class GroupSort:
    """Sort consecutive groups of `group_size` entries along the first axis of a sample,
    ascending (Anil, Lucas & Grosse, ICML 2019); group size 2 is MaxMin, each pair becoming
    (min, max). A permutation on each piece, 1-Lipschitz in every l_p norm."""

    group_size: int = 2
    type_name = "groupsort"

    def __post_init__(self) -> None:
        g = self.group_size
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
            raise InputError(f"group size must be a positive integer, got {g!r}")
        object.__setattr__(self, "group_size", int(g))

    def comparator_rounds(self, n: int) -> list[list[tuple[int, int]]]:
        """A sorting network of this sort on n features: rounds of disjoint comparators
        (i, j), i < j, each putting the smaller value at i and the larger at j. Odd-even
        transposition within each group: group_size rounds (one for MaxMin), which sort any
        input (Knuth, TAOCP vol. 3, 5.3.4)."""
        g = self.group_size
        rounds = [[(start + i, start + i + 1) for start in range(0, n, g)
                   for i in range(r % 2, g - 1, 2)] for r in range(g if g > 2 else 1)]
        return [r for r in rounds if r]


Layer = Union[Affine, Conv2d, Activation, MaxPool2d, AvgPool2d, Flatten, GroupSort]  # noqa: UP007
LINEAR_TYPES = (Affine, Conv2d, AvgPool2d)


# ------------------------------------------------------------------ graph-only ops
@dataclass(frozen=True)
class Add:
    """sum_i coeffs[i] * x_i + offset over inputs of one shape (a residual sum, a difference,
    a scaling by a constant, a constant shift)."""

    coeffs: tuple[float, ...] = (1.0, 1.0)
    offset: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))
        object.__setattr__(self, "offset", float(self.offset))

    type_name = "add"


@dataclass(frozen=True)
class Concat:
    """Concatenation of the inputs along `axis` of one sample (0: the channels of (C, H, W)
    or the features of a flat input)."""

    axis: int = 0
    type_name = "concat"


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Eval-mode batch normalisation: x_c -> scale_c x_c + shift_c along the first axis of a
    sample (channels of (C, H, W), features of a flat input): a diagonal affine map."""

    scale: np.ndarray
    shift: np.ndarray

    def __post_init__(self) -> None:
        scale = _frozen(self.scale).reshape(-1)
        shift = _frozen(np.zeros(scale.size) if self.shift is None else self.shift).reshape(-1)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "shift", shift)

    type_name = "batchnorm"


Op = Union[Layer, Add, Concat, BatchNorm]  # noqa: UP007
MULTI_INPUT = (Add, Concat)
WEIGHTED = (Affine, Conv2d, BatchNorm)  # ops that take arrays W{k}, b{k} in the .npz format


@dataclass(frozen=True)
class Node:
    """One node of a computation graph: `op` applied to the outputs of nodes `inputs`
    (id 0 is the network input, id k the k-th node)."""

    op: Op
    inputs: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(int(i) for i in self.inputs))


def op_name(op: Op) -> str:
    """The op's name as in the .npz layer spec (activations by their function's name)."""
    return op.name if isinstance(op, Activation) else getattr(op, "type_name", type(op).__name__)


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
    if isinstance(layer, Add):
        extra = f", offset {layer.offset:g}" if layer.offset else ""
        return f"Add(coeffs {', '.join(f'{c:g}' for c in layer.coeffs)}{extra})"
    if isinstance(layer, Concat):
        return f"Concat(axis {layer.axis})"
    if isinstance(layer, BatchNorm):
        return f"BatchNorm({layer.scale.size})"
    if isinstance(layer, GroupSort):
        return f"GroupSort({layer.group_size})"
    return f"{type(layer).__name__}()"


def _act_label(a: Activation | GroupSort) -> str:
    """'relu', 'maxmin' (GroupSort of pairs), 'groupsort4', ..."""
    if isinstance(a, GroupSort):
        return "maxmin" if a.group_size == 2 else f"groupsort{a.group_size}"
    return a.name


def _describe(index: int, layer: Layer, ordinal: dict[int, int], what: str = "layer") -> str:
    name = op_name(layer)
    if index in ordinal:
        return f"{what} {index} ({name}, W{ordinal[index]})"
    return f"{what} {index} ({name})"


def out_shape(layer: Op, in_shapes: Sequence[tuple[int, ...]], where: str,
               activations: tuple[str, ...] = ACTIVATIONS) -> tuple[int, ...]:
    """Shape of one sample after `layer` applied to inputs of `in_shapes` (InputError naming
    `where` when they do not fit)."""
    shape = in_shapes[0]
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
        return (W.shape[0],)
    if isinstance(layer, Conv2d):
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
        out = layer.out_shape(shape)
        if min(out[1:]) < 1:
            raise InputError(f"{where}: kernel larger than the padded input")
        return out
    if isinstance(layer, Pool2d):
        if len(shape) != 3:
            raise InputError(f"{where}: expects (C, H, W) input, got {shape}")
        if min(layer.stride) < 1 or min(layer.kernel) < 1 or min(layer.padding) < 0:
            raise InputError(f"{where}: kernel and stride must be >= 1")
        if isinstance(layer, AvgPool2d) and max(layer.padding) > 0:
            raise UnsupportedError(f"{where}: padded average pooling is not supported")
        out = layer.out_shape(shape)
        if min(out[1:]) < 1:
            raise InputError(f"{where}: pooling window larger than the input")
        return out
    if isinstance(layer, Flatten):
        return (int(np.prod(shape)),)
    if isinstance(layer, Activation):
        if layer.name not in activations:
            graph_only = layer.name in GRAPH_ACTIVATIONS
            raise UnsupportedError(f"{where}: unknown activation {layer.name!r} "
                                   f"(supported: {', '.join(activations)})"
                                   + ("; it is available in graph networks" if graph_only
                                      else ""))
        if not math.isfinite(layer.negative_slope):
            raise InputError(f"{where}: negative slope must be finite")
        return shape
    if isinstance(layer, Add):
        if len(layer.coeffs) != len(in_shapes):
            raise InputError(f"{where}: {len(layer.coeffs)} coefficients for "
                             f"{len(in_shapes)} inputs")
        if not all(math.isfinite(c) for c in (*layer.coeffs, layer.offset)):
            raise InputError(f"{where}: coefficients and offset must be finite")
        if any(abs(c) > MAX_ABS for c in (*layer.coeffs, layer.offset)):
            raise InputError(f"{where}: coefficients above {MAX_ABS:g} overflow products")
        if len(set(in_shapes)) != 1:
            raise InputError(f"{where}: inputs of different shapes {list(in_shapes)}")
        return shape
    if isinstance(layer, Concat):
        if not 0 <= layer.axis < len(shape):
            raise InputError(f"{where}: axis {layer.axis} outside a sample of shape {shape}")
        rest = {s[:layer.axis] + s[layer.axis + 1:] for s in in_shapes}
        if len(rest) != 1 or len({len(s) for s in in_shapes}) != 1:
            raise InputError(f"{where}: inputs {list(in_shapes)} differ off axis {layer.axis}")
        total = sum(s[layer.axis] for s in in_shapes)
        return shape[:layer.axis] + (total,) + shape[layer.axis + 1:]
    if isinstance(layer, BatchNorm):
        if layer.scale.shape != (shape[0],) or layer.shift.shape != (shape[0],):
            raise InputError(f"{where}: {layer.scale.size} scales and {layer.shift.size} "
                             f"shifts for an input of {shape[0]} channels")
        return shape
    if isinstance(layer, GroupSort):
        g = int(layer.group_size)
        if g < 1 or shape[0] % g:
            raise InputError(f"{where}: group size {g} does not divide the {shape[0]} "
                             "channels")
        return shape
    raise UnsupportedError(f"{where}: unsupported layer type {type(layer).__name__}")


def _arity_ok(op: Op, n: int) -> bool:
    return n >= 1 if isinstance(op, MULTI_INPUT) else n == 1


@dataclass(frozen=True, eq=False)
class Network:
    """An immutable feed-forward network: layers in order (or graph nodes) and the shape of
    one input.

    Values derived from the weights alone (shapes, the MLP view, torch modules, certified
    layer norms, region enumerations) are memoised on the network through `memo`, each
    under the name of the module that computes it; only that module reads its entries.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...] = ()  # a computation graph instead of `layers` (see module doc)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        nodes = tuple(n if isinstance(n, Node) else Node(*n) for n in self.nodes)
        object.__setattr__(self, "nodes", nodes)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mlp(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        activation: str | Sequence[str] = "relu",
        *,
        negative_slope: float = 0.01,
        group_size: int | Sequence[int] = 2,
    ) -> Network:
        """An MLP from weight matrices W_k of shape (out, in); biases default to zero.

        `activation` is one name or one per hidden layer: an elementwise activation of
        ACTIVATIONS, or "groupsort" (sorting contiguous groups of `group_size` features,
        one size or one per hidden layer) or "maxmin" (group size 2)."""
        weights = [np.asarray(W, dtype=np.float64) for W in weights]
        if not weights:
            raise InputError("empty network: no weight matrices")
        if biases is None:
            biases = [np.zeros(W.shape[0]) for W in weights]
        if len(biases) != len(weights):
            raise InputError(f"{len(weights)} weight matrices but {len(biases)} biases")
        hidden = len(weights) - 1
        acts = [activation] * hidden if isinstance(activation, str) else list(activation)
        if len(acts) != hidden:
            raise InputError(f"{len(weights)} layers need {hidden} activations")
        sizes = ([group_size] * hidden if isinstance(group_size, (int, np.integer))
                 else list(group_size))
        if len(sizes) != hidden:
            raise InputError(f"{hidden} hidden layers need {hidden} group sizes, got "
                             f"{len(sizes)}")
        layers: list[Layer] = []
        for k, (W, b) in enumerate(zip(weights, biases)):
            if W.ndim != 2:
                raise InputError(f"W{k} must be a matrix, got shape {W.shape}")
            layers.append(Affine(W, b))
            if k < hidden:
                if acts[k] in ("groupsort", "maxmin"):
                    g = 2 if acts[k] == "maxmin" else sizes[k]
                    if isinstance(g, bool) or not isinstance(g, (int, np.integer)):
                        raise InputError(f"group size of hidden layer {k} must be an integer, "
                                         f"got {g!r}")
                    layers.append(GroupSort(int(g)))
                else:
                    layers.append(Activation(acts[k], negative_slope))
        return cls(tuple(layers), (weights[0].shape[1],))

    @classmethod
    def from_graph(cls, nodes: Sequence[Node | tuple[Op, Sequence[int]]],
                   input_shape: Sequence[int]) -> Network:
        """A computation graph: node k (from 1) applies its op to nodes `inputs` (0 is the
        input); the last node is the output."""
        return cls((), tuple(input_shape), tuple(nodes))

    @property
    def is_graph(self) -> bool:
        """Whether the network is held as a computation graph (else a sequence of layers)."""
        return bool(self.nodes)

    def as_nodes(self) -> tuple[Node, ...]:
        """The network as graph nodes: the stored ones, or the chain of the layers."""
        if self.is_graph:
            return self.nodes
        return tuple(Node(layer, (i,)) for i, layer in enumerate(self.layers))

    def as_graph(self) -> Network:
        """The same function held as a computation graph (a sequential network's chain)."""
        return self if self.is_graph else Network((), self.input_shape, self.as_nodes())

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
        if self.is_graph:
            lines = [f"Network(input_shape={self.input_shape}, graph of {len(self.nodes)} "
                     "nodes:"]
            for k, node in enumerate(self.nodes, start=1):
                ins = ", ".join(map(str, node.inputs))
                lines.append(f"  {k}: {_layer_repr(node.op)} <- ({ins})")
            return "\n".join(lines) + ")"
        lines = [f"Network(input_shape={self.input_shape}, {len(self.layers)} layers:"]
        for i, layer in enumerate(self.layers):
            lines.append(f"  {i}: {_layer_repr(layer)}")
        return "\n".join(lines) + ")"

    # ------------------------------------------------------------------ shapes
    def _ordinals(self) -> dict[int, int]:
        """Index of each affine/conv layer among the weight layers (W0, W1, ...); for a
        graph, of each node (by id) holding arrays in the .npz format."""
        out, k = {}, 0
        if self.is_graph:
            for i, node in enumerate(self.nodes, start=1):
                if isinstance(node.op, WEIGHTED):
                    out[i] = k
                    k += 1
            return out
        for i, layer in enumerate(self.layers):
            if isinstance(layer, (Affine, Conv2d)):
                out[i] = k
                k += 1
        return out

    def shapes(self) -> list[tuple[int, ...]]:
        """Shape of one sample before the first layer and after each layer (for a graph:
        indexed by node id, 0 the input)."""
        return list(self.memo(__name__, "shapes", self._compute_shapes))

    def _compute_shapes(self) -> list[tuple[int, ...]]:
        ordinal = self._ordinals()
        if self.is_graph:
            shapes = [self.input_shape]
            for k, node in enumerate(self.nodes, start=1):
                where = _describe(k, node.op, ordinal, "node")
                if not _arity_ok(node.op, len(node.inputs)):
                    takes = "inputs" if isinstance(node.op, MULTI_INPUT) else "one input"
                    raise InputError(f"{where}: takes {takes}, got {len(node.inputs)}")
                bad = [i for i in node.inputs if not 0 <= i < k]
                if bad:
                    raise InputError(f"{where}: input {bad[0]} is not an earlier node "
                                     f"(0..{k - 1})")
                shapes.append(out_shape(node.op, [shapes[i] for i in node.inputs], where,
                                         GRAPH_ACTIVATIONS))
            return shapes
        shape = self.input_shape
        shapes = [shape]
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (Affine, Conv2d, Pool2d, Flatten, Activation, GroupSort)):
                raise UnsupportedError(f"layer {i}: unsupported layer type {type(layer).__name__}")
            shape = out_shape(layer, [shape], _describe(i, layer, ordinal))
            shapes.append(shape)
        return shapes

    def validate(self) -> Network:
        """Check the network: non-empty, finite weights, consistent shapes. Returns self."""
        if self.is_graph and self.layers:
            raise InputError("a network holds either layers or graph nodes, not both")
        if not self.layers and not self.nodes:
            raise InputError("empty network: no layers")
        if not self.input_shape or min(self.input_shape) < 1:
            raise InputError(f"invalid input shape {self.input_shape}")
        ops = [n.op for n in self.nodes] if self.is_graph else list(self.layers)
        if not self.is_graph and not any(isinstance(layer, LINEAR_TYPES) for layer in ops):
            raise InputError("network has no affine or convolution layer")
        ordinal = self._ordinals()
        what = "node" if self.is_graph else "layer"
        first = 1 if self.is_graph else 0
        for i, layer in enumerate(ops, start=first):
            for arr_name in ("W", "b", "weight", "bias", "scale", "shift"):
                arr = getattr(layer, arr_name, None)
                where = _describe(i, layer, ordinal, what)
                if isinstance(arr, np.ndarray) and not np.all(np.isfinite(arr)):
                    raise InputError(f"{where}: {arr_name} contains NaN or inf")
                if isinstance(arr, np.ndarray) and arr.size and np.abs(arr).max() > MAX_ABS:
                    raise InputError(f"{where}: {arr_name} has entries "
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
        ops = [n.op for n in self.nodes] if self.is_graph else self.layers
        return [layer for layer in ops if isinstance(layer, Activation)]

    @property
    def groupsorts(self) -> list[GroupSort]:
        """The GroupSort layers (or graph nodes), in order."""
        ops = [n.op for n in self.nodes] if self.is_graph else self.layers
        return [layer for layer in ops if isinstance(layer, GroupSort)]

    @property
    def has_groupsort(self) -> bool:
        return bool(self.groupsorts)

    @property
    def is_relu(self) -> bool:
        """Piecewise linear with ReLU as its only activation (max/avg pooling allowed; no
        GroupSort)."""
        return not self.has_groupsort and all(a.name == "relu" for a in self.activations)

    @property
    def is_piecewise_linear(self) -> bool:
        """Every activation piecewise linear (GroupSort is)."""
        return all(a.piecewise_linear for a in self.activations)

    @property
    def is_mlp(self) -> bool:
        """An MLP with elementwise activations (`mlp()` succeeds)."""
        try:
            self.mlp()
        except InputError:
            return False
        return True

    @property
    def is_groupsort_mlp(self) -> bool:
        """An MLP whose hidden activations are GroupSort (or elementwise), with at least one
        GroupSort (`mlp(groupsort=True)` succeeds)."""
        if not self.has_groupsort:
            return False
        try:
            self.mlp(groupsort=True)
        except InputError:
            return False
        return True

    @property
    def num_linear(self) -> int:
        ops = [n.op for n in self.nodes] if self.is_graph else self.layers
        return sum(isinstance(layer, (Affine, Conv2d)) for layer in ops)

    def mlp(self, *, groupsort: bool = False) -> tuple[list[np.ndarray], list[np.ndarray],
                                                        list[Any]]:
        """(weights, biases, activations) of an MLP: affine layers with one activation between
        consecutive ones. Raises UnsupportedError naming the first layer that does not fit.

        The activations are elementwise `Activation`s; a GroupSort layer is refused unless
        `groupsort=True`, for methods that handle it (the list then holds `GroupSort`
        entries too, which have no slopes)."""
        if not groupsort and self.has_groupsort and not self.is_graph:
            ops = list(self.layers)
            i = next(k for k, op in enumerate(ops) if isinstance(op, GroupSort))
            raise UnsupportedError(
                f"not an elementwise MLP: layer {i} is GroupSort({ops[i].group_size}), not an "
                "elementwise activation (this method needs slope-restricted elementwise "
                "activations)")
        return self.memo(__name__, "mlp", self._compute_mlp)

    def _compute_mlp(self) -> tuple[list[np.ndarray], list[np.ndarray], list[Any]]:
        if self.is_graph:
            raise UnsupportedError(f"not an MLP: a computation graph of {len(self.nodes)} "
                                   "nodes (this method needs Linear/activation layers only)")
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
            elif not expect_affine and isinstance(layer, (Activation, GroupSort)):
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
        if self.is_graph:
            counts: dict[str, int] = {}
            for node in self.nodes:
                counts[op_name(node.op)] = counts.get(op_name(node.op), 0) + 1
            ops = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())
            return (f"graph {self.input_shape} -> {self.output_shape}: {len(self.nodes)} "
                    f"nodes ({ops})")
        if self.is_mlp or self.is_groupsort_mlp:
            ws, _, acts = self.mlp(groupsort=True)
            sizes = [ws[0].shape[1]] + [W.shape[0] for W in ws]
            names = sorted({_act_label(a) for a in acts}) or ["linear"]
            return f"mlp {'-'.join(map(str, sizes))} {'/'.join(names)}"
        kinds = [_act_label(layer) if isinstance(layer, (Activation, GroupSort))
                 else layer.type_name for layer in self.layers]
        return f"net {self.input_shape} -> {self.output_shape}: " + ", ".join(kinds)

    # ------------------------------------------------------------------ torch
    def to_torch(self, device: Any = None, dtype: Any = None):
        """An nn.Module computing the same function on batches (B, *input_shape): an
        nn.Sequential for a sequential network, a module walking the nodes for a graph."""
        import torch

        dtype = dtype or torch.float64
        return self.memo(__name__, ("torch", str(device), str(dtype)),
                         lambda: self._build_torch(device, dtype))

    def _build_torch(self, device: Any, dtype: Any):
        from torch import nn

        self.validate()
        if self.is_graph:
            mods = [_torch_op(node.op) for node in self.nodes]
            module = _torch_classes()["GraphModule"](mods, [n.inputs for n in self.nodes])
        else:
            module = nn.Sequential(*[_torch_op(layer) for layer in self.layers])
        module = module.to(device=device, dtype=dtype).eval()
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


# ------------------------------------------------------------------ torch modules
def _torch_op(layer: Op):
    """The nn.Module of one layer or graph op (float64; moved by the caller)."""
    import torch
    from torch import nn

    cls = _torch_classes()
    if isinstance(layer, Affine):
        m = nn.Linear(layer.W.shape[1], layer.W.shape[0])
        m.weight.data = torch.from_numpy(np.array(layer.W))
        m.bias.data = torch.from_numpy(np.array(layer.b))
        return m
    if isinstance(layer, Conv2d):
        oc, ic, kh, kw = layer.weight.shape
        m = nn.Conv2d(ic, oc, (kh, kw), stride=layer.stride, padding=layer.padding)
        m.weight.data = torch.from_numpy(np.array(layer.weight))
        m.bias.data = torch.from_numpy(np.array(layer.bias))
        return m
    if isinstance(layer, Activation):
        if layer.name == "leaky_relu":
            return nn.LeakyReLU(layer.negative_slope)
        simple = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        if layer.name in simple:
            return simple[layer.name]()
        return cls["Elementwise"](layer.name)
    if isinstance(layer, AvgPool2d):
        return nn.AvgPool2d(layer.kernel, layer.stride)
    if isinstance(layer, MaxPool2d):
        return nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)
    if isinstance(layer, Flatten):
        return nn.Flatten(start_dim=1)
    if isinstance(layer, Add):
        return cls["AddModule"](layer.coeffs, layer.offset)
    if isinstance(layer, Concat):
        return cls["ConcatModule"](layer.axis)
    if isinstance(layer, BatchNorm):
        return cls["ChannelAffine"](layer.scale, layer.shift)
    if isinstance(layer, GroupSort):
        return cls["GroupSortModule"](layer.group_size)
    raise UnsupportedError(f"no torch module for {type(layer).__name__}")


_TORCH_CLASSES: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`GroupSortModule`, the torch module of GroupSort, defined on first use (so that
    importing this module does not import torch)."""
    if name == "GroupSortModule":
        return _torch_classes()["GroupSortModule"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _torch_classes() -> dict[str, Any]:
    """The small nn.Modules of the graph ops, defined on first use (torch imported lazily)."""
    if _TORCH_CLASSES:
        return _TORCH_CLASSES
    import torch
    from torch import nn

    class GraphModule(nn.Module):
        """Evaluates the nodes in order; node k reads the outputs of its input nodes."""

        def __init__(self, mods: list, inputs: list[tuple[int, ...]]) -> None:
            super().__init__()
            self.ops = nn.ModuleList(mods)
            self.inputs = [tuple(i) for i in inputs]
            # when each value is read for the last time, so that it can be dropped
            last = {}
            for k, ins in enumerate(self.inputs, start=1):
                for i in ins:
                    last[i] = k
            self.release = [[i for i, k2 in last.items() if k2 == k]
                            for k in range(1, len(self.inputs) + 1)]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values: dict[int, torch.Tensor] = {0: x}
            out = x
            for k, (op, ins) in enumerate(zip(self.ops, self.inputs), start=1):
                out = op(*[values[i] for i in ins])
                for i in self.release[k - 1]:
                    del values[i]
                values[k] = out
            return out

    class Elementwise(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.name == "softplus":
                # log(1 + e^x) to a few ulps everywhere (torch's softplus switches to x
                # above a threshold, a jump of up to 2e-9)
                return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))
            return {"abs": torch.abs, "sin": torch.sin, "cos": torch.cos}[self.name](x)

        def extra_repr(self) -> str:
            return self.name

    class AddModule(nn.Module):
        def __init__(self, coeffs: tuple[float, ...], offset: float) -> None:
            super().__init__()
            self.coeffs, self.offset = tuple(coeffs), float(offset)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            out = xs[0] if self.coeffs[0] == 1.0 else self.coeffs[0] * xs[0]
            for c, x in zip(self.coeffs[1:], xs[1:]):
                out = out + x if c == 1.0 else out + c * x
            return out + self.offset if self.offset else out

    class ConcatModule(nn.Module):
        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = int(axis)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return torch.cat(xs, dim=self.axis + 1)

    class ChannelAffine(nn.Module):
        def __init__(self, scale: np.ndarray, shift: np.ndarray) -> None:
            super().__init__()
            self.register_buffer("scale", torch.from_numpy(np.array(scale)))
            self.register_buffer("shift", torch.from_numpy(np.array(shift)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            view = (-1,) + (1,) * (x.dim() - 2)
            return x * self.scale.reshape(view) + self.shift.reshape(view)

    class GroupSortModule(nn.Module):
        """GroupSort for torch (which has none): contiguous groups of `group_size` along
        dim 1 sorted ascending (group size 2: MaxMin). `io.from_torch` reads it as a
        GroupSort layer."""

        def __init__(self, group_size: int = 2) -> None:
            super().__init__()
            g = group_size
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
                raise InputError(f"group size must be a positive integer, got {g!r}")
            self.group_size = int(g)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            g = self.group_size
            if x.dim() < 2 or x.shape[1] % g:
                raise InputError(f"GroupSort({g}) needs a feature axis (dim 1) divisible "
                                 f"by {g}, got input of shape {tuple(x.shape)}")
            grouped = x.reshape(x.shape[0], x.shape[1] // g, g, *x.shape[2:])
            return torch.sort(grouped, dim=2).values.reshape(x.shape)

        def extra_repr(self) -> str:
            return f"group_size={self.group_size}"

    _TORCH_CLASSES.update(GraphModule=GraphModule, Elementwise=Elementwise,
                          AddModule=AddModule, ConcatModule=ConcatModule,
                          ChannelAffine=ChannelAffine, GroupSortModule=GroupSortModule)
    return _TORCH_CLASSES
