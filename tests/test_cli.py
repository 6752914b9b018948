"""Command line and benchmark scripts: they run, write the real layouts, and reject bad arguments."""
import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlib.__main__ import main
from depthlib.bench import bench_render, format_table
from depthlib.data import DTUMVS, NYUDepth


def test_render_nyu_writes_a_readable_zip(tmp_path, capsys):
    assert main(["render", "nyu", "--out", str(tmp_path), "--size", "32x40", "--n-train", "3", "--n-test", "2",
                 "--zip", "--profile", "cpu"]) == 0
    assert "wrote nyu set (32x40)" in capsys.readouterr().out
    assert len(NYUDepth(tmp_path / "nyu_data.zip", "train")) == 3 and len(NYUDepth(tmp_path, "test")) == 2


def test_render_dtu_writes_a_readable_set(tmp_path):
    assert main(["render", "dtu", "--out", str(tmp_path), "--size", "64x80", "--n-scans", "2", "--n-views", "4",
                 "--n-lights", "1", "--profile", "cpu"]) == 0
    dataset = DTUMVS(tmp_path, "train", n_views=3, n_depths=8)
    assert dataset[0]["imgs"].shape == (3, 3, 64, 80)


def test_render_dtu_first_scan_numbers_the_scans_from_it(tmp_path, capsys):
    assert main(["render", "dtu", "--out", str(tmp_path), "--size", "32x40", "--n-scans", "2", "--n-views", "3",
                 "--n-lights", "1", "--first-scan", "11"]) == 0
    scans = sorted(path.name for path in (tmp_path / "Depths").iterdir())
    assert scans == ["scan11_train", "scan12_train"]
    with pytest.raises(SystemExit):
        main(["render", "dtu", "--out", str(tmp_path / "bad"), "--n-scans", "1", "--first-scan", "0"])
    error = capsys.readouterr().err
    assert "--first-scan" in error and "'0'" in error and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_render_dtu_with_the_profiles_scans_splits_them_as_the_profiles_cached_set(tmp_path, monkeypatch, profile):
    """``render dtu --profile P`` and ``dtu_synthetic(P)`` (the chapters' set) hold the same test scans:
    the gpu profile's 24 + 4 scans once rendered 5 test scans here (a fifth of 28) and 4 there."""
    import depthlib.data
    import depthlib.data.dtu
    from depthlib.data import dtu_synthetic

    written = []

    def record(root, n_scans, *args, splits=None, scan_ids=None, **kwargs):
        written.append(splits if splits is not None else depthlib.data.dtu.dtu_splits(scan_ids or range(1, n_scans + 1)))
        return root

    monkeypatch.setattr(depthlib.data, "write_dtu_like", record)
    monkeypatch.setattr(depthlib.data.dtu, "write_dtu_like", record)
    # the tests see no GPU (conftest.py), so asking for the gpu profile warns: expected here
    asked_for_gpu = (pytest.warns(UserWarning, match="CUDA is not available") if profile == "gpu"
                     else contextlib.nullcontext())
    with asked_for_gpu:
        assert main(["render", "dtu", "--out", str(tmp_path / "cli"), "--profile", profile]) == 0
    dtu_synthetic(profile, cache_dir=tmp_path / "cache")
    cli, cached = written
    assert cli == cached
    assert len(cached["test"]) == {"cpu": 2, "gpu": 4}[profile] and cached["val"] == cached["test"]


def test_dtu_splits_take_the_last_scans_for_test_and_refuse_a_test_set_of_all_of_them():
    from depthlib.data.dtu import dtu_splits

    assert dtu_splits(range(1, 11)) == {"train": list(range(1, 9)), "val": [9, 10], "test": [9, 10]}
    assert dtu_splits([5, 6, 7], 1)["test"] == [7] and dtu_splits([3])["train"] == [3] == dtu_splits([3])["test"]
    with pytest.raises(ValueError, match="3 test scans of 3"):
        dtu_splits([1, 2, 3], 3)


