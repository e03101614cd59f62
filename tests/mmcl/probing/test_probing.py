"""`mmcl probe` end to end on real embeddings files with known ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmcl.probing.cli import main
from mmcl.probing.io import EmbeddingsError
from mmcl.probing.probes import chance_level, standardize

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/mmcl/conftest.py


FACTORS = {
    "object_shape": {"kind": "discrete", "role": "content", "n_values": 3},
    "object_xpos": {"kind": "continuous", "role": "content", "n_values": None},
    "object_color": {"kind": "continuous", "role": "style", "n_values": None},
    "background_color": {"kind": "continuous", "role": "image_specific", "n_values": None},
    "object_zpos": {"kind": "discrete", "role": "constant", "n_values": 1},
    "text_phrasing": {"kind": "discrete", "role": "text_specific", "n_values": 5},
}


def split_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """An "image" encoding that determines shape and x-position, half-determines colour and
    ignores background colour and phrasing (independent noise)."""
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, 3, n)
    xpos = rng.uniform(0, 1, n)
    color = rng.uniform(0, 1, n)
    image = np.stack(
        [
            shape + 0.1 * rng.standard_normal(n),
            np.sin(6 * xpos),
            np.cos(6 * xpos),
            color + 0.3 * rng.standard_normal(n),
            rng.standard_normal(n),
        ],
        axis=1,
    ).astype(np.float32)
    return {
        "image": image,
        "factor:object_shape": shape.astype(np.int64),
        "factor:object_xpos": xpos,
        "factor:object_color": color,
        "factor:background_color": rng.uniform(0, 1, n),
        "factor:object_zpos": np.zeros(n, dtype=np.int64),
        "factor:text_phrasing": rng.integers(0, 5, n).astype(np.int64),
    }


def write_dir(path: Path, n_val: int = 300, n_test: int = 300, mutate=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    splits = {"val": split_arrays(n_val, 1), "test": split_arrays(n_test, 2)}
    meta = {
        "representations": {"image": {"factors": list(FACTORS)}},
        "factors": FACTORS,
        "seed": 0,
        "source": {"test": True},
    }
    if mutate:
        mutate(splits, meta)
    for split, arrays in splits.items():
        np.savez(path / f"embeddings_{split}.npz", **arrays)
    (path / "embeddings.json").write_text(json.dumps(meta))
    return path


def results_of(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "results.json").read_text())
    return {(r["factor"], r["probe"]): r for r in data["results"]}


def test_probe_recovers_what_is_encoded(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "emb")
    assert main([str(d)]) == 0
    assert json.loads((d / "probe" / "results.json").read_text())["input"] == ".."  # relative, not /tmp/...
    out = d / "probe"
    for ext in ("csv", "json", "md", "png"):
        assert (out / f"results.{ext}").stat().st_size > 0
    res = results_of(out)
    assert res[("object_shape", "logistic")]["score"] > 0.95
    assert res[("object_shape", "mlp")]["score"] > 0.95
    assert res[("object_xpos", "kernel_ridge")]["score"] > 0.9
    # sin/cos of 6x are not linear in x: the kernel probe must beat the linear one clearly
    assert res[("object_xpos", "kernel_ridge")]["score"] > res[("object_xpos", "linear")]["score"] + 0.05
    assert 0.3 < res[("object_color", "kernel_ridge")]["score"] < 0.75
    assert res[("background_color", "kernel_ridge")]["score"] < 0.05
    assert res[("text_phrasing", "mlp")]["score"] < 0.35
    test_phrasing = np.load(d / "embeddings_test.npz")["factor:text_phrasing"]
    assert res[("text_phrasing", "mlp")]["chance"] == pytest.approx(chance_level("discrete", test_phrasing))
    assert res[("object_xpos", "linear")]["chance"] == 0.0
    assert ("object_zpos", "logistic") not in res
    data = json.loads((out / "results.json").read_text())
    assert data["seed"] == 0 and any("object_zpos" in n for n in data["notes"])
    params = res[("object_xpos", "kernel_ridge")]["params"]
    assert params["alpha"] in (1.0, 0.1, 0.01, 0.001)
    md = (out / "results.md").read_text()
    assert "**object_shape**" in md and "*object_color*" in md


def test_probe_is_deterministic_and_subsamples(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "emb")
    args = [str(d), "--max-samples", "120", "--seed", "3", "--probes", "kernel_ridge,mlp"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a, b = results_of(tmp_path / "a"), results_of(tmp_path / "b")
    assert a.keys() == b.keys() and {p for _, p in a} == {"kernel_ridge", "mlp"}
    for key in a:
        assert a[key]["score"] == b[key]["score"]
        assert a[key]["n_fit"] == 120
    assert json.loads((tmp_path / "a" / "results.json").read_text())["seed"] == 3


def test_kernel_probe_matches_sklearn_protocol(tmp_path: Path) -> None:
    """The probe's kernel ridge R^2 equals GridSearchCV fitted on standardised val, scored on test."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    d = write_dir(tmp_path / "emb", 240, 200)
    assert main([str(d), "--probes", "kernel_ridge", "--factors", "object_xpos"]) == 0
    ours = results_of(d / "probe")[("object_xpos", "kernel_ridge")]["score"]
    val, test = np.load(d / "embeddings_val.npz"), np.load(d / "embeddings_test.npz")
    x_val, x_test = standardize(val["image"], test["image"])
    grid = {"alpha": [1.0, 0.1, 0.01, 0.001], "gamma": np.logspace(-2, 2, 4)}
    search = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=3).fit(x_val, val["factor:object_xpos"])
    assert abs(ours - r2_score(test["factor:object_xpos"], search.predict(x_test))) < 1e-6


