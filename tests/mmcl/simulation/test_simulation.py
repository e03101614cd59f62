"""Numerical simulation (seed 003 §8.4.1, SPEC §5): generative process, config, training,
resume, interventions, CLI, with real tiny runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmcl.simulation.config import ROWS, SimulationConfig, load_config
from mmcl.simulation.generative import GenerativeProcess, condition_threshold, torch_generator

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "simulation"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/mmcl/conftest.py


def tiny(**overrides) -> SimulationConfig:
    """A small but real configuration (configs/simulation/tiny.yaml): d = 6, content 2, tiny encoders."""
    return load_config(CONFIGS / "tiny.yaml", overrides)


# --- configuration ---------------------------------------------------------------------------


def test_paper_yaml_is_table_a2a_and_equals_code_defaults() -> None:
    cfg = load_config(CONFIGS / "paper.yaml")
    assert cfg == SimulationConfig()
    assert (cfg.batch_size, cfg.lr, cfg.steps, cfg.tau, cfg.grad_clip, cfg.cond_thresh_ratio) == (
        6144,
        1e-4,
        300_000,
        1.0,
        2.0,
        1e-3,
    )
    assert cfg.data_dim("multimodal") == 15 and cfg.widths("multimodal") == [150, 750, 750, 750, 750, 150]
    assert cfg.data_dim("multiview") == 10
    assert set(cfg.rows) == set(ROWS) and len(cfg.seeds) == 3


def test_cpu_yaml_loads() -> None:
    cfg = load_config(CONFIGS / "cpu.yaml")
    assert cfg.content_n == 5 and cfg.style_n == 5 and cfg.modality_n == 5 and cfg.encoding_size == 5


def test_unknown_and_bad_keys_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"batch_sise": 10}))
    with pytest.raises(ValueError, match=r"unknown simulation config key\(s\) \['batch_sise'\]"):
        load_config(path)
    with pytest.raises(ValueError, match="'lr' must be > 0"):
        load_config(None, {"lr": 0})
    with pytest.raises(ValueError, match="'rows' has unknown row"):
        load_config(None, {"rows": ["p0.5"]})
    with pytest.raises(ValueError, match="'steps' must be of type"):
        load_config(None, {"steps": "many"})
    assert load_config(None, {"lr": "1e-3"}).lr == 1e-3  # YAML 1.1 reads 1e-3 as a string


# --- generative process ----------------------------------------------------------------------


def test_mixing_is_well_conditioned_and_invertible() -> None:
    cfg = SimulationConfig(cond_pool=5000)
    proc = GenerativeProcess(cfg, "multimodal", "p1.0", seed=3)
    threshold = condition_threshold(15, cfg.cond_thresh_ratio, cfg.cond_pool, np.random.default_rng(0))
    for f in (proc.f1, proc.f2):
        linears = [m for m in f if isinstance(m, torch.nn.Linear)]
        assert len(linears) == 3
        for lin in linears:
            w = lin.weight.double().numpy()
            np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, atol=1e-6)
            assert np.linalg.cond(w) < 1.5 * threshold  # quantile of an independent pool of the same law
    # invertible: distinct inputs never collide and the map is bijective on a batch (full-rank Jacobian)
    z = torch.randn(64, 15)
    jac = torch.autograd.functional.jacobian(lambda v: proc.f1(v[None])[0], z[0])
    assert torch.linalg.matrix_rank(jac) == 15
    assert not torch.equal(proc.f1.state_dict()["0.weight"], proc.f2.state_dict()["0.weight"])


def test_multiview_shares_mixing_and_has_no_modality_specific() -> None:
    proc = GenerativeProcess(SimulationConfig(cond_pool=2000), "multiview", "p1.0", seed=0)
    assert proc.f1 is proc.f2 and proc.dim == 10
    batch = proc.sample(8, torch_generator(0, 9))
    assert batch.modality_specific_1.shape == (8, 0) and batch.x1.shape == (8, 10)


@pytest.mark.parametrize("row", list(ROWS))
def test_latent_dependencies(row: str) -> None:
    p_change, stat, cau = ROWS[row]
    proc = GenerativeProcess(SimulationConfig(cond_pool=2000), "multimodal", row, seed=1)
    lat = proc.sample_latents(40_000, torch_generator(1, 9))
    c, s, st = lat["content"].double(), lat["style"].double(), lat["style_changed"].double()
    changed = (st != s).double().mean().item()
    assert changed == pytest.approx(p_change, abs=0.01)
    cov_c = np.cov(c.numpy().T)
    off = np.abs(cov_c - np.diag(np.diag(cov_c))).max()
    assert (off > 0.3) == stat
    # causal: s depends on c (a linear fit explains a large part of style), otherwise not
    design = np.c_[c.numpy(), np.ones(len(c))]
    coef, *_ = np.linalg.lstsq(design, s.numpy(), rcond=None)
    r2 = 1 - ((s.numpy() - design @ coef) ** 2).sum(0) / ((s.numpy() - s.numpy().mean(0)) ** 2).sum(0)
    assert (r2.mean() > 0.3) == cau
    # m_1, m_2 independent
    m1, m2 = lat["modality_specific_1"].numpy(), lat["modality_specific_2"].numpy()
    assert abs(np.corrcoef(m1[:, 0], m2[:, 0])[0, 1]) < 0.05


def test_causal_map_is_fixed_for_the_whole_training_run(tmp_path: Path) -> None:
    """a + B c is drawn once per run: a linear map fitted on the batch of training step 0 predicts
    the style of the batch of step 500 (same run) as well as its own, and training leaves the
    process untouched. Redrawing a, B per batch would make the step-500 fit fail."""
    from mmcl.simulation.generative import STREAM_TRAIN
    from mmcl.simulation.train import train

    cfg = tiny(steps=6, checkpoint_every=3, rows=["p0.75-cau"])
    run = train(cfg, "multimodal", "p0.75-cau", 0, tmp_path, log=lambda m: None)
    fresh = GenerativeProcess(cfg, "multimodal", "p0.75-cau", 0)
    for name, buf in fresh.state_dict().items():
        assert torch.equal(buf, run.process.state_dict()[name]), name

    def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
        lat = run.process.sample_latents(4000, torch_generator(0, STREAM_TRAIN, step))
        c = lat["content"].double().numpy()
        return np.c_[c, np.ones(len(c))], lat["style"].double().numpy()

    (x0, s0), (x1, s1) = batch(0), batch(500)
    coef, *_ = np.linalg.lstsq(x0, s0, rcond=None)
    r2 = 1 - ((s1 - x1 @ coef) ** 2).sum() / ((s1 - s1.mean(0)) ** 2).sum()
    # style = a + B c + N(0, I): the explained share is |B c|^2 / (|B c|^2 + 1) per component
    assert r2 > 0.4, r2
    np.testing.assert_allclose(coef[:-1].T, run.process.B.numpy(), atol=0.1)


class TrueBlock(torch.nn.Module):
    """The exact inverse of a mixing MLP f, keeping the latent columns ``cols``: an encoder whose
    output is known (the true content map, or the true style map)."""

    def __init__(self, f: torch.nn.Sequential, slope: float, cols: slice):
        super().__init__()
        self.inverses = [torch.linalg.inv(m.weight.double()) for m in f if isinstance(m, torch.nn.Linear)]
        self.slope, self.cols = slope, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.double()
        for i, w_inv in enumerate(reversed(self.inverses)):
            if i > 0:  # undo the LeakyReLU that preceded this linear layer's output
                h = torch.where(h > 0, h, h / self.slope)
            h = h @ w_inv.T
        return h[:, self.cols].float()


@pytest.mark.parametrize("encoded", ["content", "style"])
def test_intervention_on_a_causal_row_with_known_encoders(tmp_path: Path, encoded: str) -> None:
    """App. A.6 on the causal row p0.75-cau, where the answer is known: encoders that return the
    true content give c' ~ 1 and c ~ 0 on the content-permuted data (the thesis: 0.98 / 0.01);
    encoders that return the true style (which depends on c through B) give c ~ R^2(c | s) > 0 and
    c' ~ 0 -- so an encoder carrying style explains a non-zero c column."""
    from mmcl.simulation.evaluate import evaluate

    cfg = tiny(rows=["p0.75-cau"], eval_samples=800, probe_solver="cholesky")
    proc = GenerativeProcess(cfg, "multimodal", "p0.75-cau", seed=0)
    cols = slice(0, 2) if encoded == "content" else slice(2, 4)
    g1, g2 = TrueBlock(proc.f1, cfg.mixing_slope, cols), TrueBlock(proc.f2, cfg.mixing_slope, cols)
    r2 = evaluate(cfg, proc, g1, g2, 0, tmp_path, {})["r2"]
    for rep in ("x1_intervened", "x2_intervened"):
        c, c_prime = r2[rep]["content"]["kernel_ridge"], r2[rep]["content_intervened"]["kernel_ridge"]
        if encoded == "content":
            assert c_prime > 0.97 and abs(c) < 0.05, (rep, c, c_prime)
        else:
            assert c > 0.3 and abs(c_prime) < 0.05, (rep, c, c_prime)
    # without the intervention, both encoders predict the content they were given or implied
    assert r2["x1"]["content"]["kernel_ridge"] > (0.97 if encoded == "content" else 0.3)


