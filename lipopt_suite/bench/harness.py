"""Harness throughput: the default preset's wall time, and Dask scaling from 1 to 2 workers.

* default preset: `lipopt compare` on problems/ with two local workers, end to end (worker
  start-up, every job, the report). Baseline measured in the same run: the sum of the jobs'
  own seconds, i.e. what a single process running them back to back would need at least.
  Goal: <= 600 s on 2 cores. Quick mode runs the preset on the small exact and LipSDP-depth
  problems only.
* Dask scaling: one CPU-bound batch (exact region enumeration on seeded random MLPs) on a
  Dask LocalCluster with 1 worker, then with 2 workers, end to end (cluster start included).
  Goal: speed-up >= 1.6.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

TITLE = "harness: default preset wall time (goal <= 600 s), Dask 2 vs 1 workers (goal >= 1.6x)"
DEFAULT_GOAL_SECONDS = 600.0
DASK_GOAL_SPEEDUP = 1.6
QUICK_PROBLEMS = ("tiny0", "tiny1", "lipmip_depth1", "lipsdp_depth2", "lipsdp_depth3")


def _cpu_batch(root: Path, count: int) -> list[str]:
    """`count` small random MLPs whose region enumeration takes a few CPU seconds each."""
    from ..harness.nets import random_mlp
    from ..harness.problems import Problem, manifest_text
    from ..io import save

    problems = []
    for k in range(count):
        save(random_mlp([2, 16, 16, 16, 1], seed=100 + k), root / f"cpu{k}.npz")
        problems.append(Problem(f"cpu{k}", f"cpu{k}.npz", "bench", "random MLP 2-16-16-16-1",
                                ("2",)))
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.toml").write_text(manifest_text(problems))
    return [p.name for p in problems]


def _default_preset(quick: bool, tmp: Path) -> dict[str, Any]:
    from ..harness.runner import compare

    start = time.perf_counter()
    run = compare(list(QUICK_PROBLEMS) if quick else None, preset="default",
                  out=tmp / "default", jobs=2, fresh=True, progress=False)
    wall = time.perf_counter() - start
    job_seconds = sum(float(r.get("wall") or 0.0) for r in run.records)
    return {"default_preset_seconds": wall, "default_preset_jobs": len(run.records),
            "default_preset_failed": sum(r["status"] in ("error", "timeout")
                                         for r in run.records),
            "default_preset_goal_seconds": DEFAULT_GOAL_SECONDS,
            "default_preset_meets_goal": (not quick) and wall <= DEFAULT_GOAL_SECONDS,
            "baseline_serial_job_seconds": job_seconds,
            "speedup_vs_serial_jobs": job_seconds / wall if wall > 0 else None}


def _dask_scaling(quick: bool, tmp: Path) -> dict[str, Any]:
    from ..harness.runner import compare

    count = 6 if quick else 16
    names = _cpu_batch(tmp / "cpu", count)
    walls = {}
    for workers in (1, 2):
        start = time.perf_counter()
        run = compare(names, methods=["regions"], root=tmp / "cpu",
                      out=tmp / f"dask{workers}", executor="dask", jobs=workers, fresh=True,
                      progress=False, report=False)
        walls[workers] = time.perf_counter() - start
        assert all(r["status"] == "ok" for r in run.records), "a benchmark job failed"
    speedup = walls[1] / walls[2]
    return {"dask_jobs": count, "dask_1_worker_seconds": walls[1],
            "dask_2_workers_seconds": walls[2], "dask_speedup": speedup,
            "dask_goal_speedup": DASK_GOAL_SPEEDUP,
            "dask_meets_goal": speedup >= DASK_GOAL_SPEEDUP}


def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lipopt-bench-") as tmp:
        figures = _dask_scaling(quick, Path(tmp))
        figures.update(_default_preset(quick, Path(tmp)))
    return figures
