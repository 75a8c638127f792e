"""Batch runs: jobs = problems x methods x norms (x radii), each in a worker process.

Everything is checked before the first job starts (preset, method names, manifest, every
problem file). Each job runs in a worker process under a wall-clock limit: a crash or a hang
becomes a record with status "error" or "timeout" and the batch goes on. Records go to
`OUT/records.jsonl`, one JSON line per job, written by the parent process alone with one
`write` and an `fsync` per record; on a rerun the store is read back (a torn last line left
by a killed run is cut off, duplicates dropped) and finished jobs are skipped.

Executors: a local pool of long-lived spawned workers (a worker past its limit is killed and
replaced, so a hang costs its limit and no more), or Dask distributed (a LocalCluster when no
scheduler address is given), where each Dask worker drives one such spawned worker.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import os
import platform
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bound import Domain, check_norm
from ..errors import InputError
from .problems import DEFAULT_ROOT, MANIFEST, Problem, get_preset, load_manifest
from .sandwich import candidates
from .store import RECORDS, Store

ALL = "all"  # --preset all: every preset in turn, each into runs/PRESET
# A run writes (and resumes) runs/PRESET by default; results/PRESET holds the committed
# reference of the same preset, which the report sets the run beside (reference.md).
RUNS_DIR = Path("runs")
REFERENCE_DIR = Path("results")
START_METHOD = "spawn"  # a fresh interpreter: no inherited thread pools or locks
# Methods with a time limit of their own get this share of the job's limit, so that they
# can stop and return their proven bound before the worker is killed.
SOFT_LIMIT_SHARE = 0.8
WORKER_START_TIMEOUT = 180.0  # seconds for a worker to import torch and the registry
MAX_WARNINGS = 5  # distinct warning messages kept in a record
VERSION_PACKAGES = ("numpy", "scipy", "torch", "cvxpy", "scs", "clarabel", "highspy",
                    "networkx")


# --------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """One method on one problem in one norm (and one radius for local methods)."""

    key: str
    problem: str
    path: str
    method: str
    norm: str
    radius: float | None
    domain: dict[str, Any] | None
    options: dict[str, Any]
    use_x: bool
    meta: dict[str, Any] = field(default_factory=dict)


def job_key(problem: str, method: str, norm: str, radius: float | None) -> str:
    return f"{problem}|{method}|{norm}|{'global' if radius is None else repr(float(radius))}"


def _accepts(fn: Any, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def plan_jobs(problems: Sequence[Problem], loaded: dict[str, tuple[Any, dict[str, Any]]],
              methods_for: Any, norms: Sequence[str] | None = None
              ) -> tuple[list[Job], list[tuple[str, str, str, str]]]:
    """The jobs to run and the (problem, method, norm, reason) combinations skipped because
    the method cannot run there (norm, layers, domain, missing inputs)."""
    from ..registry import check_applicable, get

    jobs: list[Job] = []
    skipped: list[tuple[str, str, str, str]] = []
    for p in problems:
        net, extras = loaded[p.name]
        meta = {"family": p.family, "series": p.series, "x": p.x}
        for name, options in methods_for(p):
            info = get(name)
            use_x = "X" in extras and _accepts(info.fn, "X")
            for norm in (norms or p.norms):
                if norm not in info.norms:
                    skipped.append((p.name, name, norm, f"no l{norm} support"))
                    continue
                if p.domain is None or info.domain == "never":
                    if info.domain == "required":
                        skipped.append((p.name, name, norm, "needs a domain"))
                        continue
                    radii: list[float | None] = [None]
                else:
                    radii = list(p.domain.radii)
                for r in radii:
                    domain = None
                    if r is not None:
                        anchored = (p.domain.anchored if info.anchored == "optional"
                                    else info.anchored == "only")
                        domain = (Domain.ball(extras["center"], r, anchored=anchored)
                                  if p.domain.kind == "ball"
                                  else Domain.box(extras["center"], r))
                    probe = dict(options)
                    if use_x:
                        probe["X"] = extras["X"]
                    try:
                        check_applicable(info, net, norm, domain, probe)
                    except InputError as exc:
                        skipped.append((p.name, name, norm, str(exc)))
                        break
                    jobs.append(Job(job_key(p.name, name, norm, r), p.name, str(p.path), name,
                                    norm, r, None if domain is None else domain.to_dict(),
                                    dict(options), use_x, meta))
    return jobs, skipped


# ------------------------------------------------------------------------------ workers
_NETS: dict[str, tuple[Any, dict[str, Any]]] = {}


def execute(job: Job, limit: float | None) -> dict[str, Any]:
    """Run one job in this process: the Bound's fields, or status "error" and a message."""
    from ..io import load_problem
    from ..registry import estimate, get

    try:
        if job.path not in _NETS:
            _NETS[job.path] = load_problem(job.path)
        net, extras = _NETS[job.path]
        info = get(job.method)
        options = dict(job.options)
        if job.use_x:
            options["X"] = extras["X"]
        if limit is not None and _accepts(info.fn, "time_limit"):
            options.setdefault("time_limit", SOFT_LIMIT_SHARE * limit)
        domain = None if job.domain is None else Domain.from_dict(job.domain)
        # warnings go into the record, not onto the terminal under the progress bar
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bound = estimate(net, job.method, norm=job.norm, domain=domain, **options)
        out = bound.to_dict()
        if caught:
            texts = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
            out["details"]["warnings"] = texts[:MAX_WARNINGS]
        out["worker"] = f"{platform.node()}:{os.getpid()}"
        return out
    except Exception as exc:  # noqa: BLE001 - a failing method is a record, not a crash
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "error", "message": last, "error_type": type(exc).__name__}