def test_upstream_loss_option_trains_and_is_recorded(tmp_path: Path) -> None:
    """loss: lpsimclr (negatives from a fresh batch through the anchor's encoder) trains on a short
    real run: its loss falls, content is learnt and m_i discarded (at this size it also keeps
    style: content 0.49, style 0.45 after 600 steps, where infonce gives 0.90 / 0.02), and a
    checkpoint made under the other loss is not resumed with it."""
    from mmcl.simulation.run import run_one
    from mmcl.simulation.train import train

    cfg = tiny(
        loss="lpsimclr",
        steps=600,
        batch_size=256,
        lr=3e-3,
        encoder_widths=[64, 128, 64],
        eval_samples=600,
        checkpoint_every=300,
        log_every=200,
        interventions=False,
    )
    metrics = run_one(cfg, "multimodal", "p1.0", 0, tmp_path / "up", log=lambda m: None)
    assert metrics["identity"]["loss"] == "lpsimclr"
    losses = [v for _, v in metrics["losses"]]
    assert losses[-1] < losses[0] - 0.5, losses
    table = metrics["table"]
    assert table["content"] > 0.35 and table["modality_specific"] < 0.15, table
    with pytest.raises(ValueError, match=r"different settings \(loss\)"):
        train(
            dataclasses.replace(cfg, loss="infonce"),
            "multimodal",
            "p1.0",
            0,
            tmp_path / "up" / "multimodal" / "p1.0" / "seed0",
            log=lambda m: None,
        )


