"""`mmcl dmvae fit / generate / eval` end to end on the real tiny dataset, resume and bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmcl.dmvae.cli import main as dmvae_main
from mmcl.dmvae.generate import decode_grid
from mmcl.dmvae.gmm import ContentPrior
from mmcl.dmvae.io import DMVAEError
from mmcl.dmvae.run import load_run
from mmcl.precision import choose_precision

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "dmvae" / "tiny.yaml"


def fit(root: Path, out: Path, *extra: str) -> int:
    return dmvae_main(["fit", "--config", str(CONFIG), "--data.root", str(root), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def tiny_run(fake_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dmvae") / "run"
    assert fit(fake_shards, out) == 0
    return out


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_fit_writes_every_stage_and_the_resolved_config(tiny_run):
    chosen, _ = choose_precision("cpu", None)  # tiny.yaml leaves precision unset
    for stage in ("1", "2"):
        ckpt = _state(tiny_run / f"stage{stage}" / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 8
        assert ckpt["mmcl_precision"] == chosen
        assert (tiny_run / f"stage{stage}" / "logs" / "version_0" / "metrics.csv").is_file()
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["stage2"]["model"]["delta"] == 400.0
    assert cfg["stage1"]["trainer"]["max_steps"] == 8  # defaults and file values resolved
    assert cfg["stage2"]["trainer"]["accelerator"] == "cpu"
    prior, meta = ContentPrior.load(tiny_run / "gmm.npz")
    assert prior.n_components == 2 and prior.dim == 4 and meta["encoding_size"] == 4
    for modality in ("image", "text"):  # densities of m_i, fitted after stage 2
        density, meta = ContentPrior.load(tiny_run / f"gmm_m_{modality}.npz")
        assert density.dim == 4 and meta["stage2_global_step"] == 8
    # stage 2 holds exactly the weights of stage 1 (frozen)
    s1 = _state(tiny_run / "stage1" / "checkpoints" / "last.ckpt")["state_dict"]
    s2 = _state(tiny_run / "stage2" / "checkpoints" / "last.ckpt")["state_dict"]
    for k, v in s1.items():
        torch.testing.assert_close(s2[f"content_model.{k}"], v, rtol=0, atol=0)


def test_rerun_skips_finished_stages(tiny_run, fake_shards, capsys):
    before = (tiny_run / "stage2" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert fit(fake_shards, tiny_run, "--stages", "[1,2,gmm]") == 0
    out = capsys.readouterr().out
    assert "stage 1:" in out and "already reached max_steps=8; skipped" in out
    assert "gmm:" in out and "up to date" in out
    assert (tiny_run / "stage2" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before
    assert len(list((tiny_run / "configs").glob("fit_*.yaml"))) == 2


@pytest.mark.parametrize("stage", ["1", "2"])
def test_resume_matches_an_uninterrupted_run(fake_shards, tmp_path, stage):
    """Stop after 4 of 8 steps (the state a kill leaves: checkpoint at step 4), rerun to 8: the
    weights equal those of a straight 8-step run (data order, RNG and optimisers restored)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    first = ["--stages", "[1]"] if stage == "1" else ["--stages", "[2]"]
    if stage == "2":  # both stage-2 runs start from the same stage-1 checkpoint
        assert fit(fake_shards, tmp_path / "s1", "--stages", "[1]") == 0
        s1 = str(tmp_path / "s1" / "stage1" / "checkpoints" / "last.ckpt")
        first += ["--stage1_checkpoint", s1]
    key = f"--stage{stage}.trainer.max_steps"
    assert fit(fake_shards, straight, *first) == 0
    assert fit(fake_shards, resumed, *first, key, "4") == 0
    assert _state(resumed / f"stage{stage}" / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert fit(fake_shards, resumed, *first) == 0
    a = _state(straight / f"stage{stage}" / "checkpoints" / "last.ckpt")
    b = _state(resumed / f"stage{stage}" / "checkpoints" / "last.ckpt")
    assert b["global_step"] == 8
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=0, msg=k)