def _thread_vars(threads: int) -> dict[str, str]:
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS")}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set while child processes are started (they inherit them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _orphan_watch(parent: int) -> None:
    """End this worker when its parent is gone (a killed run leaves no busy orphans)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(conn: Any, threads: int, imports: tuple[str, ...], parent: int) -> None:
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()
    try:
        import torch

        torch.set_num_threads(threads)
        from ..registry import load_all

        load_all()
        for name in imports:
            importlib.import_module(name)
        conn.send(("ready", os.getpid()))
    except BaseException as exc:  # noqa: BLE001 - tell the parent why the worker failed
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job, limit = msg
        conn.send(("done", execute(job, limit)))


class Worker:
    """A long-lived spawned process that runs jobs sent over a pipe."""

    def __init__(self, threads: int, imports: tuple[str, ...]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context(START_METHOD)
        self.conn, child = ctx.Pipe()
        with _environ(_thread_vars(threads)):
            self.proc = ctx.Process(target=_worker_main,
                                    args=(child, threads, imports, os.getpid()),
                                    name="lipopt-worker")
            self.proc.start()
        child.close()
        self.ready = False
        self.job: Job | None = None
        self.deadline = math.inf
        self.born = time.monotonic()

    def submit(self, job: Job, limit: float | None) -> None:
        self.job = job
        self.started = time.monotonic()
        self.deadline = self.started + (limit if limit is not None else math.inf)
        self.conn.send((job, limit))

    def receive(self) -> tuple[str, Any] | None:
        """The next message, or None when the process died."""
        try:
            return self.conn.recv()
        except (EOFError, OSError, ConnectionResetError):
            return None

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.proc.join(2)
        self.kill()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"a worker did not start within {timeout:g} s")
        msg = self.receive()
        if msg is None or msg[0] != "ready":
            self.kill()
            why = msg[1] if msg else f"exit code {self.proc.exitcode}"
            raise RuntimeError(f"a worker failed to start: {why}")
        self.ready = True


def _failure(status: str, message: str) -> dict[str, Any]:
    return {"status": status, "message": message}


def run_local(jobs: Sequence[Job], limit: float | None, n_workers: int, threads: int,
              imports: tuple[str, ...], on_result: Any) -> None:
    """Run jobs on a pool of spawned workers; `on_result(job, outcome, wall)` per job."""
    from multiprocessing.connection import wait

    pending = list(reversed(jobs))
    pool: list[Worker] = []
    try:
        pool = [Worker(threads, imports) for _ in range(min(n_workers, len(jobs)))]
        while pending or any(w.job is not None for w in pool):
            for w in pool:
                if w.ready and w.job is None and pending:
                    w.submit(pending.pop(), limit)
            now = time.monotonic()
            wake = min([w.deadline for w in pool if w.job is not None] + [now + 1.0])
            for conn in wait([w.conn for w in pool], timeout=max(0.0, wake - now)):
                w = next(w for w in pool if w.conn is conn)
                msg = w.receive()
                if msg is None:
                    if w.job is None:
                        raise RuntimeError(f"a worker died while starting (exit code "
                                           f"{w.proc.exitcode})")
                    on_result(w.job, _failure("error", "worker process died (exit code "
                                                       f"{w.proc.exitcode})"),
                              time.monotonic() - w.started)
                    _replace(pool, w, threads, imports)
                elif msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "failed":
                    raise RuntimeError(f"a worker failed to start: {msg[1]}")
                else:
                    job, w.job, w.deadline = w.job, None, math.inf
                    on_result(job, msg[1], time.monotonic() - w.started)
            now = time.monotonic()
            for w in list(pool):
                if w.job is not None and now >= w.deadline:
                    on_result(w.job, _failure("timeout", f"no result within {limit:g} s"),
                              now - w.started)
                    _replace(pool, w, threads, imports)
                elif not w.ready and now - w.born > WORKER_START_TIMEOUT:
                    raise RuntimeError(f"a worker did not start within "
                                       f"{WORKER_START_TIMEOUT:g} s")
    finally:
        for w in pool:
            w.stop()


def _replace(pool: list[Worker], w: Worker, threads: int, imports: tuple[str, ...]) -> None:
    w.kill()
    pool[pool.index(w)] = Worker(threads, imports)


# Each Dask worker process drives one spawned worker, reused from task to task.
_DASK_WORKER: list[Worker] = []


def dask_task(job: Job, limit: float | None, threads: int, imports: tuple[str, ...]
              ) -> tuple[dict[str, Any], float]:
    """Run one job under its limit from inside a Dask worker; (outcome, wall seconds)."""
    if not _DASK_WORKER or not _DASK_WORKER[0].proc.is_alive():
        _DASK_WORKER[:] = [Worker(threads, imports)]
        _DASK_WORKER[0].wait_ready(WORKER_START_TIMEOUT)
    w = _DASK_WORKER[0]
    w.submit(job, limit)
    if w.conn.poll(limit):
        msg = w.receive()
        wall = time.monotonic() - w.started
        w.job = None
        if msg is not None and msg[0] == "done":
            return msg[1], wall
        _DASK_WORKER.clear()
        return _failure("error", f"worker process died (exit code {w.proc.exitcode})"), wall
    wall = time.monotonic() - w.started
    w.kill()
    _DASK_WORKER.clear()
    return _failure("timeout", f"no result within {limit:g} s"), wall


def run_dask(jobs: Sequence[Job], limit: float | None, n_workers: int, threads: int,
             imports: tuple[str, ...], on_result: Any, scheduler: str | None = None) -> None:
    """Run jobs on Dask distributed: the scheduler at `scheduler`, or a LocalCluster of
    `n_workers` single-threaded worker processes."""
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    # Dask's worker processes are daemonic by default, and daemonic processes may not
    # start the spawned child that enforces the time limit.
    with dask.config.set({"distributed.worker.daemon": False}), \
            _environ(_thread_vars(threads)):
        if scheduler:
            try:
                client = Client(scheduler, timeout=30)
            except OSError as exc:
                raise InputError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
            cluster = None
        else:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
    try:
        futures = {client.submit(dask_task, job, limit, threads, imports, pure=False): job
                   for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                outcome, wall = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost Dask worker is a failed job
                outcome, wall = _failure("error", f"Dask task failed: {exc}"), 0.0
            on_result(job, outcome, wall)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -------------------------------------------------------------------------------- store


def versions() -> dict[str, str]:
    from importlib import metadata

    from .._version import __version__

    out = {"lipopt_suite": __version__, "python": platform.python_version()}
    for name in VERSION_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def make_record(job: Job, outcome: dict[str, Any], wall: float, limit: float | None,
                kind: str, stamp: dict[str, Any]) -> dict[str, Any]:
    """One line of records.jsonl: the job, the Bound's fields (or the failure), provenance."""
    rec: dict[str, Any] = {"key": job.key, "problem": job.problem, "method": job.method,
                           "norm": job.norm, "radius": job.radius, **job.meta}
    if "kind" in outcome:
        rec.update(outcome)
    else:
        quantity = "global"
        if job.domain is not None:
            quantity = "anchored" if job.domain.get("anchored") else "local"
        rec.update({"kind": kind, "value": None, "certified": False, "seconds": wall,
                    "status": outcome["status"], "quantity": quantity, "domain": job.domain,
                    "details": {"message": outcome.get("message", ""),
                                "error_type": outcome.get("error_type", "")}})
    rec.update({"method": job.method, "norm": job.norm, "wall": wall, "time_limit": limit,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **stamp})
    return rec


