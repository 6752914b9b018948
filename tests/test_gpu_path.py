"""CPU stand-ins for the GPU path's bug classes (CI has no GPU; tests/test_cuda.py runs the real ones).

Autocast precision of the warp and of the camera geometry, the AMP dtype a pre-Ampere GPU gets, checkpoints whose tensors were
saved on another device, the schedule under GradScaler's skipped steps, one GPU per DDP process,
validation on every rank, and tensors made on the CPU inside computations that run on the GPU
(PyTorch's 'meta' device stands in for CUDA).
"""
import contextlib
import os
import socket
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import depthlib.train as train_module
from depthlib.geometry import homography_warp, projection_matrix
from depthlib.models.mvsnet import variance_cost_volume
from depthlib.train import TrainConfig, Trainer, native_bf16

sys.path.insert(0, str(Path(__file__).parent))
from toy_training import ToyNet, ToySet, ToyTask, make_trainer  # noqa: E402


def _rotation_y(degrees):
    a = torch.tensor(degrees * torch.pi / 180, dtype=torch.float64)
    return torch.tensor([[torch.cos(a), 0, torch.sin(a)], [0, 1, 0], [-torch.sin(a), 0, torch.cos(a)]],
                        dtype=torch.float64)


def dtu_like_warp_inputs(height=64, width=80, depths=48):
    """A DTU-scale pair at MVSNet's feature resolution: millimetres, planes 425-900 mm, the source
    camera 120 mm to the side and turned 10 degrees. Returns (feat, src_proj, ref_proj, depth_values)
    with feat (1, 3, H, W) = [u, v, 1] of each pixel, so a warp of it samples its own coordinates."""
    K = torch.tensor([[90.0, 0, (width - 1) / 2], [0, 90.0, (height - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    ref_ext, src_ext = torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    src_ext[:3, :3] = _rotation_y(-10)
    src_ext[:3, 3] = torch.tensor([-120.0, 5.0, 20.0])
    ref_proj, src_proj = (projection_matrix(K, e)[None].float() for e in (ref_ext, src_ext))
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    feat = torch.stack([u, v, torch.ones_like(u)])[None]
    return feat, src_proj, ref_proj, torch.linspace(425.0, 900.0, depths)[None]


def sampled_pixels(feat, src_proj, ref_proj, depth_values):
    """The source pixel (u, v) each warped sample was read at, (1, 2, D, H, W) in float32, NaN where
    the bilinear footprint leaves the image (bilinear sampling of a linear ramp is exact inside)."""
    warped = homography_warp(feat, src_proj, ref_proj, depth_values).float()
    inside = (warped[:, 2:3] > 1 - 1e-4).expand(-1, 2, -1, -1, -1)
    return torch.where(inside, warped[:, :2], torch.full_like(warped[:, :2], float("nan")))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_warp_under_cpu_autocast_matches_fp32_at_dtu_scales(dtype):
    inputs = dtu_like_warp_inputs()
    reference = sampled_pixels(*inputs)
    try:
        with torch.autocast("cpu", dtype=dtype):
            autocast = sampled_pixels(*inputs)
    except RuntimeError as error:  # an older PyTorch without fp16 CPU autocast
        pytest.skip(f"CPU autocast in {dtype}: {error}")
    inside = reference.isfinite()
    assert inside.float().mean() > 0.5  # most samples land inside the source image
    assert torch.equal(inside, autocast.isfinite())
    assert (autocast[inside] - reference[inside]).abs().max() < 0.05  # pixels


def dtu_camera_pair():
    """K, world->camera extrinsics and projections of two cameras at real DTU's scale: K at the full
    1600x1200 image (fx 2892 px), translations of hundreds of millimetres, so K @ [R|t] holds entries
    above 10^6 (fp16 ends at 65504) and bf16 would round them to multiples of thousands."""
    K = torch.tensor([[2892.0, 0, 823.2], [0, 2883.2, 619.1], [0, 0, 1]], dtype=torch.float64)
    ref_ext, src_ext = torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    ref_ext[:3, 3] = torch.tensor([-191.0, -118.7, 559.5])
    src_ext[:3, :3] = _rotation_y(-10)
    src_ext[:3, 3] = torch.tensor([-311.0, -113.7, 579.5])
    K, exts = K.float()[None], torch.stack([ref_ext, src_ext]).float()
    return K, exts, projection_matrix(K.expand(2, -1, -1), exts)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_camera_geometry_is_computed_in_full_precision_under_autocast(dtype):
    """Under autocast a matrix product runs in the low precision whatever its inputs: the
    projections (cascade stages scale them inside the network's forward), back-projection and
    rigid transforms must not. Each function's result under CPU autocast equals its float32 result."""
    from depthlib.geometry import backproject, camera_to_world, project, scale_projection, world_to_camera

    K, exts, proj = dtu_camera_pair()
    assert proj.abs().max() > 65504  # the fp16 overflow is really there
    depth = torch.linspace(425.0, 935.0, 6 * 8).reshape(1, 1, 6, 8).repeat(2, 1, 1, 1)
    points = torch.rand(2, 3, 50) * 400 + torch.tensor([[-200.0], [-200.0], [500.0]])
    calls = {
        "projection_matrix": lambda: projection_matrix(K.expand(2, -1, -1), exts),
        "scale_projection": lambda: scale_projection(proj, 0.25),
        "backproject": lambda: backproject(depth, K.expand(2, -1, -1)),
        "project": lambda: project(points, K.expand(2, -1, -1)),
        "world_to_camera": lambda: world_to_camera(points, exts),
        "camera_to_world": lambda: camera_to_world(points, exts),
    }
    for name, call in calls.items():
        expected = call()
        try:
            with torch.autocast("cpu", dtype=dtype):
                got = call()
        except RuntimeError as error:  # an older PyTorch without fp16 CPU autocast
            pytest.skip(f"CPU autocast in {dtype}: {error}")
        for e, g in zip(*(x if isinstance(x, tuple) else (x,) for x in (expected, got))):
            assert g.dtype == e.dtype == torch.float32, name
            assert torch.equal(g, e), (name, (g.double() - e.double()).abs().max())


def test_scale_projection_is_exact_when_float32_products_run_in_tf32(monkeypatch):
    """On an Ampere-or-newer GPU with ``torch.set_float32_matmul_precision("high")`` a float32 matrix
    product reads its inputs as TF32 (10 mantissa bits). The cascade scales its projections inside
    its forward, so scale_projection must not be such a product. Stand-in: products that round their
    inputs to TF32 as the tensor cores do."""
    from depthlib.geometry import scale_projection

    _, _, proj = dtu_camera_pair()
    expected = scale_projection(proj, 0.25)

    def tf32(x):
        mantissa, exponent = torch.frexp(x)
        return torch.ldexp(torch.round(mantissa * 2**11) / 2**11, exponent)

    def tf32_matmul(a, b):
        return torch.matmul(tf32(a), tf32(b))

    monkeypatch.setattr(torch.Tensor, "__matmul__", tf32_matmul)
    assert not torch.equal(proj @ torch.eye(4), proj)  # the stand-in does round DTU's entries
    assert torch.equal(scale_projection(proj, 0.25), expected)


def cascade_test_scan(root, samples=4):
    """``samples`` reference views of a rendered scan of the shipped cascade's kind (scan 9 of the seed-0
    rig, 128x160, 3 views; 192 base planes) with ground truth at every stage's resolution."""
    from torch.utils.data import DataLoader

    from depthlib.data import DTUMVSFull, write_dtu_like, write_raw_depths

    write_dtu_like(root, n_scans=1, n_views=samples, height=128, width=160, n_lights=1, seed=0, scan_ids=[9],
                   splits={"train": [9]})
    write_raw_depths(root, seed=0)
    return next(iter(DataLoader(DTUMVSFull(root, "train", n_views=3), batch_size=samples)))


def autocast_agreement(model, batch, device, dtype) -> dict:
    """The cascade's final depth in fp32 and under autocast(dtype), in eval: the fraction of valid pixels
    where they agree within 1 and 3 base intervals, and both MAEs against the ground truth (mm)."""
    from depthlib.metrics import less_k_interval, mean_absolute_error

    inputs = [batch[key].to(device) for key in ("imgs", "proj_matrices", "depth_values")]
    gt, mask = batch["depth_full"].to(device), batch["mask_full"].to(device)
    base = batch["depth_interval"].to(device)
    with torch.no_grad():
        fp32 = model.eval()(*inputs)["depth"]
        with torch.autocast(device, dtype=dtype):
            mixed = model(*inputs)["depth"]
    assert mixed.dtype == torch.float32 and mixed.isfinite().all()
    return {"within_1": less_k_interval(mixed, fp32, mask, base, 1),
            "within_3": less_k_interval(mixed, fp32, mask, base, 3),
            "mae_fp32": mean_absolute_error(fp32, gt, mask), "mae_mixed": mean_absolute_error(mixed, gt, mask)}


def test_the_shipped_cascade_under_cpu_autocast_agrees_with_fp32(tmp_path):
    """Mixed precision changes the networks' rounding, not the geometry. When the stages' projections
    were scaled under autocast (a bf16 product), bf16 moved 38 % of the pixels by more than one base
    interval and raised the MAE by 14 % on these samples; now (measured) every pixel stays within
    one interval and the MAE within 0.1 %. bf16 only: CPU fp16 convolutions take 50 s here (the
    geometry test above covers fp16's overflow, tests/test_cuda.py the cascade in fp16 on a GPU)."""
    from depthlib.models.casmvsnet import load_casmvsnet

    batch = cascade_test_scan(tmp_path / "dtu")
    agreement = autocast_agreement(load_casmvsnet("casmvsnet-synthetic.pt"), batch, "cpu", torch.bfloat16)
    assert agreement["within_1"] > 0.99, agreement
    assert agreement["mae_mixed"] < 1.01 * agreement["mae_fp32"], agreement


def test_the_warp_and_the_variance_volume_stay_float32_under_autocast():
    feat, src_proj, ref_proj, depth_values = dtu_like_warp_inputs(16, 20, 8)
    ref_feat, src_feat = (torch.rand(1, 4, 16, 20).bfloat16() for _ in range(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped = homography_warp(src_feat, src_proj, ref_proj, depth_values)
        volume = variance_cost_volume(ref_feat, [src_feat], ref_proj, [src_proj], depth_values)
    assert warped.dtype == volume.dtype == torch.float32
    expected = variance_cost_volume(ref_feat.float(), [src_feat.float()], ref_proj, [src_proj], depth_values)
    torch.testing.assert_close(volume, expected)


class _FakeCuda:
    """torch.cuda as a GPU of the given compute capability reports itself (bf16 emulated below 8.0)."""

    def __init__(self, monkeypatch, capability, old_torch=False):
        def is_bf16_supported(*args, **kwargs):
            if old_torch and kwargs:
                raise TypeError("is_bf16_supported() got an unexpected keyword argument 'including_emulation'")
            return capability[0] >= 8 or kwargs.get("including_emulation", True)

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("old_torch", [False, True], ids=["torch>=2.3", "torch<2.3"])
@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)],
                         ids=["T4", "A100", "H100"])
def test_auto_amp_is_fp16_with_a_scaler_on_a_pre_ampere_gpu(monkeypatch, capability, native, old_torch):
    _FakeCuda(monkeypatch, capability, old_torch)
    assert native_bf16("cuda") is native
    fake = type("FakeTrainer", (), {"device": torch.device("cuda"), "config": TrainConfig(amp="auto")})()
    assert Trainer._amp_dtype(fake) == (torch.bfloat16 if native else torch.float16)


def test_amp_is_off_on_the_cpu_whatever_is_asked():
    for amp in ("auto", "bf16", "fp16"):
        trainer = Trainer(ToyNet(), ToySet(), ToyTask(), "unused", TrainConfig(amp=amp, progress=False, device="cpu"))
        assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()


def test_resume_from_a_checkpoint_whose_tensors_were_saved_on_another_device(tmp_path, monkeypatch):
    """A checkpoint written on a GPU holds CUDA tensors; loaded without map_location="cpu" its RNG
    states would land on the GPU, where torch.set_rng_state cannot take them. The stand-in: a
    torch.load that leaves every tensor on the 'meta' device unless asked to map it to the CPU."""
    straight = make_trainer(tmp_path / "straight")
    straight.fit()
    make_trainer(tmp_path / "split").fit(stop_after=3)
    real_load, asked = torch.load, []

    def load_from_another_device(path, map_location=None, **kwargs):
        asked.append(map_location)
        state = real_load(path, map_location="cpu", **kwargs)
        if map_location is None or torch.device(map_location).type != "cpu":
            state = _to_meta(state)
        return state

    monkeypatch.setattr(torch, "load", load_from_another_device)
    resumed = make_trainer(tmp_path / "split", model_seed=123)
    resumed.fit(resume=True)
    assert asked and all(torch.device(m).type == "cpu" for m in asked)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def _to_meta(value):
    if torch.is_tensor(value):
        return value.to("meta")
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_meta(v) for v in value)
    return value


def test_the_schedule_does_not_step_when_the_scaler_skips_the_optimiser_step(tmp_path):
    trainer = make_trainer(tmp_path)
    # a scale so large that the scaled gradients overflow: GradScaler must skip this step
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=3e38)
    batch = next(iter(trainer._epoch_loader()))
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would be an error
        trainer.train_step(trainer.to_device(batch))
    assert trainer.scaler.get_scale() < 3e38  # the step was skipped and the scale lowered
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in weights.items())
    assert trainer.scheduler.last_epoch == 0  # and the schedule did not move
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    trainer.train_step(trainer.to_device(batch))
    assert trainer.scheduler.last_epoch == 1


