"""scripts/dmvae_classifier_blur.py: the factor classifier judged on blurred real renders."""

import json
import subprocess
import sys
from pathlib import Path

from mmcl.dmvae.classifier import classifier_accuracy
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.evaluate import get_classifier

REPO = Path(__file__).resolve().parents[2]


def test_blur_rows_start_at_the_classifiers_own_accuracy_and_move_away_from_sharp(tiny_dataset, tmp_path):
    data = DMVAEDataModule(str(tiny_dataset), batch_size=16, eval_batch_size=16, num_workers=0)
    model, _ = get_classifier(tmp_path / "clf.pt", data, epochs=2, seed=0, log=lambda m: None)
    out = tmp_path / "blur.json"
    cmd = [sys.executable, str(REPO / "scripts" / "dmvae_classifier_blur.py"), "--data", str(tiny_dataset),
           "--classifier", str(tmp_path / "clf.pt"), "--sigmas", "0", "1", "3", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    result = json.loads(out.read_text())
    rows = {r["sigma"]: r for r in result["rows"]}
    # unblurred, the script scores exactly what the classifier scores on the test split
    assert rows[0]["accuracy"] == classifier_accuracy(model, data, "test")
    assert rows[0]["l1"] == 0
    # wider blurs lie further from the sharp images, in L1 and in the Laplace likelihood
    assert 0 < rows[1]["l1"] < rows[3]["l1"]
    assert rows[0]["laplace_nll"] < rows[1]["laplace_nll"] < rows[3]["laplace_nll"]
    assert result["images"] == 16 and set(result["chance"]) == set(rows[0]["accuracy"])
    assert out.with_suffix(".png").stat().st_size > 10_000