# ------------------------------------------------------------------------------ compare
@dataclass
class RunSummary:
    out: Path
    records: list[dict[str, Any]]
    ran: int
    skipped: list[tuple[str, str, str, str]]
    seconds: float


@contextlib.contextmanager
def extra_methods(imports: Sequence[str]) -> Iterator[None]:
    """Import modules that register more methods, and unregister them afterwards, so the
    process's registry is left as it was."""
    from ..registry import METHODS, load_all

    load_all()
    before = set(METHODS)
    try:
        for name in imports:
            try:
                if name in sys.modules:
                    # imported before and unregistered since: run its decorators again
                    with contextlib.suppress(ValueError):  # ... unless still registered
                        importlib.reload(sys.modules[name])
                else:
                    importlib.import_module(name)
            except ImportError as exc:
                raise InputError(f"cannot import module {name!r}: {exc}") from None
        yield
    finally:
        for name in set(METHODS) - before:
            del METHODS[name]


def _select_problems(names: Sequence[str], manifest: dict[str, Problem], preset: Any,
                     norms: Sequence[str] | None) -> list[Problem]:
    if not names:
        # the preset's problems; a manifest the preset knows nothing of is run whole
        chosen = preset.problem_names(manifest) or list(manifest)
        return [manifest[n] for n in chosen]
    out: list[Problem] = []
    for name in names:
        if name in manifest:
            out.append(manifest[name])
        elif any(p.family == name for p in manifest.values()):
            out.extend(p for p in manifest.values() if p.family == name)
        elif Path(name).suffix and Path(name).exists():
            path = Path(name).resolve()
            out.append(Problem(path.stem, str(path), "user", f"network file {name}",
                               tuple(norms or ("2",)), root=Path("/")))
        else:
            raise InputError(f"unknown problem {name!r}: not in the manifest, not a family "
                             "and not an existing network file")
    return list({p.name: p for p in out}.values())