def test_each_distributed_process_trains_on_its_own_gpu():
    from depthlib.runtime import training_device as device
    assert device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert device("cuda:0", local_rank=1, world_size=2) == torch.device("cuda", 0)  # explicit index kept
    assert device("cpu", local_rank=1, world_size=2) == torch.device("cpu")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _validating_worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = make_trainer(out_dir, epochs=1, batch_size=2, dropout=False)

    def evaluate(model):
        Path(out_dir, f"validated-by-rank{rank}").touch()
        return {"weight_norm": float(sum(p.norm() for p in model.parameters()))}

    trainer.evaluate = evaluate
    history = trainer.fit()
    torch.distributed.barrier()  # would time out if a rank were still inside a collective
    Path(out_dir, f"rank{rank}.txt").write_text(repr(history[-1]["val_weight_norm"]))
    torch.distributed.destroy_process_group()


def test_every_rank_validates_so_none_waits_in_a_collective(tmp_path):
    mp.start_processes(_validating_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    assert (tmp_path / "validated-by-rank0").is_file() and (tmp_path / "validated-by-rank1").is_file()
    # the same weights on both ranks give the same validation result
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text()


def test_kernel_names_fall_into_the_categories_the_benchmark_reports():
    from depthlib.bench_kernels import kernel_category

    names = {
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "sm80_xmma_dgrad_implicit_gemm_indexed_tf32f32": "convolution",
        "cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int=512>": "batch norm",
        "void at::native::batch_norm_collect_statistics_channels_last_kernel": "batch norm",
        "void at::native::(anonymous namespace)::CatArrayBatchedCopy<OpaqueType<2u>>": "concat / copy",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>": "layout (NCHW <-> NHWC)",
        "void at::native::vectorized_elementwise_kernel<4, threshold_kernel_impl>": "element-wise",
        "void at::native::(anonymous namespace)::grid_sampler_3d_kernel<float>": "pooling / sampling",
        "void at::native::reduce_kernel<512, 1, ReduceOp<float, MeanOps>>": "reduction",
    }
    assert {name: kernel_category(name) for name in names} == names


def channels_last_losses(tmp_path, device):
    """One MVSNet training step (fp32) on ``device`` in the default layout and in channels_last:
    {channels_last: loss}. Checks the layout the Trainer gave the weights on the way."""
    from torch.utils.data import TensorDataset

    from depthlib.bench import mvsnet_batch
    from depthlib.models import MVSNet
    from depthlib.train import MVSNetTask

    batch = mvsnet_batch(64, 64, 8, 3, 1)
    losses = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(MVSNet(), TensorDataset(torch.zeros(2)), MVSNetTask(), tmp_path / str(channels_last),
                          TrainConfig(batch_size=1, channels_last=channels_last, amp="off", progress=False,
                                      device=device))
        if channels_last:
            conv3d = trainer.model.cost_regularization.conv0[0].weight
            assert conv3d.is_contiguous(memory_format=torch.channels_last_3d)
            assert trainer.model.feature.layers[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        losses[channels_last] = trainer.train_step(trainer.to_device(batch))["total"]
    return losses


def test_mvsnet_trains_in_channels_last_with_its_3d_convolutions_too(tmp_path):
    """model.to(memory_format=channels_last) refuses 5-D weights; the Trainer puts 2D convolutions in
    channels_last and 3D ones in channels_last_3d, and the step computes the same loss."""
    losses = channels_last_losses(tmp_path, "cpu")
    assert abs(losses[True] - losses[False]) < 1e-4 * abs(losses[False])


@pytest.mark.parametrize("model", ["densedepth", "mvsnet"])
def test_a_training_step_reads_back_from_the_device_once(tmp_path, monkeypatch, model):
    """Every read of a tensor's value on the host (``.item()``, ``.tolist()``, ``bool``, ``float``,
    ``int``) waits for the GPU's queue to drain. A step reads its losses back once, with the
    finiteness check: a second read after the optimiser step would keep the CPU from launching the
    next forward while the GPU still runs the backward (chapter 11; data/benchmarks.md). (MVSNet's
    input check reads the planes' order only from a CPU tensor, through NumPy; on a GPU it skips it.)"""
    from torch.utils.data import TensorDataset

    from depthlib.bench import mvsnet_batch
    from depthlib.models import MVSNet, DenseDepth
    from depthlib.train import DenseDepthTask, MVSNetTask

    if model == "mvsnet":
        net, task, batch = MVSNet(), MVSNetTask(), mvsnet_batch(64, 64, 8, 3, 1)
    else:
        depth = 1 + 9 * torch.rand(2, 1, 64, 64)
        net, task = DenseDepth("small"), DenseDepthTask()
        batch = {"image": torch.rand(2, 3, 64, 64), "depth": depth, "mask": depth > 0}
    trainer = Trainer(net, TensorDataset(torch.zeros(2)), task, tmp_path,
                      TrainConfig(batch_size=2, progress=False, device="cpu"))
    batch = trainer.to_device(batch)
    trainer.train_step(batch)
    # Adam's step counters are host tensors on every device (read with .item() on the CPU path):
    # reading them waits for nothing
    counters = {id(state["step"]) for state in trainer.optimizer.state.values()}
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if id(self) not in counters:
                reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    losses = trainer.train_step(batch)
    assert reads == ["tolist"], reads
    assert all(isinstance(value, float) for value in losses.values()) and "total" in losses


@pytest.mark.parametrize("option, expected", [([], (False, None)), (["--compile"], (True, None)),
                                              (["--compile", "reduce-overhead"],
                                               ("reduce-overhead", "reduce-overhead"))])
def test_compile_option_reaches_torch_compile_with_its_mode(tmp_path, monkeypatch, option, expected):
    """``--compile [MODE]`` on the command line -> TrainConfig.compile -> torch.compile(mode=...):
    "reduce-overhead" (CUDA graphs) is the experiment for launch-bound steps (data/benchmarks.md)."""
    from depthlib.__main__ import build_parser

    args = build_parser().parse_args(["train", "densedepth", "--out", str(tmp_path), *option])
    assert args.compile == expected[0]
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    trainer = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path,
                      TrainConfig(compile=args.compile, progress=False, device="cpu"))
    assert calls == ([] if expected[0] is False else [{"mode": expected[1]}])
    assert trainer.forward_model is trainer.model  # the stand-in returned the model itself


class _AutocastOffTheMetaDevice:
    """torch.autocast, except that on the 'meta' device (which autocast refuses) it does nothing."""

    real = torch.autocast

    def __init__(self, device_type, *args, **kwargs):
        self.inner = (contextlib.nullcontext() if device_type == "meta"
                      else self.real(device_type, *args, **kwargs))

    def __enter__(self):
        return self.inner.__enter__()

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def _meta_training_case(name):
    """(model, task, batch) with every tensor on the 'meta' device, at the smallest legal sizes."""
    from depthlib.models import CasMVSNet, CasMVSNetTask, MVSNet, densedepth_small
    from depthlib.tasks import DenseDepthTask, MVSNetTask

    meta = torch.device("meta")
    if name == "densedepth":
        batch = {"image": torch.rand(2, 3, 64, 96), "depth": 1 + torch.rand(2, 1, 64, 96),
                 "mask": torch.ones(2, 1, 64, 96, dtype=torch.bool)}
        model, task = densedepth_small(), DenseDepthTask()
    else:
        batch = {"imgs": torch.rand(2, 3, 3, 64, 96), "proj_matrices": torch.eye(4).expand(2, 3, 4, 4).clone(),
                 "depth_values": torch.linspace(425, 900, 16).expand(2, 16).clone(),
                 "depth_interval": torch.full((2,), 475 / 15)}
        if name == "mvsnet":
            batch.update(depth=torch.rand(2, 1, 16, 24), mask=torch.ones(2, 1, 16, 24, dtype=torch.bool))
            model, task = MVSNet(refine=True), MVSNetTask()
        else:
            for scale, part in ((1, "full"), (2, "half"), (4, "quarter")):
                batch[f"depth_{part}"] = torch.rand(2, 1, 64 // scale, 96 // scale)
                batch[f"mask_{part}"] = torch.ones(2, 1, 64 // scale, 96 // scale, dtype=torch.bool)
            model, task = CasMVSNet(), CasMVSNetTask()
    return model.to(meta), task, {key: value.to(meta) for key, value in batch.items()}


@pytest.mark.parametrize("name", ["densedepth", "mvsnet", "casmvsnet"])
def test_a_training_step_on_another_device_creates_no_tensor_on_the_cpu(monkeypatch, name):
    """The bug class behind 'confidence_scratch built its plane numbers on the CPU': a tensor made
    without device= inside a forward pass or a loss works on the CPU and fails on CUDA. PyTorch's
    'meta' device stands in for CUDA: it computes shapes only, and refuses a CPU tensor in any op
    with a meta one, as CUDA does. The models' forward passes, their tasks' losses and the backward."""
    monkeypatch.setattr(torch, "autocast", _AutocastOffTheMetaDevice)
    model, task, batch = _meta_training_case(name)
    losses = task.loss(model.train(), batch)
    assert losses["total"].device.type == "meta" and losses["total"].dim() == 0
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == "meta" for g in grads)
    model.eval()
    with torch.no_grad():
        key = "image" if name == "densedepth" else "imgs"
        args = [batch[key]] if name == "densedepth" else [batch[k] for k in ("imgs", "proj_matrices", "depth_values")]
        out = model(*args)
    tensors = [out] if torch.is_tensor(out) else [v for v in out.values() if torch.is_tensor(v)]
    assert tensors and all(t.device.type == "meta" for t in tensors)


def test_the_warp_masks_and_baselines_on_another_device_create_no_tensor_on_the_cpu(monkeypatch):
    """The same check (see above) for the tensor functions chapters call on the profile's device:
    fusion's geometric mask, the plane-sweep baseline, the cascade's hypotheses, DenseDepth's
    prediction at its own size, the edge-band regions, SSIM, chapter 07's count of the source
    views that see a pixel and chapter 00's projection of points into every view."""
    from depthlib.fusion import geometric_mask, photometric_mask
    from depthlib.geometry import project_into_views
    from depthlib.losses import ssim
    from depthlib.metrics import depth_edge_regions, eigen_crop
    from depthlib.models import densedepth_small, predict_depth, stage_hypotheses
    from depthlib.planesweep import count_seeing_sources, plane_sweep_depth

    monkeypatch.setattr(torch, "autocast", _AutocastOffTheMetaDevice)
    meta = torch.device("meta")
    depth = 1 + torch.rand(3, 1, 32, 48, device=meta)
    K, E = torch.eye(3, device=meta).expand(3, 3, 3), torch.eye(4, device=meta).expand(3, 4, 4)
    imgs, proj = torch.rand(1, 3, 3, 32, 48, device=meta), torch.eye(4, device=meta).expand(1, 3, 4, 4)
    planes = torch.linspace(425, 900, 48, device=meta)[None]
    outputs = {
        "geometric_mask": geometric_mask(depth[:1], K[:1], E[:1], depth[1:], K[1:], E[1:], min_views=1),
        "photometric_mask": photometric_mask(torch.rand(1, 32, 48, device=meta)),
        **{f"plane_sweep_{cost}": plane_sweep_depth(imgs, proj, planes[:, :8], cost=cost) for cost in ("zncc", "sad")},
        "stage_hypotheses": stage_hypotheses(planes, 8, interval=torch.full((1,), 5.0, device=meta),
                                             prev_depth=500 + torch.rand(1, 1, 16, 24, device=meta), size=(32, 48)),
        "predict_depth": predict_depth(densedepth_small().to(meta).eval(), torch.rand(2, 3, 96, 128, device=meta),
                                       size=(64, 96)),
        "depth_edge_regions": depth_edge_regions(depth, None, torch.ones(3, device=meta)),
        "eigen_crop": eigen_crop(32, 48, device=meta),
        "ssim": ssim(depth, depth.flip(-1), 2.0),
        "count_seeing_sources": count_seeing_sources(proj, planes[:, :1, None, None].expand(1, 1, 8, 12)),
        "project_into_views": project_into_views(torch.rand(3, 10, device=meta), depth[:, 0], K[0], E),
    }
    parts = {name: (value if isinstance(value, dict) else dict(enumerate(value)) if isinstance(value, (tuple, list))
                    else {0: value}) for name, value in outputs.items()}
    tensors = {f"{name}[{k}]": t for name, value in parts.items() for k, t in value.items() if torch.is_tensor(t)}
    assert {name.split("[")[0] for name in tensors} == set(outputs)  # every function gave tensors
    assert [name for name, t in tensors.items() if t.device.type != "meta"] == []


def test_the_cpu_suite_sees_no_gpu_even_on_a_gpu_machine(tmp_path):
    """tests/conftest.py hides CUDA from every test not marked ``cuda`` (in process and in the
    processes a test starts), so the unit suite tests on a GPU machine what CI tests: a Trainer
    left to choose its device trains on the CPU."""
    assert not torch.cuda.is_available()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert make_trainer(tmp_path).device.type == "cpu"


def test_the_evaluations_the_cuda_test_compares_run_on_the_cpu(tmp_path):
    """tests/test_cuda.py compares evaluate_mvsnet, evaluate_casmvsnet and score_scan of models on
    CUDA with the same on the CPU; CI has no GPU, so this keeps that comparison's inputs valid."""
    import math

    from depthlib.data import write_dtu_like
    from test_cuda import evaluations

    raw = write_dtu_like(tmp_path / "raw", n_scans=2, n_views=4, height=64, width=64, n_lights=1, seed=3)
    scan = write_dtu_like(tmp_path / "scan", n_scans=1, n_views=6, height=64, width=96, n_lights=1, seed=0,
                          scan_ids=[9], splits={"test": [9]})
    results = evaluations("cpu", raw, scan)
    assert set(results) == {"evaluate_mvsnet", "evaluate_casmvsnet", "score_scan"}
    assert {"band_mae", "refined_mae"} <= set(results["evaluate_mvsnet"])
    assert {"mae", "stage1_mae", "mvsnet_mae"} <= set(results["evaluate_casmvsnet"])
    assert results["score_scan"]["points"] == 6 * 16 * 24          # every pixel: no filter
    assert all(math.isfinite(v) for metrics in results.values() for v in metrics.values())
