"""The problem suite: shipped instances, their manifest, the generators and the presets.

`SUITE` says how every shipped problem is made (a generator and its parameters) and what it
is for (family, norms, optional domain, series position, known or published values);
`make_problems(out)` regenerates each `.npz` deterministically and writes
`out/manifest.toml`; `load_manifest(root)` reads and validates a manifest, so users may
also point the harness at their own directory of problems. `PRESETS` names the batches the
harness runs (`lipopt compare --preset NAME`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bound import NORMS
from ..errors import InputError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MANIFEST = "manifest.toml"
FAMILIES = ("scaman2018", "lipsdp", "exact", "digits", "constrained", "scaman2018-cnn",
            "graphs", "tabular", "lipnets", "regularisers")
DEFAULT_ROOT = Path("problems")
REPO_PROBLEMS = Path(__file__).resolve().parents[2] / "problems"

# Method names of DESIGN.md section 5; presets may only name these.
DESIGN_METHODS = (
    "frobenius", "autolip", "seqlip", "seqlip-greedy", "lipsdp-neuron", "lipsdp-layer",
    "eclipse-fast", "liplt", "local", "data", "random", "gradient-ascent",
    "annealing", "grid", "clever", "regions", "hypercube", "mip", "bab", "region-walk",
    "lipsdp-groupsort", "lipsdp-graph",
)

# Hidden width of the scaman2018 MLPs: with 20 units per layer, the ratios Frob./AutoLip
# and SeqLip/AutoLip of the trained nets fall in the range of the published table.
SCAMAN_WIDTH = 20
SCAMAN_LAYERS = (4, 5, 7, 10)
# Scaman & Virmaux, NeurIPS 2018, MLP table (their own trained nets, l2 norm).
SCAMAN_PUBLISHED: dict[int, dict[str, float]] = {
    4: {"frobenius": 648.2, "autolip": 33.04, "seqlip": 21.47, "seqlip-greedy": 21.47,
        "data": 4.36, "annealing": 4.55, "grid": 6.56},
    5: {"frobenius": 4283.1, "autolip": 134.4, "seqlip": 72.87, "seqlip-greedy": 72.87,
        "data": 6.77, "annealing": 5.8, "grid": 7.1},
    7: {"frobenius": 22341.0, "autolip": 294.6, "seqlip": 130.2, "seqlip-greedy": 130.2,
        "data": 5.4, "annealing": 5.27, "grid": 6.51},
    10: {"frobenius": 7343800.0, "autolip": 19248.2, "seqlip": 2463.44,
         "seqlip-greedy": 2463.36, "data": 10.04, "annealing": 5.77, "grid": 17.1},
}
# x-axis label of each series in the bound-vs-depth plots
SERIES_AXIS = {
    "scaman2018": "linear layers",
    "lipsdp-depth": "linear layers",
    "lipmip-width": "i (hidden sizes 20, 20 i, 20)",
    "lipmip-depth": "hidden layers of 20",
    "lipcst": "graph nodes",
}


# ----------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class DomainSpec:
    """Where local methods look: a ball or box around the file's `center`, at each radius."""

    kind: str
    radii: tuple[float, ...]
    anchored: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "radii": list(self.radii), "anchored": self.anchored}


@dataclass(frozen=True)
class Problem:
    """One manifest entry (paths relative to the manifest's directory)."""

    name: str
    file: str
    family: str
    description: str
    norms: tuple[str, ...] = ("2",)
    domain: DomainSpec | None = None
    series: str | None = None
    x: float | None = None  # position in its series (depth, width index, nodes)
    known_upper: dict[str, float] = field(default_factory=dict)  # norm -> guaranteed bound
    published: dict[str, float] = field(default_factory=dict)  # method -> published value
    generator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    root: Path = DEFAULT_ROOT

    @property
    def path(self) -> Path:
        return self.root / self.file

    def to_dict(self) -> dict[str, Any]:
        """The manifest fields (no root), as stored in a results directory."""
        out: dict[str, Any] = {"file": self.file, "family": self.family,
                               "description": self.description, "norms": list(self.norms)}
        if self.domain is not None:
            out["domain"] = self.domain.to_dict()
        if self.series is not None:
            out["series"] = self.series
            out["x"] = self.x
        if self.known_upper:
            out["known_upper"] = dict(self.known_upper)
        if self.published:
            out["published"] = dict(self.published)
        if self.generator:
            out["generator"] = self.generator
            out["params"] = dict(self.params)
        return out


def _number(v: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
            positive and v <= 0):
        raise InputError(f"{what} must be a {'positive ' if positive else ''}finite number, "
                         f"got {v!r}")
    return float(v)


