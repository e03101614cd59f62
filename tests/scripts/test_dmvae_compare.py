"""experiments/dmvae_compare and experiments/dmvae_steps_curve tabulate evaluated models from their metrics.json files."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def script(name: str, out: Path, *args: str) -> list[str]:
    """The command line of ``experiments/<question>/<name>`` writing to ``out``."""
    return [sys.executable, str(REPO / "experiments" / Path(name).stem / name), "--out", str(out), *args]


def test_table_from_committed_dmvae_metrics(tmp_path):
    metrics = REPO / "docs" / "dmvae" / "metrics_hsic_delta400_both.json"  # a fixed committed eval
    out = tmp_path / "cmp"
    cmd = script("dmvae_compare.py", out, f"A={metrics}", f"B={metrics}")
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["model"] for r in rows] == ["A", "B"]
    assert float(rows[0]["text2image_object_xpos"]) == 1.0 and float(rows[0]["image2text_parsed"]) > 0.99
    assert float(rows[0]["probe_c_text_object_shape"]) == 1.0
    md = (out / "comparison.md").read_text().splitlines()
    assert md[2].startswith("| A | 0.252 / 1.000 / 1.000 | 0.845 / 0.999 / 0.999 |")
    bad = subprocess.run(cmd[:-2] + ["A=missing.json"], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.json: not found" in bad.stderr


def test_steps_curve_reads_each_coherence_row_per_step(tmp_path):
    dmvae = REPO / "docs" / "dmvae"
    out = tmp_path / "curve"
    cmd = script(
        "dmvae_steps_curve.py",
        out,
        "--ceiling",
        str(dmvae / "decoder_ceiling.json"),
        "--ceiling",
        str(dmvae / "decoder_ceiling_width24.json"),
        "--ceiling",
        str(dmvae / "decoder_ceiling_cosine8000.json"),
        f"s:2000={dmvae / 'metrics_hsic_delta400_both.json'}",
        f"s:8000={dmvae / 'metrics_hsic_delta400_both_8000steps_gmm_coherence.json'}",
    )
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    got = {(r["steps"], r["row"]): float(r["shape"]) for r in rows if r["series"] == "s"}
    # the 2 000-step eval predates the fitted density of m_img: no text2image_gmm point there
    assert got == {
        ("2000", "text2image"): 0.252,
        ("2000", "reconstruction_image"): 0.257,
        ("8000", "text2image"): 0.345,
        ("8000", "text2image_gmm"): 0.455,
        ("8000", "reconstruction_image"): 0.444,
    }
    ceiling = {}
    for r in rows:
        if r["row"] == "decoder_ceiling":
            ceiling.setdefault(r["series"], []).append(int(r["steps"]))
    assert ceiling == {  # one series per decoder width, each with the steps it was evaluated at
        "decoder alone on the true factors (width 12)": [500, 1000, 2000, 3000, 4000],
        "decoder alone on the true factors (width 24)": [500, 1000],
        # evaluated at 2 000 ... 8 000, but mid-schedule points are not the end of a shorter run
        "decoder alone on the true factors (width 12, stage 2's cosine schedule, end of each run)": [8000],
    }
    assert out.with_suffix(".png").stat().st_size > 10_000
    bad = subprocess.run(cmd[:-2] + ["no-steps=x.json"], capture_output=True, text=True)
    assert bad.returncode != 0 and "SERIES:STEPS=PATH" in bad.stderr