def test_discrete_latents_are_categorical_and_probed_by_accuracy(tmp_path: Path) -> None:
    """Fig. A.5: the discrete group takes k values of unit variance; a changed style component
    moves by a wrapped rounded Gaussian step, so style stays partly shared between the views;
    the probe reports accuracy with chance 1/k; a short real run with discrete modality-specific
    latents identifies content and leaves m_i near chance."""
    from mmcl.simulation.generative import class_index
    from mmcl.simulation.run import run_one

    proc = GenerativeProcess(
        tiny(discrete_block="style", discrete_classes=4, style_n=2), "multimodal", "p0.75", 0
    )
    lat = proc.sample_latents(20_000, torch_generator(0, 9))
    index = class_index(lat["style"], 4)
    assert set(np.unique(index)) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.bincount(index.ravel()) / index.size, 0.25, atol=0.01)
    assert lat["style"].var().item() == pytest.approx(1.0, abs=0.03)
    changed = class_index(lat["style_changed"], 4)
    np.testing.assert_allclose(np.bincount(changed.ravel()) / changed.size, 0.25, atol=0.01)  # still uniform
    # step 0 (|N(0, 1.118)| < 0.5) or a whole turn: P(same class | changed) ~ 0.35, not 1/4
    same = (index == changed).mean()
    assert 0.25 + 0.75 * 0.30 < same < 0.25 + 0.75 * 0.42, same
    assert abs(np.corrcoef(np.cos(np.pi * index[:, 0] / 2), np.cos(np.pi * changed[:, 0] / 2))[0, 1]) > 0.1
    with pytest.raises(ValueError, match="rows without statistical or causal"):
        tiny(discrete_block="content", rows=["p0.75-cau"])

    cfg = tiny(
        discrete_block="modality_specific",
        discrete_classes=3,
        steps=600,
        batch_size=256,
        lr=3e-3,
        encoder_widths=[64, 128, 64],
        eval_samples=600,
        interventions=False,
    )
    metrics = run_one(cfg, "multimodal", "p1.0", 0, tmp_path, log=lambda m: None)
    m1 = metrics["r2"]["x1"]["modality_specific_1"]
    assert m1["metric"] == "accuracy" and m1["chance"] == pytest.approx(1 / 3)
    assert m1["kernel_ridge"] < 1 / 3 + 0.1, m1
    assert metrics["r2"]["x1"]["content"]["metric"] == "r2" and metrics["table"]["content"] > 0.8
    meta = json.loads((tmp_path / "multimodal" / "p1.0" / "seed0" / "embeddings.json").read_text())
    assert meta["factors"]["modality_specific_1_0"] == {
        "kind": "discrete",
        "role": "modality_specific",
        "n_values": 3,
        "block": "modality_specific_1",
    }


