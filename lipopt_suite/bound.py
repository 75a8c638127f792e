"""The one result type: `Bound`, and the `Domain` a local bound refers to."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import InputError

Norm = Literal["2", "inf", "1"]
NORMS: tuple[str, ...] = ("2", "inf", "1")
KINDS: tuple[str, ...] = ("upper", "lower", "exact", "estimate")
STATUSES: tuple[str, ...] = ("ok", "timeout", "inaccurate", "unavailable", "error")


def check_norm(norm: object) -> Norm:
    """Normalise a norm given as 2, "2", "inf", float("inf") or 1; reject anything else."""
    text = str(norm).strip().lower()
    aliases = {"2": "2", "2.0": "2", "l2": "2", "inf": "inf", "linf": "inf", "infinity": "inf",
               "1": "1", "1.0": "1", "l1": "1"}
    if text not in aliases:
        raise InputError(f"unknown norm {norm!r}: use one of 2, inf, 1")
    return aliases[text]  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Domain:
    """A set of inputs: an l2 ball or a box (an l_inf ball, possibly with per-axis radii).

    `anchored=True` asks for the constant anchored at `center` (Avant & Morgansen's local
    constant: sup over x in the set of ||f(x) - f(center)|| / ||x - center||) instead of the
    sup over all pairs of points of the set.
    """

    kind: Literal["ball", "box"]
    center: np.ndarray
    radius: np.ndarray  # scalar for a ball; scalar or per-coordinate half-widths for a box
    anchored: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("ball", "box"):
            raise InputError(f"unknown domain kind {self.kind!r}: use ball or box")
        center = np.array(self.center, dtype=np.float64)
        radius = np.array(self.radius, dtype=np.float64)
        if not np.all(np.isfinite(center)):
            raise InputError("domain centre contains NaN or inf")
        if not np.all(np.isfinite(radius)) or np.any(radius <= 0):
            raise InputError(f"domain radius must be positive and finite, got {radius.tolist()}")
        if self.kind == "ball" and radius.size != 1:
            raise InputError("a ball has one scalar radius")
        if radius.size not in (1, center.size):
            raise InputError(
                f"box radius has {radius.size} entries but the centre has {center.size}")
        center.setflags(write=False)
        radius.setflags(write=False)
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", radius)

    @classmethod
    def ball(cls, center: Any, radius: float, *, anchored: bool = False) -> Domain:
        return cls("ball", np.asarray(center, dtype=np.float64), np.float64(radius), anchored)

    @classmethod
    def box(cls, center: Any, radius: Any) -> Domain:
        return cls("box", np.asarray(center, dtype=np.float64), np.asarray(radius, np.float64))

    @classmethod
    def from_bounds(cls, lower: Any, upper: Any) -> Domain:
        lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        if lo.shape != hi.shape or np.any(hi <= lo):
            raise InputError("box bounds need lower < upper, with the same shape")
        return cls.box((lo + hi) / 2, (hi - lo) / 2)

    @property
    def lower(self) -> np.ndarray:
        """Lower corner of the smallest box containing the domain."""
        return self.center - np.broadcast_to(self.radius, self.center.shape)

    @property
    def upper(self) -> np.ndarray:
        """Upper corner of the smallest box containing the domain."""
        return self.center + np.broadcast_to(self.radius, self.center.shape)

    def contains(self, x: np.ndarray, *, tol: float = 0.0) -> np.ndarray:
        """Whether each row of `x` (flattened) lies in the domain."""
        diff = np.asarray(x, dtype=np.float64).reshape(-1, self.center.size) - self.center.ravel()
        if self.kind == "ball":
            return np.linalg.norm(diff, axis=1) <= float(self.radius) * (1 + tol)
        return np.all(np.abs(diff) <= np.broadcast_to(self.radius, self.center.shape).ravel()
                      * (1 + tol), axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "center": self.center.tolist(),
                "radius": self.radius.tolist(), "anchored": self.anchored}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Domain:
        return cls(data["kind"], np.asarray(data["center"]), np.asarray(data["radius"]),
                   bool(data.get("anchored", False)))


@dataclass(frozen=True)
class Bound:
    """What every method returns.

    `kind` says what `value` is: a proven upper bound, a proven lower bound, the exact
    constant, or an estimate with no guarantee. `certified` is True only where the guarantee
    holds both mathematically and numerically (checked a posteriori where a solver or an
    iteration was involved). `domain` None means the global constant.
    """

    method: str
    kind: Literal["upper", "lower", "exact", "estimate"]
    value: float
    norm: Norm = "2"
    certified: bool = False
    seconds: float = 0.0
    status: Literal["ok", "timeout", "inaccurate", "unavailable", "error"] = "ok"
    domain: Domain | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown bound kind {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def quantity(self) -> str:
        """Which constant this bounds: "global", "local" (pairs in a set) or "anchored"."""
        if self.domain is None:
            return "global"
        return "anchored" if self.domain.anchored else "local"

    @property
    def ok(self) -> bool:
        return self.status == "ok" and math.isfinite(self.value)

    def replace(self, **changes: Any) -> Bound:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "value": _json_float(self.value),
            "norm": self.norm,
            "certified": self.certified,
            "seconds": self.seconds,
            "status": self.status,
            "quantity": self.quantity,
            "domain": None if self.domain is None else self.domain.to_dict(),
            "details": to_jsonable(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bound:
        value = data["value"]
        return cls(
            method=data["method"], kind=data["kind"],
            value=float("nan") if value is None else float(value), norm=data["norm"],
            certified=bool(data["certified"]), seconds=float(data["seconds"]),
            status=data["status"],
            domain=None if data.get("domain") is None else Domain.from_dict(data["domain"]),
            details=dict(data.get("details") or {}),
        )


def _json_float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch values inside details into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return _json_float(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, Domain):
        return obj.to_dict()
    return obj