def test_bad_size_is_rejected_with_the_expected_form(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["render", "nyu", "--out", str(tmp_path), "--size", "64by80"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_module_entry_point_prints_help():
    result = subprocess.run([sys.executable, "-m", "depthlib", "--help"], capture_output=True, text=True, check=True)
    assert "render" in result.stdout


def test_render_benchmark_produces_a_table_row_per_setting():
    rows = bench_render(frames=2, sizes=((24, 32),), workers=(1, 2))
    table = format_table(rows)
    assert len(rows) == 3 and table.count("\n") == 4  # header, rule, 3 rows
    assert all(float(row["frames/s"]) > 0 for row in rows)


def _table_values(out: str) -> dict:
    """The first Markdown table printed: its header names -> the first row's numbers."""
    rows = [line for line in out.splitlines() if line.startswith("|")]
    names, values = ([cell.strip() for cell in row.strip("|").split("|")] for row in (rows[0], rows[2]))
    return {name: float(value) for name, value in zip(names, values)}


def test_eval_densedepth_runs_the_network_at_its_training_size(tmp_path, capsys):
    from depthlib.checkpoint_io import save_atomic
    from depthlib.data import write_nyu_like
    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth

    torch.manual_seed(0)
    model = DenseDepth("small").eval()
    metadata = {"model": "densedepth", "encoder": "small", "size": [64, 64], "max_depth": 10.0}
    save_atomic({"model": model.state_dict(), "metadata": metadata}, tmp_path / "w.pt")
    data = write_nyu_like(tmp_path / "nyu", n_train=1, n_test=3, height=96, width=128, seed=0)
    test_set = NYUDepth(data, "test", size=(96, 128))
    common = ["eval", "densedepth", "--ckpt", str(tmp_path / "w.pt"), "--data", f"nyu:{data}", "--profile", "cpu",
              "--size", "96x128", "--no-flip-tta"]
    for net_size, extra in (((64, 64), []), ((96, 128), ["--net-size", "96x128"])):
        assert main([*common, *extra]) == 0
        out = capsys.readouterr().out
        network = f" (network at {net_size[0]}x{net_size[1]})" if net_size == (64, 64) else ","
        assert "on 3 test images, 96x128" + network in out
        expected = evaluate(lambda images: predict_depth(model, images, size=net_size), test_set,
                            flip_tta=False, crop=None)
        got = _table_values(out)
        for name in ("delta1", "abs_rel", "rmse"):  # printed to 4 decimals
            assert got[name] == pytest.approx(expected[name], abs=1e-4), (net_size, name)
    with pytest.raises(ValueError, match="--net-size is for eval densedepth; eval mvsnet runs at --size"):
        main(["eval", "mvsnet", "--ckpt", str(tmp_path / "w.pt"), "--net-size", "64x64"])


def test_train_eval_export_densedepth_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    common = ["--profile", "cpu", "--size", "64x64", "--n-test", "4"]
    assert main(["train", "densedepth", "--out", str(run), "--epochs", "1", "--n-train", "8", "--batch-size", "4",
                 "--encoder", "small", "--val", "--warmup-steps", "3", "--no-progress", *common]) == 0
    assert "1 epochs of 2 steps" in capsys.readouterr().out
    assert main(["export", "--ckpt", str(run / "checkpoint.pt"), "--out", str(tmp_path / "w.pt")]) == 0
    assert main(["eval", "densedepth", "--ckpt", str(tmp_path / "w.pt"), *common]) == 0
    out = capsys.readouterr().out
    assert "DenseDepth (small) on 4 test images, 64x64" in out and "| delta1 |" in out
    from depthlib.models import load_densedepth
    from depthlib.train import load_weights
    model = load_densedepth(tmp_path / "w.pt")
    assert model.metadata["encoder"] == "small" and not model.training
    trained = load_weights(run / "checkpoint.pt")[0]
    for key, value in model.state_dict().items():  # fp16 export, restored to fp32
        torch.testing.assert_close(value, trained[key].to(value.dtype), rtol=1e-3, atol=1e-3)
    # resuming a finished run trains no further step
    assert main(["train", "densedepth", "--out", str(run), "--epochs", "1", "--n-train", "8", "--batch-size", "4",
                 "--encoder", "small", "--resume", "--no-progress", *common]) == 0
    from depthlib.train import read_log
    assert [r["step"] for r in read_log(run) if "train_total" in r] == [2]
    # the options left out on --resume keep the run's settings: the warm-up too
    assert torch.load(run / "checkpoint.pt", weights_only=True)["config"]["warmup_steps"] == 3
    # fine-tuning starts from the given weights (same encoder) and records where they came from
    with pytest.raises(ValueError, match="holds a 'small' encoder"):
        main(["train", "densedepth", "--out", str(tmp_path / "bad"), "--epochs", "1", "--n-train", "8",
              "--encoder", "densenet121", "--init", str(tmp_path / "w.pt"), "--no-progress", *common])
    fine = tmp_path / "fine"
    assert main(["train", "densedepth", "--out", str(fine), "--epochs", "1", "--n-train", "8", "--batch-size", "4",
                 "--encoder", "small", "--init", str(tmp_path / "w.pt"), "--lr", "0", "--no-progress", *common]) == 0
    tuned = load_densedepth(fine / "checkpoint.pt")
    assert tuned.metadata["init"] == "w.pt"
    for key, value in tuned.state_dict().items():  # lr 0: the weights are the initial ones
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0)


def test_shipped_file_prefers_the_repository_then_downloads_once(tmp_path, monkeypatch):
    import yaml

    from depthlib.data import download

    config = yaml.safe_load((Path(__file__).parents[1] / "_config.yml").read_text(encoding="utf-8"))
    assert download.REPOSITORY_URL == config["repository"]["url"]  # the url is defined once
    monkeypatch.chdir(tmp_path)  # no README.md here: it must come from the repository's data/
    assert download.shipped_file("README.md").samefile(Path(__file__).parents[1] / "data" / "README.md")
    fetched = []

    def fake_download(url, dest, checksum=True):
        fetched.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(b"weights")
        return dest

    monkeypatch.setattr(download, "download_file", fake_download)
    path = download.shipped_file("not-in-data.pt", cache_dir=tmp_path)
    assert path.read_bytes() == b"weights" and fetched == [f"{download.REPOSITORY_URL}/raw/main/data/not-in-data.pt"]
    assert download.shipped_file("not-in-data.pt", cache_dir=tmp_path) == path and len(fetched) == 1


def test_train_eval_infer_mvsnet_end_to_end(tmp_path, monkeypatch, capsys):
    from depthlib.data import read_cam_file, read_pair_file, read_pfm
    from depthlib.models import load_mvsnet

    main(["render", "dtu", "--out", str(tmp_path / "dtu"), "--size", "64x64", "--n-scans", "2", "--n-views", "4",
          "--n-lights", "1", "--profile", "cpu"])
    data, run = f"dtu:{tmp_path / 'dtu'}", tmp_path / "run"
    common = ["--profile", "cpu", "--n-views", "3", "--n-depths", "8"]
    assert main(["train", "mvsnet", "--data", data, "--out", str(run), "--epochs", "1", "--batch-size", "2",
                 "--lr", "1e-3", "--val", "--no-progress", *common]) == 0
    out = capsys.readouterr().out
    assert "MVSNet on 4 training samples of 3 views at 64x64, D=8, 1 epochs of 2 steps" in out
    assert "val_refined_less_one" in out
    model = load_mvsnet(run / "checkpoint.pt")
    assert model.metadata["n_depths"] == 8 and model.refine and not model.training
    assert model.metadata["data"] == "dtu:dtu"  # the folder's name, not a local path
    assert main(["eval", "mvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", data, "--baseline",
                 "--profile", "cpu"]) == 0  # views and planes come from the checkpoint's metadata
    table = capsys.readouterr().out
    assert "D=8" in table and "| refined" in table and "| plane sweep (ZNCC)" in table
    # fine-tuning starts from the given weights and records where they came from
    assert main(["train", "mvsnet", "--data", data, "--out", str(tmp_path / "fine"), "--epochs", "1",
                 "--batch-size", "2", "--init", str(run / "checkpoint.pt"), "--no-progress", *common]) == 0
    assert load_mvsnet(tmp_path / "fine" / "checkpoint.pt").metadata["init"] == "checkpoint.pt"
    # the refinement alone on the frozen backbone, on its own loss; eval splits off the edge band
    assert main(["train", "mvsnet", "--data", data, "--out", str(tmp_path / "refine"), "--epochs", "1",
                 "--batch-size", "2", "--init", str(run / "checkpoint.pt"), "--freeze-backbone",
                 "--refine-weight", "1", "--no-progress", *common]) == 0
    initial, refined = load_mvsnet(run / "checkpoint.pt").state_dict(), load_mvsnet(tmp_path / "refine" / "checkpoint.pt")
    assert refined.metadata["frozen_backbone"] and refined.metadata["refine_weight"] == 1.0
    for name, value in refined.state_dict().items():
        assert torch.equal(value, initial[name]) != name.startswith("refine_network."), name
    capsys.readouterr()
    assert main(["eval", "mvsnet", "--ckpt", str(tmp_path / "refine" / "checkpoint.pt"), "--data", data,
                 "--edge-band", "--profile", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "| refined edge band (" in table and "| initial elsewhere" in table
    # --size sets the size the synthetic set is rendered at (it was once ignored: the profile's size ran)
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "mvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", "synthetic", "--size", "64x96",
                 "--n-scans", "2", "--profile", "cpu"]) == 0
    assert "views of 64x96, D=8" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--size 64x96 with --data dtu:.*their own size"):
        main(["eval", "mvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", data, "--size", "64x96"])
    with pytest.raises(SystemExit, match="needs --init"):
        main(["train", "mvsnet", "--data", data, "--out", str(tmp_path / "bad"), "--freeze-backbone", *common])
    infer = tmp_path / "infer"
    assert main(["infer", "mvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", data, "--scan", "scan2",
                 "--out", str(infer), "--profile", "cpu"]) == 0
    assert "for 4 views" in capsys.readouterr().out
    for view in range(4):
        depth, _ = read_pfm(infer / "depth_est" / f"{view:08d}.pfm")
        confidence, _ = read_pfm(infer / "confidence" / f"{view:08d}.pfm")
        cam = read_cam_file(infer / "cams" / f"{view:08d}_cam.txt")
        assert depth.shape == confidence.shape == (16, 16) and ((confidence >= 0) & (confidence <= 1)).all()
        assert cam["depth_num"] == 8 and cam["depth_min"] <= depth.min() and depth.max() <= cam["depth_max"] + 1e-3
        assert (infer / "images" / f"{view:08d}.png").is_file()
    assert len(read_pair_file(infer / "pair.txt")) == 4


def test_infer_reads_mvsnets_test_layout_like_the_training_layout(tmp_path):
    from depthlib.data import read_pfm, write_mvs_scan
    from depthlib.models import MVSNet
    from depthlib.train import export_weights

    main(["render", "dtu", "--out", str(tmp_path / "dtu"), "--size", "64x64", "--n-scans", "1", "--n-views", "3",
          "--n-lights", "1", "--profile", "cpu"])
    torch.manual_seed(0)
    torch.save({"model": MVSNet().state_dict(), "metadata": {"model": "mvsnet", "n_views": 3, "n_depths": 8}},
               tmp_path / "ckpt.pt")
    export_weights(tmp_path / "ckpt.pt", tmp_path / "w.pt", half=False)
    scan_dir = write_mvs_scan(tmp_path / "dtu", "scan1", tmp_path / "scan1")
    assert sorted(p.name for p in scan_dir.iterdir()) == ["cams", "images", "pair.txt"]
    common = ["--ckpt", str(tmp_path / "w.pt"), "--profile", "cpu"]
    main(["infer", "mvsnet", *common, "--scan", str(scan_dir), "--out", str(tmp_path / "a")])
    main(["infer", "mvsnet", *common, "--data", f"dtu:{tmp_path / 'dtu'}", "--scan", "scan1",
          "--out", str(tmp_path / "b")])
    for folder in ("depth_est", "confidence"):
        a, _ = read_pfm(tmp_path / "a" / folder / "00000001.pfm")
        b, _ = read_pfm(tmp_path / "b" / folder / "00000001.pfm")
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)  # same cameras, images and planes