# --- training, resume, evaluation ------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_interruption_is_identical(tmp_path: Path, schedule: str) -> None:
    from mmcl.simulation.train import train

    cfg = tiny(steps=12, checkpoint_every=4, lr_schedule=schedule)
    full = train(cfg, "multimodal", "p0.75-cau", 0, tmp_path / "full", log=lambda m: None)
    # interrupted after 6 steps (a checkpoint written at step 6), then the same call again
    part = train(cfg, "multimodal", "p0.75-cau", 0, tmp_path / "part", stop_after=6, log=lambda m: None)
    assert part.step == 6 and not part.finished
    resumed = train(cfg, "multimodal", "p0.75-cau", 0, tmp_path / "part", log=lambda m: None)
    assert resumed.finished and resumed.step == 12
    for a, b in ((full.g1, resumed.g1), (full.g2, resumed.g2)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)
    assert full.losses == resumed.losses


def test_a_run_saved_before_a_config_key_existed_still_resumes(tmp_path: Path) -> None:
    """Keys added to the config later (loss, discrete_block, discrete_classes) count as their
    defaults when a checkpoint lacks them; a non-default value is still refused."""
    from mmcl.simulation.train import train

    train(tiny(steps=2), "multimodal", "p1.0", 0, tmp_path, log=lambda m: None)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("loss", "discrete_block", "discrete_classes"):
        del ckpt["identity"][key]
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert train(tiny(steps=4), "multimodal", "p1.0", 0, tmp_path, log=lambda m: None).step == 4
    with pytest.raises(ValueError, match=r"different settings \(loss\)"):
        train(tiny(steps=6, loss="lpsimclr"), "multimodal", "p1.0", 0, tmp_path, log=lambda m: None)


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    from mmcl.simulation.train import train

    train(tiny(steps=2), "multimodal", "p1.0", 0, tmp_path, log=lambda m: None)
    with pytest.raises(ValueError, match=r"different settings \(lr\)"):
        train(tiny(steps=4, lr=5e-4), "multimodal", "p1.0", 0, tmp_path, log=lambda m: None)


def test_cli_end_to_end_learns_content_and_writes_probe_readable_embeddings(tmp_path: Path, capsys) -> None:
    """A short real run: content is identified, modality-specific information is not; the
    embeddings files are read by `mmcl probe`; rerunning the command reuses the finished run."""
    from mmcl.probing.cli import main as probe_main
    from mmcl.simulation.cli import main

    out = tmp_path / "sim"
    args = [
        "--out",
        str(out),
        "--content_n",
        "2",
        "--style_n",
        "2",
        "--modality_n",
        "2",
        "--encoding_size",
        "2",
        "--cond_pool",
        "2000",
        "--encoder_widths",
        "[64, 128, 64]",
        "--batch_size",
        "256",
        "--steps",
        "600",
        "--lr",
        "3e-3",
        "--eval_samples",
        "600",
        "--settings",
        "[multimodal]",
        "--rows",
        "[p1.0]",
        "--seeds",
        "[0]",
        "--log_every",
        "200",
        "--checkpoint_every",
        "300",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "multimodal" / "p1.0" / "seed0" / "metrics.json").read_text())
    table = metrics["table"]
    assert table["content"] > 0.8, table
    assert table["modality_specific"] < 0.15, table
    assert table["intervened_content_prime"] > 0.8 and table["intervened_content"] < 0.15, table
    text = (out / "table.md").read_text()
    assert "mmcl simulate --out" in text and "0.99 (±0.00)" in text  # thesis value beside ours
    run_dir = out / "multimodal" / "p1.0" / "seed0"
    assert probe_main([str(run_dir), "--probes", "kernel_ridge", "--representations", "x1"]) == 0
    res = json.loads((run_dir / "probe" / "results.json").read_text())["results"]
    content = [r["score"] for r in res if r["factor"].startswith("content_")]
    specific = [r["score"] for r in res if r["factor"].startswith("modality_specific_1_")]
    assert len(content) == 2 and min(content) > 0.6
    assert max(specific) < 0.15
    capsys.readouterr()
    assert main(args) == 0  # finished runs are not repeated
    assert "step" not in capsys.readouterr().out.split("# Numerical simulation")[0]


