"""``python -m depthlib train | eval | infer casmvsnet``: the cascade on the command line (chapter 12).

The parser entries live in ``depthlib.__main__``; this module holds what they run. Data:
``--data synthetic`` (the profile's rendered DTU-like set, with ``Depths_raw/`` rendered into it the
first time) or ``--data dtu:PATH`` (MVSNet's DTU training layout plus CasMVSNet's ``Depths_raw/``
archive, see ``depthlib.data.dtu_raw``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from depthlib.cli_args import data_label, dtu_root, first_given

__all__ = ["stages_from_args", "train_casmvsnet", "eval_casmvsnet", "infer_casmvsnet", "add_stage_arguments"]

_DTU_PLANES = 192  # the cascade's base interval: DTU's 192 planes over the depth range


def add_stage_arguments(parser) -> None:
    """The cascade's stage settings (``train casmvsnet``); defaults: the paper's."""
    parser.add_argument("--planes", help="casmvsnet: hypotheses per stage, e.g. 48,32,8 (the paper's, default)")
    parser.add_argument("--interval-ratios", help="casmvsnet: plane spacing per stage in base intervals (4,2,1)")
    parser.add_argument("--scales", help="casmvsnet: image / depth-map size per stage, each 4, 2 or 1 (4,2,1)")
    parser.add_argument("--loss-weights", help="casmvsnet: loss weight per stage (0.5,1,2)")


def _numbers(text, kind, name):
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise SystemExit(f"--{name} {text!r}: expected comma-separated numbers, e.g. 48,32,8") from None


def stages_from_args(args):
    """CascadeStage tuple from ``--planes / --interval-ratios / --scales / --loss-weights`` (paper defaults)."""
    from depthlib.models.casmvsnet import PAPER_STAGES, CascadeStage

    fields = {"planes": int, "interval_ratios": float, "scales": int, "loss_weights": float}
    given = {name: _numbers(getattr(args, name), kind, name.replace("_", "-"))
             for name, kind in fields.items() if getattr(args, name, None)}
    if not given:
        return PAPER_STAGES
    count = len(next(iter(given.values())))
    if any(len(values) != count for values in given.values()):
        raise SystemExit(f"stage settings of different lengths: {given}; give one value per stage")
    if count != len(PAPER_STAGES) and set(given) != set(fields):
        raise SystemExit(f"{count} stages: give --planes, --interval-ratios, --scales and --loss-weights "
                         "(the defaults are the paper's 3 stages)")
    paper = dict(zip(fields, zip(*(dataclasses.astuple(s) for s in PAPER_STAGES))))
    values = {name: given.get(name, paper[name]) for name in fields}
    try:
        return tuple(CascadeStage(*(values[name][i] for name in fields)) for i in range(count))
    except ValueError as error:
        raise SystemExit(str(error)) from None


def _init_weights(model, path):
    """--init: a casmvsnet checkpoint (every weight) or an mvsnet one (encoder + first regulariser)."""
    from depthlib.models import load_mvsnet
    from depthlib.models.casmvsnet import init_from_mvsnet
    from depthlib.checkpoint_io import load_weights

    weights, metadata = load_weights(path)
    kind = metadata.get("model", "mvsnet")
    if kind == "casmvsnet":
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
        return "all weights"
    if kind == "mvsnet":
        return f"{len(init_from_mvsnet(model, load_mvsnet(path)))} MVSNet tensors (encoder, first regulariser)"
    raise ValueError(f"--init {path} holds a {kind!r} model, expected 'casmvsnet' or 'mvsnet'")


def train_casmvsnet(args) -> int:
    """The cascade's run on ``cli_train``'s set-up: left-out options take the resumed run's settings."""
    from depthlib.cli_train import fit_and_report, train_config
    from depthlib.data import DTUMVSFull
    from depthlib.models.casmvsnet import CasMVSNet, CasMVSNetTask, evaluate_casmvsnet
    from depthlib.profiles import get_profile
    from depthlib.train import Trainer

    profile = get_profile(args.profile)
    stored, _ = args.previous
    stages = stages_from_args(args)
    n_views = first_given(args.n_views, stored.get("n_views"), profile.n_views)
    n_depths = first_given(args.n_depths, stored.get("n_depths"), _DTU_PLANES)
    interval_scale = first_given(args.interval_scale, stored.get("interval_scale"))
    metadata = {"model": "casmvsnet", "stages": [vars(s).copy() for s in stages], "n_views": n_views,
                "n_depths": n_depths, "interval_scale": interval_scale, "data": data_label(args.data),
                "init": Path(args.init).name if args.init else None}
    root = dtu_root(args.data, profile, args.n_scans, args.size, full=True)
    sets = {split: DTUMVSFull(root, split, n_views=n_views, n_depths=n_depths, interval_scale=interval_scale)
            for split in ("train", "val")}
    model = CasMVSNet(stages)
    initialised = _init_weights(model, args.init) if args.init else None
    config = train_config(args, profile, lr=1e-3)
    trainer = Trainer(model, sets["train"], CasMVSNetTask(stages), args.out, config, metadata=metadata,
                      evaluate=(lambda trained: evaluate_casmvsnet(trained, sets["val"])) if args.val else None)
    if trainer.rank == 0:
        height, width = sets["train"][0]["imgs"].shape[-2:]
        planes = "/".join(str(s.planes) for s in stages)
        print(f"CasMVSNet ({planes} planes) on {len(sets['train'])} training samples of {n_views} views at "
              f"{height}x{width}, {config.epochs} epochs of {trainer.steps_per_epoch} steps, device {trainer.device}"
              + (f"; started from {initialised} of {Path(args.init).name}" if initialised else ""))
    return fit_and_report(trainer, args)


