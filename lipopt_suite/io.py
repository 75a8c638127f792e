"""Reading and writing networks: .npz (canonical), torch modules and state dicts, .nnet, .onnx.

Nothing here unpickles: npz files are read with allow_pickle=False and torch files with
weights_only=True. Every failure is an InputError with one line naming the file and the fault.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UnsupportedError
from .network import (
    ACTIVATIONS,
    Activation,
    Affine,
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    MaxPool2d,
    Network,
)

NETWORK_SUFFIXES = (".npz", ".pt", ".pth", ".nnet", ".onnx")


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
    if not ws:
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
    if act not in ACTIVATIONS:
        raise UnsupportedError(f"{p}: unknown activation {act!r} "
                               f"(supported: {', '.join(ACTIVATIONS)})")
    extras = {k: _numeric(data[k], k, p) for k in ("X", "center") if k in data}
    if "layers" in data:
        spec_text = _string(data["layers"], "layers", p)
        if "input_shape" not in data:
            raise InputError(f"{p}: 'layers' given without 'input_shape'")
        shape = tuple(int(s) for s in np.asarray(data["input_shape"]).reshape(-1))
        layers = _layers_from_spec(spec_text, weights, biases, p)
        return Network(tuple(layers), shape), extras
    for k, W in enumerate(weights):
        if W.ndim != 2:
            raise InputError(f"{p}: W{k} has shape {W.shape}; an MLP file needs matrices "
                             "(add a 'layers' spec for convolutions)")
    return Network.from_mlp(weights, biases, act), extras


def _layers_from_spec(text: str, weights: list[np.ndarray], biases: list[np.ndarray],
                      p: Path) -> list[Layer]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: 'layers' is not valid JSON ({exc.msg})") from None
    if not isinstance(spec, list) or not all(isinstance(s, dict) for s in spec):
        raise InputError(f"{p}: 'layers' must be a JSON list of objects")
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
    for layer in net.layers:
        if isinstance(layer, Affine):
            arrays[f"W{k}"], arrays[f"b{k}"] = np.array(layer.W), np.array(layer.b)
            k += 1
        elif isinstance(layer, Conv2d):
            arrays[f"W{k}"], arrays[f"b{k}"] = np.array(layer.weight), np.array(layer.bias)
            k += 1
    if net.is_mlp and len({a.name for a in net.activations}) <= 1 and all(
            a.negative_slope == 0.01 for a in net.activations):
        arrays["activation"] = np.array(net.activations[0].name if net.activations else "relu")
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
    """The JSON layer list of the .npz format."""
    out: list[dict[str, Any]] = []
    for layer in net.layers:
        if isinstance(layer, Affine):
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
    return out


# ---------------------------------------------------------------------------------- torch
def from_torch(module: Any, input_shape: tuple[int, ...] | None = None) -> Network:
    """Convert an nn.Sequential (nested ones flattened) into a Network.

    Eval-mode BatchNorm is folded into the preceding Linear/Conv2d (or kept as its own affine
    layer when nothing precedes it); Dropout and Identity are dropped.
    """
    from torch import nn

    mods = list(_flatten_modules(module))
    layers: list[Layer] = []
    for i, m in enumerate(mods):
        name = type(m).__name__
        if isinstance(m, nn.Linear):
            b = m.bias.detach().cpu().numpy() if m.bias is not None else None
            layers.append(Affine(m.weight.detach().cpu().numpy(), b))
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                raise UnsupportedError(f"module {i} ({name}): only groups=1, dilation=1, zero "
                                       "padding are supported")
            if isinstance(m.padding, str):
                raise UnsupportedError(f"module {i} ({name}): string padding is not supported")
            b = m.bias.detach().cpu().numpy() if m.bias is not None else None
            layers.append(Conv2d(m.weight.detach().cpu().numpy(), b, m.stride, m.padding))
        elif isinstance(m, nn.ReLU):
            layers.append(Activation("relu"))
        elif isinstance(m, nn.LeakyReLU):
            layers.append(Activation("leaky_relu", float(m.negative_slope)))
        elif isinstance(m, nn.Tanh):
            layers.append(Activation("tanh"))
        elif isinstance(m, nn.Sigmoid):
            layers.append(Activation("sigmoid"))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            if isinstance(m, nn.MaxPool2d) and (m.dilation not in (1, (1, 1)) or m.ceil_mode):
                raise UnsupportedError(f"module {i} ({name}): dilation/ceil_mode not supported")
            if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or m.padding not in (0, (0, 0))):
                raise UnsupportedError(f"module {i} ({name}): padding/ceil_mode not supported")
            cls = MaxPool2d if isinstance(m, nn.MaxPool2d) else AvgPool2d
            stride = m.stride if m.stride is not None else m.kernel_size
            layers.append(cls(m.kernel_size, stride, m.padding))
        elif isinstance(m, nn.Flatten):
            layers.append(Flatten())
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
        if isinstance(first, Affine) and isinstance(layers[0], (Affine, Activation)):
            input_shape = (first.W.shape[1],)
        else:
            raise InputError("input_shape is needed for networks that start with a "
                             "convolution, pooling or flatten")
    return Network(tuple(layers), tuple(input_shape)).validate()


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

    table = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
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
    """Sequential ONNX graphs of Gemm/MatMul(+Add)/Relu/Conv/Flatten/MaxPool nodes."""
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
    layers: list[Layer] = []
    for node in graph.node:
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _check_onnx_attrs(p, node, attrs)
        if op == "Gemm":
            W = init[node.input[1]]
            W = W if attrs.get("transB", 0) else W.T
            b = init.get(node.input[2]) if len(node.input) > 2 else None
            layers.append(Affine(W * attrs.get("alpha", 1.0),
                                 None if b is None else b * attrs.get("beta", 1.0)))
        elif op == "MatMul":
            W = init.get(node.input[1])
            if W is None:
                raise UnsupportedError(f"{p}: MatMul node {node.name!r} without constant weight")
            layers.append(Affine(W.T, None))
        elif op == "Add":
            b = init.get(node.input[1], init.get(node.input[0]))
            if not layers or not isinstance(layers[-1], (Affine, Conv2d)) or b is None:
                raise UnsupportedError(f"{p}: Add node {node.name!r} not following a layer")
            last = layers[-1]
            if isinstance(last, Affine):
                layers[-1] = Affine(last.W, last.b + b.reshape(-1))
            else:
                layers[-1] = Conv2d(last.weight, last.bias + b.reshape(-1), last.stride,
                                    last.padding)
        elif op == "Relu":
            layers.append(Activation("relu"))
        elif op in ("Sigmoid", "Tanh"):
            layers.append(Activation(op.lower()))
        elif op == "Conv":
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise UnsupportedError(f"{p}: asymmetric padding in Conv node {node.name!r}")
            b = init.get(node.input[2]) if len(node.input) > 2 else None
            layers.append(Conv2d(init[node.input[1]], b, attrs.get("strides", [1, 1]),
                                 pads[:2]))
        elif op == "MaxPool":
            pads = attrs.get("pads", [0, 0, 0, 0])
            layers.append(MaxPool2d(attrs["kernel_shape"], attrs.get("strides", [1, 1]),
                                    pads[:2]))
        elif op == "Flatten":
            layers.append(Flatten())
        elif op == "Reshape":
            target = init.get(node.input[1]) if len(node.input) > 1 else None
            if target is None or target.size != 2 or np.any(target == 0):
                raise UnsupportedError(f"{p}: Reshape node {node.name!r} is not a flatten to "
                                       "(batch, features)")
            layers.append(Flatten())
        elif op in ("Identity", "Dropout", "Constant"):
            continue
        else:
            raise UnsupportedError(f"{p}: unsupported ONNX operator {op!r}")
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    shape = tuple(d for d in dims[1:] if d > 0) if len(dims) > 1 else tuple(dims)
    return Network(tuple(layers), shape)


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