def test_cli_rejects_unknown_override(tmp_path: Path, capsys) -> None:
    """A mistyped key, on the command line or in the YAML file, is one sentence naming it and
    exit 2; a value of the wrong type names its key and what was expected."""
    from mmcl.simulation.cli import main

    assert main(["--batch_sise", "3"]) == 2
    assert "unrecognized arguments: --batch_sise 3" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nbatch_sise: 4\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{bad}: Option 'batch_sise' is not accepted as a simulation config key" in err
        and len(err.splitlines()) == 1
    )
    assert main(["--steps", "many"]) == 2
    assert "Parser key \"steps\": Expected a <class 'int'>. Got value: many" in capsys.readouterr().err
    assert main(["--steps", "0"]) == 2
    assert "simulation config key 'steps' must be >= 1, got 0" in capsys.readouterr().err


def test_cli_keys_come_from_the_config_then_the_command_line_old_spellings_too(capsys) -> None:
    """--config's values, overridden by --key VALUE; the dashed spelling of the old parser still
    works with one deprecation line."""
    from mmcl.simulation.cli import parse_args

    cfg, out, name = parse_args(
        ["--config", str(CONFIGS / "tiny.yaml"), "--steps", "7", "--batch-size", "33"]
    )
    assert (cfg.steps, cfg.batch_size, name, out) == (7, 33, "tiny", None)
    assert cfg.encoding_size == tiny().encoding_size  # from the file
    assert "--batch-size is deprecated, use --batch_size" in capsys.readouterr().err
    cfg, _, name = parse_args(["--lr", "1e-3", "--discrete_block", "null", "--rows", "[p1.0]"])
    assert (cfg.lr, cfg.discrete_block, cfg.rows, name) == (1e-3, None, ["p1.0"], "paper")


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """A real `mmcl simulate` process killed with SIGKILL mid-run; the same command then finishes
    from the last checkpoint with exactly the numbers of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["--content_n", "2", "--style_n", "2", "--modality_n", "2", "--encoding_size", "2", "--cond_pool", "2000",
            "--encoder_widths", "[64, 64]", "--batch_size", "128", "--steps", "600", "--lr", "1e-3",
            "--eval_samples", "300", "--settings", "[multimodal]", "--rows", "[p0.75-cau]", "--seeds", "[0]",
            "--log_every", "50", "--checkpoint_every", "50", "--device", "cpu", "--threads", "1"]  # fmt: skip
    cmd = [sys.executable, "-m", "mmcl.cli", "simulate", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    ckpt = killed / "multimodal" / "p0.75-cau" / "seed0" / "checkpoint.pt"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= 200:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(ckpt, weights_only=False)["step"]
    assert 200 <= step_at_kill < 600
    out = subprocess.run([*cmd, "--out", str(killed)], check=True, env=env, capture_output=True, text=True)
    assert f"resuming from step {step_at_kill}" in out.stdout

    def metrics(root: Path) -> dict:
        m = json.loads((root / "multimodal" / "p0.75-cau" / "seed0" / "metrics.json").read_text())
        return {k: m[k] for k in ("r2", "val_loss", "test_loss", "losses", "steps")}

    assert metrics(killed) == metrics(tmp_path / "full")
