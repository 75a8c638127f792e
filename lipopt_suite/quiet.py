"""Native solver output kept off the terminal.

Native libraries (HiGHS, SCS, Clarabel, CVXOPT, MOSEK) write to the process's file
descriptors 1 and 2 from C code, below Python's `sys.stdout`, and some do so before any
option can be set (highspy 1.16 prints a banner when the first `Highs()` is constructed).
`native_silence()` points both descriptors at /dev/null for the duration of a native call,
so `--json` stays exactly one JSON object and text output carries only what was asked for.
`LIPOPT_VERBOSE=1` (the CLI's `--verbose`) leaves them untouched and lets solvers talk.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

VERBOSE_ENV = "LIPOPT_VERBOSE"
_lock = threading.RLock()
_depth = 0
_saved: list[int] = []
_streams: list = []


def verbose() -> bool:
    """Whether native solver output was asked for (`--verbose` / LIPOPT_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def native_silence() -> Iterator[None]:
    """Redirect file descriptors 1 and 2 to /dev/null while the block runs (re-entrant).

    Inside the block `sys.stdout` and `sys.stderr` write to copies of the real descriptors,
    so what Python code prints still arrives; C stdio buffers are flushed into /dev/null
    before the descriptors come back. (A stream object captured before the block, such as
    a logging handler's, writes to the redirected descriptor and is discarded.)
    """
    global _depth
    if verbose():
        yield
        return
    with _lock:
        if _depth == 0:
            _flush()
            try:
                saved = [os.dup(1), os.dup(2)]
            except OSError:  # no descriptors to redirect (embedded interpreter)
                saved = []
            if saved:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.close(null)
                _streams[:] = [sys.stdout, sys.stderr]
                sys.stdout = _reopen(saved[0], sys.stdout)
                sys.stderr = _reopen(saved[1], sys.stderr)
            _saved[:] = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved:
                _flush_native()
                _flush()
                sys.stdout, sys.stderr = _streams
                _streams.clear()
                os.dup2(_saved[0], 1)
                os.dup2(_saved[1], 2)
                for fd in _saved:
                    os.close(fd)
                _saved.clear()


def _reopen(fd: int, like: object) -> object:
    """A text stream on descriptor `fd` with the encoding of the stream it stands in for."""
    return os.fdopen(fd, "w", buffering=1, closefd=False,
                     encoding=getattr(like, "encoding", None) or "utf-8",
                     errors=getattr(like, "errors", None) or "strict")


def _flush_native() -> None:
    """Flush C stdio buffers into /dev/null before the descriptors are restored, so that
    buffered native output is not written to the terminal later."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)