def _set(split: str, key: str, fn):
    def mutate(splits, meta):
        splits[split][key] = fn(splits[split][key])

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _set("val", "factor:object_xpos", lambda a: a[:-5]),
            "embeddings_val.npz: 'factor:object_xpos' has 295",
        ),
        (
            _set("test", "image", lambda a: np.where(np.arange(len(a))[:, None] == 3, np.nan, a)),
            "embeddings_test.npz: representation 'image' contains NaN or inf",
        ),
        (
            _set("val", "image", lambda a: np.where(np.arange(len(a))[:, None] == 0, np.inf, a)),
            "embeddings_val.npz: representation 'image' contains NaN or inf",
        ),
        (
            lambda s, m: m["representations"]["image"]["factors"].append("object_size"),
            "factor 'object_size' listed for representation 'image' does not exist",
        ),
        (lambda s, m: s["val"].pop("factor:object_color"), "has no array 'factor:object_color'"),
    ],
)
def test_bad_input_is_one_clear_sentence(tmp_path: Path, capsys, mutate, message: str) -> None:
    d = write_dir(tmp_path / "emb", mutate=mutate)
    assert main([str(d)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_factor_and_too_few_samples(tmp_path: Path, capsys) -> None:
    d = write_dir(tmp_path / "emb")
    assert main([str(d), "--factors", "object_size"]) == 2
    assert "factor 'object_size' does not exist" in capsys.readouterr().err
    small = write_dir(tmp_path / "small", n_val=2, n_test=5)
    assert main([str(small)]) == 2
    assert "has 2 samples, fewer than the 3 cross-validation folds" in capsys.readouterr().err
    with pytest.raises(EmbeddingsError, match="fewer than the 3"):
        from mmcl.probing.cli import run_probes

        run_probes(d, max_samples=2)


def test_periodic_factor_and_blocks(tmp_path: Path) -> None:
    """A hue encoded as (cos, sin) of its angle is identified by the circular score where the plain
    R^2 misses the wrap-around; a block of two factors copied (permuted, rescaled) into the codes
    has strong MCC ~1, one mixed linearly weak MCC ~1 but not strong; noise has neither."""

    def mutate(splits, meta):
        meta["factors"] = {
            "object_color": {"kind": "continuous", "role": "style", "n_values": None, "period": 1.0},
            "rot_a": {"kind": "continuous", "role": "image_specific", "n_values": None},
            "rot_b": {"kind": "continuous", "role": "image_specific", "n_values": None},
            "noise_a": {"kind": "continuous", "role": "specific_noise", "n_values": None},
            "noise_b": {"kind": "continuous", "role": "specific_noise", "n_values": None},
        }
        meta["representations"] = {r: {"factors": list(meta["factors"])} for r in ("copy", "mixed")}
        for k, arrays in splits.items():
            rng = np.random.default_rng({"val": 11, "test": 12}[k])
            n = len(arrays["image"])
            hue = rng.uniform(0, 1, n)
            a, b = rng.standard_normal(n), rng.standard_normal(n)
            angle = np.c_[np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue)]
            splits[k] = {
                "copy": np.c_[angle, -2 * b, 0.5 * a].astype(np.float32),
                "mixed": np.c_[angle, a + b, a - 0.5 * b].astype(np.float32),
                "factor:object_color": hue,
                "factor:rot_a": a,
                "factor:rot_b": b,
                "factor:noise_a": rng.standard_normal(n),
                "factor:noise_b": rng.standard_normal(n),
            }

    d = write_dir(tmp_path / "emb", 400, 400, mutate)
    assert main([str(d), "--probes", "kernel_ridge,circular,block_kernel_ridge,mcc,weak_mcc"]) == 0
    data = json.loads((d / "probe" / "results.json").read_text())["results"]
    res = {(r["representation"], r["factor"], r["probe"]): r for r in data}
    circ = res[("copy", "object_color", "circular")]
    assert circ["metric"] == "circular_r2" and circ["score"] > 0.95
    assert circ["score"] > res[("copy", "object_color", "kernel_ridge")]["score"] + 0.05
    block = res[("copy", "image_specific block", "mcc")]
    assert block["kind"] == "block" and block["params"]["factors"] == ["rot_a", "rot_b"]
    assert block["score"] > 0.99
    assert res[("mixed", "image_specific block", "weak_mcc")]["score"] > 0.99
    assert res[("mixed", "image_specific block", "mcc")]["score"] < 0.95
    assert res[("copy", "image_specific block", "block_kernel_ridge")]["score"] > 0.9
    for rep in ("copy", "mixed"):
        assert res[(rep, "specific_noise block", "mcc")]["score"] < 0.2
        assert res[(rep, "specific_noise block", "block_kernel_ridge")]["score"] < 0.05
    md = (d / "probe" / "results.md").read_text()
    assert "circular R²" in md and "weak MCC" in md
