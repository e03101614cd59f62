"""experiments/dmvae_decoder_ceiling and experiments/dmvae_classifier_blur on the tiny real dataset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmcl.dmvae.classifier import classifier_accuracy
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.evaluate import get_classifier

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classifier(tiny_dataset, tmp_path_factory):
    data = DMVAEDataModule(str(tiny_dataset), batch_size=16, eval_batch_size=16, num_workers=0)
    path = tmp_path_factory.mktemp("classifier") / "clf.pt"
    model, _ = get_classifier(path, data, epochs=2, seed=0, log=lambda m: None)
    return path, model, data


def script(name: str, *args) -> list[str]:
    return [sys.executable, str(REPO / "experiments" / Path(name).stem / name), *map(str, args)]


def test_blur_rows_start_at_the_classifiers_own_accuracy_and_move_away_from_sharp(
    tiny_dataset, classifier, tmp_path
):
    path, model, data = classifier
    out = tmp_path / "blur.json"
    cmd = script("dmvae_classifier_blur.py", "--data", tiny_dataset, "--classifier", path,
                 "--sigmas", "0", "1", "3", "--out", out)  # fmt: skip
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


def ceiling(tiny_dataset, classifier_path, work: Path, out: Path, *args) -> list[dict]:
    cmd = script("dmvae_decoder_ceiling.py", "--data", tiny_dataset, "--classifier", classifier_path,
                 "--work", work, "--out", out, *args)  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "seconds_per_step")}
        for r in json.loads(out.read_text())["rows"]
    ]


def test_ceiling_continued_to_more_steps_matches_a_straight_run(tiny_dataset, classifier, tmp_path):
    path = classifier[0]
    straight = ceiling(
        tiny_dataset, path, tmp_path / "a", tmp_path / "a.json", "--steps", 8, "--eval-at", 4, 8
    )
    ceiling(tiny_dataset, path, tmp_path / "b", tmp_path / "b.json", "--steps", 4, "--eval-at", 4, 8)
    resumed = ceiling(
        tiny_dataset, path, tmp_path / "b", tmp_path / "b.json", "--steps", 8, "--eval-at", 4, 8
    )
    assert [r["step"] for r in straight] == [4, 8]
    assert resumed == straight


def test_ceiling_cosine_schedule_is_its_own_run_and_decays_the_rate(tiny_dataset, classifier, tmp_path):
    path, work = classifier[0], tmp_path / "w"
    cosine = ceiling(tiny_dataset, path, work, tmp_path / "c.json", "--steps", 8, "--eval-at", 4,
                     "--schedule", "cosine", "--warmup", 2)  # fmt: skip
    constant = ceiling(tiny_dataset, path, work, tmp_path / "k.json", "--steps", 8, "--eval-at", 4)
    assert sorted(p.name for p in work.iterdir()) == ["width12.pt", "width12_cosine8_warmup2.pt"]
    assert cosine[-1]["test_nll"] != constant[-1]["test_nll"]
    state = torch.load(work / "width12_cosine8_warmup2.pt", weights_only=True)
    assert json.loads(state["schedule"])["_last_lr"] == [0.0]  # cosine to 0 at --steps
    # a rerun of the finished run trains nothing more and writes the same rows
    again = ceiling(tiny_dataset, path, work, tmp_path / "c.json", "--steps", 8, "--eval-at", 4,
                    "--schedule", "cosine", "--warmup", 2)  # fmt: skip
    assert again == cosine
