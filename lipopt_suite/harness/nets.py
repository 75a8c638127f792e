"""Deterministic random networks for tests, benchmarks and the problem suite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..network import Activation, Add, Affine, Conv2d, Flatten, MaxPool2d, Network, Node


def random_mlp(sizes: Sequence[int], seed: int = 0, *, activation: str = "relu",
               bias_scale: float = 0.5, weight_scale: float = 1.0) -> Network:
    """An MLP with layer sizes `sizes` (input first): W ~ N(0, weight_scale^2 / fan_in),
    b ~ N(0, bias_scale^2)."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((sizes[k + 1], sizes[k])) * weight_scale
               / np.sqrt(sizes[k]) for k in range(len(sizes) - 1)]
    biases = [rng.standard_normal(sizes[k + 1]) * bias_scale for k in range(len(sizes) - 1)]
    return Network.from_mlp(weights, biases, activation)


def fuzz_mlp(seed: int, *, max_input: int = 4, max_width: int = 8) -> Network:
    """A seeded ReLU or leaky-ReLU MLP of varied shape for robustness fuzzing: 1-3 hidden
    layers of 1..max_width units, 1..max_input inputs, 1-3 outputs, biases from none to
    large, and now and then degenerate rows (zero, repeated or opposite neurons)."""
    rng = np.random.default_rng(10_000 + seed)
    sizes = ([int(rng.integers(1, max_input + 1))]
             + [int(rng.integers(1, max_width + 1)) for _ in range(int(rng.integers(1, 4)))]
             + [int(rng.integers(1, 4))])
    bias_scale = float(rng.choice([0.0, 0.1, 0.5, 2.0, 10.0]))
    weights = [rng.standard_normal((sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
               for k in range(len(sizes) - 1)]
    biases = [rng.standard_normal(sizes[k + 1]) * bias_scale for k in range(len(sizes) - 1)]
    for W, b in zip(weights[:-1], biases[:-1]):
        if W.shape[0] >= 2 and rng.random() < 0.3:
            i, j = rng.choice(W.shape[0], 2, replace=False)
            kind = int(rng.integers(3))
            if kind == 0:
                W[i], b[i] = 0.0, 0.0 if rng.random() < 0.5 else b[i]
            elif kind == 1:
                W[i], b[i] = W[j], b[j]
            else:
                W[i], b[i] = -W[j], -b[j]
    activation = "leaky_relu" if rng.random() < 0.3 else "relu"
    slope = float(rng.choice([0.01, 0.1, 0.5]))
    return Network.from_mlp(weights, biases, activation, negative_slope=slope)


def lipmip_width(i: int, seed: int = 0) -> Network:
    """lipMIP's width series (Jordan & Dimakis 2020): layer sizes [2, 20, 20 i, 20, 2]."""
    return random_mlp([2, 20, 20 * i, 20, 2], seed)


def lipmip_depth(i: int, seed: int = 0) -> Network:
    """lipMIP's depth series: layer sizes [2] + [20] * i + [2]."""
    return random_mlp([2] + [20] * i + [2], seed)


def random_cnn(input_shape: tuple[int, int, int] = (1, 8, 8), channels: Sequence[int] = (4, 8),
               outputs: int = 10, seed: int = 0, *, pool: bool = True) -> Network:
    """A small ReLU CNN: 3x3 convolutions (padding 1), optional 2x2 max-pooling after the
    first, then flatten and a linear layer."""
    rng = np.random.default_rng(seed)
    layers: list = []
    c, h, w = input_shape
    for k, out_c in enumerate(channels):
        weight = rng.standard_normal((out_c, c, 3, 3)) / np.sqrt(9 * c)
        layers += [Conv2d(weight, 0.1 * rng.standard_normal(out_c), 1, 1), Activation("relu")]
        c = out_c
        if pool and k == 0 and min(h, w) >= 4:
            layers.append(MaxPool2d(2, 2))
            h, w = h // 2, w // 2
    layers.append(Flatten())
    n = c * h * w
    layers.append(Affine(rng.standard_normal((outputs, n)) / np.sqrt(n),
                         0.1 * rng.standard_normal(outputs)))
    return Network(tuple(layers), input_shape).validate()


def residual_mlp(n: int = 2, hidden: int = 8, blocks: int = 2, outputs: int = 2,
                 seed: int = 0) -> Network:
    """A residual ReLU network as a graph: y_{k+1} = y_k + V_k relu(W_k y_k + c_k) on R^n,
    `blocks` times, then a linear layer onto `outputs` (W ~ N(0, 1/fan_in))."""
    rng = np.random.default_rng(seed)
    nodes: list[Node] = []
    last = 0
    for _ in range(blocks):
        W = rng.standard_normal((hidden, n)) / np.sqrt(n)
        V = rng.standard_normal((n, hidden)) / np.sqrt(hidden)
        k = len(nodes)
        nodes += [Node(Affine(W, 0.5 * rng.standard_normal(hidden)), (last,)),
                  Node(Activation("relu"), (k + 1,)), Node(Affine(V, None), (k + 2,)),
                  Node(Add(), (last, k + 3))]
        last = len(nodes)
    nodes.append(Node(Affine(rng.standard_normal((outputs, n)) / np.sqrt(n),
                             0.1 * rng.standard_normal(outputs)), (last,)))
    return Network.from_graph(nodes, (n,)).validate()


def f_w_network(w: float = 1.0) -> Network:
    """The example of Scaman & Virmaux (NeurIPS 2018, Figure 1) as a computation graph:
    f_w(x) = ln(1 + e^{x/2}) + |x/2 - w sin x| on R, whose AutoLip bound is 1 + |w|."""
    return Network.from_graph([
        Node(Add((0.5,)), (0,)), Node(Activation("softplus"), (1,)),
        Node(Activation("sin"), (0,)), Node(Add((0.5, -float(w))), (0, 3)),
        Node(Activation("abs"), (4,)), Node(Add(), (2, 5))], (1,)).validate()


# ------------------------------------------------------------------ torch architectures
def _seeded_init(module: Any, seed: int) -> Any:
    """Re-draw every parameter from a seeded generator (He-normal convolutions and linear
    layers, zero biases, eval-mode batch norms with seeded running statistics), so that
    the network depends on `seed` alone."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=m.weight.dtype)
                               * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return module.double().eval()


def resnet18_module(classes: int = 10, width: int = 64, seed: int = 0) -> Any:
    """ResNet-18 as torchvision defines it (He et al., CVPR 2016): a 7x7 stride-2 stem with
    batch norm, ReLU and 3x3 stride-2 max pooling, four stages of two basic blocks (3x3
    convolutions with batch norm; a 1x1 stride-2 convolution with batch norm on the shortcut
    where the shape changes) of width, 2 width, 4 width, 8 width channels, global average
    pooling and a linear head. Seeded random weights (no download), eval mode, float64."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                             nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans = [w, w, 2 * w, 4 * w, 8 * w]
            self.layers = nn.Sequential(*[
                nn.Sequential(BasicBlock(chans[i], chans[i + 1], 1 if i == 0 else 2),
                              BasicBlock(chans[i + 1], chans[i + 1], 1)) for i in range(4)])
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8 * w, classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.avgpool(self.layers(x))
            return self.fc(x.flatten(1))

    return _seeded_init(ResNet18(), seed)


def alexnet_module(classes: int = 1000, seed: int = 0, *, width: float = 1.0) -> Any:
    """AlexNet as torchvision defines it (Krizhevsky et al., NIPS 2012) for 3x224x224 inputs:
    five convolutions (64, 192, 384, 256, 256 channels; 11x11 stride 4, 5x5, 3x3) with ReLU
    and three 3x3 stride-2 max poolings, then 9216 -> 4096 -> 4096 -> classes with ReLU
    (dropout is the identity in eval mode; the adaptive pooling onto 6x6 is the identity at
    this input size and left out). `width` scales every channel and hidden width. Seeded
    random weights (no download), float64."""
    from torch import nn

    c = [max(1, round(k * width)) for k in (64, 192, 384, 256, 256)]
    hidden = max(1, round(4096 * width))
    module = nn.Sequential(
        nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Dropout(), nn.Linear(c[4] * 36, hidden), nn.ReLU(),
        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    return _seeded_init(module, seed)
