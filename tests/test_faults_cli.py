"""Faults met through the command line (issue 14): runs and files a command must not destroy, runs it
must not continue silently, options it must not misread, outcomes it must not call a success.

Each test states the fault, what the command raises or prints, its exit status and which files stay
untouched. Data sets are hand-made in the real layouts (a few 64x64 images), models tiny.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.__main__ import main
from depthlib.checkpoint_io import save_atomic
from depthlib.data.io import write_cam_file, write_pair_file, write_pfm
from depthlib.train import read_log


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """A private depthlib cache: a test can tell that nothing was rendered."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPTHLIB_CACHE", str(cache))
    return cache


def _nyu(root, depth_value=100, rows=2, size=64):
    """DenseDepth's layout by hand: `rows` train pairs (JPEG + 8-bit PNG, 100/255 x 10 m), one test pair."""
    (root / "data/nyu2_train/a_out").mkdir(parents=True)
    (root / "data/nyu2_test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows_text = []
    for k in range(rows):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"data/nyu2_train/a_out/{k}.jpg")
        Image.fromarray(np.full((size, size), depth_value, np.uint8)).save(root / f"data/nyu2_train/a_out/{k}.png")
        rows_text.append(f"data/nyu2_train/a_out/{k}.jpg,data/nyu2_train/a_out/{k}.png\n")
    (root / "data/nyu2_train.csv").write_text("".join(rows_text))
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "data/nyu2_test/00000_colors.png")
    Image.fromarray(np.full((size, size), 3000, np.uint16)).save(root / "data/nyu2_test/00000_depth.png")
    (root / "data/nyu2_test.csv").write_text("data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n")
    return root


def _dtu(root, val_depth=500.0):
    """MVSNet's training layout by hand: scan1 (train) and scan2 (val), 3 views of 64x64, depth 16x16."""
    (root / "Cameras").mkdir(parents=True)
    (root / "lists").mkdir()
    for view in range(3):
        extrinsic = np.eye(4)
        extrinsic[0, 3] = 20.0 * view
        write_cam_file(root / f"Cameras/{view:08d}_cam.txt", extrinsic, np.array([[16.0, 0, 7.5], [0, 16, 7.5],
                                                                                   [0, 0, 1]]), 425, 2.5)
    write_pair_file(root / "Cameras/pair.txt", [(r, [(v, 1.0) for v in range(3) if v != r]) for r in range(3)])
    rng = np.random.default_rng(0)
    for scan, depth in (("scan1", 500.0), ("scan2", val_depth)):
        (root / f"Rectified/{scan}_train").mkdir(parents=True)
        (root / f"Depths/{scan}_train").mkdir(parents=True)
        for view in range(3):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                root / f"Rectified/{scan}_train/rect_{view + 1:03d}_0_r5000.png")
            write_pfm(root / f"Depths/{scan}_train/depth_map_{view:04d}.pfm", np.full((16, 16), depth, np.float32))
            Image.fromarray(np.full((16, 16), 200, np.uint8)).save(root / f"Depths/{scan}_train/depth_visual_{view:04d}.png")
    for split, scan in (("train", "scan1"), ("val", "scan2"), ("test", "scan2")):
        (root / f"lists/{split}.txt").write_text(scan + "\n")
    return root


DD = ["--size", "64x64", "--encoder", "small", "--batch-size", "1", "--profile", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def densedepth_run(tmp_path_factory):
    """One real (tiny) DenseDepth run: 1 epoch of 2 steps at 64x64, max depth 8 m."""
    root = tmp_path_factory.mktemp("dd")
    data = _nyu(root / "nyu")
    assert main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(root / "run"), "--epochs", "1",
                 "--max-depth", "8", *DD]) == 0
    return data, root / "run"


# ----------------------------------------------------------------------------- lost work

def test_train_into_a_folder_holding_a_run_is_refused_at_once(tmp_path, empty_cache):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"trained for a week")
    (run / "log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(FileExistsError, match=r"already holds a training run \(checkpoint\.pt, log\.jsonl\): continue "
                                              r"it with --resume, or delete it and start again with --overwrite"):
        main(["train", "densedepth", "--out", str(run), "--profile", "cpu"])
    assert (run / "checkpoint.pt").read_bytes() == b"trained for a week" and (run / "log.jsonl").read_text() == \
        '{"step": 1}\n'
    assert not empty_cache.exists()  # refused before any data set was rendered
    with pytest.raises(ValueError, match="--resume and --overwrite together"):
        main(["train", "densedepth", "--out", str(run), "--resume", "--overwrite"])