def test_one_benchmark_table_covers_both_models_fp32_and_fast_path(monkeypatch):
    import torch

    import depthlib.bench_cascade
    from depthlib.bench import bench_models, format_table

    # The cascade's rows are measured, each model in its own process, by test_casmvsnet's benchmark
    # test; here a stand-in records what the table asks of it, and its rows must end the table.
    columns = ["model", "input", "mode", "step (s)", "samples/s", "speed-up", "peak MiB"]
    calls, cascade = [], [dict.fromkeys(columns, "-") | {"model": "CasMVSNet 48/32/8", "mode": "infer fp32"}]
    monkeypatch.setattr(depthlib.bench_cascade, "bench_casmvsnet", lambda **kw: calls.append(kw) or cascade)
    rows = bench_models(steps=1, encoders=["small"], casmvsnet_size=(64, 96), casmvsnet_train_size=(48, 64))
    assert calls == [dict(steps=1, size=(64, 96), train_size=(48, 64), columns=columns)]
    assert rows[-1:] == cascade
    rows = rows[:-1]
    if torch.cuda.is_available():
        expected = [("DenseDepth-small", "train fp32 eager"), ("DenseDepth-small", "train AMP + channels_last"),
                    ("MVSNet", "train fp32"), ("MVSNet", "train AMP"), ("MVSNet", "infer fp32"), ("MVSNet", "infer AMP")]
    else:  # AMP is off on the CPU: channels_last is DenseDepth's whole fast path, MVSNet has fp32 rows only
        expected = [("DenseDepth-small", "train fp32 eager"), ("DenseDepth-small", "train channels_last"),
                    ("MVSNet", "train fp32"), ("MVSNet", "infer fp32")]
    assert [(r["model"], r["mode"]) for r in rows] == expected
    for row in rows:
        assert list(row) == columns
        assert float(row["step (s)"]) > 0 and float(row["samples/s"]) > 0 and float(row["peak MiB"]) > 0
    assert rows[0]["speed-up"] == "1.00x" and rows[2]["speed-up"] == "1.00x"  # each model's fp32 is the base
    assert len(format_table(rows + cascade).splitlines()) == 3 + len(rows)


