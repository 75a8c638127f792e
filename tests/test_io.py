"""Loading and saving networks: every format, and every way a file can be bad."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lipopt_suite import InputError, UnsupportedError, from_torch, load, load_problem, save
from lipopt_suite.harness.nets import random_cnn, random_mlp
from lipopt_suite.io import load_state_dict

# float64 round trips are exact; torch float32 modules agree to ~1e-6 relative.
F32_RTOL = 1e-5


def test_npz_round_trip_mlp_with_extras(tmp_path):
    net = random_mlp([3, 4, 2], seed=3, activation="tanh")
    X = np.random.default_rng(0).standard_normal((5, 3))
    path = save(net, tmp_path / "m.npz", X=X, center=X[0])
    back, extras = load_problem(path)
    assert back.describe() == "mlp 3-4-2 tanh"
    np.testing.assert_array_equal(extras["X"], X)
    np.testing.assert_array_equal(back(X), net(X))


def test_npz_round_trip_cnn(tmp_path):
    net = random_cnn((2, 6, 6), (3,), seed=4)
    back = load(save(net, tmp_path / "c.npz"))
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6))
    np.testing.assert_array_equal(back(x), net(x))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "none.npz")


def test_truncated_npz(tmp_path):
    path = save(random_mlp([2, 3, 1]), tmp_path / "t.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable .npz"):
        load(path)


def test_npz_needing_pickle_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, W0=np.array([np.ones((2, 2))], dtype=object), b0=np.zeros(2))
    with pytest.raises(InputError, match="unpickling"):
        load(path)


def test_nan_weights_name_the_layer(tmp_path):
    path = tmp_path / "n.npz"
    np.savez(path, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.array([[1.0, np.nan, 0.0]]),
             b1=np.zeros(1))
    with pytest.raises(InputError, match=r"W1.*NaN"):
        load(path)


def test_shape_mismatch_names_the_layer(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.ones((1, 4)), b1=np.zeros(1))
    with pytest.raises(InputError, match=r"W1.*4 columns.*3 features"):
        load(path)


def test_empty_npz(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, activation=np.array("relu"))
    with pytest.raises(InputError, match="no weight arrays"):
        load(path)


def test_layer_spec_errors(tmp_path):
    path = tmp_path / "l.npz"
    np.savez(path, W0=np.ones((2, 1, 3, 3)), b0=np.zeros(2),
             layers=np.array(json.dumps([{"type": "conv2d"}, {"type": "gelu"}])),
             input_shape=np.array([1, 5, 5]))
    with pytest.raises(UnsupportedError, match="gelu"):
        load(path)


def test_from_torch_folds_batchnorm_and_drops_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(6, 2))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model[1].weight.data.uniform_(0.5, 1.5)
    model.eval()
    net = from_torch(model)
    assert net.describe() == "mlp 4-6-2 relu"
    x = torch.randn(7, 4)
    np.testing.assert_allclose(net(x.numpy()), model(x).detach().numpy(), rtol=F32_RTOL,
                               atol=1e-6)


def test_from_torch_cnn_needs_input_shape():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    with pytest.raises(InputError, match="input_shape"):
        from_torch(model)
    net = from_torch(model, (1, 4, 4))
    x = torch.randn(2, 1, 4, 4)
    np.testing.assert_allclose(net(x.numpy()), model(x).detach().numpy(), rtol=F32_RTOL,
                               atol=1e-6)


def test_state_dict_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    net = load(path)
    x = torch.randn(4, 3)
    np.testing.assert_allclose(net(x.numpy()), model(x).detach().numpy(), rtol=F32_RTOL,
                               atol=1e-6)
    assert net.describe() == "mlp 3-5-2 relu"
    assert load_state_dict(model.state_dict(), activation="tanh").describe() == "mlp 3-5-2 tanh"


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    with pytest.raises(InputError, match="cannot read torch file"):
        load(path)


def test_nnet_format(tmp_path):
    text = "\n".join([
        "// a tiny ACAS-style file",
        "2,2,1,3,", "2,3,1,", "0,", "-1,-1,", "1,1,", "0,0,0,", "1,1,1,",
        "1.0,0.0,", "1.0,1.0,", "0.0,-1.0,",  # W0 rows
        "0.0,", "0.5,", "-0.5,",  # b0
        "1.0,-1.0,2.0,",  # W1
        "0.25,",  # b1
    ])
    path = tmp_path / "a.nnet"
    path.write_text(text)
    net = load(path)
    x = np.array([0.3, -0.2])
    h = np.maximum(np.array([[1, 0], [1, 1], [0, -1.0]]) @ x + [0, 0.5, -0.5], 0)
    np.testing.assert_allclose(net(x), [h @ [1, -1, 2.0] + 0.25])


def test_onnx_gemm_relu(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    W0, b0, W1 = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal((2, 4))
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W1t"], ["y"])]
    inits = [numpy_helper.from_array(W0.astype(np.float32), "W0"),
             numpy_helper.from_array(b0.astype(np.float32), "b0"),
             numpy_helper.from_array(W1.T.astype(np.float32), "W1t")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 2])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    net = load(path)
    x = rng.standard_normal(3)
    np.testing.assert_allclose(net(x), W1 @ np.maximum(W0 @ x + b0, 0), rtol=F32_RTOL)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "m.h5"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown network format"):
        load(path)


@pytest.mark.parametrize("state, match", [
    ({"0.weight": torch.ones(3, 2, dtype=torch.complex64)}, "complex64"),
    ({"0.weight": torch.ones(4, 2), "0.bias": torch.zeros(4),
      "1.running_mean": torch.zeros(3), "1.running_var": torch.ones(3),
      "1.weight": torch.ones(3), "1.bias": torch.zeros(3)}, "BatchNorm of 3 features"),
    ({"0.weight": torch.ones(4, 2), "1.running_mean": torch.zeros(4),
      "1.running_var": -torch.ones(4), "1.weight": torch.ones(4), "1.bias": torch.zeros(4)},
     "running_var must be >= 0"),
    ({"0.weight": torch.full((3, 2), float("nan"))}, "NaN or inf"),
])
def test_bad_state_dicts_are_input_errors_naming_the_file(tmp_path, state, match):
    p = tmp_path / "bad.pt"
    torch.save(state, p)
    with pytest.raises(InputError, match=match) as info:
        load(p)
    assert str(info.value).startswith(str(p))


def test_stored_data_must_match_the_input(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, W0=np.ones((3, 2)), b0=np.zeros(3), center=np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="'center' contains NaN"):
        load_problem(p)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                            "ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_torch_onnx_export_with_its_default_call_reads_back(tmp_path, kind):
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    if kind == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(),
                                    torch.nn.Linear(5, 2))
        x = torch.randn(1, 3)
    else:
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                    torch.nn.Linear(2 * 4 * 4, 3))
        x = torch.randn(1, 1, 8, 8)
    model.eval()
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(model, x, str(path))  # torch's default call, as a user writes it
    net = load(path)
    assert net.input_shape == tuple(x.shape[1:])
    probe = torch.randn(4, *x.shape[1:])
    with torch.no_grad():
        expected = model(probe).double().numpy()
    np.testing.assert_allclose(net(probe.double().numpy()), expected, rtol=F32_RTOL,
                               atol=1e-6)
