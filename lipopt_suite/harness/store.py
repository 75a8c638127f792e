"""The records store of a results directory: records.jsonl, append-only, one JSON object
per job.

The parent process of a run is its only writer: one `write` and an `fsync` per record, an
exclusive lock on the directory for the run. A rerun reads the store back leniently (a
torn last line left by a killed run is cut off, duplicates dropped) and skips finished
jobs; the report reads it strictly (`Store.read`: a corrupt line is an error naming it).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..bound import to_jsonable
from ..errors import InputError

RECORDS = "records.jsonl"


class Store:
    """records.jsonl in a results directory: append-only, one JSON object per line."""

    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out)
        self.path = self.dir / RECORDS
        self._fd: int | None = None
        self._lock: Any = None

    def lock(self) -> None:
        """Hold an exclusive lock on the directory: two runs must not write one store."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks on this platform
            return
        self._lock = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise InputError(f"{self.dir}: another run is writing this results directory"
                             ) from None

    def load(self, *, repair: bool = True,
             check: Callable[[Any, str], None] | None = None) -> list[dict[str, Any]]:
        """Every complete record (first one per key); a torn or corrupt line is dropped and,
        with `repair`, removed from the file. With `check` (called as check(record,
        "FILE:LINE"), raising on a bad record) a complete line that is not JSON is an
        InputError naming it; only an unterminated last line is still skipped."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        seen: set[str] = set()
        clean = True
        lines = raw.split(b"\n")
        if lines[-1]:
            clean = False  # a last line without its newline: the write was cut short
        for number, line in enumerate(lines[:-1], 1):
            if check is not None and not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if check is not None:
                    raise InputError(f"{self.path}:{number}: not a JSON record") from None
                clean = False
                continue
            if check is not None:
                check(rec, f"{self.path}:{number}")
            if not isinstance(rec, dict) or "key" not in rec or rec["key"] in seen:
                clean = False
                continue
            seen.add(rec["key"])
            records.append(rec)
        if repair and not clean:
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_bytes(b"".join(_line(r) for r in records))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        return records

    def read(self) -> list[dict[str, Any]]:
        """Every record, strictly: a complete line that is not a well-formed record is an
        InputError naming the file and line (an unterminated last one, from a run killed
        while writing, is skipped; the next run repairs it)."""
        return self.load(repair=False, check=check_record)

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = _line(record)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.dir / ".lock").unlink()  # still held: no other run can be using it
            self._lock.close()
            self._lock = None


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(to_jsonable(record), sort_keys=True, allow_nan=False) + "\n").encode()


def check_record(rec: Any, where: str) -> None:
    """Raise an InputError naming `where` unless `rec` has the fields of a record with the
    right types."""
    if not isinstance(rec, dict):
        raise InputError(f"{where}: a record must be a JSON object")
    for key in ("key", "problem", "method", "norm"):
        if not isinstance(rec.get(key), str):
            raise InputError(f"{where}: field {key!r} missing or not a string")
    for key in ("kind", "status", "quantity"):
        if key in rec and not isinstance(rec[key], str):
            raise InputError(f"{where}: field {key!r} is not a string")
    v = rec.get("value")
    if not (v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            or v in ("inf", "-inf", "nan")):
        raise InputError(f"{where}: field 'value' is not a number ({v!r})")
    for key in ("radius", "seconds", "wall"):
        r = rec.get(key)
        if not (r is None or (isinstance(r, int | float) and not isinstance(r, bool))):
            raise InputError(f"{where}: field {key!r} is not a number ({r!r})")
