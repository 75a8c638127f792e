"""Reading and writing networks: .npz (canonical), torch modules and state dicts, .nnet, .onnx.

Nothing here unpickles: npz files are read with allow_pickle=False and torch files with
weights_only=True. Every failure is an InputError with one line naming the file and the fault.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UnsupportedError
from .network import (
    ACTIVATIONS,
    GRAPH_ACTIVATIONS,
    Activation,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    GroupSort,
    Layer,
    MaxPool2d,
    Network,
    Node,
    Op,
    out_shape,
)

NETWORK_SUFFIXES = (".npz", ".pt", ".pth", ".nnet", ".onnx")
# `activation` values of an MLP file besides ACTIVATIONS: GroupSort (with `group_size`) and
# MaxMin (GroupSort of pairs)
SORT_ACTIVATIONS = ("groupsort", "maxmin")


def load(path: str | Path, *, activation: str | None = None) -> Network:
    """Load a network from .npz, a torch state dict (.pt/.pth), .nnet or .onnx; validated."""
    return load_problem(path, activation=activation)[0]


def load_problem(path: str | Path, *, activation: str | None = None
                 ) -> tuple[Network, dict[str, np.ndarray]]:
    """Load a network and the extra arrays stored beside it (`X` data points, `center`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a network file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        net, extras = _load_npz(p, activation)
    elif suffix in (".pt", ".pth"):
        try:
            net, extras = load_state_dict(p, activation=activation or "relu"), {}
        except (InputError, UnsupportedError) as exc:
            if str(exc).startswith(str(p)):
                raise
            raise type(exc)(f"{p}: {exc}") from None
        except (RuntimeError, ValueError) as exc:  # torch's own complaints about the tensors
            raise InputError(f"{p}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                             ) from None
    elif suffix == ".nnet":
        net, extras = _load_nnet(p), {}
    elif suffix == ".onnx":
        net, extras = _load_onnx(p), {}
    else:
        raise InputError(f"{p}: unknown network format {suffix!r} "
                         f"(use one of {', '.join(NETWORK_SUFFIXES)})")
    try:
        net.validate()
    except InputError as exc:
        raise type(exc)(f"{p}: {exc}") from None
    if "X" in extras:
        net.points(extras["X"], f"{p}: 'X'")
    if "center" in extras:
        center = extras["center"]
        if center.size != net.input_dim:
            raise InputError(f"{p}: 'center' has shape {center.shape}, expected "
                             f"{net.input_dim} entries")
        if not np.all(np.isfinite(center)):
            raise InputError(f"{p}: 'center' contains NaN or inf")
    return net, extras


# ---------------------------------------------------------------------------------- npz
def _read_npz(p: Path) -> dict[str, np.ndarray]:
    with open(p, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise InputError(f"{p}: not a .npz file (no zip signature)")
    try:
        with np.load(p, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
        for k, v in out.items():
            if not isinstance(v, np.ndarray):
                raise InputError(f"{p}: member {k!r} is not a .npy array")
        return out
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"{p}: holds object arrays that need unpickling; refused "
                             "(store plain numeric and string arrays)") from None
        raise InputError(f"{p}: not a readable .npz file ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise InputError(f"{p}: not a readable .npz file (truncated or corrupt: "
                         f"{str(exc) or type(exc).__name__})") from None


def _string(arr: np.ndarray, name: str, p: Path) -> str:
    if arr.dtype.kind not in "US" or arr.size != 1:
        raise InputError(f"{p}: '{name}' must be a single string")
    v = arr.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)


def _numeric(arr: np.ndarray, name: str, p: Path) -> np.ndarray:
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{p}: array '{name}' is not numeric (dtype {arr.dtype})")
    return arr.astype(np.float64)


def _load_npz(p: Path, activation: str | None) -> tuple[Network, dict[str, np.ndarray]]:
    data = _read_npz(p)
    ws = sorted(int(m.group(1)) for k in data if (m := re.fullmatch(r"W(\d+)", k)))
    if not ws and "layers" not in data:  # a graph may hold no weights (f_w of the paper)
        raise InputError(f"{p}: no weight arrays (expected W0, b0, W1, b1, ...)")
    if ws != list(range(len(ws))):
        raise InputError(f"{p}: weight arrays must be numbered W0..W{len(ws) - 1} without gaps")
    weights = [_numeric(data[f"W{k}"], f"W{k}", p) for k in ws]
    have_b = [f"b{k}" in data for k in ws]
    if any(have_b) and not all(have_b):
        missing = [f"b{k}" for k in ws if f"b{k}" not in data]
        raise InputError(f"{p}: missing bias arrays {', '.join(missing)}")
    biases = [_numeric(data[f"b{k}"], f"b{k}", p).reshape(-1) if have_b[k]
              else np.zeros(weights[k].shape[0]) for k in ws]
    act = activation or (_string(data["activation"], "activation", p)
                         if "activation" in data else "relu")
    if act not in ACTIVATIONS + SORT_ACTIVATIONS:
        raise UnsupportedError(f"{p}: unknown activation {act!r} "
                               f"(supported: {', '.join(ACTIVATIONS + SORT_ACTIVATIONS)})")
    extras = {k: _numeric(data[k], k, p) for k in ("X", "center") if k in data}
    if "layers" in data:
        spec_text = _string(data["layers"], "layers", p)
        if "input_shape" not in data:
            raise InputError(f"{p}: 'layers' given without 'input_shape'")
        shape = tuple(int(s) for s in np.asarray(data["input_shape"]).reshape(-1))
        spec = _parse_spec(spec_text, p)
        if any("inputs" in entry for entry in spec):
            return Network((), shape, _graph_from_spec(spec, weights, biases, p)), extras
        layers = _layers_from_spec(spec, weights, biases, p)
        return Network(tuple(layers), shape), extras
    for k, W in enumerate(weights):
        if W.ndim != 2:
            raise InputError(f"{p}: W{k} has shape {W.shape}; an MLP file needs matrices "
                             "(add a 'layers' spec for convolutions)")
    if act == "groupsort":
        sizes = _group_sizes(data, len(weights) - 1, p)
        return Network.from_mlp(weights, biases, act, group_size=sizes), extras
    return Network.from_mlp(weights, biases, act), extras


def _group_sizes(data: dict[str, np.ndarray], hidden: int, p: Path) -> list[int]:
    """The `group_size` array of a GroupSort MLP file: positive integers, one per hidden
    layer or one for all."""
    if "group_size" not in data:
        raise InputError(f"{p}: activation 'groupsort' needs an integer array 'group_size' "
                         "(one entry per hidden layer, or one for all)")
    arr = data["group_size"]
    if arr.dtype.kind not in "iu":
        raise InputError(f"{p}: 'group_size' must hold integers, got dtype {arr.dtype}")
    sizes = [int(g) for g in arr.reshape(-1)]
    if len(sizes) == 1:
        sizes = sizes * hidden
    if len(sizes) != hidden:
        raise InputError(f"{p}: 'group_size' has {len(sizes)} entries for {hidden} hidden "
                         "layers (give one per hidden layer, or one for all)")
    if any(g < 1 for g in sizes):
        raise InputError(f"{p}: 'group_size' entries must be >= 1, got {sizes}")
    return sizes


def _parse_spec(text: str, p: Path) -> list[dict[str, Any]]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: 'layers' is not valid JSON ({exc.msg})") from None
    if not isinstance(spec, list) or not all(isinstance(s, dict) for s in spec):
        raise InputError(f"{p}: 'layers' must be a JSON list of objects")
    return spec


def _graph_from_spec(spec: list[dict[str, Any]], weights: list[np.ndarray],
                     biases: list[np.ndarray], p: Path) -> tuple[Node, ...]:
    """Graph nodes from a layer spec whose entries carry "inputs" (ids of earlier entries,
    counted from 1; 0 is the network input; an entry without "inputs" reads the one
    before it)."""
    nodes: list[Node] = []
    k = 0
    for i, s in enumerate(spec):
        kind = str(s.get("type", "")).lower()
        where = f"{p}: layers[{i}] ({kind})"
        try:
            inputs = s.get("inputs", [i])
            if (not isinstance(inputs, list) or not inputs
                    or not all(isinstance(j, int) and not isinstance(j, bool) for j in inputs)):
                raise InputError(f"{where}: 'inputs' must be a non-empty list of node ids")
            if kind in ("linear", "conv2d", "batchnorm"):
                if k >= len(weights):
                    raise InputError(f"{where} has no W{k} in the file")
                if kind == "linear":
                    op: Op = Affine(weights[k], biases[k])
                elif kind == "conv2d":
                    op = Conv2d(weights[k], biases[k], s.get("stride", 1), s.get("padding", 0))
                else:
                    op = BatchNorm(weights[k], biases[k])
                k += 1
            elif kind in GRAPH_ACTIVATIONS:
                op = Activation(kind, float(s.get("negative_slope", 0.01)))
            elif kind in ("maxpool2d", "avgpool2d"):
                kernel = s["kernel"]
                cls = MaxPool2d if kind == "maxpool2d" else AvgPool2d
                op = cls(kernel, s.get("stride", kernel), s.get("padding", 0))
            elif kind == "flatten":
                op = Flatten()
            elif kind == "add":
                op = Add(tuple(s.get("coeffs", [1.0] * len(inputs))), s.get("offset", 0.0))
            elif kind == "concat":
                op = Concat(int(s.get("axis", 0)))
            elif kind == "groupsort":
                op = GroupSort(_spec_int(s.get("group_size", 2), "group_size"))
            elif kind == "maxmin":
                op = GroupSort(2)
            else:
                raise UnsupportedError(f"{where}: unsupported type {kind!r} in a graph")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{where} is malformed: {exc}") from None
        nodes.append(Node(op, tuple(inputs)))
    if k != len(weights):
        raise InputError(f"{p}: the file has {len(weights)} weight arrays but 'layers' uses {k}")
    return tuple(nodes)


def _spec_int(v: Any, name: str) -> int:
    """A whole number of the JSON spec (a bool or a float with a fraction is refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise InputError(f"{name} must be an integer, got {v!r}")
    return int(v)


def _layers_from_spec(spec: list[dict[str, Any]], weights: list[np.ndarray],
                      biases: list[np.ndarray], p: Path) -> list[Layer]:
    layers: list[Layer] = []
    k = 0
    for i, s in enumerate(spec):
        kind = str(s.get("type", "")).lower()
        try:
            if kind in ("linear", "conv2d"):
                if k >= len(weights):
                    raise InputError(f"{p}: layers[{i}] ({kind}) has no W{k} in the file")
                if kind == "linear":
                    layers.append(Affine(weights[k], biases[k]))
                else:
                    layers.append(Conv2d(weights[k], biases[k], s.get("stride", 1),
                                         s.get("padding", 0)))
                k += 1
            elif kind in ("relu", "tanh", "sigmoid"):
                layers.append(Activation(kind))
            elif kind == "leaky_relu":
                layers.append(Activation(kind, float(s.get("negative_slope", 0.01))))
            elif kind in ("maxpool2d", "avgpool2d"):
                kernel = s["kernel"]
                cls = MaxPool2d if kind == "maxpool2d" else AvgPool2d
                layers.append(cls(kernel, s.get("stride", kernel), s.get("padding", 0)))
            elif kind == "flatten":
                layers.append(Flatten())
            elif kind == "groupsort":
                layers.append(GroupSort(_spec_int(s.get("group_size", 2), "group_size")))
            elif kind == "maxmin":
                layers.append(GroupSort(2))
            elif kind in ("dropout", "identity"):
                continue
            else:
                raise UnsupportedError(f"{p}: layers[{i}] has unsupported type {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{p}: layers[{i}] ({kind}) is malformed: {exc}") from None
    if k != len(weights):
        raise InputError(f"{p}: the file has {len(weights)} weight arrays but 'layers' uses {k}")
    return layers


def save(net: Network, path: str | Path, **extras: np.ndarray) -> Path:
    """Write the canonical .npz; extras (X, center) are stored beside the weights."""
    net.validate()
    p = Path(path)
    arrays: dict[str, np.ndarray] = {}
    k = 0
    for layer in (n.op for n in net.as_nodes()):
        if isinstance(layer, Affine):
            arrays[f"W{k}"], arrays[f"b{k}"] = np.array(layer.W), np.array(layer.b)
            k += 1
        elif isinstance(layer, Conv2d):
            arrays[f"W{k}"], arrays[f"b{k}"] = np.array(layer.weight), np.array(layer.bias)
            k += 1
        elif isinstance(layer, BatchNorm):
            arrays[f"W{k}"], arrays[f"b{k}"] = np.array(layer.scale), np.array(layer.shift)
            k += 1
    sort_mlp = net.is_groupsort_mlp and not net.activations  # every hidden layer a sort
    if net.is_mlp and len({a.name for a in net.activations}) <= 1 and all(
            a.negative_slope == 0.01 for a in net.activations):
        arrays["activation"] = np.array(net.activations[0].name if net.activations else "relu")
    elif sort_mlp:
        arrays["activation"] = np.array("groupsort")
        arrays["group_size"] = np.array([g.group_size for g in net.groupsorts], dtype=np.int64)
    else:
        arrays["layers"] = np.array(json.dumps(layer_spec(net)))
        arrays["input_shape"] = np.array(net.input_shape, dtype=np.int64)
    for name, value in extras.items():
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float64)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **arrays)
    return p


def layer_spec(net: Network) -> list[dict[str, Any]]:
    """The JSON layer list of the .npz format (for a graph, each entry with its "inputs")."""
    out: list[dict[str, Any]] = []
    for node in net.as_nodes():
        layer = node.op
        if isinstance(layer, Add):
            out.append({"type": "add", "coeffs": list(layer.coeffs), "offset": layer.offset})
        elif isinstance(layer, Concat):
            out.append({"type": "concat", "axis": layer.axis})
        elif isinstance(layer, BatchNorm):
            out.append({"type": "batchnorm"})
        elif isinstance(layer, GroupSort):
            out.append({"type": "groupsort", "group_size": layer.group_size})
        elif isinstance(layer, Affine):
            out.append({"type": "linear"})
        elif isinstance(layer, Conv2d):
            out.append({"type": "conv2d", "stride": list(layer.stride),
                        "padding": list(layer.padding)})
        elif isinstance(layer, Activation):
            d: dict[str, Any] = {"type": layer.name}
            if layer.name == "leaky_relu":
                d["negative_slope"] = layer.negative_slope
            out.append(d)
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            out.append({"type": layer.type_name, "kernel": list(layer.kernel),
                        "stride": list(layer.stride), "padding": list(layer.padding)})
        else:
            out.append({"type": "flatten"})
        if net.is_graph:
            out[-1]["inputs"] = list(node.inputs)
    return out


# ---------------------------------------------------------------------------------- torch
def from_torch(module: Any, input_shape: tuple[int, ...] | None = None) -> Network:
    """Convert a torch module into a Network.

    An nn.Sequential (nested ones flattened) of the layers of section 3 of docs/DESIGN.md
    becomes a sequential network; eval-mode BatchNorm is folded into the preceding
    Linear/Conv2d (or kept as its own affine layer when nothing precedes it); Dropout and
    Identity are dropped. Any other module is traced with torch.fx into a computation graph
    (`trace_torch`), which becomes a sequential network again when it is a chain.
    """
    from torch import nn

    if isinstance(module, nn.Sequential):
        mods = list(_flatten_modules(module))
        if all(isinstance(m, _sequential_modules()) for m in mods):
            return _from_sequential(mods, input_shape)
    return trace_torch(module, input_shape)


def _sequential_modules() -> tuple[type, ...]:
    from torch import nn

    return (nn.Linear, nn.Conv2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d,
            nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d,
            _groupsort_module())


def _groupsort_module() -> type:
    """The package's torch module of GroupSort (network.GroupSortModule)."""
    from . import network

    return network.GroupSortModule


def _from_sequential(mods: list[Any], input_shape: tuple[int, ...] | None) -> Network:
    from torch import nn

    layers: list[Layer] = []
    for i, m in enumerate(mods):
        name = type(m).__name__
        if isinstance(m, nn.Linear):
            b = m.bias.detach().cpu().numpy() if m.bias is not None else None
            layers.append(Affine(m.weight.detach().cpu().numpy(), b))
        elif isinstance(m, nn.Conv2d):
            layers.append(_conv_from_torch(m, f"module {i} ({name})"))
        elif isinstance(m, nn.ReLU):
            layers.append(Activation("relu"))
        elif isinstance(m, nn.LeakyReLU):
            layers.append(Activation("leaky_relu", float(m.negative_slope)))
        elif isinstance(m, nn.Tanh):
            layers.append(Activation("tanh"))
        elif isinstance(m, nn.Sigmoid):
            layers.append(Activation("sigmoid"))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            layers.append(_pool_from_torch(m, f"module {i} ({name})"))
        elif isinstance(m, nn.Flatten):
            layers.append(Flatten())
        elif isinstance(m, _groupsort_module()):
            layers.append(GroupSort(m.group_size))
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            continue
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layers = _fold_batchnorm(layers, m, i)
        else:
            raise UnsupportedError(f"module {i}: unsupported layer {name}")
    if not layers:
        raise InputError("empty network: the module has no supported layers")
    if input_shape is None:
        first = next((layer for layer in layers if isinstance(layer, (Affine, Conv2d))), None)
        if isinstance(first, Affine) and isinstance(layers[0], (Affine, Activation, GroupSort)):
            input_shape = (first.W.shape[1],)
        else:
            raise InputError("input_shape is needed for networks that start with a "
                             "convolution, pooling or flatten")
    return Network(tuple(layers), tuple(input_shape)).validate()


def _conv_from_torch(m: Any, where: str) -> Conv2d:
    if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
        raise UnsupportedError(f"{where}: only groups=1, dilation=1, zero padding are "
                               "supported")
    if isinstance(m.padding, str):
        raise UnsupportedError(f"{where}: string padding is not supported")
    b = m.bias.detach().cpu().numpy() if m.bias is not None else None
    return Conv2d(m.weight.detach().cpu().numpy(), b, m.stride, m.padding)


def _pool_from_torch(m: Any, where: str) -> MaxPool2d | AvgPool2d:
    from torch import nn

    if isinstance(m, nn.MaxPool2d) and (m.dilation not in (1, (1, 1)) or m.ceil_mode
                                        or m.return_indices):
        raise UnsupportedError(f"{where}: dilation/ceil_mode/return_indices not supported")
    if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or m.padding not in (0, (0, 0))
                                        or m.divisor_override is not None):
        raise UnsupportedError(f"{where}: padding/ceil_mode/divisor_override not supported")
    cls = MaxPool2d if isinstance(m, nn.MaxPool2d) else AvgPool2d
    stride = m.stride if m.stride is not None else m.kernel_size
    return cls(m.kernel_size, stride, m.padding)


def _flatten_modules(module: Any):
    from torch import nn

    if isinstance(module, nn.Sequential):
        for m in module:
            yield from _flatten_modules(m)
    else:
        yield module


def _fold_batchnorm(layers: list[Layer], bn: Any, index: int) -> list[Layer]:
    if bn.training or bn.running_mean is None:
        raise UnsupportedError(f"module {index}: BatchNorm must be in eval mode with running "
                               "statistics (call module.eval())")
    var = bn.running_var.detach().cpu().numpy().astype(np.float64)
    mean = bn.running_mean.detach().cpu().numpy().astype(np.float64)
    gamma = (bn.weight.detach().cpu().numpy() if bn.weight is not None
             else np.ones_like(mean)).astype(np.float64)
    beta = (bn.bias.detach().cpu().numpy() if bn.bias is not None
            else np.zeros_like(mean)).astype(np.float64)
    if not np.all(var + bn.eps > 0):
        raise InputError(f"module {index}: BatchNorm running_var must be >= 0")
    scale = gamma / np.sqrt(var + bn.eps)
    shift = beta - scale * mean
    prev = layers[-1] if layers else None
    width = (prev.W.shape[0] if isinstance(prev, Affine) else
             prev.weight.shape[0] if isinstance(prev, Conv2d) else scale.size)
    if not (mean.size == var.size == gamma.size == beta.size == width):
        raise InputError(f"module {index}: BatchNorm of {mean.size} features after a layer "
                         f"with {width} outputs")
    if isinstance(prev, Affine):
        return layers[:-1] + [Affine(scale[:, None] * prev.W, scale * prev.b + shift)]
    if isinstance(prev, Conv2d):
        return layers[:-1] + [Conv2d(scale[:, None, None, None] * prev.weight,
                                     scale * prev.bias + shift, prev.stride, prev.padding)]
    # Nothing to fold into: keep it as its own affine layer.
    if type(bn).__name__ == "BatchNorm1d":
        return layers + [Affine(np.diag(scale), shift)]
    weight = np.zeros((scale.size, scale.size, 1, 1))
    weight[np.arange(scale.size), np.arange(scale.size), 0, 0] = scale
    return layers + [Conv2d(weight, shift)]


# ---------------------------------------------------------------------------- graphs
class GraphBuilder:
    """Collects graph nodes with their shapes while a traced module or an ONNX graph is read,
    and finishes into a Network (`network`)."""

    def __init__(self, input_shape: tuple[int, ...], where: str) -> None:
        self.ops: list[Op] = []
        self.inputs: list[tuple[int, ...]] = []
        self.shapes: list[tuple[int, ...]] = [tuple(int(d) for d in input_shape)]
        self.where = where

    def add(self, op: Op, inputs: tuple[int, ...], what: str) -> int:
        """Append a node (ids of its inputs); returns its id."""
        shape = out_shape(op, [self.shapes[i] for i in inputs], f"{self.where}{what}",
                          GRAPH_ACTIVATIONS)
        self.ops.append(op)
        self.inputs.append(tuple(inputs))
        self.shapes.append(shape)
        return len(self.ops)

    def network(self, output: int) -> Network:
        """The nodes the output depends on, renumbered in order, with each batch norm (or
        per-channel bias) folded into the Linear/Conv2d before it when nothing else reads
        that layer; a chain of sequential layers becomes a sequential network."""
        ops, inputs = list(self.ops), list(self.inputs)
        alias = {k: k for k in range(len(ops) + 1)}
        readers: dict[int, int] = {}
        for ins in inputs:
            for i in ins:
                readers[i] = readers.get(i, 0) + 1
        for k in range(1, len(ops) + 1):
            inputs[k - 1] = tuple(alias[i] for i in inputs[k - 1])
            op = ops[k - 1]
            if not isinstance(op, BatchNorm):
                continue
            j, read = inputs[k - 1][0], self.inputs[k - 1][0]
            folded = _fold_into(ops[j - 1], op) if j >= 1 and readers.get(read) == 1 else None
            if folded is not None and j != output:
                ops[j - 1] = folded
                alias[k] = j
        output = alias[output]
        keep = {output}
        for k in range(output, 0, -1):
            if k in keep:
                keep.update(inputs[k - 1])
        ids = {0: 0}
        nodes: list[Node] = []
        for k in range(1, output + 1):
            if k in keep:
                ids[k] = len(nodes) + 1
                nodes.append(Node(ops[k - 1], tuple(ids[i] for i in inputs[k - 1])))
        if not nodes:
            raise InputError(f"{self.where}the output does not depend on the input")
        shape = self.shapes[0]
        if all(n.inputs == (k,) for k, n in enumerate(nodes)):
            layers = _as_layers([n.op for n in nodes])
            if layers is not None:
                return Network(tuple(layers), shape).validate()
        return Network((), shape, tuple(nodes)).validate()


def _fold_into(op: Op | None, bn: BatchNorm) -> Op | None:
    """x -> s (A x + b) + t as one affine op, per output channel, or None when `op` is not
    a Linear/Conv2d of matching width."""
    s, t = bn.scale, bn.shift
    if isinstance(op, Affine) and s.size == op.W.shape[0]:
        return Affine(s[:, None] * op.W, s * op.b + t)
    if isinstance(op, Conv2d) and s.size == op.weight.shape[0]:
        return Conv2d(s[:, None, None, None] * op.weight, s * op.bias + t, op.stride,
                      op.padding)
    return None


def _as_layers(ops: list[Op]) -> list[Layer] | None:
    """The ops of a chain as sequential layers, or None when one has no sequential
    counterpart (graph-only ops and activations)."""
    layers: list[Layer] = []
    for op in ops:
        if isinstance(op, Activation) and op.name in ACTIVATIONS:
            layers.append(op)
        elif isinstance(op, (Affine, Conv2d, MaxPool2d, AvgPool2d, Flatten, GroupSort)):
            layers.append(op)
        else:
            return None
    if not any(isinstance(layer, (Affine, Conv2d, AvgPool2d)) for layer in layers):
        return None
    return layers


# how traced torch functions map to elementwise activations
_TORCH_ELEMENTWISE = ("relu", "tanh", "sigmoid", "abs", "sin", "cos")
# traced calls that compute the identity in eval mode
_TORCH_IDENTITY = ("contiguous", "clone", "dropout", "detach")
# relative tolerance of the check that a traced graph reproduces its module (float64 both)
TRACE_RTOL = 1e-6


def trace_torch(module: Any, input_shape: tuple[int, ...] | None = None) -> Network:
    """Trace any nn.Module with torch.fx into a computation graph.

    Supported: Linear, Conv2d, ReLU, LeakyReLU, Tanh, Sigmoid, Softplus (also written
    log1p(exp(x)) or log(1 + exp(x))), abs, sin, cos,
    sums and differences of tensors (residual connections), scaling and shifting by
    constant scalars, torch.cat, flatten/view to (batch, features), max/avg pooling,
    adaptive/global average pooling onto a grid that divides the input, mean over the
    spatial axes, eval-mode BatchNorm (folded into the Linear/Conv2d before it when nothing
    else reads that layer), Dropout and Identity. Anything else is refused by name. The
    graph is checked to reproduce the module's output on random inputs.
    """
    import torch.fx as fx
    from torch import nn

    if not isinstance(module, nn.Module):
        raise InputError(f"expected a torch nn.Module, got {type(module).__name__}")
    class Tracer(fx.Tracer):
        """torch.fx's tracer with the package's GroupSort module kept as one call."""

        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return isinstance(m, _groupsort_module()) or super().is_leaf_module(m, qualname)

    try:
        gm = fx.GraphModule(module, Tracer().trace(module))
    except Exception as exc:  # noqa: BLE001 - tracing fails in many ways on dynamic code
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UnsupportedError(f"cannot trace {type(module).__name__} with torch.fx: {msg}"
                               ) from None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedError(f"{type(module).__name__}: the module takes "
                               f"{len(placeholders)} inputs; one input tensor is supported")
    if input_shape is None:
        users = [u for u in placeholders[0].users if u.op == "call_module"]
        lin = next((gm.get_submodule(u.target) for u in users
                    if isinstance(gm.get_submodule(u.target), nn.Linear)), None)
        if lin is None:
            raise InputError("input_shape is needed for modules that do not start with a "
                             "Linear layer")
        input_shape = (lin.in_features,)
    b = GraphBuilder(tuple(input_shape), "")
    env: dict[Any, Any] = {placeholders[0]: ("node", 0)}
    output = None
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            continue
        if n.op == "output":
            out = env.get(n.args[0]) if isinstance(n.args[0], fx.Node) else None
            if out is not None and out[0] in _EXP_MARKERS:
                raise UnsupportedError("the module returns an unsupported operation 'exp' "
                                       "(exp is supported only as softplus, written "
                                       "log1p(exp(x)) or log(1 + exp(x)))")
            if out is None or out[0] != "node":
                raise UnsupportedError("the module must return one tensor")
            output = out[1]
            continue
        env[n] = _trace_node(gm, n, env, b)
    if output is None:
        raise UnsupportedError("the traced module has no output")
    net = b.network(output)
    _check_trace(module, net)
    return net


# exp(x) and 1 + exp(x) are traced as markers, kept only as the argument of log1p / log:
# log1p(exp(x)) = log(1 + exp(x)) = softplus(x); any other use of them is refused
_EXP_MARKERS = ("exp", "1+exp")


def _tensor_arg(env: dict[Any, Any], a: Any, what: str) -> int:
    v = env.get(a) if not isinstance(a, (int, float)) else None
    if v is not None and v[0] in _EXP_MARKERS:
        raise UnsupportedError(f"{what}: exp is supported only as softplus, written "
                               "log1p(exp(x)) or log(1 + exp(x))")
    if v is None or v[0] != "node":
        raise UnsupportedError(f"{what}: expected a tensor argument")
    return v[1]


def _value(env: dict[Any, Any], a: Any) -> Any:
    """A traced argument: ("node", id), ("const", float), ("batch",), ("shape", id)."""
    if isinstance(a, (bool,)):
        return ("other", a)
    if isinstance(a, (int, float)):
        return ("const", float(a))
    try:
        return env[a]
    except (KeyError, TypeError):
        return ("other", a)


def _trace_node(gm: Any, n: Any, env: dict[Any, Any], b: GraphBuilder) -> Any:
    """The value of one fx node, adding graph nodes to `b`."""
    import operator

    import torch
    import torch.nn.functional as F

    label = f"{n.op} {getattr(n.target, '__name__', n.target)}"
    what = f"traced {label} ({n.name})"
    if n.op == "get_attr":
        t = gm
        for part in str(n.target).split("."):
            t = getattr(t, part)
        if torch.is_tensor(t) and t.numel() == 1:
            return ("const", float(t))
        raise UnsupportedError(f"{what}: a constant tensor of shape "
                               f"{tuple(getattr(t, 'shape', ()))}; only scalars are supported")
    if n.op == "call_module":
        return _trace_module(gm.get_submodule(n.target), n, env, b, what)
    args = [_value(env, a) for a in n.args]
    kw = dict(n.kwargs)
    target = n.target
    name = target if n.op == "call_method" else getattr(target, "__name__", str(target))
    fn_tables = {
        "add": (operator.add, operator.iadd, torch.add), "sub": (operator.sub, torch.sub),
        "mul": (operator.mul, torch.mul), "div": (operator.truediv, torch.div),
        "neg": (operator.neg, torch.neg),
    }
    kind = None
    if n.op == "call_method":
        kind = {"add": "add", "add_": "add", "sub": "sub", "mul": "mul", "div": "div",
                "neg": "neg"}.get(name)
    else:
        kind = next((k for k, fns in fn_tables.items() if target in fns), None)
    if kind is not None:
        return _arith(kind, args, kw, b, what)
    if n.op == "call_function" and target is operator.abs:
        name = "abs"
    if n.op == "call_function" and target is getattr:
        if args[0][0] == "node" and n.args[1] == "shape":
            return ("shape", args[0][1])
        raise UnsupportedError(f"{what}: attribute {n.args[1]!r} of a tensor")
    if n.op == "call_function" and target is operator.getitem:
        if args[0][0] == "shape" and n.args[1] == 0:
            return ("batch",)
        raise UnsupportedError(f"{what}: indexing is not supported")
    short = name.split(".")[-1] if isinstance(name, str) else str(name)
    if short in _TORCH_ELEMENTWISE and (n.op == "call_method" or target in (
            getattr(torch, short, None), getattr(F, short, None), operator.abs)):
        return ("node", b.add(Activation(short), (_tensor_arg(env, n.args[0], what),), what))
    if short == "leaky_relu" and target is F.leaky_relu:
        slope = kw.get("negative_slope", n.args[1] if len(n.args) > 1 else 0.01)
        return ("node", b.add(Activation("leaky_relu", float(slope)),
                              (_tensor_arg(env, n.args[0], what),), what))
    if short == "softplus" and target is F.softplus:
        beta = float(kw.get("beta", n.args[1] if len(n.args) > 1 else 1.0))
        return ("node", _softplus(b, _tensor_arg(env, n.args[0], what), beta, what))
    if short in _TORCH_IDENTITY:
        if short == "dropout" and n.op == "call_function" and target is not F.dropout:
            raise UnsupportedError(f"{what}: unsupported call")
        return ("node", _tensor_arg(env, n.args[0], what))
    if short in ("cat", "concat") and (n.op == "call_function" and target in (
            torch.cat, getattr(torch, "concat", None))):
        tensors = n.args[0]
        dim = int(kw.get("dim", n.args[1] if len(n.args) > 1 else 0))
        ids = tuple(_tensor_arg(env, t, what) for t in tensors)
        rank = len(b.shapes[ids[0]]) + 1
        axis = (dim % rank) - 1
        if axis < 0:
            raise UnsupportedError(f"{what}: concatenation along the batch axis")
        return ("node", b.add(Concat(axis), ids, what))
    if short == "flatten":
        x = _tensor_arg(env, n.args[0], what)
        start = int(kw.get("start_dim", n.args[1] if len(n.args) > 1 else
                           (0 if n.op == "call_function" else 0)))
        end = int(kw.get("end_dim", n.args[2] if len(n.args) > 2 else -1))
        if start != 1 or end != -1:
            raise UnsupportedError(f"{what}: only flatten(x, 1) is supported")
        return ("node", b.add(Flatten(), (x,), what))
    if short in ("view", "reshape"):
        x = _tensor_arg(env, n.args[0], what)
        dims = list(n.args[1:])
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        vals = [_value(env, d) for d in dims]
        total = int(np.prod(b.shapes[x]))
        if (len(vals) == 2 and (vals[0] == ("batch",) or vals[0] == ("const", -1.0))
                and vals[1] in (("const", -1.0), ("const", float(total)))):
            return ("node", b.add(Flatten(), (x,), what))
        raise UnsupportedError(f"{what}: only a reshape to (batch, features) is supported")
    if short == "size" and n.op == "call_method":
        if len(n.args) > 1 and n.args[1] == 0:
            return ("batch",)
        raise UnsupportedError(f"{what}: only x.size(0) is supported")
    if short == "mean":
        x = _tensor_arg(env, n.args[0], what)
        dims = kw.get("dim", n.args[1] if len(n.args) > 1 else None)
        keep = bool(kw.get("keepdim", n.args[2] if len(n.args) > 2 else False))
        shape = b.shapes[x]
        dims = tuple(sorted(int(d) % 4 for d in (dims if isinstance(dims, (tuple, list))
                                                 else [dims]))) if dims is not None else None
        if len(shape) != 3 or dims != (2, 3):
            raise UnsupportedError(f"{what}: only the mean over the spatial axes (2, 3) of "
                                   "(C, H, W) inputs is supported")
        k = b.add(AvgPool2d(shape[1:], shape[1:]), (x,), what)
        return ("node", k if keep else b.add(Flatten(), (k,), what))
    if short in ("exp", "log1p", "log") and (n.op == "call_method" or target in (
            getattr(torch, short), getattr(torch.special, short, None))):
        return _exp_log(short, env.get(n.args[0]) if n.args else None, b, what)
    if target in (F.max_pool2d, F.avg_pool2d):
        x = _tensor_arg(env, n.args[0], what)
        names = ("kernel_size", "stride", "padding")
        vals = {k: kw.get(k, n.args[i + 1] if len(n.args) > i + 1 else None)
                for i, k in enumerate(names)}
        kernel = vals["kernel_size"]
        stride = vals["stride"] or kernel
        padding = vals["padding"] or 0
        if kw.get("ceil_mode") or kw.get("dilation", 1) not in (1, (1, 1)):
            raise UnsupportedError(f"{what}: ceil_mode/dilation not supported")
        cls = MaxPool2d if target is F.max_pool2d else AvgPool2d
        return ("node", b.add(cls(kernel, stride, padding), (x,), what))
    if target is F.adaptive_avg_pool2d:
        x = _tensor_arg(env, n.args[0], what)
        size = kw.get("output_size", n.args[1] if len(n.args) > 1 else None)
        return ("node", _adaptive_pool(b, x, size, what))
    raise UnsupportedError(f"{what}: unsupported operation {short!r}")


def _exp_log(short: str, arg: Any, b: GraphBuilder, what: str) -> Any:
    """exp(x) -> the marker ("exp", x); log1p of it, or log of ("1+exp", x), -> softplus(x)."""
    if short == "exp":
        if arg is None or arg[0] != "node":
            raise UnsupportedError(f"{what}: exp of a non-tensor")
        return ("exp", arg[1])
    want = "exp" if short == "log1p" else "1+exp"
    if arg is None or arg[0] != want:
        raise UnsupportedError(f"{what}: {short} is supported only as softplus, written "
                               "log1p(exp(x)) or log(1 + exp(x))")
    return ("node", _softplus(b, arg[1], 1.0, what))


def _arith(kind: str, args: list[Any], kw: dict[str, Any], b: GraphBuilder, what: str
           ) -> Any:
    """Sums, differences, negation and scaling by constants as Add nodes."""
    if kind == "add" and float(kw.get("alpha", 1.0)) == 1.0 and len(args) == 2:
        pair = sorted(args, key=lambda v: v[0])
        if pair[0] == ("const", 1.0) and pair[1][0] == "exp":
            return ("1+exp", pair[1][1])  # 1 + exp(x), awaiting its log
    if any(v[0] in _EXP_MARKERS for v in args):
        raise UnsupportedError(f"{what}: exp is supported only as softplus, written "
                               "log1p(exp(x)) or log(1 + exp(x))")
    if kind == "neg":
        return ("node", b.add(Add((-1.0,)), (args[0][1],), what)) if args[0][0] == "node" \
            else ("const", -args[0][1])
    a, c = args[0], args[1] if len(args) > 1 else ("const", float(kw.get("other", 0.0)))
    alpha = float(kw.get("alpha", 1.0))
    if a[0] == "const" and c[0] == "const":
        x, y = a[1], c[1]
        return ("const", {"add": x + alpha * y, "sub": x - alpha * y, "mul": x * y,
                          "div": x / y}[kind])
    if a[0] not in ("node", "const") or c[0] not in ("node", "const"):
        raise UnsupportedError(f"{what}: unsupported operands")
    if kind in ("add", "sub"):
        sign = alpha if kind == "add" else -alpha
        if a[0] == "node" and c[0] == "node":
            return ("node", b.add(Add((1.0, sign)), (a[1], c[1]), what))
        if a[0] == "node":
            return ("node", b.add(Add((1.0,), sign * c[1]), (a[1],), what))
        return ("node", b.add(Add((sign,), a[1]), (c[1],), what))
    if kind == "mul":
        if a[0] == "node" and c[0] == "node":
            raise UnsupportedError(f"{what}: a product of two tensors (only products with "
                                   "constant scalars are supported)")
        node, const = (a, c) if a[0] == "node" else (c, a)
        return _scaled(b, node[1], const[1], what)
    if c[0] != "const" or c[1] == 0.0:
        raise UnsupportedError(f"{what}: division by a tensor or by zero")
    return _scaled(b, a[1], 1.0 / c[1], what)


def _scaled(b: GraphBuilder, x: int, c: float, what: str) -> Any:
    """c x as an Add node (x itself when c = 1). A division by d is stored as the product
    with fl(1/d), exact for powers of two."""
    return ("node", x if c == 1.0 else b.add(Add((c,)), (x,), what))


def _softplus(b: GraphBuilder, x: int, beta: float, what: str) -> int:
    """softplus_beta(x) = softplus(beta x) / beta (torch's threshold shortcut aside)."""
    if not (np.isfinite(beta) and beta > 0):
        raise UnsupportedError(f"{what}: softplus with beta {beta}")
    if beta == 1.0:
        return b.add(Activation("softplus"), (x,), what)
    k = b.add(Add((beta,)), (x,), what)
    k = b.add(Activation("softplus"), (k,), what)
    return b.add(Add((1.0 / beta,)), (k,), what)


def _adaptive_pool(b: GraphBuilder, x: int, size: Any, what: str) -> int:
    """Adaptive average pooling onto a grid that divides the input: an AvgPool2d."""
    shape = b.shapes[x]
    if len(shape) != 3:
        raise UnsupportedError(f"{what}: expects (C, H, W) input, got {shape}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = tuple(shape[1 + i] if s is None else int(s) for i, s in enumerate(size))
    if any(shape[1 + i] % out[i] for i in range(2)):
        raise UnsupportedError(f"{what}: adaptive pooling of {shape[1:]} onto {out} has "
                               "unequal windows; only grids that divide the input are "
                               "supported")
    kernel = (shape[1] // out[0], shape[2] // out[1])
    return b.add(AvgPool2d(kernel, kernel), (x,), what)


def _bn_params(bn: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if bn.training or bn.running_mean is None:
        raise UnsupportedError(f"{what}: BatchNorm must be in eval mode with running "
                               "statistics (call module.eval())")
    var = bn.running_var.detach().cpu().numpy().astype(np.float64)
    mean = bn.running_mean.detach().cpu().numpy().astype(np.float64)
    gamma = (bn.weight.detach().cpu().numpy() if bn.weight is not None
             else np.ones_like(mean)).astype(np.float64)
    beta = (bn.bias.detach().cpu().numpy() if bn.bias is not None
            else np.zeros_like(mean)).astype(np.float64)
    if not np.all(var + bn.eps > 0):
        raise InputError(f"{what}: BatchNorm running_var must be >= 0")
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - scale * mean


def _trace_module(m: Any, n: Any, env: dict[Any, Any], b: GraphBuilder, what: str) -> Any:
    from torch import nn

    what = f"module {n.target} ({type(m).__name__})"
    x = _tensor_arg(env, n.args[0], what)
    if len(n.args) != 1 or n.kwargs:
        raise UnsupportedError(f"{what}: called with more than one argument")
    if isinstance(m, nn.Linear):
        bias = m.bias.detach().cpu().numpy() if m.bias is not None else None
        op: Op = Affine(m.weight.detach().cpu().numpy(), bias)
    elif isinstance(m, nn.Conv2d):
        op = _conv_from_torch(m, what)
    elif isinstance(m, nn.ReLU):
        op = Activation("relu")
    elif isinstance(m, nn.LeakyReLU):
        op = Activation("leaky_relu", float(m.negative_slope))
    elif isinstance(m, nn.Tanh):
        op = Activation("tanh")
    elif isinstance(m, nn.Sigmoid):
        op = Activation("sigmoid")
    elif isinstance(m, nn.Softplus):
        return ("node", _softplus(b, x, float(m.beta), what))
    elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        op = _pool_from_torch(m, what)
    elif isinstance(m, nn.AdaptiveAvgPool2d):
        return ("node", _adaptive_pool(b, x, m.output_size, what))
    elif isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise UnsupportedError(f"{what}: only Flatten(1, -1) is supported")
        op = Flatten()
    elif isinstance(m, _groupsort_module()):
        op = GroupSort(m.group_size)
    elif isinstance(m, (nn.Dropout, nn.Identity)):
        return ("node", x)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        op = BatchNorm(*_bn_params(m, what))
    else:
        raise UnsupportedError(f"{what}: unsupported layer {type(m).__name__}")
    return ("node", b.add(op, (x,), what))


def _check_trace(module: Any, net: Network) -> None:
    """The traced network must reproduce the module (both in float64) on random inputs."""
    import copy

    import torch

    probe = copy.deepcopy(module).double().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *net.input_shape), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        try:
            want = probe(x)
        except Exception as exc:  # noqa: BLE001 - the module's own failure on the probe
            raise InputError(f"{type(module).__name__} fails on inputs of shape "
                             f"{tuple(net.input_shape)}: {' '.join(str(exc).split())[:160]}"
                             ) from None
    if not torch.is_tensor(want):
        raise UnsupportedError("the module must return one tensor")
    got = torch.from_numpy(net(x.numpy()))
    want = want.reshape(got.shape) if want.numel() == got.numel() else want
    if want.shape != got.shape:
        raise UnsupportedError(f"traced graph gives outputs of shape {tuple(got.shape)}, the "
                               f"module {tuple(want.shape)}")
    err = float((got - want).abs().max())
    scale = float(want.abs().max()) + 1.0
    if not err <= TRACE_RTOL * scale:
        raise UnsupportedError(f"the traced graph of {type(module).__name__} does not "
                               f"reproduce the module (max difference {err:.3g}); an "
                               "operation it uses is not read faithfully")


def load_state_dict(source: Any, *, activation: str = "relu") -> Network:
    """An MLP from a torch state dict (a path or a dict): Linear (and eval BatchNorm1d) layers
    in key order, with `activation` between consecutive Linear layers."""
    import torch

    if isinstance(source, (str, Path)):
        p = Path(source)
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{p}: no such file") from None
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                msg = "holds pickled objects beyond tensors (only state dicts are read)"
            raise InputError(f"{p}: cannot read torch file: {msg}") from None
    else:
        state = source
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                         dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError("torch file is not a state dict of tensors")
    groups: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        if tensor.is_complex() or not (tensor.is_floating_point() or key.endswith(
                "num_batches_tracked")):
            raise InputError(f"state dict entry '{key}' has dtype {tensor.dtype}; real "
                             "floating-point tensors only")
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = tensor.detach().cpu().numpy()

    def order(prefix: str) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", prefix)]

    from torch import nn

    modules: list[Any] = []
    for prefix in sorted(groups, key=order):
        g = groups[prefix]
        w = g.get("weight")
        if "running_mean" in g:
            bn = nn.BatchNorm1d(g["running_mean"].size).eval()
            bn.load_state_dict({k: torch.as_tensor(v) for k, v in g.items()}, strict=False)
            modules.append(bn)
        elif w is not None and w.ndim == 2:
            if modules and isinstance(modules[-1], nn.Linear):
                modules.append(_torch_activation(activation))
            lin = nn.Linear(w.shape[1], w.shape[0], bias="bias" in g)
            lin.weight.data = torch.as_tensor(w, dtype=torch.float64)
            if "bias" in g:
                lin.bias.data = torch.as_tensor(g["bias"], dtype=torch.float64)
            modules.append(lin.double())
        elif w is not None and w.ndim == 4:
            raise UnsupportedError(f"state dict entry '{prefix}.weight' is a convolution; its "
                                   "stride and padding are not stored: build the module and use "
                                   "from_torch, or save an .npz with a 'layers' spec")
        else:
            raise UnsupportedError(f"state dict entry '{prefix}' is not a Linear or "
                                   "BatchNorm1d layer")
    if not modules:
        raise InputError("empty network: the state dict has no layers")
    return from_torch(nn.Sequential(*modules))


def _torch_activation(name: str):
    from torch import nn

    table = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
             "maxmin": lambda: _groupsort_module()(2)}
    if name not in table:
        raise UnsupportedError(f"unknown activation {name!r} (supported: {', '.join(table)})")
    return table[name]()


# ---------------------------------------------------------------------------------- nnet
def _load_nnet(p: Path) -> Network:
    """ACAS Xu .nnet text format (ReLU hidden layers, linear output).

    The file's input normalisation is not part of the network function and is ignored.
    """
    try:
        lines = [ln.strip() for ln in p.read_text().splitlines()
                 if ln.strip() and not ln.startswith("//")]
        head = [int(float(t)) for t in lines[0].strip(",").split(",")[:4]]
        n_layers = head[0]
        sizes = [int(float(t)) for t in lines[1].strip(",").split(",") if t.strip()]
        rows = lines[7:]  # flag, min, max, mean, range lines precede the weights
        vals = iter(rows)
        weights, biases = [], []
        for k in range(n_layers):
            W = np.array([[float(t) for t in next(vals).strip(",").split(",")]
                          for _ in range(sizes[k + 1])])
            b = np.array([float(next(vals).strip(",").split(",")[0])
                          for _ in range(sizes[k + 1])])
            weights.append(W)
            biases.append(b)
    except (IndexError, ValueError, StopIteration, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: malformed .nnet file ({type(exc).__name__})") from None
    return Network.from_mlp(weights, biases, "relu")


# ---------------------------------------------------------------------------------- onnx
def _load_onnx(p: Path) -> Network:
    """ONNX graphs of Gemm/MatMul/Add/Sub/Mul(by a constant)/Relu/LeakyRelu/Sigmoid/Tanh/
    Softplus/Abs/Sin/Cos/Conv/MaxPool/AveragePool/GlobalAveragePool/ReduceMean (spatial)/
    BatchNormalization/Concat/Flatten/Reshape nodes: a chain becomes a sequential network,
    anything with a residual sum or a concatenation a computation graph. GroupSort, which
    ONNX lacks, is read in the form torch exports it: Reshape (batch, n) -> (batch, n/g, g),
    TopK(k = g, largest = 0, sorted = 1) on the last axis, Reshape back to (batch, n)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError(f"{p}: reading .onnx needs the 'onnx' extra "
                         "(pip install 'lipopt_suite[onnx]')") from None
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf raises varied errors on bad files
        raise InputError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if len(inputs) != 1:
        raise UnsupportedError(f"{p}: the graph has {len(inputs)} inputs; one is supported")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    shape = tuple(d for d in dims[1:] if d > 0) if len(dims) > 1 else tuple(dims)
    b = GraphBuilder(shape, f"{p}: ")
    env: dict[str, Any] = {inputs[0].name: ("node", 0)}
    env.update({name: ("const", arr) for name, arr in init.items()})
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _check_onnx_attrs(p, node, attrs)
        outs = _onnx_node(p, node, attrs, env, b)
        env[node.output[0]] = outs
    out = env.get(graph.output[0].name)
    if out is None or out[0] != "node":
        raise UnsupportedError(f"{p}: the graph output is not computed from the input")
    return b.network(out[1])


class _OnnxNode:
    """One ONNX node being read: its inputs' values, attributes and the graph builder.
    A value is ("node", id), ("const", array), or the two inner steps of a GroupSort as
    torch exports it: ("grouped", id, g) after the Reshape, ("sorted", id, g) after TopK."""

    def __init__(self, p: Path, node: Any, attrs: dict[str, Any], env: dict[str, Any],
                 b: GraphBuilder) -> None:
        self.p, self.attrs, self.b = p, attrs, b
        self.op = node.op_type
        self.what = f"{self.op} node {node.name!r}"
        self.args = [env.get(name) if name else None for name in node.input]

    def refuse(self, why: str) -> UnsupportedError:
        return UnsupportedError(f"{self.p}: {self.what}{why}")

    def tensor(self, i: int) -> int:
        a = self.args[i] if i < len(self.args) else None
        if a is None or a[0] != "node":
            raise self.refuse(f": input {i} must be computed from the input")
        return a[1]

    def const(self, i: int) -> np.ndarray | None:
        a = self.args[i] if i < len(self.args) else None
        return a[1] if a is not None and a[0] == "const" else None

    def weight(self, i: int) -> np.ndarray:
        w = self.const(i)
        if w is None:
            raise self.refuse(" without constant weight")
        return w

    def pads(self) -> list[int]:
        pads = list(self.attrs.get("pads", [0, 0, 0, 0]))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.refuse(": asymmetric padding")
        return pads[:2]

    def add(self, layer: Any, *inputs: int) -> tuple[str, int]:
        return ("node", self.b.add(layer, inputs, self.what))

    def unsupported(self) -> UnsupportedError:
        return UnsupportedError(f"{self.p}: unsupported ONNX operator {self.op!r}")


def _onnx_constant(c: _OnnxNode) -> Any:
    value = c.attrs.get("value")
    if value is None:
        raise c.refuse(" without a tensor value")
    from onnx import numpy_helper

    return ("const", numpy_helper.to_array(value).astype(np.float64))


def _onnx_gemm(c: _OnnxNode) -> Any:
    W = c.weight(1)
    W = W if c.attrs.get("transB", 0) else W.T
    bias = c.const(2)
    return c.add(Affine(W * c.attrs.get("alpha", 1.0),
                        None if bias is None else bias * c.attrs.get("beta", 1.0)), c.tensor(0))


def _onnx_add(c: _OnnxNode) -> Any:
    sign = 1.0 if c.op == "Add" else -1.0
    if c.args[0][0] == "node" and c.args[1][0] == "node":
        return c.add(Add((1.0, sign)), c.tensor(0), c.tensor(1))
    first = 0 if c.args[0][0] == "node" else 1
    x, k = c.tensor(first), c.const(1 - first)
    # x + k, k + x, x - k, k - x
    coeff = -1.0 if c.op == "Sub" and first == 1 else 1.0
    shift = -k if c.op == "Sub" and first == 0 else k
    if k.size == 1:
        return c.add(Add((coeff,), float(shift.reshape(-1)[0])), x)
    sample = c.b.shapes[x]
    per_channel = (sample[0],) + (1,) * (len(sample) - 1)
    if coeff == 1.0 and tuple(k.shape) in (per_channel, (1, *per_channel)):
        # a per-channel bias (a Gemm/MatMul/Conv bias written as its own Add)
        return c.add(BatchNorm(np.ones(sample[0]), shift.reshape(-1)), x)
    raise c.refuse(f" adds a constant of shape {k.shape} that is neither a scalar nor a "
                   "per-channel bias")


def _onnx_mul(c: _OnnxNode) -> Any:
    if c.args[0][0] == "node" and c.args[1][0] == "node":
        raise c.refuse(" multiplies two tensors")
    first = 0 if c.args[0][0] == "node" else 1
    k = c.const(1 - first)
    if k.size != 1 or (c.op == "Div" and first == 1) or (c.op == "Div" and float(k) == 0.0):
        raise c.refuse(": only scaling by a constant scalar")
    factor = float(k.reshape(-1)[0])
    return _scaled(c.b, c.tensor(first), factor if c.op == "Mul" else 1.0 / factor, c.what)


def _onnx_pool(c: _OnnxNode) -> Any:
    cls = MaxPool2d if c.op == "MaxPool" else AvgPool2d
    return c.add(cls(c.attrs["kernel_shape"], c.attrs.get("strides", [1, 1]), c.pads()),
                 c.tensor(0))


def _onnx_global_average_pool(c: _OnnxNode) -> Any:
    x = c.tensor(0)
    hw = c.b.shapes[x][1:]
    if len(hw) != 2:
        raise c.refuse(f" on an input of shape {c.b.shapes[x]}")
    return c.add(AvgPool2d(hw, hw), x)


def _onnx_reduce_mean(c: _OnnxNode) -> Any:
    x = c.tensor(0)
    axes = c.attrs.get("axes", c.const(1) if len(c.args) > 1 else None)
    shape = c.b.shapes[x]
    axes = None if axes is None else tuple(sorted(int(a) % 4 for a in np.ravel(axes)))
    if len(shape) != 3 or axes != (2, 3):
        raise c.refuse(": only the mean over the spatial axes (2, 3) of (C, H, W) inputs is "
                       "supported")
    k = c.b.add(AvgPool2d(shape[1:], shape[1:]), (x,), c.what)
    return ("node", k) if c.attrs.get("keepdims", 1) else c.add(Flatten(), k)


def _onnx_batch_norm(c: _OnnxNode) -> Any:
    scale, bias, mean, var = (c.const(i) for i in range(1, 5))
    if any(v is None for v in (scale, bias, mean, var)):
        raise c.refuse(" without constant statistics")
    eps = c.attrs.get("epsilon", 1e-5)
    if np.any(var + eps <= 0):
        raise InputError(f"{c.p}: {c.what}: variance must be >= 0")
    s = scale / np.sqrt(var + eps)
    return c.add(BatchNorm(s, bias - s * mean), c.tensor(0))


def _onnx_concat(c: _OnnxNode) -> Any:
    ids = tuple(c.tensor(i) for i in range(len(c.args)))
    rank = len(c.b.shapes[ids[0]]) + 1
    axis = int(c.attrs.get("axis", 1)) % rank - 1
    if axis < 0:
        raise c.refuse(" concatenates along the batch axis")
    return c.add(Concat(axis), *ids)


def _onnx_flatten(c: _OnnxNode) -> Any:
    if c.attrs.get("axis", 1) != 1:
        raise c.refuse(f" with axis {c.attrs['axis']} (only 1)")
    return c.add(Flatten(), c.tensor(0))


def _onnx_reshape(c: _OnnxNode) -> Any:
    target = c.const(1)
    if c.args[0][0] == "sorted":
        # the end of a GroupSort: (batch, n / g, g) sorted along its last axis, back to
        # (batch, n)
        _, x, g = c.args[0]
        if target is None or target.size != 2 or int(target[1]) not in (-1, c.b.shapes[x][0]):
            raise c.refuse(" does not undo the grouping of a sort")
        return c.add(GroupSort(g), x)
    if c.args[0][0] == "node":
        sample = c.b.shapes[c.args[0][1]]
        if (target is not None and target.size == 3 and len(sample) == 1
                and int(target[2]) >= 1 and int(target[1]) * int(target[2]) == sample[0]):
            # the start of a GroupSort as torch exports it: (batch, n) -> (batch, n / g, g)
            return ("grouped", c.args[0][1], int(target[2]))
    if target is None or target.size != 2 or np.any(target == 0):
        raise c.refuse(" is not a flatten to (batch, features)")
    return c.add(Flatten(), c.tensor(0))


def _onnx_topk(c: _OnnxNode) -> Any:
    if c.args[0][0] != "grouped":
        raise c.unsupported()
    _, x, g = c.args[0]
    k = c.const(1)
    if (c.attrs.get("largest", 1) != 0 or c.attrs.get("sorted", 1) != 1
            or c.attrs.get("axis", -1) not in (2, -1) or k is None
            or int(np.ravel(k)[0]) != g):
        raise c.refuse(" is not an ascending sort of whole groups (GroupSort: largest=0, "
                       "sorted=1, k = group size, last axis)")
    return ("sorted", x, g)


_ONNX_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                     "Softplus": "softplus", "Abs": "abs", "Sin": "sin", "Cos": "cos"}
_ONNX_OPS: dict[str, Callable[[_OnnxNode], Any]] = {
    "Constant": _onnx_constant,
    "Identity": lambda c: c.args[0], "Dropout": lambda c: c.args[0],
    "Gemm": _onnx_gemm,
    "MatMul": lambda c: c.add(Affine(c.weight(1).T, None), c.tensor(0)),
    "Add": _onnx_add, "Sub": _onnx_add, "Mul": _onnx_mul, "Div": _onnx_mul,
    "Neg": lambda c: c.add(Add((-1.0,)), c.tensor(0)),
    **{op: (lambda c, a=a: c.add(Activation(a), c.tensor(0)))
       for op, a in _ONNX_ACTIVATIONS.items()},
    "LeakyRelu": lambda c: c.add(Activation("leaky_relu", float(c.attrs.get("alpha", 0.01))),
                                 c.tensor(0)),
    "Conv": lambda c: c.add(Conv2d(c.weight(1), c.const(2), c.attrs.get("strides", [1, 1]),
                                   c.pads()), c.tensor(0)),
    "MaxPool": _onnx_pool, "AveragePool": _onnx_pool,
    "GlobalAveragePool": _onnx_global_average_pool, "ReduceMean": _onnx_reduce_mean,
    "BatchNormalization": _onnx_batch_norm, "Concat": _onnx_concat, "Flatten": _onnx_flatten,
    "Reshape": _onnx_reshape, "TopK": _onnx_topk,
}


def _onnx_node(p: Path, node: Any, attrs: dict[str, Any], env: dict[str, Any],
               b: GraphBuilder) -> Any:
    """The value of one ONNX node: ("node", id) or ("const", array) (see _OnnxNode)."""
    c = _OnnxNode(p, node, attrs, env, b)
    if any(a is None for a in c.args[:1]):
        raise c.refuse(" reads an unknown tensor")
    if any(a is not None and a[0] in ("grouped", "sorted") for a in c.args) and c.op not in (
            "Reshape", "TopK"):
        raise c.refuse(" reads the grouped features of a sort; only Reshape -> TopK "
                       "(ascending) -> Reshape is read, as GroupSort")
    handler = _ONNX_OPS.get(c.op)
    if handler is None:
        raise c.unsupported()
    return handler(c)


# ONNX attributes whose other values would change the function: refused, never ignored.
ONNX_REQUIRED_ATTRS = {"group": 1, "transA": 0, "ceil_mode": 0}


def _check_onnx_attrs(p: Path, node: Any, attrs: dict[str, Any]) -> None:
    for name, value in ONNX_REQUIRED_ATTRS.items():
        if name in attrs and attrs[name] != value:
            raise UnsupportedError(f"{p}: {node.op_type} node {node.name!r} has {name}="
                                   f"{attrs[name]!r} (only {value} is supported)")
    if any(int(d) != 1 for d in attrs.get("dilations", [])):
        raise UnsupportedError(f"{p}: {node.op_type} node {node.name!r} is dilated "
                               f"({list(attrs['dilations'])}); not supported")
    pad = attrs.get("auto_pad", b"NOTSET")
    pad = pad.decode() if isinstance(pad, bytes) else str(pad)
    if pad not in ("NOTSET", ""):
        raise UnsupportedError(f"{p}: {node.op_type} node {node.name!r} uses auto_pad={pad}; "
                               "give explicit pads")


def load_center(path: str | Path, input_dim: int) -> np.ndarray:
    """A centre point from a .npy file, or the 'center' array of an .npz (never unpickled),
    as a finite float64 vector of `input_dim` entries."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        arr = np.load(p, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                if "center" not in arr.files:
                    raise InputError(f"{p}: no 'center' array in the .npz")
                arr = arr["center"]
        if not isinstance(arr, np.ndarray):
            raise InputError(f"{p}: 'center' is not a .npy array")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises varied errors on bad files
        if "pickle" in str(exc).lower():
            raise InputError(f"{p}: not a plain .npy/.npz array (reading it would need "
                             "unpickling; refused)") from None
        raise InputError(f"{p}: cannot read centre ({' '.join(str(exc).split())})") from None
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{p}: centre is not numeric (dtype {arr.dtype})")
    if arr.size != input_dim:
        raise InputError(f"{p}: centre has {arr.size} entries, the network input has "
                         f"{input_dim}")
    arr = arr.astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{p}: centre contains NaN or inf")
    return arr


