"""Deterministic random networks for tests, benchmarks and the problem suite."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..network import Activation, Affine, Conv2d, Flatten, MaxPool2d, Network


def random_mlp(sizes: Sequence[int], seed: int = 0, *, activation: str = "relu",
               bias_scale: float = 0.5, weight_scale: float = 1.0) -> Network:
    """An MLP with layer sizes `sizes` (input first): W ~ N(0, weight_scale^2 / fan_in),
    b ~ N(0, bias_scale^2)."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((sizes[k + 1], sizes[k])) * weight_scale
               / np.sqrt(sizes[k]) for k in range(len(sizes) - 1)]
    biases = [rng.standard_normal(sizes[k + 1]) * bias_scale for k in range(len(sizes) - 1)]
    return Network.from_mlp(weights, biases, activation)


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