def _numbers(v: Any, what: str, *, positive: bool = False) -> dict[str, float]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InputError(f"{what} must be a table of numbers")
    return {str(k): _number(x, f"{what}.{k}", positive=positive) for k, x in v.items()}


def _problem_from_dict(name: str, d: Any, root: Path, where: str) -> Problem:
    if not isinstance(d, dict):
        raise InputError(f"{where}: problem {name!r} must be a table")
    for key in ("file", "family"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise InputError(f"{where}: problem {name!r} needs a string '{key}'")
    known = {"file", "family", "description", "norms", "domain", "series", "x", "known_upper",
             "published", "generator", "params"}
    extra = sorted(set(d) - known)
    if extra:
        raise InputError(f"{where}: problem {name!r} has unknown keys {', '.join(extra)}")
    norms = d.get("norms", ["2"])
    if not isinstance(norms, list) or not norms:
        raise InputError(f"{where}: problem {name!r}: 'norms' must be a non-empty list")
    norms = [str(n) for n in norms]
    bad = [n for n in norms if n not in NORMS]
    if bad:
        raise InputError(f"{where}: problem {name!r}: unknown norm {bad[0]!r} "
                         f"(use {', '.join(NORMS)})")
    domain = None
    if d.get("domain") is not None:
        dd = d["domain"]
        if not isinstance(dd, dict):
            raise InputError(f"{where}: problem {name!r}: 'domain' must be a table")
        kind = dd.get("kind", "ball")
        radii = dd.get("radii", [dd["radius"]] if "radius" in dd else None)
        if kind not in ("ball", "box"):
            raise InputError(f"{where}: problem {name!r}: domain kind must be ball or box")
        if not isinstance(radii, list) or not radii or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)
                and r > 0 for r in radii):
            raise InputError(f"{where}: problem {name!r}: domain needs 'radius' or 'radii', "
                             "positive numbers")
        anchored = dd.get("anchored", False)
        if not isinstance(anchored, bool):
            raise InputError(f"{where}: problem {name!r}: domain 'anchored' must be true or "
                             "false")
        if anchored and kind != "ball":
            raise InputError(f"{where}: problem {name!r}: an anchored domain must be a ball")
        domain = DomainSpec(kind, tuple(float(r) for r in radii), anchored)
    at = f"{where}: problem {name!r}:"
    known_upper = _numbers(d.get("known_upper"), f"{at} known_upper", positive=True)
    if any(k not in NORMS for k in known_upper):
        raise InputError(f"{at} known_upper keys must be norms")
    params = d.get("params") or {}
    if not isinstance(params, dict):
        raise InputError(f"{at} 'params' must be a table")
    series = d.get("series")
    if series is not None and not isinstance(series, str):
        raise InputError(f"{at} 'series' must be a string")
    return Problem(
        name=name, file=d["file"], family=d["family"], description=str(d.get("description", "")),
        norms=tuple(norms), domain=domain, series=series,
        x=None if d.get("x") is None else _number(d["x"], f"{at} x"), known_upper=known_upper,
        published=_numbers(d.get("published"), f"{at} published"),
        generator=str(d.get("generator", "")), params=dict(params), root=root)


