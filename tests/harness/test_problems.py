"""The shipped problem suite, its manifest and its presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipopt_suite import estimate
from lipopt_suite.errors import InputError
from lipopt_suite.harness.problems import (
    DESIGN_METHODS,
    FAMILIES,
    PRESETS,
    SUITE,
    check_files,
    get_preset,
    load_manifest,
    make_problems,
    manifest_text,
)

ROOT = Path(__file__).resolve().parents[2] / "problems"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ROOT)


def test_the_committed_manifest_is_the_one_the_suite_writes(manifest) -> None:
    import dataclasses

    expected = [dataclasses.replace(p, root=ROOT) for p in SUITE if p.name in manifest]
    assert (ROOT / "manifest.toml").read_text() == manifest_text(expected)
    # every problem of the suite is shipped, except LIP-CST before its generator exists
    missing = {p.name for p in SUITE} - set(manifest)
    assert all(name.startswith("lipcst") for name in missing)
    assert {p.family for p in manifest.values()} == set(FAMILIES)


def test_every_shipped_file_loads(manifest) -> None:
    loaded = check_files(manifest.values())
    for name, (net, extras) in loaded.items():
        p = manifest[name]
        if p.family == "scaman2018":
            assert extras["X"].shape == (1000, 2) and net.input_dim == 2
        if p.domain is not None:
            assert extras["center"].size == net.input_dim


def test_digits_files_hold_test_images_labels_and_a_correct_centre(manifest) -> None:
    for model in ("mlp", "cnn"):
        path = manifest[f"digits_{model}"].path
        with np.load(path, allow_pickle=False) as data:
            X, y, center = data["X"], data["y"], data["center"]
        net = check_files([manifest[f"digits_{model}"]])[f"digits_{model}"][0]
        assert X.shape == (300, 64) and y.shape == (300,) and 0 <= X.min() <= X.max() <= 1
        out = net.to_torch()(__import__("torch").as_tensor(
            X.reshape((-1, *net.input_shape)))).detach().numpy()
        accuracy = np.mean(out.argmax(1) == y)
        assert accuracy > 0.9  # both nets score about 0.98 on these 300 test images
        c = net.to_torch()(__import__("torch").as_tensor(center.reshape(net.input_shape)[None]))
        assert int(c.argmax()) == int(y[np.flatnonzero((X == center).all(1))[0]])


def test_constrained_nets_satisfy_their_guaranteed_bound(manifest) -> None:
    from lipopt_suite.harness.train import CONSTRAINT_NORM

    for name, p in manifest.items():
        if p.family != "constrained":
            continue
        norm = CONSTRAINT_NORM[p.params["constraint"]]
        assert set(p.known_upper) == {norm}
        assert p.known_upper[norm] == pytest.approx(p.params["radius"] ** p.params["layers"])
        net = check_files([p])[name][0]
        bound = estimate(net, "autolip", norm=norm)
        assert bound.certified and bound.value <= p.known_upper[norm]
        # and the constraint is active: training pushed most layers to the radius
        from lipopt_suite.core.linalg import operator_norm

        radius = p.params["radius"]
        norms = [operator_norm(layer.W, norm) for layer in net.layers if hasattr(layer, "W")]
        assert sum(n >= 0.99 * radius for n in norms[:-1]) >= len(norms) // 2, norms


def test_regeneration_is_deterministic(tmp_path: Path, manifest) -> None:
    made = make_problems(tmp_path, only=["tiny0", "lipsdp_depth3", "digits_cnn"])
    assert {p.name for p in made} == {"tiny0", "lipsdp_depth3", "digits_cnn",
                                      "digits_cnn_local"}
    for name in ("tiny0", "lipsdp_depth3", "digits_cnn"):
        with np.load(manifest[name].path, allow_pickle=False) as old, \
                np.load(tmp_path / manifest[name].file, allow_pickle=False) as new:
            assert old.files == new.files
            for key in old.files:
                if old[key].dtype.kind == "f":
                    # trained weights: same seed, float64, one thread; bitwise on one machine,
                    # 1e-9 leaves room for another BLAS
                    np.testing.assert_allclose(new[key], old[key], rtol=1e-9, atol=1e-12)
                else:
                    assert (new[key] == old[key]).all()
    assert load_manifest(tmp_path)["digits_cnn_local"].domain is not None


@pytest.mark.parametrize("text, words", [
    ("[problems.a]\nfile = 'a.npz'\n", "needs a string 'family'"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nnorms = ['3']\n", "unknown norm '3'"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\ncolour = 1\n", "unknown keys colour"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\ndomain = {radii = [-1]}\n", "radii"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nknown_upper = {'2' = 'abc'}\n",
     "known_upper.2 must be a positive finite number"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nknown_upper = {'2' = -1.0}\n",
     "known_upper.2 must be a positive"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nknown_upper = {'2' = nan}\n",
     "known_upper.2 must be a positive"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\npublished = {autolip = 'x'}\n",
     "published.autolip must be a finite number"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nx = 'abc'\n", "x must be a finite"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\nparams = 'abc'\n", "'params' must be"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\ndomain = {radius = 1, anchored = 'no'}\n",
     "'anchored' must be true or false"),
    ("[problems.a]\nfile = 'a.npz'\nfamily = 'x'\ndomain = {radius = true}\n", "radii"),
    ("[problems.a\n", "not valid TOML"),
    ("title = 'nothing'\n", "no [problems.NAME] tables"),
])
def test_bad_manifests_are_input_errors(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "manifest.toml").write_text(text)
    with pytest.raises(InputError, match=words.replace("[", r"\[")):
        load_manifest(tmp_path)


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "manifest.toml").write_text(
        "[problems.a]\nfile = 'a.npz'\nfamily = 'x'\n[problems.b]\nfile = 'b.npz'\n"
        "family = 'x'\n")
    manifest = load_manifest(tmp_path)
    with pytest.raises(InputError, match="a.npz named in the manifest does not exist"):
        check_files([manifest["a"]])
    (tmp_path / "b.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="problem b: .*b.npz"):
        check_files([manifest["b"]])
    with pytest.raises(InputError, match="no problem manifest"):
        load_manifest(tmp_path / "elsewhere")


def test_presets_name_design_methods_and_existing_problems(manifest) -> None:
    names = set(manifest) | {p.name for p in SUITE} | set(FAMILIES)
    for preset in PRESETS.values():
        for part in preset.parts:
            assert set(part.methods) <= set(DESIGN_METHODS), preset.name
            assert set(part.problems) <= names, preset.name
            assert set(part.options) <= set(DESIGN_METHODS), preset.name
        assert preset.problem_names(manifest), preset.name
    scaman = get_preset("scaman2018")
    assert {m for m, _ in scaman.methods_for(manifest["scaman_mlp4"])} == {
        "frobenius", "autolip", "seqlip", "seqlip-greedy", "data", "annealing", "grid",
        "regions", "bab", "lipsdp-neuron", "lipsdp-layer", "region-walk"}
    # methods that would refuse a problem (too wide, too many inputs) are not scheduled
    wide = {m for m, _ in get_preset("exact").methods_for(manifest["lipmip_width3"])}
    assert "seqlip" not in wide and "regions" not in wide and "grid" in wide
    with pytest.raises(InputError, match="valid presets: default"):
        get_preset("fast")