def compare(problems: Sequence[str] | None = None, *, preset: str = "default",
            methods: Sequence[str] | None = None, norms: Sequence[str] | None = None,
            out: str | Path | None = None, root: str | Path = DEFAULT_ROOT, jobs: int | None = None,
            executor: str = "local", scheduler: str | None = None,
            time_limit: float | None = None, fresh: bool = False, retry_failed: bool = False,
            imports: Sequence[str] = (), progress: bool = True, report: bool = True,
            reference: str | Path | None = None, echo: Any = None) -> RunSummary:
    """Run methods x problems and write records (and, with `report`, tables and plots).

    Problems are manifest names, families or network files (default: the preset's
    problems); methods default to the preset's choice per problem. Records go to `out`
    (default runs/PRESET); finished jobs there are skipped unless `fresh`. The report sets
    the run beside `reference` (default results/PRESET, the committed reference, when it
    exists). Every input is checked before the first job starts.
    """
    start = time.perf_counter()
    say = echo or (lambda msg: None)
    spec = get_preset(preset)
    settings = _settings(spec, executor, scheduler, time_limit, jobs)
    norm_list = None if norms is None else [check_norm(n) for n in norms]
    out = Path(out) if out is not None else RUNS_DIR / preset
    if reference is None and (REFERENCE_DIR / preset / RECORDS).exists():
        reference = REFERENCE_DIR / preset
    imports = tuple(imports)
    with extra_methods(imports):
        chosen, planned, skipped = _plan(problems or [], spec, methods, norm_list, root, say)
        store = Store(out)
        store.lock()
        try:
            todo = _pending(store, out, planned, fresh=fresh, retry_failed=retry_failed)
            _write_problems(out, chosen)
            say(f"{len(planned)} jobs ({len(planned) - len(todo)} already done, "
                f"{len(skipped)} combinations not applicable), {settings.workers} "
                f"{executor} worker(s), {settings.time_limit:g} s per job -> {out}")
            _run_jobs(todo, store, settings, imports, progress)
            _run_after(spec, out, fresh, say, root)
            records = store.load(repair=False)
        finally:
            store.close()
    if report:
        from .report import write_report

        write_report(out, reference=reference)
    return RunSummary(out, records, len(todo), skipped, time.perf_counter() - start)


@dataclass(frozen=True)
class _Settings:
    executor: str
    scheduler: str | None
    time_limit: float
    workers: int
    threads: int


