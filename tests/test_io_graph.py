"""Graph networks from torch modules (torch.fx) and ONNX graphs: the network computes the
module's function, chains stay sequential, unsupported operations are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lipopt_suite import UnsupportedError, estimate, from_torch, load
from lipopt_suite.network import Add, AvgPool2d, BatchNorm, Concat

# a graph evaluated by its own float64 modules agrees with the module to round-off
RTOL = 1e-10
# float32 ONNX initialisers read back against a float64 reference
F32_RTOL = 1e-5


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class Tiny(nn.Module):
    """stem, a residual block, global pooling two ways, concatenation, a scaled head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1))
        self.block = Block(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.stem(x))
        z = torch.cat([self.pool(h).flatten(1), h.mean((2, 3))], dim=1)
        return self.fc(z) / 2 - 1


def seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return module.double().eval()


def check_same_function(module: nn.Module, net, shape: tuple[int, ...]) -> None:
    x = torch.randn(5, *shape, dtype=torch.float64)
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(net(x.numpy()), want, rtol=RTOL, atol=RTOL)


def test_a_residual_module_traces_into_a_graph_with_batch_norms_folded():
    module = seeded(Tiny())
    net = from_torch(module, (1, 6, 6))
    assert net.is_graph
    check_same_function(module, net, (1, 6, 6))
    ops = [type(n.op) for n in net.nodes]
    assert BatchNorm not in ops and Concat in ops and ops.count(AvgPool2d) == 2
    assert any(isinstance(n.op, Add) and len(n.inputs) == 2 for n in net.nodes)
    b = estimate(net, "autolip")
    low = estimate(net, "gradient-ascent", restarts=2, steps=20)
    assert b.certified and 0 < low.value <= b.value


def test_the_papers_example_traces_from_a_torch_function():
    class FW(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.softplus(x / 2) + torch.abs(x / 2 - 1.0 * torch.sin(x))

    net = from_torch(FW(), (1,))
    check_same_function(FW(), net, (1,))
    assert estimate(net, "autolip").value == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("form", ["log1p", "log", "log_method"])
def test_softplus_written_out_as_in_the_paper_traces(form):
    def softplus(z: torch.Tensor) -> torch.Tensor:
        if form == "log1p":
            return torch.log1p(torch.exp(z))
        if form == "log":
            return torch.log(1 + torch.exp(z))
        return (z.exp() + 1).log()

    class FW(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return softplus(x / 2) + torch.abs(x / 2 - 1.0 * torch.sin(x))

    net = from_torch(FW(), (1,))
    check_same_function(FW(), net, (1,))
    assert estimate(net, "autolip").value == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("body", [lambda x: torch.exp(x) * 2.0, lambda x: torch.log1p(x),
                                  lambda x: torch.log(2 + torch.exp(x))])
def test_exp_and_log_other_than_softplus_are_refused_by_name(body):
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return body(x)

    with pytest.raises(UnsupportedError, match="softplus, written log1p"):
        from_torch(M(), (2,))


def test_softplus_with_beta_and_sequential_wrappers():
    module = nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2.0), nn.Linear(4, 2)).double()
    net = from_torch(module)
    assert net.is_graph  # softplus is a graph-only activation
    check_same_function(module, net, (3,))

    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(x)).view(x.size(0), -1))

    chain = Chain().double()
    seq = from_torch(chain)
    assert not seq.is_graph and seq.is_mlp  # a chain of sequential layers stays sequential
    check_same_function(chain, seq, (3,))


@pytest.mark.parametrize("module, match", [
    (nn.Sequential(nn.Linear(3, 4), nn.GELU()), "unsupported layer GELU"),
    (type("Sq", (nn.Module,), {"forward": lambda self, x: x * x})(), "product of two tensors"),
    (type("Ex", (nn.Module,), {"forward": lambda self, x: torch.exp(x)})(), "'exp'"),
    (type("If", (nn.Module,), {"forward": lambda self, x: x if x.sum() > 0 else -x})(),
     "cannot trace"),
])
def test_unsupported_operations_are_refused_by_name(module, match):
    with pytest.raises(UnsupportedError, match=match) as exc:
        from_torch(module, (3,))
    assert "\n" not in str(exc.value)


def test_batch_norm_in_training_mode_is_refused():
    module = Tiny().double()
    with pytest.raises(UnsupportedError, match="eval mode"):
        from_torch(module, (1, 6, 6))


def onnx_residual(tmp_path):
    """An ONNX graph: Conv -> BatchNormalization -> Relu, Add with the input, then
    GlobalAveragePool and Flatten, concatenated with the pooled input, and a Gemm."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 2, 3, 3)) / 3
    scale, bias = rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    mean, var = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
    W, c = rng.standard_normal((3, 4)), rng.standard_normal(3)
    arrays = {"w": w, "scale": scale, "bias": bias, "mean": mean, "var": var, "W": W, "c": c}
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h", "scale", "bias", "mean", "var"],
                              ["hb"], epsilon=1e-5),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["s"]),
             helper.make_node("GlobalAveragePool", ["s"], ["g"]),
             helper.make_node("Flatten", ["g"], ["gf"]),
             helper.make_node("GlobalAveragePool", ["x"], ["gx"]),
             helper.make_node("Flatten", ["gx"], ["gxf"]),
             helper.make_node("Concat", ["gf", "gxf"], ["z"], axis=1),
             helper.make_node("Gemm", ["z", "W", "c"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()])
    path = tmp_path / "residual.onnx"
    onnx.save(helper.make_model(graph), str(path))
    a = {k: torch.tensor(v.astype(np.float32).astype(np.float64)) for k, v in arrays.items()}

    def reference(x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, a["w"], padding=1)
        h = F.batch_norm(h, a["mean"], a["var"], a["scale"], a["bias"], eps=1e-5)
        s = torch.relu(h) + x
        z = torch.cat([s.mean((2, 3)), x.mean((2, 3))], 1)
        return z @ a["W"].T + a["c"]

    return path, reference


def test_onnx_add_concat_batchnorm_and_global_pool_read_into_a_graph(tmp_path):
    path, reference = onnx_residual(tmp_path)
    net = load(path)
    assert net.is_graph and net.input_shape == (2, 5, 5)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    np.testing.assert_allclose(net(x.numpy()), reference(x).numpy(), rtol=F32_RTOL, atol=1e-6)
    assert BatchNorm not in [type(n.op) for n in net.nodes]  # folded into the Conv
    assert estimate(net, "autolip").certified


def test_onnx_refuses_an_unknown_operator_by_name(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UnsupportedError, match="unsupported ONNX operator 'Erf'"):
        load(path)
