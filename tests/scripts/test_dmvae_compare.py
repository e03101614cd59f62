"""scripts/dmvae_compare.py tabulates evaluated models from their metrics.json files."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_table_from_committed_dmvae_metrics(tmp_path):
    metrics = REPO / "docs" / "dmvae" / "metrics.json"
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "dmvae_compare.py"),
        "--out",
        str(out),
        f"A={metrics}",
        f"B={metrics}",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["model"] for r in rows] == ["A", "B"]
    assert float(rows[0]["text2image_object_xpos"]) == 1.0 and float(rows[0]["image2text_parsed"]) > 0.99
    assert float(rows[0]["probe_c_text_object_shape"]) == 1.0
    md = (out / "comparison.md").read_text().splitlines()
    assert md[2].startswith("| A | 0.252 / 1.000 / 1.000 | 0.845 / 0.999 / 0.999 |")
    bad = subprocess.run(cmd[:-2] + ["A=missing.json"], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.json: not found" in bad.stderr