def _settings(spec: Any, executor: str, scheduler: str | None, time_limit: float | None,
              jobs: int | None) -> _Settings:
    """The executor, the per-job limit (the preset's by default) and the worker count (one
    per CPU by default; the CPUs are shared out as threads per worker), all checked."""
    if executor not in ("local", "dask"):
        raise InputError(f"unknown executor {executor!r}: use local or dask")
    if scheduler and executor != "dask":
        raise InputError("--scheduler needs --executor dask")
    if time_limit is None:
        time_limit = spec.time_limit
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit)
            and time_limit > 0):
        raise InputError(f"time limit must be a positive number of seconds, got {time_limit}")
    n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    n_workers = n_cpu if jobs is None else int(jobs)
    if n_workers < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    return _Settings(executor, scheduler, float(time_limit), n_workers,
                     max(1, n_cpu // n_workers))


def _plan(names: Sequence[str], spec: Any, methods: Sequence[str] | None,
          norms: list[str] | None, root: str | Path, say: Callable[[str], None]
          ) -> tuple[list[Problem], list[Job], list[tuple[str, str, str, str]]]:
    """(problems, jobs, skipped combinations): every problem file loaded and checked, every
    method name resolved, before anything runs."""
    from ..registry import get, load_all

    method_list = None
    if methods is not None:
        method_list = [get(m).name for m in methods]  # unknown names: InputError
        if not method_list:
            raise InputError("--methods is empty")
    # network files named on the command line need no manifest (any folder will do)
    files_only = bool(names) and all(_is_network_file(n) for n in names)
    manifest = {} if files_only and not _has_manifest(root) else load_manifest(root)
    chosen = _select_problems(names, manifest, spec, norms)
    from .problems import check_files

    loaded = check_files(chosen)
    missing: set[str] = set()

    def methods_for(p: Problem) -> list[tuple[str, dict[str, Any]]]:
        if method_list is not None:
            return [(m, {}) for m in method_list]
        # problems outside the preset (a file named on the command line) get the methods
        # `lipopt sandwich` chooses from, by the registry's capabilities and cost classes
        pairs = spec.methods_for(p) or [(m.name, {}) for m in candidates()]
        table = load_all()
        missing.update(m for m, _ in pairs if m not in table)
        return [(m, o) for m, o in pairs if m in table]

    planned, skipped = plan_jobs(chosen, loaded, methods_for, norms)
    if missing:
        say(f"not registered here, skipped: {', '.join(sorted(missing))}")
    return chosen, planned, skipped


def _is_network_file(name: str) -> bool:
    return bool(Path(name).suffix) and Path(name).is_file()


def _has_manifest(root: str | Path) -> bool:
    root = Path(root)
    return (root / MANIFEST).is_file() if root.is_dir() else root.is_file()


def _pending(store: Store, out: Path, planned: Sequence[Job], *, fresh: bool,
             retry_failed: bool) -> list[Job]:
    """The planned jobs with no record yet (all of them with `fresh`; with `retry_failed`
    the error/timeout records are dropped first)."""
    if fresh:
        store.reset()
    done = store.load()
    if retry_failed:
        kept = [r for r in done if r.get("status") not in ("error", "timeout")]
        if len(kept) != len(done):
            tmp = Store(out)
            tmp.reset()
            for r in kept:
                tmp.append(r)
            tmp.close()
        done = kept
    finished = {r["key"] for r in done}
    return [j for j in planned if j.key not in finished]


def _run_after(spec: Any, out: Path, fresh: bool, say: Callable[[str], None],
               root: str | Path = DEFAULT_ROOT) -> None:
    """The preset's computations that are not jobs, each once per results directory (a
    function with a `root` parameter is given the problems' directory)."""
    for name, target in spec.after:
        path = out / name
        if path.exists() and not fresh:
            continue
        module, _, function = target.partition(":")
        say(f"{spec.name}: computing {name}")
        fn = getattr(importlib.import_module(module), function)
        if _accepts(fn, "root"):
            fn(path.parent, root=root)
        else:
            fn(path.parent)


def _run_jobs(todo: Sequence[Job], store: Store, settings: _Settings, imports: tuple[str, ...],
              progress: bool) -> None:
    """Run the jobs on the chosen executor, appending each record as it arrives."""
    from ..registry import get

    stamp = {"versions": versions()}
    bar = _progress(len(todo), progress)

    def on_result(job: Job, outcome: dict[str, Any], wall: float) -> None:
        store.append(make_record(job, outcome, wall, settings.time_limit,
                                 get(job.method).kind, stamp))
        if bar is not None:
            bar.set_postfix_str(f"{job.problem} {job.method}", refresh=False)
            bar.update(1)

    try:
        if todo and settings.executor == "local":
            run_local(todo, settings.time_limit, settings.workers, settings.threads, imports,
                      on_result)
        elif todo:
            run_dask(todo, settings.time_limit, settings.workers, settings.threads, imports,
                     on_result, settings.scheduler)
    finally:
        if bar is not None:
            bar.close()


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="job", dynamic_ncols=True,
                smoothing=0.1)


def _write_problems(out: Path, problems: Sequence[Problem]) -> None:
    """problems.json beside the records: the manifest entries the report needs."""
    path = out / "problems.json"
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(path.read_text())
    for p in problems:
        data[p.name] = p.to_dict()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------- CLI


