"""Tests for the cascade (depthlib.models.casmvsnet, depthlib.data.dtu_raw, the casmvsnet CLI): per-pixel
warping against brute force, the 1-stage cascade against MVSNet, the hypothesis bands, the loss, fp32
volumes under autocast, full-resolution ground truth read from CasMVSNet's Depths_raw layout."""
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from depthlib.data import DTUMVS, DTUMVSFull, write_dtu_like, write_raw_depths
from depthlib.data.dtu_raw import raw_crop_margins, sample_raw_map
from depthlib.geometry import homography_warp
from depthlib.models import MVSNet
from depthlib.models.casmvsnet import (PAPER_STAGES, CascadeStage, CasMVSNet, CasMVSNetTask, FeaturePyramid,
                                       casmvsnet_loss, collect_cascade_outputs, evaluate_casmvsnet,
                                       init_from_mvsnet, load_casmvsnet, stage_hypotheses)
from depthlib.models.mvsnet import FeatureNet
from test_mvsnet import random_projections


def small_inputs(seed=0, batch=2, height=64, width=64, views=3, planes=32):
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.rand(batch, views, 3, height, width, generator=generator)
    proj = random_projections(rng, batch, views, height // 4, width // 4)
    depth_values = torch.linspace(2.0, 6.0, planes).repeat(batch, 1)
    return imgs, proj, depth_values


# ---------------------------------------------------------------- per-pixel warping
def test_per_pixel_warp_matches_bruteforce_reprojection_for_a_batch_of_bands():
    rng = np.random.default_rng(7)
    batch, channels, height, width, planes = 2, 3, 9, 13, 4
    proj = random_projections(rng, batch, 2, height, width).double()
    feat = torch.as_tensor(rng.normal(size=(batch, channels, height, width)))
    centre = torch.as_tensor(rng.uniform(2.5, 4.0, (batch, 1, height, width)))
    hypotheses = centre + 0.1 * torch.arange(planes).reshape(1, -1, 1, 1)       # (B, D, H, W), per pixel
    warped = homography_warp(feat, proj[:, 1], proj[:, 0], hypotheses)
    for b in range(batch):
        ref_inv = torch.linalg.inv(proj[b, 0])
        for d in range(planes):
            for v in range(height):
                for u in range(width):
                    z = hypotheses[b, d, v, u]
                    point = ref_inv @ torch.tensor([u * z, v * z, z, 1.0], dtype=torch.float64)
                    x, y, w = (proj[b, 1] @ point)[:3]
                    x, y = float(x / w), float(y / w)
                    x0, y0 = math.floor(x), math.floor(y)
                    value = torch.zeros(channels, dtype=torch.float64)
                    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                        yy, xx = y0 + dy, x0 + dx
                        if 0 <= yy < height and 0 <= xx < width:
                            weight = (1 - abs(x - xx)) * (1 - abs(y - yy))
                            value += weight * feat[b, :, yy, xx]
                    torch.testing.assert_close(warped[b, :, d, v, u], value, atol=1e-9, rtol=1e-9)


# ---------------------------------------------------------------- stages as data
def test_paper_stages_are_48_32_8_planes_spacing_4_2_1_scales_4_2_1_weights_half_1_2():
    assert [(s.planes, s.interval_ratio, s.scale, s.loss_weight) for s in PAPER_STAGES] == [
        (48, 4.0, 4, 0.5), (32, 2.0, 2, 1.0), (8, 1.0, 1, 2.0)]
    for bad in [dict(planes=12, interval_ratio=1, scale=4), dict(planes=8, interval_ratio=0, scale=4),
                dict(planes=8, interval_ratio=1, scale=3)]:
        with pytest.raises(ValueError, match="CascadeStage"):
            CascadeStage(**bad)
    with pytest.raises(ValueError, match="scales never increasing"):
        CasMVSNet([CascadeStage(8, 1, 1), CascadeStage(8, 1, 4)])


def test_feature_pyramid_gives_32_16_8_channels_at_quarter_half_and_full_resolution():
    torch.manual_seed(0)
    pyramid = FeaturePyramid()
    out = pyramid(torch.rand(2, 3, 64, 96))
    assert {s: tuple(f.shape) for s, f in out.items()} == {4: (2, 32, 16, 24), 2: (2, 16, 32, 48), 1: (2, 8, 64, 96)}
    # the quarter map is MVSNet's FeatureNet output: same modules, same numbers
    reference = FeatureNet()
    reference.load_state_dict(pyramid.encoder.state_dict())
    pyramid.eval(), reference.eval()
    image = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(pyramid(image)[4], reference(image))
    coarse = FeaturePyramid(scales=[4])  # nothing beyond the encoder when only 1/4 is needed
    assert sum(p.numel() for p in coarse.parameters()) == sum(p.numel() for p in reference.parameters())


def test_first_stage_spreads_its_planes_over_the_range_or_takes_the_given_ones():
    depth_values = torch.tensor([[1.0, 1.5, 2.0, 4.0], [10.0, 11.0, 12.0, 13.0]])
    torch.testing.assert_close(stage_hypotheses(depth_values, 3), torch.tensor([[1.0, 2.5, 4.0], [10.0, 11.5, 13.0]]))
    assert stage_hypotheses(depth_values, 4) is depth_values  # as many planes: MVSNet's sweep, as given


def test_later_stage_band_is_centred_on_the_upsampled_depth_and_kept_inside_the_range():
    depth_values = torch.linspace(100.0, 200.0, 101)[None]
    prev = torch.tensor([[[[150.0, 102.0], [199.0, 160.0]]]])           # (1, 1, 2, 2)
    hyps = stage_hypotheses(depth_values, 8, interval=torch.tensor([2.0]), prev_depth=prev, size=(4, 4))
    assert hyps.shape == (1, 8, 4, 4)
    torch.testing.assert_close(hyps[:, 1:] - hyps[:, :-1], torch.full((1, 7, 4, 4), 2.0))
    centre = torch.nn.functional.interpolate(prev, size=(4, 4), mode="bilinear", align_corners=False)
    inside = (centre - 7 >= 100) & (centre + 7 <= 200)
    torch.testing.assert_close(hyps.mean(1, keepdim=True)[inside], centre[inside])  # centred where it fits
    assert hyps.min() >= 100 and hyps.max() <= 200                               # else shifted inside
    assert hyps[0, 0, 0, 0] == 143.0 and hyps[0, -1, 3, 0] == 200.0             # 150 - 7; 199 + 7 > 200: shifted
    with pytest.raises(ValueError, match="interval"):
        stage_hypotheses(depth_values, 8, prev_depth=prev)


# ---------------------------------------------------------------- the model
def test_one_stage_cascade_with_mvsnets_planes_is_mvsnets_pipeline():
    torch.manual_seed(0)
    imgs, proj, depth_values = small_inputs()
    mvsnet = MVSNet(refine=False).eval()
    cascade = CasMVSNet([CascadeStage(32, 1.0, 4)]).eval()
    assert len(init_from_mvsnet(cascade, mvsnet)) == len(mvsnet.state_dict())
    assert sum(p.numel() for p in cascade.parameters()) == sum(p.numel() for p in mvsnet.parameters())
    with torch.no_grad():
        ours, theirs = cascade(imgs, proj, depth_values), mvsnet(imgs, proj, depth_values)
    for key in ("depth", "photometric_confidence", "prob_volume"):
        assert ours[key].shape == theirs[key].shape
        torch.testing.assert_close(ours[key], theirs[key])
    assert ours["depth"].shape == (2, 1, 16, 16) and ours["prob_volume"].shape == (2, 32, 16, 16)
    torch.testing.assert_close(ours["depth_values"][..., 0, 0], depth_values)   # the same planes, the same range
    assert len(ours["stages"]) == 1 and ours["stages"][0]["depth"] is ours["depth"]


@pytest.fixture(scope="module")
def paper_forward():
    torch.manual_seed(0)
    model = CasMVSNet().eval()
    imgs, proj, depth_values = small_inputs(planes=192)   # the base interval: 192 planes over the range, as DTU
    with torch.no_grad():
        return model, (imgs, proj, depth_values), model(imgs, proj, depth_values)


def test_paper_cascade_gives_full_resolution_depth_and_every_stage(paper_forward):
    _, (imgs, _, depth_values), out = paper_forward
    assert out["depth"].shape == out["photometric_confidence"].shape == (2, 1, 64, 64)
    base = (depth_values[:, -1] - depth_values[:, 0]) / 191
    for stage, stage_out in zip(PAPER_STAGES, out["stages"]):
        size = (64 // stage.scale, 64 // stage.scale)
        hyps = stage_out["depth_values"]
        assert hyps.shape == (2, stage.planes, *size) and stage_out["prob_volume"].shape == hyps.shape
        torch.testing.assert_close(stage_out["prob_volume"].sum(1), torch.ones(2, *size))
        assert (hyps >= 2.0 - 1e-5).all() and (hyps <= 6.0 + 1e-5).all()
        depth = stage_out["depth"]
        assert ((depth >= hyps.min(1, keepdim=True)[0] - 1e-4) & (depth <= hyps.max(1, keepdim=True)[0] + 1e-4)).all()
        band = hyps[:, -1] - hyps[:, 0]
        expected = (6.0 - 2.0) if stage is PAPER_STAGES[0] else stage.interval_ratio * base * (stage.planes - 1)
        torch.testing.assert_close(band, expected.reshape(-1, 1, 1).expand_as(band) if torch.is_tensor(expected)
                                   else torch.full_like(band, expected))
    widths = [float((s["depth_values"][:, -1] - s["depth_values"][:, 0]).mean()) for s in out["stages"]]
    assert widths[0] > widths[1] > widths[2]  # the band narrows stage by stage
    assert out["stages"][-1]["depth"] is out["depth"]


def test_in_place_volumes_at_inference_give_the_training_path_numbers(paper_forward):
    model, inputs, out = paper_forward
    again = model(*inputs)  # grad enabled: out-of-place volumes
    torch.testing.assert_close(again["depth"], out["depth"], rtol=1e-5, atol=1e-5)


def test_lean_inference_regulariser_gives_costregnets_numbers():
    from depthlib.models.casmvsnet import _regularize_lean
    from depthlib.models.mvsnet import CostRegNet

    torch.manual_seed(0)
    net = CostRegNet(16).eval()
    volume = torch.rand(2, 16, 8, 16, 24)
    holder = [volume.clone()]
    torch.testing.assert_close(_regularize_lean(net, holder), net(volume), rtol=0, atol=0)
    assert holder == []  # the volume was handed over, not kept


def test_volumes_are_float32_under_autocast(monkeypatch):
    import depthlib.models.casmvsnet as casmvsnet

    seen = []
    original = casmvsnet.variance_cost_volume

    def spy(ref_feat, src_feats, ref_proj, src_projs, depth_values, inplace=False):
        volume = original(ref_feat, src_feats, ref_proj, src_projs, depth_values, inplace=inplace)
        seen.append((ref_feat.dtype, depth_values.dtype, volume.dtype, torch.is_autocast_enabled("cpu")))
        return volume

    monkeypatch.setattr(casmvsnet, "variance_cost_volume", spy)
    torch.manual_seed(0)
    model = CasMVSNet().eval()
    imgs, proj, depth_values = small_inputs(batch=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(imgs, proj, depth_values)
    assert len(seen) >= 3 and set(seen) == {(torch.float32, torch.float32, torch.float32, False)}  # chunks of 8
    assert out["depth"].dtype == torch.float32 and torch.isfinite(out["depth"]).all()


def test_bad_inputs_raise_value_errors_naming_the_problem():
    model = CasMVSNet()
    imgs, proj, depth_values = small_inputs(batch=1)
    for args, pattern in [((imgs[:, :1], proj[:, :1], depth_values), "V >= 2"),
                          ((imgs, proj[:, :2], depth_values), r"proj \(1, 2, 4, 4\)"),
                          ((imgs, proj, depth_values[0]), r"depth_values \(32,\)"),
                          ((imgs[..., :48], proj, depth_values), "multiples of 32"),
                          ((imgs, proj, depth_values.flip(1)), "depth_values of sample 0 are not increasing"),
                          ((imgs.to(torch.uint8), proj, depth_values), "imgs are torch.uint8")]:
        with pytest.raises(ValueError, match=pattern):
            model(*args)


# ---------------------------------------------------------------- loss and training
def fake_outputs(gt_full, offsets):
    """Stage outputs equal to the ground truth at each stage's size plus a constant offset."""
    stages = []
    for stage, offset in zip(PAPER_STAGES, offsets):
        depth = torch.nn.functional.avg_pool2d(gt_full, stage.scale) + offset
        stages.append({"depth": depth})
    return {"stages": stages}


def test_loss_is_the_weighted_sum_of_masked_l1_in_base_intervals_at_each_resolution():
    gt = 500 + 10 * torch.rand(2, 1, 32, 32)
    batch = {"depth_interval": torch.tensor([2.0, 2.0])}
    for scale, name in ((1, "full"), (2, "half"), (4, "quarter")):
        batch[f"depth_{name}"] = torch.nn.functional.avg_pool2d(gt, scale)
        batch[f"mask_{name}"] = torch.ones_like(batch[f"depth_{name}"], dtype=torch.bool)
    batch["mask_full"][:, :, :8] = False
    batch["depth_full"][:, :, :8] = 0.0                      # invalid pixels: masked, never NaN
    losses = casmvsnet_loss(fake_outputs(gt, (2.0, -4.0, 6.0)), batch, PAPER_STAGES)
    torch.testing.assert_close(torch.stack([losses[f"stage{i}"] for i in (1, 2, 3)]), torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(losses["total"], torch.tensor(0.5 * 1 + 1 * 2 + 2 * 3.0))
    del batch["depth_half"]
    with pytest.raises(KeyError, match="depth_half"):
        casmvsnet_loss(fake_outputs(gt, (0, 0, 0)), batch, PAPER_STAGES)


def test_every_parameter_gets_a_gradient_from_the_cascade_loss():
    torch.manual_seed(0)
    model = CasMVSNet().train()
    imgs, proj, depth_values = small_inputs(batch=1)
    batch = {"imgs": imgs, "proj_matrices": proj, "depth_values": depth_values,
             "depth_interval": (depth_values[:, -1] - depth_values[:, 0]) / 31}
    for scale, name in ((1, "full"), (2, "half"), (4, "quarter")):
        batch[f"depth_{name}"] = torch.full((1, 1, 64 // scale, 64 // scale), 3.3)
        batch[f"mask_{name}"] = torch.ones(1, 1, 64 // scale, 64 // scale, dtype=torch.bool)
    CasMVSNetTask().loss(model, batch)["total"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Each stage's last 3D conv bias shifts every plane's logit equally, which the softmax over depth
    # cancels: its gradient is zero up to rounding (exactly zero on some PyTorch builds: 2.4.1 gives
    # 0 for stage 2), as in MVSNet (test_mvsnet); every other parameter's is not.
    prob_biases = {f"cost_regularization.{s}.prob.bias" for s in range(len(model.stages))}
    grads = {name: p.grad.abs().max().item() for name, p in model.named_parameters()}
    others = {name: value for name, value in grads.items() if name not in prob_biases}
    assert prob_biases <= grads.keys()
    assert max(grads[name] for name in prob_biases) < 1e-4 * min(others.values())
    missing = [name for name, value in others.items() if not value > 0]
    assert not missing, missing


# ---------------------------------------------------------------- Depths_raw: the full-resolution ground truth
def test_raw_map_sampling_at_full_resolution_is_casmvsnets_halving_and_centre_crop():
    raw = np.arange(1200 * 1600, dtype=np.float64).reshape(1200, 1600)   # each pixel names itself
    assert raw_crop_margins(raw.shape, (512, 640)) == (44, 80)
    # dtu_yao.py: cv2.resize(..., (800, 600), INTER_NEAREST) keeps the even pixels, then a centre crop
    np.testing.assert_array_equal(sample_raw_map(raw, (512, 640), 1), raw[::2, ::2][44:44 + 512, 80:80 + 640])
    # coarser stages: the raw pixel at each of their pixel centres (2 s v + s - 1 + 2 my)
    quarter = sample_raw_map(raw, (512, 640), 4)
    assert quarter.shape == (128, 160) and quarter[1, 2] == (8 * 1 + 3 + 88) * 1600 + (8 * 2 + 3 + 160)
    with pytest.raises(ValueError, match="smaller than"):
        sample_raw_map(raw, (1200, 1600), 1)


@pytest.fixture(scope="module")
def raw_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu")
    write_dtu_like(root, n_scans=2, n_views=4, height=64, width=64, n_lights=1, seed=3)
    return root


def test_written_raw_depths_give_every_stage_the_exact_depth_of_its_pixel_centres(raw_set):
    from depthlib.data.raycast import trace
    from depthlib.data.scenes import arc_cameras, object_scene

    with pytest.raises(FileNotFoundError, match="Depths_raw"):
        DTUMVSFull(raw_set, "train", n_views=3)
    with pytest.raises(ValueError, match="seed"):
        write_raw_depths(raw_set, seed=4)                         # another scene: caught by the check
    assert not (raw_set / "Depths_raw" / "scan1").exists()     # and nothing half-written left behind
    write_raw_depths(raw_set, seed=3)
    dataset = DTUMVSFull(raw_set, "train", n_views=3)
    item = dataset[1]
    view = int(item["view_ids"][0])
    camera = arc_cameras(4, 64, 64, seed=3)[view]
    exact = trace(object_scene(3 * 10_000 + 1), camera).depth * 1000     # mm, at the image's pixel centres
    torch.testing.assert_close(item["depth_full"][0], torch.from_numpy(exact).float(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(item["depth_quarter"], item["depth"])     # = Depths/ (MVSNet's maps)
    assert item["depth_half"].shape == (1, 32, 32) and item["mask_full"].dtype == torch.bool
    assert torch.equal(item["mask_full"], item["depth_full"] > 0) and 0.2 < item["mask_full"].float().mean() < 1
    assert len(item["depth_values"]) == 192 and float(item["depth_interval"]) > 0
    plain = DTUMVS(raw_set, "train", n_views=3, n_depths=192)[1]
    assert set(plain) < set(item) and torch.equal(plain["imgs"], item["imgs"])


def test_a_few_adam_steps_lower_the_cascade_loss_on_a_rendered_scan(raw_set):
    write_raw_depths(raw_set, seed=3)
    stages = (CascadeStage(16, 4.0, 4, 0.5), CascadeStage(8, 1.0, 1, 1.0))
    batch = next(iter(DataLoader(DTUMVSFull(raw_set, "train", n_views=3, n_depths=64), batch_size=2)))
    torch.manual_seed(0)
    model = CasMVSNet(stages).train()
    task = CasMVSNetTask(stages)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = task.loss(model, batch)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.7 * losses[0]


def test_evaluation_pools_full_resolution_errors_and_upsamples_coarse_depth(raw_set):
    write_raw_depths(raw_set, seed=3)
    dataset = DTUMVSFull(raw_set, "test", n_views=3)

    class Constant(torch.nn.Module):
        """A stand-in cascade whose every stage says 'depth c' at its own size."""

        def __init__(self, c):
            super().__init__()
            self.c, self.stages = torch.nn.Parameter(torch.tensor(float(c))), PAPER_STAGES[:2]

        def forward(self, imgs, proj, depth_values):
            b, _, _, h, w = imgs.shape
            stages = [{"depth": self.c.expand(b, 1, h // s.scale, w // s.scale)} for s in self.stages]
            return {"depth": stages[-1]["depth"], "stages": stages}  # last stage at 1/2: up-sampled

    gts = [(item["depth_full"][item["mask_full"]], item["depth_values"]) for item in dataset]
    c = float(torch.cat([g for g, _ in gts]).median())
    metrics = evaluate_casmvsnet(Constant(c), dataset, interval_planes=32)
    errors = torch.cat([(g - c).abs() for g, _ in gts])
    step = torch.cat([torch.full_like(g, float(v[-1] - v[0]) / 31) for g, v in gts])
    assert metrics["mae"] == pytest.approx(float(errors.double().mean()), rel=1e-5)
    assert metrics["less_one"] == pytest.approx(float((errors <= step).double().mean()), rel=1e-6)
    assert "stage1_mae" in metrics and "mvsnet_mae" not in metrics


class ImageMean(torch.nn.Module):
    """A stand-in network: every map of a sample is the mean of its images (so samples differ), at each
    stage's size; its 'hypotheses' are that mean plus 0..7; it records its modes and the planes it got."""

    def __init__(self, stages=False):
        super().__init__()
        self.weight, self.stages, self.planes, self.modes = torch.nn.Parameter(torch.ones(())), stages, [], []

    def forward(self, imgs, proj, depth_values):
        self.planes.append(depth_values)
        self.modes.append(self.training)
        b, _, _, h, w = imgs.shape
        mean = imgs.mean(dim=(1, 2, 3, 4)).reshape(b, 1, 1, 1) * self.weight
        if not self.stages:   # an MVSNet at 1/4
            depth = mean.expand(b, 1, h // 4, w // 4)
            return {"depth": depth, "refined_depth": depth + 1, "photometric_confidence": depth / 3}
        offsets = torch.arange(8.0, device=imgs.device).reshape(1, 8, 1, 1)
        maps = [{"depth": mean.expand(b, 1, h // s, w // s),
                 "photometric_confidence": mean.expand(b, 1, h // s, w // s) / 2,
                 "depth_values": (mean + offsets).expand(b, 8, h // s, w // s)} for s in (4, 2, 1)]
        return {**maps[-1], "stages": maps}


def test_collected_outputs_hold_each_samples_maps_in_order_and_the_bands_of_the_chosen_scan(raw_set):
    write_raw_depths(raw_set, seed=3)
    dataset = torch.utils.data.ConcatDataset([DTUMVSFull(raw_set, split, n_views=3) for split in ("train", "test")])
    items = [dataset[i] for i in range(len(dataset))]                  # two scans
    cascade, mvsnet = ImageMean(stages=True).train(), ImageMean().train()
    chosen = items[0]["scan"]
    results = collect_cascade_outputs(cascade, dataset, mvsnet, mvsnet_planes=5, batch_size=3, hypotheses_of=[chosen])
    assert len(results) == len(items) and cascade.training and mvsnet.training
    assert not any(cascade.modes + mvsnet.modes)                          # run in eval mode
    for item, result in zip(items, results):
        mean = item["imgs"].mean()
        assert (result["scan"], result["view"]) == (item["scan"], int(item["view_ids"][0]))
        assert torch.equal(result["gt"], item["depth_full"]) and torch.equal(result["mask"], item["mask_full"])
        torch.testing.assert_close(result["cascade"], mean.expand(1, 64, 64))
        torch.testing.assert_close(result["cascade_conf"], mean.expand(1, 64, 64) / 2)
        assert [tuple(depth.shape) for depth in result["stages"]] == [(1, 16, 16), (1, 32, 32), (1, 64, 64)]
        torch.testing.assert_close(result["mvsnet"], mean.expand(1, 16, 16) + 1)   # the refined depth
        torch.testing.assert_close(result["mvsnet_conf"], mean.expand(1, 16, 16) / 3)
        if item["scan"] == chosen:
            assert [tuple(band.shape) for band in result["bands"]] == [(8, 16, 16), (8, 32, 32), (8, 64, 64)]
            torch.testing.assert_close(result["bands"][2][:, 5, 7], mean + torch.arange(8.0))
        else:
            assert result["bands"] is None
    assert any(item["scan"] != chosen for item in items)
    planes = torch.cat(mvsnet.planes)                                    # 5 planes over each sample's range
    values = torch.stack([item["depth_values"] for item in items])
    torch.testing.assert_close(planes, stage_hypotheses(values, 5))
    assert planes.shape == (len(items), 5)
    with pytest.raises(ValueError, match="mvsnet_planes=1"):
        collect_cascade_outputs(cascade, dataset, mvsnet, mvsnet_planes=1)


def test_checkpoint_round_trip_keeps_the_stages(tmp_path):
    from depthlib.train import export_weights

    stages = (CascadeStage(16, 4.0, 4, 0.5), CascadeStage(8, 1.0, 1, 2.0))
    torch.manual_seed(0)
    model = CasMVSNet(stages).eval()
    torch.save({"model": model.state_dict(), "metadata": {"model": "casmvsnet", "stages": [vars(s) for s in stages]}},
               tmp_path / "ckpt.pt")
    loaded = load_casmvsnet(export_weights(tmp_path / "ckpt.pt", tmp_path / "w.pt", half=False))
    assert loaded.stages == stages and not loaded.training
    inputs = small_inputs(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs)["depth"], model(*inputs)["depth"])
    torch.save({"model": MVSNet().state_dict(), "metadata": {"model": "mvsnet"}}, tmp_path / "mvsnet.pt")
    with pytest.raises(ValueError, match="expected 'casmvsnet'"):
        load_casmvsnet(tmp_path / "mvsnet.pt")


# ---------------------------------------------------------------- command line and benchmark
def test_train_eval_infer_fuse_casmvsnet_end_to_end(tmp_path, capsys):
    from depthlib.__main__ import main
    from depthlib.data import read_cam_file, read_pfm
    from depthlib.models import load_mvsnet

    main(["render", "dtu", "--out", str(tmp_path / "dtu"), "--size", "64x64", "--n-scans", "2", "--n-views", "4",
          "--n-lights", "1", "--profile", "cpu", "--raw-depths"])
    assert (tmp_path / "dtu" / "Depths_raw" / "scan2" / "depth_map_0003.pfm").is_file()
    data, run = f"dtu:{tmp_path / 'dtu'}", tmp_path / "run"
    stage_args = ["--planes", "16,8", "--interval-ratios", "4,1", "--scales", "4,1", "--loss-weights", "0.5,2"]
    torch.manual_seed(0)
    torch.save({"model": MVSNet().state_dict(), "metadata": {"model": "mvsnet", "n_views": 3, "n_depths": 8}},
               tmp_path / "mvsnet.pt")
    assert main(["train", "casmvsnet", "--data", data, "--out", str(run), "--epochs", "1", "--batch-size", "2",
                 "--n-depths", "64", "--init", str(tmp_path / "mvsnet.pt"), "--val", "--no-progress", "--profile", "cpu",
                 *stage_args]) == 0
    out = capsys.readouterr().out
    assert "CasMVSNet (16/8 planes) on 4 training samples of 3 views at 64x64, 1 epochs of 2 steps" in out
    assert "started from 106 MVSNet tensors" in out and "val_less_one" in out and "train_stage2" in out
    model = load_casmvsnet(run / "checkpoint.pt")
    assert model.stages == (CascadeStage(16, 4.0, 4, 0.5), CascadeStage(8, 1.0, 1, 2.0))
    assert model.metadata["n_depths"] == 64 and model.metadata["data"] == "dtu:dtu"
    assert main(["eval", "casmvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", data, "--profile", "cpu",
                 "--mvsnet", str(tmp_path / "mvsnet.pt"), "--interval-planes", "8"]) == 0
    table = capsys.readouterr().out
    assert "| final (full resolution)" in table and "| stage 1 (16 planes, 1/4)" in table and "| MVSNet" in table
    infer = tmp_path / "infer"
    assert main(["infer", "casmvsnet", "--ckpt", str(run / "checkpoint.pt"), "--data", data, "--scan", "scan2",
                 "--out", str(infer), "--profile", "cpu"]) == 0
    assert "for 4 views" in capsys.readouterr().out
    depth, _ = read_pfm(infer / "depth_est" / "00000001.pfm")
    coarse, _ = read_pfm(infer / "depth_stage1" / "00000001.pfm")
    cam = read_cam_file(infer / "cams" / "00000001_cam.txt")
    assert depth.shape == (64, 64) and coarse.shape == (16, 16)
    # K at the depth map's resolution: 4x the training layout's (pixel centres)
    dataset_K = read_cam_file(tmp_path / "dtu" / "Cameras" / "00000001_cam.txt")["intrinsic"]
    np.testing.assert_allclose(cam["intrinsic"][0, 0], 4 * dataset_K[0, 0])
    np.testing.assert_allclose(cam["intrinsic"][0, 2], 4 * dataset_K[0, 2] + 1.5)
    assert main(["fuse", "--scan", str(infer), "--out", str(tmp_path / "cloud.ply"), "--min-views", "0",
                 "--photometric-threshold", "0"]) == 0
    assert "fused 16384 points from 4 views" in capsys.readouterr().out   # every pixel of 4 maps of 64 x 64


def test_stage_arguments_must_agree_in_length_and_default_to_the_paper():
    import argparse

    from depthlib.cascade_cli import stages_from_args

    def parse(**kwargs):
        return stages_from_args(argparse.Namespace(**{**dict(planes=None, interval_ratios=None, scales=None,
                                                              loss_weights=None), **kwargs}))

    assert parse() == PAPER_STAGES
    assert parse(planes="64,32,8")[0] == CascadeStage(64, 4.0, 4, 0.5)
    for kwargs, pattern in [(dict(planes="48,32"), "give --planes"), (dict(planes="48,32,8", scales="4,2"), "lengths"),
                            (dict(planes="48,x,8"), "comma-separated"), (dict(scales="4,3,1"), "CascadeStage")]:
        with pytest.raises(SystemExit, match=pattern):
            parse(**kwargs)


def test_cascade_benchmark_measures_both_models_in_their_own_processes():
    from depthlib.bench_cascade import bench_casmvsnet, mvs_step_stats

    small = mvs_step_stats("casmvsnet", 64, 64, depths=64, steps=1, warmup=1, batch=1)
    large = mvs_step_stats("casmvsnet", 128, 128, depths=64, steps=1, warmup=1, batch=1)
    assert small["seconds"] > 0 and small["peak MiB"] >= small["above start MiB"]
    assert 0 < small["tensors MiB"] < large["tensors MiB"]  # the allocator's peak grows with the image
    rows = bench_casmvsnet(steps=1, size=(64, 64), depths=64, train_size=(64, 64))
    assert [(r["model"], r["mode"]) for r in rows][:2] == [("MVSNet D=64", "infer fp32"),
                                                            ("CasMVSNet 48/32/8", "infer fp32")]
    assert rows[0]["memory vs MVSNet"] == "100% (whole process 100%)" and rows[-1]["mode"] == "train fp32"