def test_generate_grids_share_c_along_columns_and_m_along_rows(tiny_run):
    assert dmvae_main(["generate", "--run", str(tiny_run), "--columns", "3", "--rows", "2"]) == 0
    made = json.loads((tiny_run / "samples" / "samples.json").read_text())
    assert set(made["files"]) == {"text2image", "image2text", "unconditional_image", "unconditional_text"}
    assert made["run"] == ".."  # paths relative to the folder of samples.json, none of this machine
    assert made["rows"] == {"image": "one m_img ~ N(0, I)", "text": "one m_txt ~ N(0, I)"}
    gmm_out = tiny_run / "samples_gmm"
    argv = ["generate", "--run", str(tiny_run), "--columns", "3", "--rows", "2", "--out", str(gmm_out)]
    assert dmvae_main([*argv, "--specific-prior", "gmm"]) == 0
    made_gmm = json.loads((gmm_out / "samples.json").read_text())
    assert made_gmm["rows"] == {
        "image": "one m_img ~ GMM of q(m_img | x)",
        "text": "one m_txt ~ GMM of q(m_txt | x)",
    }
    assert (gmm_out / "text2image.png").read_bytes() != (tiny_run / "samples" / "text2image.png").read_bytes()
    for name in made["files"].values():
        assert (tiny_run / "samples" / name).stat().st_size > 1000
    run = load_run(tiny_run)
    c, m = torch.randn(3, 4), torch.randn(2, run.module.specific_sizes["image"])
    grid = decode_grid(run.module, "image", c, m)
    assert grid.shape == (2, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grid[1, 2], run.module.decode("image", c[2:3], m[1:2])[0])
        ids = decode_grid(run.module, "text", c, m, greedy=True)
        torch.testing.assert_close(ids[0, 1], run.module.generate("text", c[1:2], m[0:1])[0])
        sampled = decode_grid(run.module, "text", c, m, seed=3)
        torch.testing.assert_close(sampled, decode_grid(run.module, "text", c, m, seed=3))


def test_specific_density_is_fitted_on_the_draws_of_the_aggregate_posterior(tiny_run, tmp_path):
    """The GMM on m_i matches the first two moments of the draws of q(m_i | x_i) over the
    training set (an EM fixed point keeps them; a GMM of the posterior means, or of N(0, I),
    would have another covariance), and a stale density is refused."""
    from mmcl.dmvae.fit import specific_samples

    run = load_run(tiny_run)
    for modality in ("image", "text"):
        draws = specific_samples(run.module, run.data, modality, "train", seed=0).astype(np.float64)
        density = run.specific_priors[modality]
        w = density.weights / density.weights.sum()
        mean = w @ density.means
        second = np.einsum(
            "k,kij->ij", w, density.covariances + np.einsum("ki,kj->kij", density.means, density.means)
        )
        np.testing.assert_allclose(mean, draws.mean(0), atol=1e-3)
        np.testing.assert_allclose(second - np.outer(mean, mean), np.cov(draws.T, bias=True), atol=2e-3)
        means = _posterior_means(run, modality)
        assert np.abs(np.cov(means.T, bias=True) - np.cov(draws.T, bias=True)).max() > 0.05
    stale = tmp_path / "stale"
    shutil.copytree(tiny_run, stale, ignore=shutil.ignore_patterns("eval", "samples"))
    density, meta = ContentPrior.load(stale / "gmm_m_text.npz")
    density.save(stale / "gmm_m_text.npz", {**meta, "stage2_sha256": "0" * 64, "stage2_global_step": 4})
    with pytest.raises(DMVAEError, match=r"gmm_m_text.npz was fitted on another stage-2 checkpoint .*step 4"):
        load_run(stale)
    density.save(stale / "gmm_m_text.npz", {k: v for k, v in meta.items() if k != "stage2_sha256"})
    with pytest.raises(DMVAEError, match=r"gmm_m_text.npz records no stage-2 checkpoint hash"):
        load_run(stale)


def _posterior_means(run, modality: str) -> np.ndarray:
    """The means of q(m_modality | x) over the training split, in reading order."""
    from mmcl.dmvae.fit import _per_example

    def mean(batch):
        return run.module.encode_specific(modality, run.module.inputs(modality, batch)[0]).mean

    return _per_example(run.data, "train", mean, None)