def test_variants_benchmark_adds_compiled_rows_in_the_mode_asked(monkeypatch):
    """``bench variants --compile reduce-overhead``: DenseDepth's fast path compiled, and MVSNet
    compiled in fp32 and in AMP, each row naming the mode and its process asked for it."""
    import depthlib.bench as bench

    asked = []
    monkeypatch.setattr(bench, "_one", lambda kind, settings: asked.append((kind, settings)) or
                        {"seconds": 0.5, "images/s": 2.0, "samples/s": 2.0, "peak MiB": 1.0})
    rows = bench.bench_variants(compile="reduce-overhead", steps=1, groups=("densedepth", "mvsnet-train"))
    compiled = [(row["model"], row["mode"]) for row in rows if "compile" in row["mode"]]
    assert [mode for _, mode in compiled] == ["train AMP + channels_last + compile (reduce-overhead)",
                                              "train fp32 + compile (reduce-overhead)",
                                              "train AMP + compile (reduce-overhead)"]
    settings = [s for _, s in asked if s.get("compile")]
    assert [s["compile"] for s in settings] == ["reduce-overhead"] * 3
    assert settings[2]["amp"] and not settings[1].get("amp")
    assert len(asked) == 5 + 1 + 5 + 2  # DenseDepth's five switches, then MVSNet's, then the compiled ones
    assert not any("compile" in row["mode"] for row in bench.bench_variants(steps=1, groups=("mvsnet-train",)))