def test_overwrite_starts_the_run_again(densedepth_run, tmp_path):
    data, _ = densedepth_run
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"epoch": 0, "step": 99, "total": 5.0}\n')
    assert main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(run), "--epochs", "1",
                 "--overwrite", *DD]) == 0
    assert [r["step"] for r in read_log(run)] == [2]  # the old record is gone


def test_export_onto_its_own_checkpoint_is_refused_in_one_line(densedepth_run):
    _, run = densedepth_run
    checkpoint = run / "checkpoint.pt"
    before = checkpoint.read_bytes()
    result = subprocess.run([sys.executable, "-m", "depthlib", "export", "--ckpt", str(checkpoint), "--out",
                             str(checkpoint)], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("python -m depthlib: error: export: --out ")
    assert "is the checkpoint itself" in result.stderr
    assert checkpoint.read_bytes() == before
    assert torch.load(checkpoint, weights_only=True)["optimizer"]  # still a resumable training checkpoint


def test_the_depthlib_script_reports_a_user_error_in_one_line_as_python_m_depthlib_does(tmp_path, capsys):
    """pip's ``depthlib`` command runs the [project.scripts] target: the same one-line error and exit
    status 1 as ``python -m depthlib``, not a traceback (it pointed at ``main``, which has no handler)."""
    import importlib
    import re

    # read as text: tomllib is Python 3.11+, and depthlib supports 3.9
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    found = re.search(r'^\[project\.scripts\]\n(?:.*\n)*?depthlib\s*=\s*"([^"]+)"', pyproject, re.M)
    assert found, "pyproject.toml has no [project.scripts] depthlib entry"
    target = found.group(1)
    module, name = target.split(":")
    script = getattr(importlib.import_module(module), name)
    assert script(["fuse", "--scan", str(tmp_path), "--out", str(tmp_path / "cloud.ply")]) == 1  # no pair.txt
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m depthlib: error: ") and "pair.txt" in err


def test_failing_validation_after_an_epoch_keeps_its_checkpoint_and_exits_1(tmp_path, capsys):
    data = _dtu(tmp_path / "dtu", val_depth=0.0)  # the val split has no valid pixel
    run = tmp_path / "run"
    code = main(["train", "mvsnet", "--data", f"dtu:{data}", "--out", str(run), "--epochs", "2", "--batch-size", "3",
                 "--n-views", "3", "--n-depths", "8", "--val", "--profile", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert ("\npython -m depthlib: error: validation failed after epoch(s) 0, 1: ValueError: evaluate_mvsnet: "
            "no valid pixel") in err  # after each epoch's warning
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 2)  # both epochs trained and saved
    assert [r["val_error"][:40] for r in read_log(run) if "train_total" in r] == \
        ["ValueError: evaluate_mvsnet: no valid pi"] * 2


# ----------------------------------------------------------------------------- silent wrong results

def test_training_on_depth_without_a_valid_pixel_stops_naming_the_csv_lines(tmp_path):
    data = _nyu(tmp_path / "nyu", depth_value=0)  # every depth 0: invalid
    with pytest.raises(ValueError, match=r"no valid depth pixel .* in the batch of epoch 0, step 0: samples \[\d\]: "
                                         r"data/nyu2_train/a_out/\d\.jpg, data/nyu2_train/a_out/\d\.png \(line \d of "
                                         r".*nyu2_train\.csv\)"):
        main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(tmp_path / "run"), "--epochs", "1", *DD])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_takes_the_runs_values_and_stops_on_a_different_one(densedepth_run, tmp_path):
    import shutil

    data, trained = densedepth_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError) as error:
        main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(run), "--resume", "--max-depth", "5",
              "--epochs", "2", *DD])
    message = str(error.value)
    assert "\n" not in message and "was trained with max_depth=8.0; this run has max_depth=5.0: pass the same " \
                                   "options, or accept the change (--accept-changes" in message
    assert (run / "checkpoint.pt").read_bytes() == before
    with pytest.raises(ValueError, match=r"was trained with lr=0\.0001; this run has lr=0\.001"):
        main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(run), "--resume", "--lr", "1e-3", *DD])
    # left out, max depth and size come from the run: --resume alone continues it as it was started
    assert main(["train", "densedepth", "--data", f"nyu:{data}", "--out", str(run), "--resume", "--epochs", "2",
                 "--batch-size", "1", "--profile", "cpu", "--no-progress"]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["metadata"]["max_depth"] == 8.0 and state["metadata"]["size"] == [64, 64]


def test_eval_with_another_max_depth_or_the_wrong_model_is_one_line(densedepth_run, tmp_path):
    data, run = densedepth_run
    with pytest.raises(ValueError, match=r"checkpoint\.pt was trained with max_depth=8\.0; this run has max_depth=10\.0"):
        main(["eval", "densedepth", "--ckpt", str(run / "checkpoint.pt"), "--data", f"nyu:{data}",
              "--max-depth", "10", "--profile", "cpu"])
    from depthlib.models import MVSNet

    save_atomic({"model": MVSNet(refine=True).state_dict(), "metadata": {"model": "mvsnet", "refine": True}},
                tmp_path / "mvsnet.pt")
    with pytest.raises(ValueError) as error:
        main(["eval", "densedepth", "--ckpt", str(tmp_path / "mvsnet.pt"), "--data", f"nyu:{data}", "--profile", "cpu"])
    assert str(error.value).endswith("mvsnet.pt holds a 'mvsnet' model, expected 'densedepth' (try: eval mvsnet)")
    save_atomic({"model": MVSNet(refine=True).state_dict(), "metadata": {}}, tmp_path / "unlabelled.pt")
    with pytest.raises(ValueError) as error:  # no metadata to tell: the weights themselves do not fit, in one line
        main(["eval", "densedepth", "--ckpt", str(tmp_path / "unlabelled.pt"), "--data", f"nyu:{data}",
              "--profile", "cpu"])
    assert "\n" not in str(error.value) and "its weights do not fit this DenseDepth: " in str(error.value)


def test_init_of_a_refining_mvsnet_into_no_refine_is_one_line(tmp_path, empty_cache):
    from depthlib.models import MVSNet

    weights = tmp_path / "refining.pt"
    save_atomic({"model": MVSNet(refine=True).state_dict(),
                 "metadata": {"model": "mvsnet", "refine": True, "n_views": 3, "n_depths": 8}}, weights)
    with pytest.raises(ValueError) as error:  # --data synthetic: refused before the set is rendered
        main(["train", "mvsnet", "--out", str(tmp_path / "run"), "--init", str(weights), "--no-refine",
              "--profile", "cpu"])
    assert str(error.value) == (f"--init {weights} holds refine=True; this run builds refine=False: the weights do "
                                "not fit (pass matching options)")
    with pytest.raises(ValueError, match=r"refining\.pt was trained with n_depths=8; this run has n_depths=16: pass "
                                         r"the same options, or accept the change \(--accept-changes"):
        main(["train", "mvsnet", "--out", str(tmp_path / "run"), "--init", str(weights), "--n-depths", "16",
              "--profile", "cpu"])
    assert not (tmp_path / "run").exists() and not empty_cache.exists()


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("argv, words", [
    (["train", "densedepth", "--epochs", "0"], "--epochs: expected an integer >= 1, got '0'"),
    (["train", "densedepth", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["train", "densedepth", "--lr", "nan"], "--lr: expected a finite number in [0, inf], got 'nan'"),
    (["train", "densedepth", "--lr=-1e-4"], "--lr: expected a finite number in [0, inf]"),
    (["train", "densedepth", "--max-depth", "0"], "--max-depth: expected a finite number in (0, inf]"),
    (["train", "densedepth", "--max-depth", "inf"], "--max-depth: expected a finite number"),
    (["train", "densedepth", "--size", "0x64"], "size '0x64': expected positive HEIGHT and WIDTH"),
    (["train", "densedepth", "--checkpoint-every", "0"], "--checkpoint-every: expected an integer >= 1"),
    (["train", "densedepth", "--compile", "fast"],
     "--compile: 'fast' is not a torch.compile mode; expected one of default, reduce-overhead"),
    (["train", "densedepth", "--n-train", "0"], "--n-train: expected an integer >= 1"),
    (["train", "densedepth", "--init", "runs/missing.pt"], "--init: runs/missing.pt: no such file"),
    (["train", "densedepth", "--pretrained", "missing.pth"], "--pretrained: missing.pth: no such file"),
    (["train", "mvsnet", "--interval-scale", "-1"], "--interval-scale: expected a finite number in (0, inf]"),
    (["train", "mvsnet", "--n-depths", "12"], "--n-depths: expected an integer >= 8 and a multiple of 8"),
    (["train", "mvsnet", "--n-views", "1"], "--n-views: expected an integer >= 2"),
    (["infer", "mvsnet", "--ckpt", "x.pt", "--scan", "s", "--size", "100x100"], "expected positive multiples of 32"),
    (["eval", "mvsnet", "--ckpt", "runs/x/checkpoint.pt"], "--ckpt: runs/x/checkpoint.pt: no such file"),
    (["export", "--ckpt", "missing.pt", "--out", "w.pt"], "--ckpt: missing.pt: no such file"),
    (["fuse", "--scan", "s", "--out", "c.ply", "--photometric-threshold", "1"], "expected a finite number in [0, 1)"),
    (["fuse", "--scan", "s", "--out", "c.ply", "--min-views", "-1"], "--min-views: expected an integer >= 0"),
    (["fuse", "--scan", "s", "--out", "c.ply", "--pixel-threshold", "0"], "--pixel-threshold: expected a finite"),
    (["render", "dtu", "--n-scans", "0"], "--n-scans: expected an integer >= 1"),
    (["render", "nyu", "--seed", "-1"], "--seed: expected an integer >= 0"),
])
def test_numeric_and_file_options_are_checked_when_parsed(tmp_path, capsys, empty_cache, argv, words):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not empty_cache.exists() and not (tmp_path / "out").exists()


def test_render_zero_test_frames_means_zero_and_an_existing_set_is_kept(tmp_path):
    out = tmp_path / "nyu"
    assert main(["render", "nyu", "--out", str(out), "--size", "16x16", "--n-train", "1", "--n-test", "0",
                 "--profile", "cpu"]) == 0
    assert (out / "data/nyu2_test.csv").read_text() == ""  # 0, not the profile's default
    csv = (out / "data/nyu2_train.csv").read_text()
    with pytest.raises(FileExistsError, match=r"already holds a data set \(data/nyu2_train\.csv\): choose another "
                                              r"--out, or pass --overwrite"):
        main(["render", "nyu", "--out", str(out), "--size", "16x16", "--n-train", "2", "--n-test", "0"])
    assert (out / "data/nyu2_train.csv").read_text() == csv
    assert main(["render", "nyu", "--out", str(out), "--size", "16x16", "--n-train", "2", "--n-test", "0",
                 "--profile", "cpu", "--overwrite"]) == 0
    assert len((out / "data/nyu2_train.csv").read_text().splitlines()) == 2


def _infer_folder(root):
    """Two views in the layout of `infer mvsnet`: depth 500 everywhere, photometric confidence 0.5."""
    for folder in ("depth_est", "confidence", "cams", "images"):
        (root / folder).mkdir(parents=True)
    for view in range(2):
        extrinsic = np.eye(4)
        extrinsic[0, 3] = 10.0 * view
        write_pfm(root / "depth_est" / f"{view:08d}.pfm", np.full((8, 8), 500.0, np.float32))
        write_pfm(root / "confidence" / f"{view:08d}.pfm", np.full((8, 8), 0.5, np.float32))
        write_cam_file(root / "cams" / f"{view:08d}_cam.txt", extrinsic, np.array([[8.0, 0, 3.5], [0, 8, 3.5],
                                                                                   [0, 0, 1]]), 425, 2.5)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"{view:08d}.png")
    write_pair_file(root / "pair.txt", [(0, [(1, 1.0)]), (1, [(0, 1.0)])])
    return root


def test_fusion_keeping_no_point_exits_1_with_the_count_of_each_filter(tmp_path, capsys):
    scan = _infer_folder(tmp_path / "scan")
    code = main(["fuse", "--scan", str(scan), "--out", str(tmp_path / "cloud.ply"), "--min-views", "1"])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "cloud.ply").exists()
    assert err.startswith("python -m depthlib: error: fused 0 points from 2 views (of 128 reference pixels 128 have "
                          "depth, 0 pass the photometric filter (confidence > 0.8)") and "no PLY written" in err
    assert main(["fuse", "--scan", str(scan), "--out", str(tmp_path / "cloud.ply"), "--min-views", "0",
                 "--photometric-threshold", "0.4"]) == 0  # the same maps, thresholds that keep them
    assert "filters: of 128 reference pixels 128 have depth, 128 pass the photometric" in capsys.readouterr().out
