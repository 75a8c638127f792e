"""GroupSort / MaxMin as a layer: forward pass and Jacobian against torch and finite
differences, the MLP views, every file format's round trip, and refusals by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lipopt_suite import (
    GroupSortModule,
    InputError,
    Network,
    UnsupportedError,
    estimate,
    from_torch,
    load,
    save,
)
from lipopt_suite.core.lower import batch_jacobians
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.network import Activation, Affine, GroupSort
from lipopt_suite.registry import check_applicable, methods

# central differences of a piecewise-linear map away from its kinks are exact up to
# rounding: step 1e-6 on values of order 1 leaves ~1e-10
FD_ATOL = 1e-7
F32_RTOL = 1e-5


def sort_net(sizes=(3, 6, 4, 2), group_size=(3, 2), seed=0) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((sizes[k + 1], sizes[k])) for k in range(len(sizes) - 1)]
    bs = [rng.standard_normal(sizes[k + 1]) for k in range(len(sizes) - 1)]
    return Network.from_mlp(ws, bs, "groupsort", group_size=list(group_size))


def test_forward_sorts_contiguous_groups_ascending():
    W = np.eye(6)
    net = Network((Affine(W, None), GroupSort(3), Affine(W, None)), (6,))
    x = np.random.default_rng(0).standard_normal((10, 6))
    want = torch.sort(torch.tensor(x).reshape(10, 2, 3), dim=2).values.reshape(10, 6).numpy()
    np.testing.assert_array_equal(net(x), want)
    maxmin = Network.from_mlp([np.eye(2), np.eye(2)], None, "maxmin")
    np.testing.assert_array_equal(maxmin(np.array([3.0, -1.0])), [-1.0, 3.0])  # (min, max)


def test_jacobian_matches_finite_differences():
    net = sort_net()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 3))
    J = batch_jacobians(net, X).numpy()
    h = 1e-6
    for i, x in enumerate(X):
        fd = np.stack([(net(x + h * e) - net(x - h * e)) / (2 * h) for e in np.eye(3)], 1)
        np.testing.assert_allclose(J[i], fd, atol=FD_ATOL)


def test_group_size_checks_are_one_line_errors():
    with pytest.raises(InputError, match="does not divide"):
        Network((Affine(np.ones((3, 2)), None), GroupSort(2), Affine(np.ones((1, 3)), None)),
                (2,)).validate()
    with pytest.raises(InputError, match="positive integer"):
        GroupSort(0)
    with pytest.raises(InputError, match="group sizes"):
        Network.from_mlp([np.ones((2, 2))] * 3, None, "groupsort", group_size=[2])
    with pytest.raises(InputError, match="positive integer"):
        GroupSortModule(1.5)


def test_mlp_views():
    net = sort_net()
    assert net.describe() == "mlp 3-6-4-2 groupsort3/maxmin"
    assert not net.is_mlp and net.is_groupsort_mlp and not net.is_relu
    with pytest.raises(UnsupportedError, match="GroupSort"):
        net.mlp()
    ws, _, acts = net.mlp(groupsort=True)
    assert [W.shape for W in ws] == [(6, 3), (4, 6), (2, 4)]
    assert acts == [GroupSort(3), GroupSort(2)]
    assert random_mlp([2, 3, 1]).is_groupsort_mlp is False


def test_autolip_factor_is_one_in_every_norm():
    net = sort_net()
    for norm, order in (("2", 2), ("inf", np.inf), ("1", 1)):
        b = estimate(net, "autolip", norm=norm)
        prod = np.prod([np.linalg.norm(W, order) for W in net.mlp(groupsort=True)[0]])
        assert b.certified and prod <= b.value <= prod * (1 + 1e-5)


# ------------------------------------------------------------------ file formats
def test_npz_mlp_file_stores_activation_and_group_sizes(tmp_path):
    net = sort_net()
    path = save(net, tmp_path / "g.npz")
    with np.load(path) as data:
        assert str(data["activation"]) == "groupsort"
        assert data["group_size"].tolist() == [3, 2] and "layers" not in data.files
    back = load(path)
    x = np.random.default_rng(2).standard_normal((5, 3))
    np.testing.assert_array_equal(back(x), net(x))
    assert back.groupsorts == net.groupsorts


def test_npz_single_group_size_and_maxmin_name(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"W0": rng.standard_normal((4, 2)), "W1": rng.standard_normal((4, 4)),
              "W2": rng.standard_normal((1, 4)), "activation": np.array("groupsort"),
              "group_size": np.array([2])}
    np.savez(tmp_path / "a.npz", **arrays)
    assert load(tmp_path / "a.npz").groupsorts == [GroupSort(2), GroupSort(2)]
    arrays.pop("group_size")
    arrays["activation"] = np.array("maxmin")
    np.savez(tmp_path / "b.npz", **arrays)
    assert load(tmp_path / "b.npz").groupsorts == [GroupSort(2), GroupSort(2)]


@pytest.mark.parametrize("group_size, match", [
    (None, "needs an integer array 'group_size'"),
    (np.array([2.0]), "must hold integers"),
    (np.array([2, 2, 2]), "3 entries for 2 hidden layers"),
    (np.array([0]), ">= 1"),
    (np.array([3]), "does not divide"),
])
def test_npz_bad_group_sizes(tmp_path, group_size, match):
    arrays = {"W0": np.ones((4, 2)), "W1": np.ones((4, 4)), "W2": np.ones((1, 4)),
              "activation": np.array("groupsort")}
    if group_size is not None:
        arrays["group_size"] = group_size
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=match):
        load(tmp_path / "bad.npz")


def test_layers_spec_with_groupsort_and_relu(tmp_path):
    rng = np.random.default_rng(3)
    net = Network((Affine(rng.standard_normal((4, 3)), None), GroupSort(2),
                   Affine(rng.standard_normal((4, 4)), None), Activation("relu"),
                   Affine(rng.standard_normal((1, 4)), None)), (3,))
    path = save(net, tmp_path / "mixed.npz")
    with np.load(path) as data:
        spec = json.loads(str(data["layers"]))
    assert spec[1] == {"type": "groupsort", "group_size": 2}
    back = load(path)
    assert not back.is_graph and back.groupsorts == [GroupSort(2)]
    x = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(back(x), net(x))


def test_torch_sequential_and_traced_module_round_trip():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(3, 6), GroupSortModule(3), nn.Linear(6, 4),
                        GroupSortModule(2), nn.Linear(4, 2)).double()
    net = from_torch(seq)
    assert not net.is_graph and net.groupsorts == [GroupSort(3), GroupSort(2)]
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x.numpy()), seq(x).numpy())
    back = from_torch(net.to_torch())
    np.testing.assert_array_equal(back(x.numpy()), net(x.numpy()))

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.g, self.b = nn.Linear(3, 4), GroupSortModule(2), nn.Linear(4, 3)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z + self.b(self.g(self.a(z)))

    graph = from_torch(Residual().double())
    assert graph.is_graph and graph.groupsorts == [GroupSort(2)]


def test_torch_module_of_another_sort_is_refused_by_name():
    class MySort(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.sort(z, dim=1).values

    with pytest.raises(UnsupportedError, match="sort"):
        from_torch(nn.Sequential(nn.Linear(2, 2), MySort(), nn.Linear(2, 1)))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                            "ignore::DeprecationWarning")
def test_onnx_export_of_groupsort_reads_back(tmp_path):
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), GroupSortModule(3), nn.Linear(6, 2)).eval()
    path = tmp_path / "gs.onnx"
    torch.onnx.export(model, torch.randn(2, 3), str(path))
    net = load(path)
    assert net.groupsorts == [GroupSort(3)]
    probe = torch.randn(7, 3)
    with torch.no_grad():
        want = model(probe).double().numpy()
    np.testing.assert_allclose(net(probe.double().numpy()), want, rtol=F32_RTOL, atol=1e-6)


def test_onnx_descending_topk_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W = numpy_helper.from_array(np.eye(4, dtype=np.float32), "W")
    shape3 = numpy_helper.from_array(np.array([1, 2, 2], dtype=np.int64), "s3")
    k = numpy_helper.from_array(np.array([2], dtype=np.int64), "k")
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1),
             helper.make_node("Reshape", ["h", "s3"], ["g"]),
             helper.make_node("TopK", ["g", "k"], ["v", "i"], axis=2, largest=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info(
            "v", TensorProto.FLOAT, [1, 2, 2])], [W, shape3, k])
    onnx.save(helper.make_model(graph), str(tmp_path / "desc.onnx"))
    with pytest.raises(UnsupportedError, match="ascending sort"):
        load(tmp_path / "desc.onnx")


# ------------------------------------------------------------------ methods
def test_every_method_without_groupsort_support_refuses_by_name():
    net = sort_net()
    refused = 0
    for info in methods():
        if info.groupsort or info.sorts_as_relu:
            continue
        for norm in info.norms:
            with pytest.raises(UnsupportedError, match="GroupSort"):
                check_applicable(info, net, norm, None)
        refused += 1
    names = {m.name for m in methods() if not (m.groupsort or m.sorts_as_relu)}
    assert {"lipsdp-neuron", "lipsdp-layer", "eclipse-fast", "liplt", "seqlip", "local",
            "hypercube", "mip", "seqlip-greedy"} <= names
    assert refused >= 9
    # bab and region-walk take the sorts as ReLU comparators (exact unrolling)
    for name in ("bab", "region-walk"):
        info = next(m for m in methods() if m.name == name)
        assert info.sorts_as_relu and not info.groupsort
        check_applicable(info, net, "2", None)


def test_elementwise_code_paths_refuse_when_called_directly():
    from lipopt_suite.core.eclipse import eclipse_fast
    from lipopt_suite.core.seqlip import seqlip_greedy
    from lipopt_suite.numerics.lmi import network_data

    net = sort_net()
    for call in (lambda: network_data(net), lambda: eclipse_fast(net),
                 lambda: seqlip_greedy(net)):
        with pytest.raises(UnsupportedError, match="GroupSort"):
            call()
