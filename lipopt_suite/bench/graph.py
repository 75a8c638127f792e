"""Graph networks: AutoLip (Algorithm 2) and a gradient-ascent lower bound on a ResNet-18,
and the CNN table's AutoLip / Greedy SeqLip ratio against depth.

Goals (2 CPU cores): on torchvision's ResNet-18 architecture (seeded random weights, 10
classes) traced from a 3x32x32 input, the certified AutoLip and a certified gradient-ascent
lower bound in <= 60 s each; on the CNNs of Scaman & Virmaux's table (4, 5, 7, 10 layers,
trained on the 8x8 digits) the ratio AutoLip / Greedy SeqLip grows with depth (2 -> 5.4 in
the paper). Baseline, measured in the same run: the lower bound's error analysis without
AutoLip's node factors (the absolute forward pass alone), which certifies nothing on a
network this deep, and the sequential AutoLip product on the same CNNs (the graph recursion
must equal it).
"""

from __future__ import annotations

import time
from typing import Any

TITLE = "AutoLip on graphs: ResNet-18 bounds and the CNN table's ratio vs depth"
GOAL_SECONDS = 60.0
SAMPLES = 100


def run(quick: bool = False) -> dict[str, Any]:
    import numpy as np
    import torch

    from ..core.lower import eval_error_bound, vector_norm
    from ..harness.cnn_table import CNN_LAYERS, train_scaman_cnn
    from ..harness.nets import resnet18_module
    from ..io import from_torch
    from ..registry import estimate

    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    width = 16 if quick else 64
    t = time.perf_counter()
    net = from_torch(resnet18_module(width=width), (3, 32, 32))
    out["resnet18"] = {"width": width, "nodes": len(net.nodes),
                       "trace_seconds": time.perf_counter() - t}
    r = out["resnet18"]
    x = np.random.default_rng(0).standard_normal((1, net.input_dim))
    r["baseline_error_bound"] = float(vector_norm(eval_error_bound(net, x), "2")[0])
    r["output_norm"] = float(np.linalg.norm(net(x.reshape(1, *net.input_shape))))
    t = time.perf_counter()
    up = estimate(net, "autolip", power_method=False)
    r["autolip_seconds"] = time.perf_counter() - t
    r["autolip"] = up.value
    r["autolip_certified"] = up.certified
    fresh = from_torch(resnet18_module(width=width), (3, 32, 32))  # nothing memoised
    t = time.perf_counter()
    # the budget: 2 restarts x 20 steps from the best of SAMPLES points (and as many again
    # at other scales); each point costs a Jacobian norm of a 3072-input network, so the
    # default 2000 points alone take minutes on 2 cores
    low = estimate(fresh, "gradient-ascent", restarts=2, steps=10 if quick else 20,
                   samples=SAMPLES)
    r["gradient_ascent_samples"] = SAMPLES
    r["gradient_ascent_seconds"] = time.perf_counter() - t
    r["gradient_ascent"] = low.value
    r["gradient_ascent_certified"] = low.certified
    r["goals_met"] = bool(r["autolip_seconds"] <= GOAL_SECONDS
                          and r["gradient_ascent_seconds"] <= GOAL_SECONDS
                          and low.value > 0 and low.value <= up.value)
    rows = []
    for layers in (CNN_LAYERS[:2] if quick else CNN_LAYERS):
        t = time.perf_counter()
        trained = train_scaman_cnn(layers)
        train_s = time.perf_counter() - t
        cnn = trained.net
        seq = estimate(cnn, "autolip").value
        graph = estimate(cnn.as_graph(), "autolip").value
        greedy = estimate(cnn, "seqlip-greedy").value
        rows.append({"layers": layers, "train_seconds": train_s, "autolip": seq,
                     "graph_autolip": graph, "seqlip_greedy": greedy, "ratio": seq / greedy,
                     "test_accuracy": trained.info["test_accuracy"]})
    out["cnn_table"] = rows
    ratios = [row["ratio"] for row in rows]
    out["ratio_grows_with_depth"] = bool(all(a < b for a, b in zip(ratios, ratios[1:])))
    out["graph_equals_sequential"] = bool(all(
        abs(row["graph_autolip"] - row["autolip"]) <= 1e-12 * row["autolip"] for row in rows))
    return out