def load_manifest(root: str | Path = DEFAULT_ROOT) -> dict[str, Problem]:
    """Read ROOT/manifest.toml; every fault is an InputError naming the manifest."""
    root = Path(root)
    path = root / MANIFEST if root.is_dir() or not root.suffix else root
    if path.is_file():
        root = path.parent
    if not path.exists():
        raise InputError(f"{path}: no problem manifest (run `lipopt make-problems --out "
                         f"{root}` to create the shipped suite)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("problems")
    if not isinstance(table, dict) or not table:
        raise InputError(f"{path}: no [problems.NAME] tables")
    return {name: _problem_from_dict(name, d, root, str(path)) for name, d in table.items()}


def check_files(problems: Iterable[Problem]) -> dict[str, tuple[Any, dict[str, np.ndarray]]]:
    """Load every problem's file (validated) or raise an InputError naming it."""
    from ..io import load_problem

    out = {}
    for p in problems:
        if not p.path.exists():
            raise InputError(f"problem {p.name}: file {p.path} named in the manifest does "
                             "not exist")
        try:
            net, extras = load_problem(p.path)
        except InputError as exc:
            raise type(exc)(f"problem {p.name}: {exc}") from None
        if p.domain is not None:
            center = extras.get("center")
            if center is None:
                raise InputError(f"problem {p.name}: {p.path} has no 'center' array, needed "
                                 "by its domain")
            if center.size != net.input_dim:
                raise InputError(f"problem {p.name}: 'center' has {center.size} entries, the "
                                 f"network input has {net.input_dim}")
        out[p.name] = (net, extras)
    return out


# ---------------------------------------------------------------------------- writing
def _toml_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() else '"' + key + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise ValueError("TOML manifest values must be finite")
        return repr(float(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def manifest_text(problems: Sequence[Problem]) -> str:
    """The manifest for `problems`, in TOML."""
    lines = ["# Problem suite of lipopt_suite. Regenerate with `lipopt make-problems`.",
             "# Paths are relative to this file. Fields: see docs/harness.md.", ""]
    for p in problems:
        lines.append(f"[problems.{_toml_key(p.name)}]")
        for key, value in p.to_dict().items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------- generators
def _gen_scaman(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .train import train_scaman_mlp

    t = train_scaman_mlp(params["layers"], width=params["width"], seed=params.get("seed", 0))
    return t.net, t.extras


def _gen_random_mlp(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .nets import random_mlp

    return random_mlp(params["sizes"], params.get("seed", 0)), {}


# lipMIP (Jordan & Dimakis 2020) measures its series over the unit square [0, 1]^2: methods
# that take a domain run there (the box of centre 1/2 and half-width 1/2); global-only
# upper bounds stay global, which still bounds the constant over the box from above.
LIPMIP_CENTER = np.array([0.5, 0.5])
LIPMIP_BOX = 0.5


def _gen_lipmip_width(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .nets import lipmip_width

    return lipmip_width(params["i"], params.get("seed", 0)), {"center": LIPMIP_CENTER}


def _gen_lipmip_depth(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .nets import lipmip_depth

    return lipmip_depth(params["i"], params.get("seed", 0)), {"center": LIPMIP_CENTER}


def _gen_digits(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .train import train_digits_cnn, train_digits_mlp

    fn = train_digits_cnn if params["model"] == "cnn" else train_digits_mlp
    t = fn(seed=params.get("seed", 0))
    return t.net, t.extras


def _gen_constrained(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .train import train_constrained_mlp

    t = train_constrained_mlp(params["constraint"], radius=params["radius"],
                              layers=params["layers"], width=params["width"],
                              seed=params.get("seed", 0))
    return t.net, t.extras


def _gen_lipcst(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from ..solvers.lipcst import lipcst_instance

    net, _graph = lipcst_instance(params["nodes"], p=params.get("p", 0.5),
                                  seed=params.get("seed", 0),
                                  weighted=params.get("weighted", False))
    return net, {}


def _gen_scaman_cnn(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .cnn_table import train_scaman_cnn

    t = train_scaman_cnn(params["layers"], seed=params.get("seed", 0))
    return t.net, t.extras


def _gen_graph(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from . import nets, train

    if params["model"] == "digits_resnet":
        t = train.train_digits_resnet(seed=params.get("seed", 0))
        return t.net, t.extras
    if params["model"] == "residual_mlp":
        return nets.residual_mlp(seed=params.get("seed", 0)), {}
    return nets.f_w_network(params.get("w", 1.0)), {}


def _gen_tabular(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .tabular import train_tabular

    t = train_tabular(params["name"])
    return t.net, t.extras


def _gen_lipnets(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    from .lipnets import generate

    return generate(params)


def _gen_regularisers(params: dict[str, Any]
                      ) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    from .regularisers_table import generate

    return generate(params)


def _gen_fixture(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    raise AssertionError("fixtures are copied, not generated")  # handled in make_problems


# a generator returns (network, extras) or (network, extras, the record of its training run,
# written as JSON beside the network)
GENERATORS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    "scaman_mlp": _gen_scaman, "random_mlp": _gen_random_mlp,
    "lipmip_width": _gen_lipmip_width, "lipmip_depth": _gen_lipmip_depth,
    "digits": _gen_digits, "constrained": _gen_constrained, "lipcst": _gen_lipcst,
    "scaman_cnn": _gen_scaman_cnn, "graph": _gen_graph, "tabular": _gen_tabular,
    "lipnets": _gen_lipnets, "regularisers": _gen_regularisers, "fixture": _gen_fixture,
}

DIGITS_RADII = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
CONSTRAINED_RADIUS = 1.5  # per-layer operator-norm radius of the constrained family
CONSTRAINED_LAYERS = 4


def _suite() -> list[Problem]:
    out: list[Problem] = []
    for L in SCAMAN_LAYERS:
        out.append(Problem(
            f"scaman_mlp{L}", f"scaman2018/mlp{L}.npz", "scaman2018",
            f"{L}-layer ReLU MLP (width {SCAMAN_WIDTH}) fitted to a 2-D Gaussian-process "
            "sample, as in Scaman & Virmaux 2018; X = training inputs",
            ("2",), series="scaman2018", x=L, published=SCAMAN_PUBLISHED[L],
            generator="scaman_mlp", params={"layers": L, "width": SCAMAN_WIDTH, "seed": 0}))
    out.append(Problem(
        "lipsdp_random", "lipsdp/lipsdp_random.npz", "lipsdp",
        "2-10-30-20-2 random net of the LipSDP repository (no biases)", ("2",),
        published={"lipsdp-layer": 39.839, "lipsdp-neuron": 36.482}, generator="fixture"))
    out.append(Problem(
        "lipsdp_mnist", "lipsdp/lipsdp_mnist.npz", "lipsdp",
        "784-50-10 MNIST net of the LipSDP repository (no biases)", ("2",),
        generator="fixture"))
    for i in range(1, 6):
        sizes = [4] + [16] * i + [2]
        out.append(Problem(
            f"lipsdp_depth{i + 1}", f"lipsdp/depth{i + 1}.npz", "lipsdp",
            f"random ReLU MLP {'-'.join(map(str, sizes))} (seed {i})", ("2",),
            series="lipsdp-depth", x=i + 1, generator="random_mlp",
            params={"sizes": sizes, "seed": i}))
    for i in (1, 2, 3):
        out.append(Problem(
            f"lipmip_width{i}", f"exact/lipmip_width{i}.npz", "exact",
            f"lipMIP width series: random ReLU MLP 2-20-{20 * i}-20-2 on [0, 1]^2",
            ("2", "inf", "1"), domain=DomainSpec("box", (LIPMIP_BOX,)),
            series="lipmip-width", x=i, generator="lipmip_width", params={"i": i, "seed": 0}))
    for i in (1, 2, 3, 4):
        sizes = [2] + [20] * i + [2]
        out.append(Problem(
            f"lipmip_depth{i}", f"exact/lipmip_depth{i}.npz", "exact",
            f"lipMIP depth series: random ReLU MLP {'-'.join(map(str, sizes))} on [0, 1]^2",
            ("2", "inf", "1"), domain=DomainSpec("box", (LIPMIP_BOX,)), series="lipmip-depth",
            x=i, generator="lipmip_depth",
            params={"i": i, "seed": 1}))
    for k, sizes in enumerate(([2, 6, 6, 1], [2, 8, 8, 2], [3, 6, 6, 2], [2, 10, 10, 10, 1])):
        out.append(Problem(
            f"tiny{k}", f"exact/tiny{k}.npz", "exact",
            f"tiny random ReLU MLP {'-'.join(map(str, sizes))}: regions is exact",
            ("2", "inf", "1"), generator="random_mlp", params={"sizes": sizes, "seed": 10 + k}))
    for nodes in (5, 6, 8):
        out.append(Problem(
            f"lipcst_n{nodes}", f"exact/lipcst_n{nodes}.npz", "exact",
            f"LIP-CST instance from a G({nodes}, 0.5) graph (Max-Cut reduction of Scaman & "
            "Virmaux 2018)", ("2",), series="lipcst", x=nodes, generator="lipcst",
            params={"nodes": nodes, "p": 0.5, "seed": nodes}))
    for model in ("mlp", "cnn"):
        file = f"digits/digits_{model}.npz"
        kind = "MLP 64-20-20-10" if model == "mlp" else "CNN conv8-pool-conv16-linear"
        out.append(Problem(
            f"digits_{model}", file, "digits",
            f"ReLU {kind} trained on scikit-learn's 8x8 digits; X = 300 test images",
            ("2",), generator="digits", params={"model": model, "seed": 0}))
        out.append(Problem(
            f"digits_{model}_local", file, "digits",
            f"the digits {model.upper()} around one correctly classified test image, l2 balls "
            "of growing radius (pixels in [0, 1])", ("2",),
            domain=DomainSpec("ball", DIGITS_RADII, anchored=True),
            generator="digits", params={"model": model, "seed": 0}))
    from .cnn_table import CNN_CHANNELS, CNN_FAMILY, CNN_LAYERS, CNN_PUBLISHED

    for L in CNN_LAYERS:
        out.append(Problem(
            f"scaman_cnn{L}", f"scaman2018-cnn/cnn{L}.npz", CNN_FAMILY,
            f"{L}-layer ReLU CNN ({CNN_CHANNELS} channels, 3x3) trained on the 8x8 digits, as "
            "the MNIST CNNs of Scaman & Virmaux 2018; X = 300 test images", ("2",),
            series=CNN_FAMILY, x=L, published={m: CNN_PUBLISHED[L][m] for m in (
                "autolip", "seqlip-greedy", "data", "annealing")},
            generator="scaman_cnn", params={"layers": L, "seed": 0}))
    for model, what in (("digits_resnet", "a small ResNet (two residual blocks) trained on the "
                         "8x8 digits, a computation graph; X = 300 test images"),
                        ("residual_mlp", "a residual ReLU network y + V relu(W y + c) on R^2, "
                         "two blocks, as a graph"),
                        ("f_w", "f_w(x) = ln(1 + e^(x/2)) + |x/2 - w sin x|, w = 1: the "
                         "example of Scaman & Virmaux 2018 (AutoLip 1 + |w|)")):
        out.append(Problem(model, f"graphs/{model}.npz", "graphs", what, ("2",),
                           generator="graph", params={"model": model, "seed": 0}))
    from .tabular import SPECS

    for name, spec in SPECS.items():
        task = "classifier" if spec.loss == "ce" else "regression"
        out.append(Problem(
            name, f"tabular/{name}.npz", "tabular",
            f"ReLU MLP {'-'.join(map(str, spec.sizes))}, a {task} trained on scikit-learn's "
            f"{spec.dataset} data; X = the training inputs", ("2", "inf", "1"),
            generator="tabular", params={"name": name}))
    from .lipnets import LIPNET_PROBLEMS

    for name, (file, params) in LIPNET_PROBLEMS.items():
        if "random" in params:
            what = (f"untrained MaxMin net {'-'.join(map(str, params['random']))} (seeded "
                    "random weights, biases N(0, 0.5^2))")
            known: dict[str, float] = {}
        else:
            what = (f"MaxMin net, {params['design']} layers (each ||W||_2 <= 1), fitted to "
                    f"the {params['task']} task; L_2 <= 1 by design")
            known = {"2": 1.0}
        out.append(Problem(name, file, "lipnets", what, ("2", "inf", "1"), known_upper=known,
                           generator="lipnets", params=params))
    for c in ("l2", "linf", "l1", "spectral"):
        from .train import CONSTRAINT_NORM

        norm = CONSTRAINT_NORM[c]
        how = ("spectral normalisation" if c == "spectral"
               else f"projection onto the {c} operator-norm ball after each step")
        bound = (1.0 if c == "spectral" else CONSTRAINED_RADIUS) ** CONSTRAINED_LAYERS
        out.append(Problem(
            f"constrained_{c}", f"constrained/{c}.npz", "constrained",
            f"4-layer MLP fitted to the 2-D task under {how}; L_{norm} <= {bound:g}",
            (norm,), known_upper={norm: bound}, generator="constrained",
            params={"constraint": c, "radius": 1.0 if c == "spectral" else CONSTRAINED_RADIUS,
                    "layers": CONSTRAINED_LAYERS, "width": SCAMAN_WIDTH, "seed": 0}))
    from .regularisers import BUDGET, REGULARISERS
    from .regularisers_table import REGULARISER_PROBLEMS

    for name, (file, params) in REGULARISER_PROBLEMS.items():
        reg = REGULARISERS[params["regulariser"]]
        s = params["strength"]
        what = "no regulariser" if reg.kind == "none" else f"{reg.name}, {reg.strength} {s:g}"
        out.append(Problem(
            name, file, "regularisers",
            f"digits MLP 64-20-20-10 trained with {what} ({reg.reference}); X = 300 test "
            "images, y their labels; the training run in the .json beside it",
            tuple(dict.fromkeys(("2", reg.norm))),
            known_upper={reg.norm: float(s)} if reg.strength == BUDGET else {},
            generator="regularisers", params=params))
    return out


SUITE: tuple[Problem, ...] = tuple(_suite())


def make_problems(out: str | Path = DEFAULT_ROOT, *, only: Sequence[str] | None = None,
                  echo: Callable[[str], None] | None = None) -> list[Problem]:
    """Regenerate the suite's files under `out` and write `out/manifest.toml`.

    `only` restricts to problem names or families (the manifest still lists every problem
    whose file exists). A generator whose module is missing is skipped with a message.
    """
    out = Path(out)
    selected = set(only or [])
    names = {p.name for p in SUITE} | set(FAMILIES)
    unknown = sorted(selected - names)
    if unknown:
        raise InputError(f"unknown problem or family {unknown[0]!r}")
    done: dict[str, Path] = {}
    written: list[Problem] = []
    for p in SUITE:
        target = out / p.file
        wanted = not selected or p.name in selected or p.family in selected
        if wanted and p.file not in done:
            start = time.perf_counter()
            if p.generator == "fixture":
                source = REPO_PROBLEMS / p.file
                if target.resolve() != source.resolve():
                    if not source.exists():
                        raise InputError(f"fixture {source} is missing")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    for extra in source.parent.glob("LICENSE*"):
                        shutil.copyfile(extra, target.parent / extra.name)
            else:
                try:
                    made = GENERATORS[p.generator](p.params)
                except ImportError as exc:
                    if echo:
                        echo(f"skipped {p.name}: {exc}")
                    continue
                from ..io import save

                save(made[0], target, **made[1])
                if len(made) > 2:
                    from ..bound import to_jsonable

                    target.with_suffix(".json").write_text(
                        json.dumps(to_jsonable(made[2]), indent=1) + "\n")
            done[p.file] = target
            if echo:
                echo(f"{p.name:<22} {target}  ({time.perf_counter() - start:.1f} s)")
        if target.exists():
            written.append(dataclasses.replace(p, root=out))
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(manifest_text(written))
    return written


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Part:
    """Methods to run on some problems: a family name or explicit problem names."""

    problems: tuple[str, ...]  # problem names or family names
    methods: tuple[str, ...]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> options

    def matches(self, problem: Problem) -> bool:
        return problem.name in self.problems or problem.family in self.problems


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    parts: tuple[Part, ...]
    time_limit: float  # seconds per job
    # computations that are not jobs, run after them: (file in the results directory,
    # "module:function" called with that path when the file is missing)
    after: tuple[tuple[str, str], ...] = ()

    def methods_for(self, problem: Problem) -> list[tuple[str, dict[str, Any]]]:
        """(method, options) pairs this preset runs on `problem`, in a stable order."""
        out: dict[str, dict[str, Any]] = {}
        for part in self.parts:
            if part.matches(problem):
                for m in part.methods:
                    out.setdefault(m, dict(part.options.get(m, {})))
        return list(out.items())

    def problem_names(self, manifest: dict[str, Problem]) -> list[str]:
        return [n for n, p in manifest.items() if any(part.matches(p) for part in self.parts)]


UPPER_L2 = ("frobenius", "autolip", "seqlip", "seqlip-greedy", "lipsdp-layer", "lipsdp-neuron",
            "eclipse-fast", "liplt")
FAST_UPPER = ("frobenius", "autolip", "seqlip-greedy", "eclipse-fast", "liplt")
SDP = ("lipsdp-layer", "lipsdp-neuron")
LOWER = ("data", "random", "gradient-ascent", "annealing", "grid")
SCAMAN_COLUMNS = ("frobenius", "autolip", "seqlip", "seqlip-greedy", "data", "annealing",
                  "grid")
# problems whose hidden layers are narrow enough for SeqLip's exact inner maximum (<= 22)
SEQLIP_OK = ("scaman2018", "constrained", "lipsdp_depth2", "lipsdp_depth3", "lipsdp_depth4",
             "lipsdp_depth5", "lipsdp_depth6", "tiny0", "tiny1", "tiny2", "tiny3",
             "lipmip_width1", "lipmip_depth1", "lipmip_depth2", "lipmip_depth3",
             "lipmip_depth4", "lipcst_n5", "lipcst_n6", "lipcst_n8", "digits_mlp")
# input dimension <= 3: grid search applies
GRID_OK = ("scaman2018", "constrained", "tiny0", "tiny1", "tiny2", "tiny3", "lipmip_width1",
           "lipmip_width2", "lipmip_width3", "lipmip_depth1", "lipmip_depth2",
           "lipmip_depth3", "lipmip_depth4")
# input dimension <= 6 and <= 64 hidden units: region enumeration applies
REGIONS_OK = ("scaman_mlp4", "constrained", "tiny0", "tiny1", "tiny2", "tiny3",
              "lipmip_width1", "lipmip_depth1", "lipmip_depth2", "lipmip_depth3", "lipcst_n5",
              "lipcst_n6")
RESTRICTED = {"seqlip": SEQLIP_OK, "grid": GRID_OK, "regions": REGIONS_OK}
LIPCST = ("lipcst_n5", "lipcst_n6", "lipcst_n8")
LIPMIP = ("lipmip_width1", "lipmip_width2", "lipmip_width3", "lipmip_depth1",
          "lipmip_depth2", "lipmip_depth3", "lipmip_depth4", "tiny0", "tiny1", "tiny2",
          "tiny3")

_QUICK_LOWER = {"annealing": {"maxfun": 1000}, "gradient-ascent": {"restarts": 8, "steps": 200}}

# The tabular nets bab closes in seconds to a minute (the 13-20-16-8-3 one needs the tabular
# preset's longer limit).
SMALL_TABULAR = ("iris_4_6_6_3", "wine_11_12_12_1", "diabetes_9_16_16_1")
# MaxMin nets of up to 11 inputs: a MaxMin layer brings half the hyperplanes of a ReLU one
_LIPNET_REGIONS = {"regions": {"max_input_dim": 11, "max_hidden_units": 64}}

PRESETS: dict[str, Preset] = {
    "default": Preset(
        "default", "every family, the methods that finish in seconds to a minute", (
            Part(("scaman2018",), FAST_UPPER + SDP + LOWER + ("region-walk",), _QUICK_LOWER),
            Part(("scaman_mlp4", "scaman_mlp5"), ("seqlip",)),
            Part(("lipsdp_random", "lipsdp_depth2", "lipsdp_depth3", "lipsdp_depth4"),
                 ("frobenius", "autolip") + SDP + ("eclipse-fast", "liplt", "gradient-ascent",
                                                   "region-walk"), _QUICK_LOWER),
            Part(("lipsdp_depth2", "lipsdp_depth3", "lipsdp_depth4"), ("seqlip",)),
            Part(("lipsdp_mnist",), FAST_UPPER + SDP + ("gradient-ascent",), _QUICK_LOWER),
            Part(("tiny0", "tiny1", "tiny2", "lipmip_depth1"),
                 ("regions", "mip", "autolip", "seqlip", "lipsdp-neuron", "liplt",
                  "gradient-ascent", "region-walk", "grid"), _QUICK_LOWER),
            Part(("lipmip_depth2",), ("regions", "autolip", "seqlip", "lipsdp-neuron", "liplt",
                                      "gradient-ascent", "region-walk", "grid"), _QUICK_LOWER),
            Part(("lipcst_n5", "lipcst_n6"),
                 ("hypercube", "regions", "autolip", "seqlip", "lipsdp-neuron", "liplt",
                  "gradient-ascent"), _QUICK_LOWER),
            Part(("digits_mlp", "digits_cnn"),
                 ("autolip", "seqlip-greedy", "lipsdp-layer", "eclipse-fast", "liplt", "data",
                  "gradient-ascent"), _QUICK_LOWER),
            Part(("digits_mlp", "digits_cnn"), ("lipsdp-neuron", "region-walk")),
            Part(("digits_mlp",), ("seqlip",)),
            Part(("digits_mlp_local",), ("local", "random", "gradient-ascent"),
                 _QUICK_LOWER),
            Part(("constrained",), ("autolip", "seqlip") + SDP + ("liplt", "grid",
                                                              "gradient-ascent",
                                                              "region-walk"), _QUICK_LOWER),
            Part(("graphs",), ("autolip", "data", "gradient-ascent", "annealing"),
                 _QUICK_LOWER),
            Part(("scaman2018-cnn",), ("autolip", "data", "gradient-ascent"), _QUICK_LOWER),
            # CNNs and ReLU graphs through their exact unrolling into MLPs (LipSDP on the
            # 4-10 layer CNNs runs to its limit: the scaman2018-cnn preset has them)
            Part(("digits_resnet",), ("lipsdp-layer", "region-walk")),
            # LipSDP on the graph itself (linear bypasses, no pass-through units)
            Part(("scaman2018-cnn", "digits_cnn", "digits_resnet", "residual_mlp"),
                 ("lipsdp-graph",)),
            Part(("residual_mlp",), ("bab",) + SDP + ("region-walk",)),
            # exact values beyond region enumeration: branch-and-bound
            Part(("scaman2018", "tiny0", "tiny1", "tiny2", "lipmip_depth1", "lipmip_depth2")
                 + SMALL_TABULAR, ("bab",)),
            Part(SMALL_TABULAR, FAST_UPPER + SDP + ("gradient-ascent", "region-walk"),
                 _QUICK_LOWER),
            Part(("lipnets",), ("autolip", "lipsdp-groupsort", "regions", "gradient-ascent"),
                 {**_QUICK_LOWER, **_LIPNET_REGIONS}),
        ), time_limit=60.0),
    "scaman2018": Preset(
        "scaman2018", "the MLP table of Scaman & Virmaux 2018 (l2)", (
            Part(("scaman2018",), SCAMAN_COLUMNS + SDP + ("region-walk",)),
            # what the paper could not give: the exact constant, by branch-and-bound (seconds
            # to a minute at every depth) and by region enumeration (2-D inputs; 7 layers
            # about 2 minutes, 10 layers stops at the time limit with a lower bound)
            Part(("scaman2018",), ("bab",)),
            Part(("scaman2018",), ("regions",), {"regions": {"max_hidden_units": 1000}}),
        ), time_limit=300.0),
    "lipsdp": Preset(
        "lipsdp", "naive product vs SeqLip vs LipSDP-Layer/Neuron and its fast relatives", (
            Part(("lipsdp",), FAST_UPPER + SDP + ("gradient-ascent",)),
            Part(("lipsdp",), ("seqlip",)),
        ), time_limit=300.0),
    "exact": Preset(
        "exact", "exact methods against every bound on small nets", (
            Part(LIPMIP, ("regions", "mip") + FAST_UPPER + SDP + LOWER + ("region-walk",)),
            Part(LIPCST, ("hypercube", "regions") + FAST_UPPER + SDP
                 + ("random", "gradient-ascent", "annealing")),
        ), time_limit=120.0),
    "local": Preset(
        "local", "local (anchored) bounds vs global bounds as the radius grows (digits)", (
            Part(("digits_mlp_local", "digits_cnn_local"),
                 ("local", "autolip", "seqlip-greedy", "lipsdp-layer", "eclipse-fast",
                  "liplt", "random", "gradient-ascent", "clever")),
        ), time_limit=300.0),
    "scaman2018-cnn": Preset(
        "scaman2018-cnn", "the CNN table of Scaman & Virmaux 2018 (l2) and its AlexNet row", (
            Part(("scaman2018-cnn",), ("autolip", "seqlip-greedy", "data", "annealing")),
            # what the table could not give: LipSDP and the region walk on the unrolled CNNs
            Part(("scaman2018-cnn",), SDP + ("lipsdp-graph", "region-walk",
                                             "gradient-ascent")),
        ), time_limit=300.0,
        after=(("alexnet.json", "lipopt_suite.harness.cnn_table:write_alexnet_row"),)),
    "tabular": Preset(
        "tabular", "exact values of trained tabular nets by branch-and-bound, every bound", (
            Part(("tabular",), ("bab",) + FAST_UPPER + SDP + ("data", "random",
                                                             "gradient-ascent",
                                                             "region-walk")),
        ), time_limit=600.0),
    "lipnets": Preset(
        "lipnets", "Lipschitz-by-design GroupSort nets: certified sandwich vs the design "
        "bound 1", (
            Part(("lipnets",), ("autolip", "frobenius", "lipsdp-groupsort", "regions", "data",
                                "random", "gradient-ascent", "annealing"), _LIPNET_REGIONS),
        ), time_limit=300.0),
    "constrained": Preset(
        "constrained", "Lipschitz-constrained training: bounds vs the guaranteed constant", (
            Part(("constrained",), ("autolip", "seqlip", "lipsdp-neuron", "lipsdp-layer",
                                    "liplt", "regions", "mip", "grid", "gradient-ascent")),
        ), time_limit=120.0),
    "regularisers": Preset(
        "regularisers", "the digits MLP trained under each regulariser: test accuracy, the "
        "certified sandwich, the regulariser's own value and certified l2 radii", (
            Part(("regularisers",), ("autolip", "lipsdp-neuron", "lipsdp-groupsort",
                                     "eclipse-fast", "liplt", "data", "gradient-ascent",
                                     "region-walk", "bab"), _QUICK_LOWER),
        ), time_limit=30.0,
        after=(("regularisers.json", "lipopt_suite.harness.regularisers_table:write_margins"),)),
}


def _restrict(preset: Preset) -> Preset:
    """Keep seqlip, grid and regions only on the problems of RESTRICTED (names or families),
    where they do not refuse (hidden widths, input dimension, number of hidden units)."""
    parts: list[Part] = []
    for part in preset.parts:
        plain = tuple(m for m in part.methods if m not in RESTRICTED)
        parts.append(Part(part.problems, plain, part.options))
        for m, ok in RESTRICTED.items():
            if m in part.methods and m == "regions" and "max_hidden_units" in part.options.get(
                    m, {}):
                parts.append(Part(part.problems, (m,), part.options))  # limit raised on purpose
            elif m in part.methods:
                keep = tuple(p.name for p in SUITE if part.matches(p)
                             and (p.name in ok or p.family in ok))
                if keep:
                    parts.append(Part(keep, (m,), part.options))
    return dataclasses.replace(preset, parts=tuple(parts))


PRESETS = {name: _restrict(p) for name, p in PRESETS.items()}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# --------------------------------------------------------------------------------- CLI


