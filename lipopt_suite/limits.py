"""Run a call in a child process with a wall-clock limit.

Used where a method has no time limit of its own (the CLI's --time-limit, the harness's
per-job limit): the child is killed when the limit passes, so a hang costs the limit and
no more, and a crash (even a native abort) is reported instead of taking the caller down.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# "spawn" keeps the child free of the parent's thread pools (fork after OpenMP/torch
# threads have started can deadlock); the cost is one interpreter start per call.
START_METHOD = "spawn"


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok", "timeout", "error"
    value: Any = None
    message: str = ""


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        conn.send(Outcome("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - report every failure to the parent
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        conn.send(Outcome("error", None, last, ))
    finally:
        conn.close()


def call_with_limit(fn: Callable[..., Any], *args: Any, time_limit: float | None,
                    **kwargs: Any) -> Outcome:
    """fn(*args, **kwargs) in a child process; `fn` must be importable (module level)."""
    ctx = mp.get_context(START_METHOD)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, kwargs), daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(time_limit):
            try:
                out = recv.recv()
            except EOFError:
                out = None
        else:
            out = Outcome("timeout", None, f"no result within {time_limit:g} s")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        recv.close()
    if out is None:
        code = proc.exitcode
        out = Outcome("error", None, f"worker process died (exit code {code})")
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux: /proc/self/clear_refs, value 5).

    A process started by fork + exec inherits its parent's peak in ru_maxrss, so a child
    that measures its own peak resets it first. Returns False where this is not possible.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or the last `reset_peak_rss`, MiB
    (VmHWM on Linux; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