def test_eval_writes_metrics_and_embeddings_for_mmcl_probe(tiny_run, tmp_path):
    out = tmp_path / "eval"
    rc = dmvae_main(
        [
            "eval",
            "--run",
            str(tiny_run),
            "--out",
            str(out),
            "--classifier-epochs",
            "1",
            "--n-unconditional",
            "40",
            "--probes",
            "logistic",
            "linear",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # where the eval's time went, part by part, adding up to (at most) its whole
    parts = metrics["part_seconds"]
    assert list(parts) == [
        "factor classifier", "coherence", "unconditional samples", "test ELBO", "embeddings", "probing",
        "fresh-critic MI",
    ]  # fmt: skip
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= metrics["seconds"] + 0.5
    assert parts["factor classifier"] > 0
    # evaluated runs tabulate into the ablation table and plot without refitting
    argv = [
        "ablate",
        "--out",
        str(tmp_path / "abl"),
        "--collect",
        f"0={out / 'metrics.json'}",
        f"400={out / 'metrics.json'}",
    ]
    assert dmvae_main(argv) == 0
    table = (tmp_path / "abl" / "ablation.csv").read_text().splitlines()
    assert len(table) == 3 and "mi_fresh_critic_m_image" in table[0] and table[2].startswith("400")
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 10_000
    # paths relative to the folder of metrics.json: they still point right when the tree is moved
    assert (out / metrics["stage2_checkpoint"]).resolve() == (
        tiny_run / "stage2/checkpoints/last.ckpt"
    ).resolve()
    assert metrics["factor_classifier"]["path"] == "factor_classifier.pt"
    assert not any(str(v).startswith("/") for v in (metrics["run"], metrics["stage2_checkpoint"]))
    for direction in (
        "text2image",
        "image2text",
        "reconstruction_image",
        "reconstruction_text",
        "text2image_gmm",
        "image2text_gmm",
    ):
        vals = metrics["coherence"][direction]
        assert set(vals) >= {"object_shape", "object_xpos", "object_ypos", "all"}
        assert all(0 <= v <= 1 for v in vals.values())
    assert set(metrics["elbo"]) == {"image", "text"}
    # a 12288-pixel Laplace log-likelihood and a 32-position categorical one, in nats
    assert np.isfinite(metrics["elbo"]["image"]["elbo"]) and metrics["elbo"]["text"]["elbo"] < 0
    assert {"text2image", "unconditional"} <= set(metrics["fd_factor_classifier"])
    assert set(metrics["leakage"]["m_image"]["linear"]) == {"object_shape", "object_xpos", "object_ypos"}
    assert (out / "probing_matrix.png").stat().st_size > 1000
    assert (out / "coherence.csv").read_text().startswith("direction,factor,coherence")
    # the embeddings follow docs/formats.md: `mmcl probe` reads them
    from mmcl.probing.cli import main as probe_main

    assert probe_main([str(out / "embeddings"), "--probes", "logistic", "--out", str(tmp_path / "p")]) == 0
    emb = json.loads((out / "embeddings" / "embeddings.json").read_text())
    reps = {"c", "c_image", "c_text", "m_image", "m_text", "m_image_logvar", "m_text_logvar"}
    assert set(emb["representations"]) == reps and set(metrics["leakage"]) == reps
    for rep in ("m_image", "m_text"):
        for key in ("mi_fresh_critic", "mi_fresh_critic_content"):
            est = metrics[key][rep]
            assert np.isfinite(est["density_ratio"]) and est["steps"] >= 1
    assert "mi_content_critic_m_text" in table[0]
    npz = np.load(out / "embeddings" / "embeddings_test.npz")
    assert (
        npz["c"].shape == (16, 4)
        and npz["m_image"].shape == (16, 4)
        and npz["factor:object_shape"].dtype == np.int64
    )


def test_coherence_scores_the_content_factors_the_classifier_was_built_for(tiny_run):
    """Coherence reads its factors from the factor classifier (the manifest's discrete content
    factors), not a fixed list: a classifier of shape and x alone gives rows of shape, x and
    all, each a fraction."""
    from mmcl.dmvae.classifier import FactorClassifier
    from mmcl.dmvae.grammar import Grammar
    from mmcl.dmvae.metrics import coherence, leakage

    run = load_run(tiny_run)
    sizes = {f.name: int(f.n_values) for f in run.data.manifest.content_factors()}
    assert list(sizes)[:3] == ["object_shape", "object_xpos", "object_ypos"]
    torch.manual_seed(0)
    two = FactorClassifier(
        {k: sizes[k] for k in ("object_shape", "object_xpos")}, run.data.manifest.resolution
    )
    coh = coherence(run.module, two.eval(), Grammar(run.data.manifest), run.data, "test", 0)
    for direction in ("text2image", "image2text", "reconstruction_image", "reconstruction_text"):
        assert set(coh[direction]) - {"parsed"} == {"object_shape", "object_xpos", "all"}, direction
        assert all(0 <= v <= 1 for v in coh[direction].values())
    cell = {"score": 0.5, "chance": 0.2}
    matrix = {"linear": {"m_image": {"object_shape": cell, "object_ypos": cell}}, "nonlinear": {}}
    assert set(leakage(matrix, ("object_shape",))["m_image"]["linear"]) == {"object_shape"}


def test_eval_probes_only_the_representations_asked_for(tiny_run, tmp_path, capsys):
    """`--probe-representations` (the demo leaves out the log-variances): only those latents
    are written and probed, the leakage table follows; an unknown name is one error line."""
    out = tmp_path / "eval"
    common = ["eval", "--run", str(tiny_run), "--out", str(out), "--classifier-epochs", "1"]
    common += ["--skip", "unconditional", "critic", "--probes", "logistic"]
    assert dmvae_main([*common, "--probe-representations", "m_image", "c"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    emb = json.loads((out / "embeddings" / "embeddings.json").read_text())
    assert set(emb["representations"]) == {"c", "m_image"} == set(metrics["leakage"])
    before = (out / "metrics.json").read_bytes()
    assert dmvae_main([*common, "--probe-representations", "m_image", "m_imgae"]) == 2
    err = capsys.readouterr().err
    assert "--probe-representations: unknown m_imgae" in err and "m_image_logvar" in err
    assert (out / "metrics.json").read_bytes() == before


# ----------------------------------------------------------------------------- bad input
def test_a_flag_of_the_wrong_type_says_which_and_what_was_expected(tmp_path, capsys):
    """jsonargparse puts the reason on the line after 'Parser key "stages":'; the one sentence
    keeps both (it used to stop at the colon)."""
    config = str(Path(__file__).resolve().parents[3] / "configs/dmvae/tiny.yaml")
    argv = ["fit", "--config", config, "--out", str(tmp_path / "run"), "--data.root", str(tmp_path)]
    assert dmvae_main([*argv, "--stages", "1", "2"]) == 2
    err = capsys.readouterr().err
    assert 'error: Parser key "stages": Expected a' in err and "Got value: 1" in err
    assert not (tmp_path / "run").exists()


def test_stage2_without_stage1_checkpoint(fake_shards, tmp_path, capsys):
    assert fit(fake_shards, tmp_path / "run", "--stages", "[2]") == 2
    err = capsys.readouterr().err
    assert "stage 2 needs a trained stage 1" in err and "stage1/checkpoints/last.ckpt does not exist" in err


class _Payload:
    """Unpickling this calls os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_checkpoint_carrying_a_pickled_callable_is_refused(tiny_run, fake_shards, tmp_path, capsys):
    marker = tmp_path / "ran"
    ckpt = torch.load(
        tiny_run / "stage1" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    ckpt["hyper_parameters"]["payload"] = _Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    assert fit(fake_shards, tmp_path / "run", "--stages", "[2]", "--stage1_checkpoint", str(evil)) == 2
    err = capsys.readouterr().err
    assert "refused" in err and str(evil) in err and "could run code" in err
    assert not marker.exists(), "the pickle's code ran"


def test_checkpoint_from_another_vocabulary(tiny_run, fake_shards, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(fake_shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["vocabulary"].append("zebra")
    (other / "manifest.json").write_text(json.dumps(manifest))
    s1 = str(tiny_run / "stage1" / "checkpoints" / "last.ckpt")
    assert fit(other, tmp_path / "run", "--stages", "[2]", "--stage1_checkpoint", s1) == 2
    assert "different vocabulary" in capsys.readouterr().err
    assert dmvae_main(["eval", "--run", str(tiny_run), "--data", str(other)]) == 2
    assert "different vocabulary" in capsys.readouterr().err


def test_checkpoint_with_another_encoding_size(tiny_run, fake_shards, tmp_path, capsys):
    s1 = str(tiny_run / "stage1" / "checkpoints" / "last.ckpt")
    rc = fit(
        fake_shards,
        tmp_path / "run",
        "--stages",
        "[2]",
        "--stage1_checkpoint",
        s1,
        "--stage1.model.encoding_size",
        "6",
    )
    assert rc == 2
    assert "encoding_size 4 but the config says stage1.model.encoding_size 6" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(tiny_run, fake_shards, capsys):
    rc = fit(
        fake_shards,
        tiny_run,
        "--stages",
        "[2]",
        "--stage2.model.delta",
        "10",
        "--stage2.trainer.max_steps",
        "12",
    )
    assert rc == 2
    assert "other stage-2 settings (delta: 400.0 -> 10.0)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--stage2.model.delta", "-1"], "delta must be a finite number >= 0"),
        (["--stage2.model.deltax", "1"], "deltax"),
        (["--stages", "[3]"], "--stages takes a list of 1, 2, gmm"),
    ],
)
def test_bad_config_values(tiny_run, fake_shards, tmp_path, capsys, argv, message):
    s1 = str(tiny_run / "stage1" / "checkpoints" / "last.ckpt")
    rc = fit(fake_shards, tmp_path / "run", "--stages", "[2]", "--stage1_checkpoint", s1, *argv)
    assert rc == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_killed_fit_resumes_to_completion(fake_shards, tmp_path):
    """SIGKILL a real `mmcl dmvae fit` process after its first checkpoint; the rerun finishes."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mmcl.cli",
        "dmvae",
        "fit",
        "--config",
        str(CONFIG),
        "--data.root",
        str(fake_shards),
        "--out",
        str(out),
        "--stages",
        "[1]",
        "--stage1.trainer.max_steps",
        "400",
        "--stage1.checkpoint_every_n_steps",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "stage1" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.is_file() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = _state(ckpt)["global_step"]
    assert 0 < step < 400
    rc = subprocess.run(
        cmd[:-4] + ["--stage1.trainer.max_steps", str(step + 6)], capture_output=True, text=True
    )
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert "resuming" in rc.stdout
    assert _state(ckpt)["global_step"] == step + 6


def test_content_one_hot_concatenates_each_factor():
    from mmcl.dmvae.metrics import content_one_hot

    arrays = {"factor:object_shape": np.array([0, 2, 1]), "factor:object_xpos": np.array([1, 0, 1])}
    sizes = {"object_shape": 3, "object_xpos": 2}
    np.testing.assert_array_equal(
        content_one_hot(arrays, ["object_shape", "object_xpos"], sizes),
        [[1, 0, 0, 0, 1], [0, 0, 1, 1, 0], [0, 1, 0, 0, 1]],
    )
    # a split without class 2 keeps its column: both splits have the same width
    other = {"factor:object_shape": np.array([0, 1]), "factor:object_xpos": np.array([1, 1])}
    assert content_one_hot(other, ["object_shape", "object_xpos"], sizes).shape == (2, 5)


def test_ablate_fits_evaluates_and_tabulates_the_content_factors_of_the_manifest(
    tiny_run, fake_shards, tmp_path
):
    """One delta of `mmcl dmvae ablate` on the tiny run's stage 1: the stage-2 run is fitted and
    evaluated, and the table has a leakage column per discrete content factor of the manifest
    (read from the run's data, not a fixed list) and no other probed factor."""
    from mmcl.dmvae.classifier import content_factor_sizes
    from mmcl.manifest import load_manifest

    argv = ["ablate", "--config", str(CONFIG), "--deltas", "0", "--out", str(tmp_path / "abl"),
            "--stage1_checkpoint", str(tiny_run / "stage1" / "checkpoints" / "last.ckpt"),
            "--classifier-epochs", "1", "--data.root", str(fake_shards)]  # fmt: skip
    assert dmvae_main(argv) == 0
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())["rows"]
    content = list(content_factor_sizes(load_manifest(fake_shards).content_factors()))
    assert content and len(rows) == 1
    probed = {
        k.removeprefix("leakage_m_image_nonlinear_")
        for k in rows[0]
        if k.startswith("leakage_m_image_nonlinear_")
    }
    assert probed == set(content)
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 10_000