def eval_casmvsnet(args) -> int:
    """``eval casmvsnet``: each stage's less-one / less-three / MAE table (and an MVSNet's, with --mvsnet)."""
    from depthlib.bench import format_table
    from depthlib.data import DTUMVSFull
    from depthlib.models import load_mvsnet
    from depthlib.models.casmvsnet import evaluate_casmvsnet, load_casmvsnet
    from depthlib.profiles import get_profile

    profile = get_profile(args.profile)
    model = load_casmvsnet(args.ckpt).to(profile.device)
    mvsnet = load_mvsnet(args.mvsnet).to(profile.device) if args.mvsnet else None
    metadata = model.metadata
    n_views = first_given(args.n_views, metadata.get("n_views"), profile.n_views)
    interval_planes = first_given(args.interval_planes, profile.n_depths)
    test_set = DTUMVSFull(dtu_root(args.data, profile, args.n_scans, args.size, full=True), "test", n_views=n_views,
                          n_depths=metadata.get("n_depths", _DTU_PLANES), interval_scale=metadata.get("interval_scale"))
    metrics = evaluate_casmvsnet(model, test_set, mvsnet=mvsnet, interval_planes=interval_planes)
    height, width = test_set[0]["imgs"].shape[-2:]
    print(f"CasMVSNet on {len(test_set)} test samples, {n_views} views, {height}x{width}; less-one / less-three: "
          f"fraction within 1 / 3 intervals of {interval_planes} planes over the depth range; mae in scene units "
          "(mm for DTU); 'final' and MVSNet at full resolution, stages at their own")
    rows = [("final (full resolution)", "")]
    rows += [(f"stage {i} ({s.planes} planes, 1/{s.scale})", f"stage{i}_") for i, s in enumerate(model.stages, 1)]
    if mvsnet is not None:
        rows.append((f"MVSNet ({Path(args.mvsnet).name}), up-sampled", "mvsnet_"))
    print(format_table([{"depth": name, **{key: f"{metrics[prefix + key]:.4f}" for key in
                                            ("less_one", "less_three", "mae")}} for name, prefix in rows]))
    return 0


def infer_casmvsnet(args) -> int:
    """``infer casmvsnet``: every view's depth and confidence maps of a scan, in MVSNet's output layout."""
    import numpy as np
    import torch
    from PIL import Image

    from depthlib.data import DTUMVS, MVSScan, write_cam_file, write_pair_file, write_pfm
    from depthlib.geometry import scale_intrinsics
    from depthlib.models.casmvsnet import load_casmvsnet
    from depthlib.profiles import get_profile

    profile = get_profile(args.profile)
    model = load_casmvsnet(args.ckpt).to(profile.device)
    n_views = first_given(args.n_views, model.metadata.get("n_views"), profile.n_views)
    n_depths = model.metadata.get("n_depths", _DTU_PLANES)
    interval_scale = first_given(args.interval_scale, model.metadata.get("interval_scale"))
    if args.data:  # a scan of the training layout (no ground truth needed)
        root = dtu_root(args.data, profile, args.n_scans, args.size, full=True)
        dataset = DTUMVS(root, "test", n_views=n_views, n_depths=n_depths, interval_scale=interval_scale,
                         scans=[args.scan])
    else:
        dataset = MVSScan(args.scan, n_views=n_views, n_depths=n_depths, size=args.size, interval_scale=interval_scale)
    out = Path(args.out)
    folders = ["depth_est", "confidence", "cams", "images"] + [f"depth_stage{i}" for i in range(1, len(model.stages))]
    for folder in folders:
        (out / folder).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            result = model(*(item[key][None].to(profile.device) for key in ("imgs", "proj_matrices", "depth_values")))
            view = int(item["view_ids"][0])
            write_pfm(out / "depth_est" / f"{view:08d}.pfm", result["depth"][0, 0].float().cpu().numpy())
            write_pfm(out / "confidence" / f"{view:08d}.pfm",
                      result["photometric_confidence"][0, 0].float().cpu().numpy())
            for i, stage in enumerate(result["stages"][:-1], start=1):
                write_pfm(out / f"depth_stage{i}" / f"{view:08d}.pfm", stage["depth"][0, 0].float().cpu().numpy())
            depth_values, scale = item["depth_values"], 4 / model.stages[-1].scale
            write_cam_file(out / "cams" / f"{view:08d}_cam.txt", item["extrinsics"][0].double().numpy(),
                           scale_intrinsics(item["intrinsics"][0].double().numpy(), scale), float(depth_values[0]),
                           float(item["depth_interval"]), len(depth_values), float(depth_values[-1]))
            image = (item["imgs"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(image).save(out / "images" / f"{view:08d}.png")
    write_pair_file(out / "pair.txt", dataset.pairs)
    print(f"wrote depth_est/ (the last stage, {result['depth'].shape[-2]}x{result['depth'].shape[-1]}), "
          f"depth_stage*/ (the coarser stages), confidence/ (PFM), cams/ (K at the depth-map resolution), images/ "
          f"and pair.txt for {len(dataset)} views to {out} in {time.perf_counter() - start:.1f} s")
    return 0
