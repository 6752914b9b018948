"""The GPU path on a real CUDA device: `pytest -m cuda` (skipped without CUDA; `make gpu-check` runs it).

CI has no GPU, so the CPU stand-ins of these bug classes live in tests/test_gpu_path.py.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depthlib.train import TrainConfig, Trainer, native_bf16

sys.path.insert(0, str(Path(__file__).parent))
from test_casmvsnet import ImageMean, raw_set  # noqa: E402,F401 (raw_set: a fixture)
from test_gpu_path import (autocast_agreement, cascade_test_scan, channels_last_losses,  # noqa: E402
                           dtu_like_warp_inputs, sampled_pixels)
from test_mvsnet import dtu_like_items  # noqa: E402
from test_reconstruction import scan_root  # noqa: E402,F401 (a fixture)
from toy_training import make_trainer  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.fixture
def deterministic():
    """cuDNN's deterministic kernels: a resumed run can then equal an uninterrupted one bit for bit."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _weights(trainer):
    return {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("stop_after", [6, 3], ids=["epoch-end", "mid-epoch"])
def test_resume_on_cuda_is_bit_exact(tmp_path, deterministic, stop_after):
    # ToyNet has dropout: the resumed run must restore the CUDA generator too
    straight = make_trainer(tmp_path / "straight", device="cuda")
    straight.fit()
    assert straight.device.type == "cuda"
    first = make_trainer(tmp_path / "split", device="cuda")
    first.fit(stop_after=stop_after)
    resumed = make_trainer(tmp_path / "split", device="cuda", model_seed=123)
    resumed.fit(resume=True)
    assert resumed.step == straight.step == 12
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _densedepth_batch():
    torch.manual_seed(0)
    depth = 1 + 9 * torch.rand(2, 1, 64, 64)
    return {"image": torch.rand(2, 3, 64, 64), "depth": depth, "mask": depth > 0}


def _mvsnet_batch():
    torch.manual_seed(0)  # a forward-facing rig, as in depthlib.bench
    height, width, depths, views = 64, 64, 16, 3
    K = torch.tensor([[width / 4.0, 0, width / 8 - 0.5], [0, width / 4.0, height / 8 - 0.5], [0, 0, 1]])
    proj = torch.eye(4).repeat(1, views, 1, 1)
    for v in range(views):
        proj[:, v, :3, :4] = K @ torch.cat([torch.eye(3), torch.tensor([[0.05 * v], [0.0], [0.0]])], dim=1)
    return {"imgs": torch.rand(1, views, 3, height, width), "proj_matrices": proj,
            "depth_values": torch.linspace(0.5, 1.5, depths)[None],
            "depth": 0.5 + torch.rand(1, 1, height // 4, width // 4),
            "mask": torch.ones(1, 1, height // 4, width // 4, dtype=torch.bool),
            "depth_interval": torch.full((1,), 1.0 / (depths - 1))}


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("model_name", ["densedepth", "mvsnet"])
def test_one_amp_training_step_of_each_model_gives_finite_losses(tmp_path, amp, model_name):
    from torch.utils.data import TensorDataset

    from depthlib.models import MVSNet, DenseDepth
    from depthlib.train import DenseDepthTask, MVSNetTask

    if model_name == "densedepth":
        model, task, batch = DenseDepth("small"), DenseDepthTask(), _densedepth_batch()
    else:
        model, task, batch = MVSNet(), MVSNetTask(), _mvsnet_batch()
    trainer = Trainer(model, TensorDataset(torch.zeros(4)), task, tmp_path,
                      TrainConfig(amp=amp, batch_size=1, progress=False, device="cuda"))
    assert trainer.amp_dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    batch = trainer.to_device(batch)
    for _ in range(5):  # fp16: the GradScaler may skip the first steps while it finds its scale
        losses = trainer.train_step(batch)
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "five AMP steps changed no weight"


def test_auto_amp_picks_bf16_only_where_the_gpu_has_it_natively(tmp_path):
    from torch.utils.data import TensorDataset

    from toy_training import ToyNet, ToyTask

    trainer = Trainer(ToyNet(), TensorDataset(torch.zeros(4)), ToyTask(), tmp_path,
                      TrainConfig(batch_size=1, progress=False, device="cuda"))
    major, _ = torch.cuda.get_device_capability()
    assert native_bf16() == (major >= 8)
    assert trainer.amp_dtype == (torch.bfloat16 if major >= 8 else torch.float16)
    assert trainer.scaler.is_enabled() == (trainer.amp_dtype == torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_warp_under_cuda_autocast_stays_within_a_twentieth_of_a_pixel(dtype):
    feat, src_proj, ref_proj, depth_values = (t.cuda() for t in dtu_like_warp_inputs())
    reference = sampled_pixels(feat, src_proj, ref_proj, depth_values)
    with torch.autocast("cuda", dtype=dtype):
        autocast = sampled_pixels(feat, src_proj, ref_proj, depth_values)
    inside = reference.isfinite() & autocast.isfinite()
    assert inside.float().mean() > 0.5
    assert (autocast[inside] - reference[inside]).abs().max() < 0.05


def test_evaluate_with_a_plain_callable_on_cuda(tmp_path):
    from torch.utils.data import Dataset

    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth

    class Frames(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"image": torch.rand(3, 64, 64, generator=g), "depth": 1 + 4 * torch.rand(1, 64, 64, generator=g)}

    model = DenseDepth("small").cuda()
    plain = evaluate(lambda images: predict_depth(model, images), Frames(), batch_size=2)
    on_cpu = evaluate(lambda images: predict_depth(model.cpu(), images), Frames(), batch_size=2)
    for name, value in plain.items():
        assert abs(value - on_cpu[name]) <= 1e-3 * max(1.0, abs(value)), name  # TF32 on the GPU


def _cli(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "depthlib", *args], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, "DEPTHLIB_CACHE": str(Path(cwd) / "cache")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_fusion_of_cuda_depth_maps_with_cameras_confidences_and_images_on_the_cpu():
    from depthlib.data.scenes import object_scan
    from depthlib.fusion import fuse_depth_maps

    rendered = object_scan(0, n_views=5, height=64, width=80, n_lights=1, shadows=False)
    depths = torch.from_numpy(rendered["depths"])[:, None]
    Ks = torch.from_numpy(rendered["K_depth"]).expand(len(depths), 3, 3)
    extrinsics = torch.from_numpy(rendered["extrinsics"])
    images = torch.from_numpy(rendered["images"][:, 0]).permute(0, 3, 1, 2)
    confidences = torch.rand(depths.shape, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.6
    on_cpu = fuse_depth_maps(depths, confidences, Ks, extrinsics, images, min_views=1)
    on_gpu = fuse_depth_maps(depths.cuda(), confidences, Ks, extrinsics, images, min_views=1)
    assert on_gpu[2]["counts"] == on_cpu[2]["counts"] and on_cpu[2]["counts"]["kept"] > 0
    assert (on_gpu[1] == on_cpu[1]).all() and abs(on_gpu[0] - on_cpu[0]).max() < 1e-4


def test_train_eval_infer_fuse_on_cuda(tmp_path):
    common = ["--profile", "cpu", "--no-progress"]
    out = _cli("train", "densedepth", "--out", "dd", "--epochs", "1", "--n-train", "8", "--n-test", "4",
               "--size", "64x64", "--batch-size", "4", "--encoder", "small", "--val", *common, cwd=tmp_path)
    assert re.search(r"device cuda", out) and "val_delta1" in out
    out = _cli("eval", "densedepth", "--ckpt", "dd/checkpoint.pt", "--profile", "cpu", "--size", "64x64",
               "--n-test", "4", cwd=tmp_path)
    assert "| delta1 |" in out
    _cli("render", "dtu", "--out", "dtu", "--size", "64x64", "--n-scans", "2", "--n-views", "4", "--n-lights", "1",
         "--profile", "cpu", cwd=tmp_path)
    mvs = ["--profile", "cpu", "--n-views", "3", "--n-depths", "8"]
    out = _cli("train", "mvsnet", "--data", "dtu:dtu", "--out", "mvs", "--epochs", "1", "--batch-size", "2",
               "--val", "--no-progress", *mvs, cwd=tmp_path)
    assert "device cuda" in out and "val_refined_less_one" in out
    out = _cli("eval", "mvsnet", "--ckpt", "mvs/checkpoint.pt", "--data", "dtu:dtu", "--baseline", "--profile", "cpu",
               cwd=tmp_path)
    assert "| refined" in out
    out = _cli("infer", "mvsnet", "--ckpt", "mvs/checkpoint.pt", "--data", "dtu:dtu", "--scan", "scan2",
               "--out", "infer", "--profile", "cpu", cwd=tmp_path)
    assert "for 4 views" in out
    out = _cli("fuse", "--scan", "infer", "--out", "cloud.ply", "--min-views", "1", "--photometric-threshold", "0",
               cwd=tmp_path)
    assert re.search(r"fused [1-9]\d* points", out)


def test_train_eval_infer_casmvsnet_on_cuda(tmp_path):
    """The cascade's commands on CUDA (chapter 12's; its exercises train it): training from an MVSNet
    with validation, evaluation beside that MVSNet, and inference of every view of a scan."""
    cpu = ["--profile", "cpu"]
    _cli("render", "dtu", "--out", "dtu", "--size", "64x64", "--n-scans", "2", "--n-views", "4", "--n-lights", "1",
         "--raw-depths", *cpu, cwd=tmp_path)
    torch.manual_seed(0)
    from depthlib.models import MVSNet

    torch.save({"model": MVSNet().state_dict(), "metadata": {"model": "mvsnet", "n_views": 3, "n_depths": 8}},
               tmp_path / "mvsnet.pt")
    stages = ["--planes", "16,8", "--interval-ratios", "4,1", "--scales", "4,1", "--loss-weights", "0.5,2"]
    out = _cli("train", "casmvsnet", "--data", "dtu:dtu", "--out", "cas", "--epochs", "1", "--batch-size", "2",
               "--n-depths", "64", "--init", "mvsnet.pt", "--val", "--no-progress", *stages, *cpu, cwd=tmp_path)
    assert "device cuda" in out and "val_less_one" in out and "train_stage2" in out
    out = _cli("eval", "casmvsnet", "--ckpt", "cas/checkpoint.pt", "--data", "dtu:dtu", "--mvsnet", "mvsnet.pt",
               "--interval-planes", "8", *cpu, cwd=tmp_path)
    assert "| final (full resolution)" in out and "| MVSNet" in out
    out = _cli("infer", "casmvsnet", "--ckpt", "cas/checkpoint.pt", "--data", "dtu:dtu", "--scan", "scan2",
               "--out", "infer", *cpu, cwd=tmp_path)
    assert "for 4 views" in out


def test_mvsnet_trains_in_channels_last_on_cuda(tmp_path, no_tf32):
    """cuDNN's 2D and 3D convolutions in channels_last (the fast path's layout; chapter 11) compute
    MVSNet's training loss as the default layout does, in fp32 without TF32, up to the order of
    the sums (relative 1e-4, as on the CPU)."""
    losses = channels_last_losses(tmp_path, "cuda")
    assert abs(losses[True] - losses[False]) < 1e-4 * abs(losses[False])


def _nccl_worker(rank, world_size, port, out_dir):
    from toy_training import make_trainer as make

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    trainer = make(out_dir, batch_size=2, dropout=False, device="cuda")
    assert trainer.device == torch.device("cuda", rank)  # each rank on its own GPU
    trainer.fit()
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_nccl_processes_match_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    single = make_trainer(tmp_path / "single", batch_size=4, dropout=False, device="cuda")
    single.fit()
    mp.start_processes(_nccl_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, start_method="spawn")
    ddp = torch.load(tmp_path / "ddp" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    for key, value in _weights(single).items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5)  # summation order and TF32


@pytest.fixture
def no_tf32():
    """Strict fp32 on the GPU (profiles.strict_fp32), so fp32 on CUDA can be compared with the CPU."""
    from depthlib.profiles import strict_fp32

    with strict_fp32():
        yield


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_shipped_cascade_on_cuda_forward_amp_step_and_autocast_eval(tmp_path, no_tf32, amp):
    import math

    from torch.utils.data import TensorDataset

    from depthlib.models.casmvsnet import CasMVSNetTask, load_casmvsnet

    batch = cascade_test_scan(tmp_path / "dtu")
    inputs = [batch[key] for key in ("imgs", "proj_matrices", "depth_values")]
    base = float(batch["depth_interval"][0])  # mm: the cam files' 192-plane spacing
    model = load_casmvsnet("casmvsnet-synthetic.pt")
    with torch.no_grad():
        on_cpu = model(*inputs)
        model.cuda()
        on_cuda = model(*[t.cuda() for t in inputs])
    assert on_cuda["depth"].device.type == "cuda" and on_cuda["depth"].shape == (4, 1, 128, 160)
    for cpu_stage, cuda_stage in zip(on_cpu["stages"], on_cuda["stages"]):  # fp32 round-off only
        torch.testing.assert_close(cuda_stage["depth"].cpu(), cpu_stage["depth"], atol=0.02 * base, rtol=0)

    # eval under autocast: the feature nets and 3D U-Nets run in the low precision; the projections,
    # warps and variance volumes stay fp32. The same bounds as the CPU stand-in
    # (test_gpu_path.test_the_shipped_cascade_under_cpu_autocast_agrees_with_fp32, which measured
    # every pixel within one interval and the MAE within 0.1 % in both dtypes).
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    agreement = autocast_agreement(model, batch, "cuda", dtype)
    assert agreement["within_1"] > 0.99, agreement
    assert agreement["mae_mixed"] < 1.01 * agreement["mae_fp32"], agreement

    # one AMP training step through the Trainer (GradScaler with fp16): a finite loss at every stage
    trainer = Trainer(model.train(), TensorDataset(torch.zeros(4)), CasMVSNetTask(model.stages), tmp_path / "run",
                      TrainConfig(amp=amp, batch_size=4, progress=False, device="cuda"))
    assert trainer.amp_dtype == dtype
    losses = trainer.train_step(trainer.to_device(batch))
    assert {"total", "stage1", "stage2", "stage3"} <= set(losses) and all(map(math.isfinite, losses.values())), losses


def _compiled_and_eager_steps(tmp_path, device, mode, steps=4):
    """Losses of ``steps`` training steps and the BN running mean after them, eager and compiled
    in ``mode``, for a small conv net with batch norm (its running statistics are buffers that
    every step updates in place, which CUDA graphs must carry along). In fp32 (``amp="off"``; "auto"
    would be bf16 on this GPU): compiled kernels need not round bf16 intermediates where eager
    does, and the comparison is about compilation, not precision."""
    from torch import nn
    from torch.utils.data import DataLoader

    from toy_training import ToySet, ToyTask

    torch.manual_seed(0)  # ToySet's random flips
    batch = next(iter(DataLoader(ToySet(), batch_size=4)))
    results = {}
    for compile in (False, mode):
        torch.manual_seed(0)
        # no bias before the BN: its gradient is rounding noise, which Adam would scale up to lr
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.Conv2d(8, 1, 3, padding=1))
        trainer = Trainer(net, ToySet(), ToyTask(), tmp_path / str(compile),
                          TrainConfig(batch_size=4, lr=1e-2, compile=compile, amp="off", progress=False,
                                      device=device))
        on_device = trainer.to_device(batch)
        losses = [trainer.train_step(on_device)["total"] for _ in range(steps)]
        results[compile] = losses, trainer.model[1].running_mean.detach().cpu().clone()
    return results[False], results[mode]


@pytest.mark.parametrize("mode", [True, "reduce-overhead"], ids=["default", "reduce-overhead"])
def test_compiled_training_steps_match_eager_on_cuda(tmp_path, no_tf32, mode):
    """``--compile`` and ``--compile reduce-overhead`` (CUDA graphs) train as eager does: the same
    losses step after step and the same BN statistics, up to the order in which fused kernels sum
    (relative 1e-4)."""
    (eager, eager_mean), (compiled, compiled_mean) = _compiled_and_eager_steps(tmp_path, "cuda", mode)
    assert eager[-1] < eager[0]
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=0)
    torch.testing.assert_close(compiled_mean, eager_mean, rtol=1e-4, atol=1e-6)


def test_collected_outputs_of_a_model_on_cuda_come_back_to_the_cpu():
    from depthlib.models.mvsnet import MVSNet, collect_mvsnet_outputs
    from depthlib.profiles import strict_fp32

    torch.manual_seed(0)
    items = dtu_like_items(3, height=32, width=32, depths=8)
    model = MVSNet().eval()
    on_cpu = collect_mvsnet_outputs(model, items, {"initial": "depth"}, ("depth",), batch_size=2)
    with strict_fp32():
        on_gpu = collect_mvsnet_outputs(model.cuda(), items, {"initial": "depth"}, ("depth",), batch_size=2)
    assert all(value.device.type == "cpu" for value in on_gpu.values())
    torch.testing.assert_close(on_gpu["initial"], on_cpu["initial"], atol=1e-2, rtol=1e-4)


def test_collected_outputs_of_models_on_cuda_come_back_to_the_cpu(raw_set):
    from depthlib.data import DTUMVSFull, write_raw_depths
    from depthlib.models.casmvsnet import collect_cascade_outputs

    write_raw_depths(raw_set, seed=3)
    dataset = DTUMVSFull(raw_set, "test", n_views=3)
    results = collect_cascade_outputs(ImageMean(stages=True).cuda(), dataset, ImageMean().cuda(),
                                      hypotheses_of=[dataset[0]["scan"]])
    tensors = [value for result in results for value in result.values() if isinstance(value, torch.Tensor)]
    tensors += [band for result in results for band in (result["bands"] or []) + result["stages"]]
    assert tensors and all(tensor.device.type == "cpu" for tensor in tensors)
    torch.testing.assert_close(results[0]["cascade"], dataset[0]["imgs"].mean().expand(1, 64, 64))


def figure_arrays(device):
    """Draw every chapter figure helper that takes tensors (chapters 06-12) from inputs on ``device``
    (the depth interval of the refinement panels stays a CPU tensor, as chapter 09 passes it) and
    return {helper: [the arrays of its images and the y data of its lines]}, all NumPy."""
    import matplotlib.pyplot as plt
    import numpy as np

    from depthlib import viz
    from depthlib.pointclouds import draw_fused_cloud

    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(device)

    n, planes, h, w = 2, 6, 4, 5
    image, images = rand(3, 4 * h, 4 * w), rand(n, 3, 4 * h, 4 * w)
    gt = 500 + 100 * rand(n, 1, h, w)
    depth, refined = gt + 10 * rand(n, 1, h, w), gt + 5 * rand(n, 1, h, w)
    valid, confidence = rand(n, 1, h, w) > 0.2, rand(n, 1, h, w)
    depth_values = torch.linspace(450.0, 650.0, planes, device=device).expand(n, planes)
    cost = rand(n, planes, h, w)
    figures = {
        "show_depth_panels": viz.show_depth_panels(image, {"estimate": depth[0, 0]}, gt=gt[0, 0], unit="mm"),
        "show_cost_curves": viz.show_cost_curves(image, cost[0], depth_values[0], gt[0, 0], [[1, 2]],
                                                 torch.arange(-2, 3, device=device), rand(5)),
        "show_depth_distributions": viz.show_depth_distributions(depth_values, cost, cost.softmax(1), gt, depth,
                                                                 confidence, {"a pixel": (1, 2, 3)}),
        "show_confidence_panels": viz.show_confidence_panels(image, depth[0], gt[0], valid[0], confidence[0],
                                                             torch.tensor(2.5, device=device)),
        "show_refinement_panels": viz.show_refinement_panels(images, gt, depth, refined, valid,
                                                             torch.tensor([10.0, 20.0]), samples=[0, 1]),
        "show_hypothesis_bands": viz.show_hypothesis_bands([depth_values[0, :, None, None].expand(planes, h, w)],
                                                           gt[0], depth[0], row=1),
    }
    fig = plt.figure()
    draw_fused_cloud(fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d"), image, valid[0, 0],
                     100 * rand(50, 3), rand(50, 3), metrics={"accuracy": 1.0, "completeness": 2.0})
    figures["draw_fused_cloud"] = fig
    arrays = {name: [np.ma.filled(np.asarray(im.get_array(), dtype=float), np.nan)
                     for ax in fig.axes for im in ax.images]
              + [np.asarray(line.get_ydata(), dtype=float) for ax in fig.axes for line in ax.lines]
              for name, fig in figures.items()}
    plt.close("all")
    return arrays


def test_figure_helpers_draw_tensors_on_cuda_as_they_draw_them_on_the_cpu():
    """The chapters pass the profile's device tensors straight to the figure helpers (chapters 06 and
    07 CUDA depth maps); each helper draws them as it draws the same tensors on the CPU."""
    import numpy as np

    on_cpu, on_cuda = figure_arrays("cpu"), figure_arrays("cuda")
    assert on_cuda.keys() == on_cpu.keys()
    for name in on_cpu:
        assert len(on_cuda[name]) == len(on_cpu[name]) > 0, name
        for a, b in zip(on_cuda[name], on_cpu[name]):
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)


def test_interactive_point_clouds_take_tensors_on_cuda():
    """show_point_clouds takes points and colours as tensors on any device (chapters 00 and 10 call
    it): from CUDA tensors the 3D view and its static image come out as from the same CPU tensors."""
    import numpy as np

    from depthlib.viz import show_point_clouds

    generator = torch.Generator().manual_seed(0)
    points, colors = 100 * torch.rand(500, 3, generator=generator), torch.rand(500, 3, generator=generator)
    points[7] = float("nan")  # non-finite points are dropped on either device
    on_cpu = show_point_clouds({"fused": (points, colors)}, max_points=300, cdn=False)
    on_cuda = show_point_clouds({"fused": (points.cuda(), colors.cuda())}, max_points=300, cdn=False)
    assert on_cuda.summary == on_cpu.summary
    assert len(on_cuda.figure.data) == len(on_cpu.figure.data) == 1
    for a, b in zip(on_cuda.figure.data, on_cpu.figure.data):
        for axis in "xyz":
            np.testing.assert_array_equal(np.asarray(getattr(a, axis)), np.asarray(getattr(b, axis)))
        assert a.marker.color == b.marker.color
    assert on_cuda.png == on_cpu.png


def evaluations(device, raw_root, scan_root):
    """What chapters 08-12 evaluate with a model on the profile's device, for models with random
    weights (seed 0) on ``device``: ``evaluate_mvsnet`` with the edge band, ``evaluate_casmvsnet``
    beside an MVSNet, and ``score_scan`` fusing every pixel (no filter). {name: metrics dict}."""
    from depthlib.data import DTUMVSFull, write_raw_depths
    from depthlib.metrics import evaluate_mvsnet
    from depthlib.models import CasMVSNet, MVSNet
    from depthlib.models.casmvsnet import evaluate_casmvsnet
    from depthlib.profiles import strict_fp32
    from depthlib.reconstruction import score_scan

    torch.manual_seed(0)
    mvsnet, cascade = MVSNet(refine=True).eval().to(device), CasMVSNet().eval().to(device)
    write_raw_depths(raw_root, seed=3)
    with strict_fp32():
        return {
            "evaluate_mvsnet": evaluate_mvsnet(mvsnet, dtu_like_items(3, height=64, width=64, seed=1),
                                               batch_size=2, edge_band=True),
            "evaluate_casmvsnet": evaluate_casmvsnet(cascade, DTUMVSFull(raw_root, "test", n_views=3),
                                                     mvsnet=mvsnet, interval_planes=32),
            "score_scan": score_scan(scan_root, "scan9", model=mvsnet, n_depths=8, photometric_threshold=0.0,
                                     min_views=0),
        }


def test_evaluations_of_a_model_on_cuda_agree_with_the_cpu(raw_set, scan_root):
    """The evaluations take the model's device and bring their sums back once: on CUDA they give the
    CPU's numbers, to round-off (a pixel's error sitting on a less-one threshold may flip: one
    pixel of the 768 or more pooled is 1.3e-3)."""
    on_cpu, on_cuda = (evaluations(device, raw_set, scan_root) for device in ("cpu", "cuda"))
    for name, expected in on_cpu.items():
        assert on_cuda[name].keys() == expected.keys(), name
        for key, value in expected.items():
            assert on_cuda[name][key] == pytest.approx(value, rel=1e-3, abs=2e-3), (name, key)


def test_predict_depth_at_another_size_on_cuda_matches_the_cpu(no_tf32):
    """``predict_depth(size=...)`` (chapter 06's and ``infer densedepth``'s path) on CUDA: the resize
    (bilinear, antialiased) and the resize back run on the images' device, and the depth comes back
    on it at the images' size, equal to the CPU's up to fp32 round-off."""
    from depthlib.models.densedepth import DenseDepth, predict_depth

    torch.manual_seed(0)
    model = DenseDepth("small").eval()
    with torch.no_grad():
        model.decoder.conv3.bias.fill_(5.0)  # depths around 2 m, inside [0.1, 10], as test_densedepth
    images = torch.rand(2, 3, 96, 128)
    on_cpu = predict_depth(model, images, size=(64, 96), flip_tta=True)
    on_cuda = predict_depth(model.cuda(), images.cuda(), size=(64, 96), flip_tta=True)
    assert on_cuda.device.type == "cuda" and tuple(on_cuda.shape) == (2, 1, 96, 128)
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_frozen_backbone_trains_the_refinement_alone_on_cuda_under_amp(tmp_path, amp):
    """Chapter 09's refinement-only training (``--freeze-backbone``) through the Trainer on CUDA in
    AMP: finite losses, the backbone's weights and BN statistics unchanged after five steps, the
    refinement's changed (fp16: the GradScaler may skip the first steps)."""
    from torch.utils.data import TensorDataset

    from depthlib.models import MVSNet
    from depthlib.train import MVSNetTask

    torch.manual_seed(0)
    model = MVSNet().freeze_backbone()
    trainer = Trainer(model, TensorDataset(torch.zeros(4)), MVSNetTask(refine_weight=1.0), tmp_path,
                      TrainConfig(amp=amp, batch_size=1, progress=False, device="cuda"))
    before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    batch = trainer.to_device(_mvsnet_batch())
    trainer.model.train()
    for _ in range(5):
        losses = trainer.train_step(batch)
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    after = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name, value in before.items():
        assert torch.equal(value, after[name]) != name.startswith("refine_network."), name
