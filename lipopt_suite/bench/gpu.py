"""The GPU paths against the CPU, in the same run: the first-order LipSDP solve (torch
eigenvalue method, `solver="eig"`), AutoLip and a gradient-ascent lower bound on a traced
ResNet-18.

Goals: on a CUDA device, the first-order LipSDP-Neuron of 784-256-10 and 784-512-512-10
certified to the same value as on the CPU (relative 1e-6 where both finish), faster than the
CPU; the graph bounds of ResNet-18 faster on the GPU with the same certified values to
rounding. Baseline: the same call with `device="cpu"` in the same process. Without a CUDA
device the module records that and measures nothing (CI machines have none).
"""

from __future__ import annotations

import time
from typing import Any

TITLE = "GPU vs CPU: first-order LipSDP, AutoLip and gradient ascent on ResNet-18"
WIDE_NETS = ([784, 256, 10], [784, 512, 512, 10])
# beyond what the CPU path certifies in 10 minutes: measured on the GPU alone
GPU_ONLY_NET = [784, 1024, 1024, 10]
GAIN = 2.0  # the weight scale of bench/lipsdp.py's wide nets (trained-like norms)
# the CPU baseline of the largest net is capped: it took 373 s on 2 cores
CPU_LIMIT = 150.0
GPU_LIMIT = 300.0


def _timed(fn: Any) -> tuple[Any, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def _row(b: Any, seconds: float) -> dict[str, Any]:
    it = b.details.get("iterations")
    return {"value": b.value, "certified": b.certified, "status": b.status,
            "seconds": seconds, "iterations": it,
            "iterations_per_second": it / seconds if isinstance(it, int) else None}


def lipsdp_first_order(quick: bool) -> dict[str, Any]:
    from ..harness.nets import random_mlp
    from ..registry import estimate

    out: dict[str, Any] = {}
    for sizes in WIDE_NETS[:1] if quick else WIDE_NETS:
        net = random_mlp(list(sizes), seed=0, weight_scale=GAIN)
        row: dict[str, Any] = {}
        for dev, limit in (("cuda", GPU_LIMIT), ("cpu", CPU_LIMIT)):
            b, s = _timed(lambda n=net, d=dev, lim=limit: estimate(
                n, "lipsdp-neuron", solver="eig", device=d, time_limit=lim))
            row[dev] = _row(b, s)
        g, c = row["cuda"], row["cpu"]
        if g["certified"] and c["certified"]:
            row["relative_difference"] = abs(g["value"] / c["value"] - 1)
        row["speedup"] = c["seconds"] / g["seconds"]
        out["-".join(map(str, sizes))] = row
    return out


def gpu_only(quick: bool) -> dict[str, Any]:
    from ..harness.nets import random_mlp
    from ..registry import estimate

    if quick:
        return {}
    net = random_mlp(list(GPU_ONLY_NET), seed=0, weight_scale=GAIN)
    b, s = _timed(lambda: estimate(net, "lipsdp-neuron", solver="eig", device="cuda",
                                   time_limit=GPU_LIMIT))
    up = estimate(net, "autolip")
    return {"-".join(map(str, GPU_ONLY_NET)): {"cuda": _row(b, s), "autolip": up.value}}


def _warm_up() -> None:
    """CUDA context, kernels and the tracer once, untimed, so that neither device pays for
    initialisation in the figures."""
    from ..harness.nets import random_mlp, resnet18_module
    from ..io import from_torch
    from ..registry import estimate

    small = from_torch(resnet18_module(width=4), (3, 32, 32))
    for dev in ("cuda", "cpu"):
        estimate(small, "autolip", device=dev, power_method=False)
        estimate(small, "gradient-ascent", restarts=1, steps=2, samples=4, device=dev)
        estimate(random_mlp([8, 8, 2], seed=0), "lipsdp-neuron", solver="eig", device=dev)


def resnet18(quick: bool) -> dict[str, Any]:
    from ..harness.nets import resnet18_module
    from ..io import from_torch
    from ..registry import estimate

    out: dict[str, Any] = {}
    width = 16 if quick else 64
    for dev in ("cuda", "cpu"):
        net = from_torch(resnet18_module(width=width), (3, 32, 32))  # nothing memoised
        up, s_up = _timed(lambda n=net, d=dev: estimate(n, "autolip", device=d,
                                                        power_method=False))
        low, s_low = _timed(lambda n=net, d=dev: estimate(
            n, "gradient-ascent", restarts=2, steps=20, samples=100, device=d))
        out[dev] = {"autolip": _row(up, s_up), "gradient_ascent": _row(low, s_low)}
    out["width"] = width
    out["autolip_speedup"] = out["cpu"]["autolip"]["seconds"] / out["cuda"]["autolip"]["seconds"]
    out["gradient_ascent_speedup"] = (out["cpu"]["gradient_ascent"]["seconds"]
                                      / out["cuda"]["gradient_ascent"]["seconds"])
    return out


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0),
                           "cpu_threads": torch.get_num_threads()}
    _warm_up()
    out["resnet18"] = resnet18(quick)
    out["lipsdp_first_order"] = lipsdp_first_order(quick)
    out["lipsdp_first_order_gpu_only"] = gpu_only(quick)
    return out
