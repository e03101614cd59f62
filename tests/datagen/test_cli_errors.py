"""Bad input: one clear sentence naming the thing, exit status 2, nothing half-written."""

import subprocess
import sys
from pathlib import Path

import pytest

from datagen import io
from datagen.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "draft", "--counts", "4/2/2", "--shard-size", "4", "--resolution", "16", "--quiet"]


def run(argv, capsys):
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_unknown_shape_name(tmp_path, capsys, mesh_library):
    rc, err = run(["generate", str(tmp_path / "ds"), *TINY, "--shapes", "teapot,unicorn"], capsys)
    assert rc == 2 and "unicorn" in err and "datagen assets register" in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("counts", ["0/2/2", "-5/2/2", "4/2", "a/b/c"])
def test_bad_counts(tmp_path, capsys, counts):
    rc, err = run(["generate", str(tmp_path / "ds"), f"--counts={counts}"], capsys)
    assert rc == 2 and "--counts" in err
    assert not (tmp_path / "ds").exists()


def test_unwritable_output(tmp_path, capsys, mesh_library):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    rc, err = run(["generate", str(blocker / "ds"), *TINY], capsys)
    assert rc == 2 and "not writable" in err and str(blocker / "ds") in err


def test_bad_config_file_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\ncolour: red\n")
    rc, err = run(["generate", str(tmp_path / "ds"), "--config", str(cfg)], capsys)
    assert rc == 2 and str(cfg) in err and "'colour'" in err


def test_existing_root_with_other_config_is_refused_unless_overwrite(tmp_path, capsys, mesh_library):
    root = tmp_path / "ds"
    assert main(["generate", str(root), *TINY, "--seed", "1"]) == 0
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    rc, err = run(["generate", str(root), *TINY, "--seed", "2"], capsys)
    assert rc == 2 and "different config" in err and "seed: 1 -> 2" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert main(["generate", str(root), *TINY, "--seed", "2", "--overwrite"]) == 0
    assert io.read_manifest(root)["seed"] == 2


def test_non_dataset_folder_is_refused(tmp_path, capsys, mesh_library):
    (tmp_path / "notes.txt").write_text("keep me")
    rc, err = run(["generate", str(tmp_path), *TINY], capsys)
    assert rc == 2 and "not empty" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "manifest.json").exists()


def test_corrupt_mesh_file_leaves_library_untouched(tmp_path, capsys):
    lib = tmp_path / "lib"
    good = tmp_path / "tri.off"
    good.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    assert main(["assets", "register", "wedge", str(good), "--root", str(lib)]) == 0
    index = (lib / "library.json").read_bytes()
    bad = tmp_path / "bad.off"
    bad.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n")
    rc, err = run(["assets", "register", "broken", str(bad), "--root", str(lib)], capsys)
    assert rc == 2 and str(bad) in err and "not a valid OFF mesh" in err
    assert (lib / "library.json").read_bytes() == index and not (lib / "broken.npz").exists()
    nan = tmp_path / "nan.off"
    nan.write_text("OFF\n3 1 0\n0 0 nan\n1 0 0\n0 1 0\n3 0 1 2\n")
    rc, err = run(["assets", "register", "nanmesh", str(nan), "--root", str(lib)], capsys)
    assert rc == 2 and "NaN" in err


def test_missing_bpy_is_one_clear_sentence(tmp_path, mesh_library):
    code = (
        "import sys; sys.modules['bpy'] = None; from datagen.cli import main; "
        f"sys.exit(main({['generate', str(tmp_path / 'ds'), *TINY]!r}))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2
    assert "cannot import bpy" in res.stderr and "pip install bpy==5.0.1" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "ds").exists()


def test_gpu_device_without_gpu_fails_clearly(tmp_path, capsys, mesh_library):
    rc, err = run(["generate", str(tmp_path / "ds"), *TINY, "--device", "gpu"], capsys)
    assert rc == 2 and "--device gpu: Cycles finds no GPU" in err
    assert not (tmp_path / "ds").exists()
