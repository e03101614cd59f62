"""experiments/compare_probes/compare_probes.py joins the results of two runs whose designs differ."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIELDS = [
    "representation",
    "factor",
    "kind",
    "role",
    "probe",
    "metric",
    "score",
    "chance",
    "n_fit",
    "n_test",
    "params",
]


def write(path: Path, rows):
    path.mkdir(parents=True)
    with open(path / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerows(rows)


def test_compare_two_designs(tmp_path):
    write(
        tmp_path / "a",
        [
            [
                "image",
                "background_color",
                "continuous",
                "image_specific",
                "kernel_ridge",
                "r2",
                "0.05",
                "0",
                "10",
                "10",
                "{}",
            ]
        ],
    )
    write(
        tmp_path / "b",
        [
            [
                "image",
                "background_color",
                "continuous",
                "style",
                "kernel_ridge",
                "r2",
                "0.98",
                "0",
                "10",
                "10",
                "{}",
            ],
            [
                "text",
                "background_color_index",
                "discrete",
                "style",
                "mlp",
                "accuracy",
                "0.7",
                "0.1",
                "10",
                "10",
                "{}",
            ],
        ],
    )
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        str(REPO / "experiments" / "compare_probes" / "compare_probes.py"),
        f"a={tmp_path / 'a'}",
        f"b={tmp_path / 'b'}",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    bg = next(r for r in rows if r["factor"] == "background_color")
    assert (bg["a"], bg["role_a"], bg["b"], bg["role_b"]) == ("0.05", "image_specific", "0.98", "style")
    assert next(r for r in rows if r["factor"] == "background_color_index")["a"] == ""
    md = (out / "comparison.md").read_text()
    assert "| background_color | r2 | 0.050 (image_specific) | 0.980 (style) | 0.00 |" in md
    assert (out / "comparison.png").stat().st_size > 5000
