"""Command line: ``python -m depthlib <command>`` (``python -m depthlib --help`` lists them).

``render`` writes a synthetic data set in a real on-disk format (chapter 01); ``train``, ``eval``
and ``export`` train DenseDepth or MVSNet, print their metrics and pack their weights (chapters 05,
06, 08, 09, 11); ``infer mvsnet`` writes depth and confidence maps of a scan and ``fuse`` turns them
into a point cloud (chapter 10).
Under ``torchrun --nproc_per_node N -m depthlib train ...`` training runs with DDP.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


def _size(text: str):
    try:
        height, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH (e.g. 480x640), got {text!r}") from None
    return height, width


def _render(args) -> int:
    from depthlib.data import write_dtu_like, write_nyu_like
    from depthlib.profiles import get_profile

    profile = get_profile(args.profile)
    start = time.perf_counter()
    if args.format == "nyu":
        height, width = args.size or profile.nyu_render_size
        out = write_nyu_like(args.out, n_train=args.n_train or profile.nyu_train, n_test=args.n_test or profile.nyu_test,
                             height=height, width=width, seed=args.seed, zip=args.zip)
    else:
        height, width = args.size or profile.mvs_size
        n_scans = args.n_scans or profile.mvs_train_scans + profile.mvs_test_scans
        if args.first_scan < 1:
            raise SystemExit(f"--first-scan {args.first_scan}: expected a scan number >= 1")
        out = write_dtu_like(args.out, n_scans=n_scans, n_views=args.n_views or profile.mvs_views_per_scan,
                             height=height, width=width, n_lights=args.n_lights or profile.mvs_lights, seed=args.seed,
                             scan_ids=range(args.first_scan, args.first_scan + n_scans))
    print(f"wrote {args.format} set ({height}x{width}) to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _nyu_data(spec: str, profile, n_train=None, n_test=None):
    """'synthetic' (the cached rendered set) or 'nyu:PATH' (a folder with data/ or nyu_data.zip)."""
    from depthlib.data import nyu_synthetic

    if spec == "synthetic":
        return nyu_synthetic(profile, n_train=n_train, n_test=n_test)
    if spec.startswith("nyu:"):
        return spec[4:]
    raise SystemExit(f"--data {spec!r}: expected 'synthetic' or 'nyu:PATH'")


def _train_densedepth(args) -> int:
    from depthlib.data import NYUDepth
    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth
    from depthlib.profiles import get_profile
    from depthlib.train import DenseDepthTask, TrainConfig, Trainer

    profile = get_profile(args.profile)
    root = _nyu_data(args.data, profile, args.n_train, args.n_test)
    size = args.size or profile.nyu_size
    train_set = NYUDepth(root, "train", size=size, augment=True)
    test_set = NYUDepth(root, "test", size=size)
    encoder = args.encoder or profile.densedepth_encoder
    pretrained = {"none": False, "imagenet": True}.get(args.pretrained, args.pretrained)
    model = DenseDepth(encoder, pretrained=pretrained)
    if args.init:  # fine-tune: start from these weights (a fresh optimiser and schedule)
        from depthlib.models import load_densedepth

        init = load_densedepth(args.init)
        if init.metadata.get("encoder") != encoder:
            raise ValueError(f"--init {args.init} holds a {init.metadata.get('encoder')!r} encoder, "
                             f"but this run trains {encoder!r} (set --encoder to match)")
        model.load_state_dict(init.state_dict())
    config = TrainConfig(epochs=args.epochs or profile.epochs, batch_size=args.batch_size or profile.batch_size,
                         lr=1e-4 if args.lr is None else args.lr, schedule=args.schedule, amp=args.amp,
                         channels_last=args.channels_last,
                         compile=args.compile, num_workers=profile.num_workers, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, progress=not args.no_progress)

    def validate(trained):
        return evaluate(lambda images: predict_depth(trained, images, args.max_depth), test_set,
                        flip_tta=False, crop=None, max_depth=args.max_depth)

    metadata = {"model": "densedepth", "encoder": encoder, "size": list(size), "max_depth": args.max_depth,
                "data": _data_label(args.data), "init": Path(args.init).name if args.init else None}
    trainer = Trainer(model, train_set, DenseDepthTask(args.max_depth), args.out, config,
                      evaluate=validate if args.val else None, metadata=metadata)
    if trainer.rank == 0:
        print(f"DenseDepth ({encoder}) on {len(train_set)} training images of {size[0]}x{size[1]}, "
              f"{config.epochs} epochs of {trainer.steps_per_epoch} steps, device {trainer.device}")
    history = trainer.fit(resume=args.resume)
    if trainer.rank == 0 and history:
        print(f"done: {trainer.checkpoint_path}; last epoch: " +
              ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if isinstance(v, float)))
    return 0


def _dtu_data(spec: str, profile, n_scans=None):
    """'synthetic' (the cached rendered DTU-like set) or 'dtu:PATH' (MVSNet's DTU training layout)."""
    from depthlib.data import dtu_synthetic

    if spec == "synthetic":
        return dtu_synthetic(profile, n_scans=n_scans)
    if spec.startswith("dtu:"):
        return spec[4:]
    raise SystemExit(f"--data {spec!r}: expected 'synthetic' or 'dtu:PATH'")


def _data_label(spec: str) -> str:
    """What a checkpoint records about its data: 'synthetic', or the kind and folder name (no local path)."""
    kind, _, path = spec.partition(":")
    return f"{kind}:{Path(path).name}" if path else spec


def _mvs_sizes(args, profile, metadata=None):
    metadata = metadata or {}
    n_views = args.n_views or metadata.get("n_views") or profile.n_views
    n_depths = args.n_depths or metadata.get("n_depths") or profile.n_depths
    return n_views, n_depths


def _train_mvsnet(args) -> int:
    from depthlib.data import DTUMVS
    from depthlib.models import MVSNet, evaluate_mvsnet
    from depthlib.profiles import get_profile
    from depthlib.train import MVSNetTask, TrainConfig, Trainer

    profile = get_profile(args.profile)
    root = _dtu_data(args.data, profile, args.n_scans)
    n_views, n_depths = _mvs_sizes(args, profile)
    train_set = DTUMVS(root, "train", n_views=n_views, n_depths=n_depths, interval_scale=args.interval_scale)
    val_set = DTUMVS(root, "val", n_views=n_views, n_depths=n_depths, interval_scale=args.interval_scale)
    model = MVSNet(refine=not args.no_refine)
    if args.init:  # fine-tune: start from these weights (a fresh optimiser and schedule)
        from depthlib.models import load_mvsnet

        model.load_state_dict(load_mvsnet(args.init).state_dict())
    if args.freeze_backbone:
        if args.no_refine or not args.init or args.refine_weight == 0:
            raise SystemExit("--freeze-backbone trains the refinement network alone on a trained backbone: "
                             "it needs --init, a refinement (no --no-refine) and --refine-weight > 0")
        model.freeze_backbone()
    config = TrainConfig(epochs=args.epochs or profile.epochs, batch_size=args.batch_size or profile.batch_size,
                         lr=1e-3 if args.lr is None else args.lr, schedule=args.schedule, amp=args.amp,
                         channels_last=args.channels_last,
                         compile=args.compile, num_workers=profile.num_workers, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    metadata = {"model": "mvsnet", "refine": not args.no_refine, "n_views": n_views, "n_depths": n_depths,
                "interval_scale": args.interval_scale, "data": _data_label(args.data),
                "init": Path(args.init).name if args.init else None, "refine_weight": args.refine_weight,
                "frozen_backbone": args.freeze_backbone}
    trainer = Trainer(model, train_set, MVSNetTask(args.refine_weight), args.out, config,
                      evaluate=(lambda trained: evaluate_mvsnet(trained, val_set)) if args.val else None,
                      metadata=metadata)
    if trainer.rank == 0:
        height, width = train_set[0]["imgs"].shape[-2:]
        print(f"MVSNet on {len(train_set)} training samples of {n_views} views at {height}x{width}, D={n_depths}, "
              f"{config.epochs} epochs of {trainer.steps_per_epoch} steps, device {trainer.device}")
    history = trainer.fit(resume=args.resume)
    if trainer.rank == 0 and history:
        print(f"done: {trainer.checkpoint_path}; last epoch: " +
              ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if isinstance(v, float)))
    return 0


def _train(args) -> int:
    return (_train_mvsnet if args.model == "mvsnet" else _train_densedepth)(args)


def _eval_mvsnet(args) -> int:
    from depthlib.bench import format_table
    from depthlib.data import DTUMVS
    from depthlib.models import evaluate_mvsnet, load_mvsnet
    from depthlib.profiles import get_profile

    model = load_mvsnet(args.ckpt).to(get_profile(args.profile).device)
    profile = get_profile(args.profile)
    n_views, n_depths = _mvs_sizes(args, profile, model.metadata)
    interval_scale = args.interval_scale or model.metadata.get("interval_scale")
    test_set = DTUMVS(_dtu_data(args.data, profile, args.n_scans), "test", n_views=n_views, n_depths=n_depths,
                      interval_scale=interval_scale)
    metrics = evaluate_mvsnet(model, test_set, baseline=args.baseline, edge_band=args.edge_band)
    print(f"MVSNet on {len(test_set)} test samples, {n_views} views, D={n_depths}; less-one / less-three: "
          "fraction within 1 / 3 depth intervals; mae in scene units (mm for DTU)")
    regions = (("", ""), (f" edge band ({metrics.get('band_share', 0):.0%})", "band_"), (" elsewhere", "elsewhere_"))
    rows = []
    for region, part in regions if args.edge_band else regions[:1]:
        for name, prefix in (("initial", ""), ("refined", "refined_"), ("plane sweep (ZNCC)", "baseline_")):
            if f"{prefix}{part}less_one" in metrics:
                rows.append({"depth": name + region, **{key: f"{metrics[prefix + part + key]:.4f}"
                                                        for key in ("less_one", "less_three", "mae")}})
    print(format_table(rows))
    return 0


def _eval(args) -> int:
    return (_eval_mvsnet if args.model == "mvsnet" else _eval_densedepth)(args)


def _infer_mvsnet(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from depthlib.data import DTUMVS, MVSScan, write_cam_file, write_pair_file, write_pfm
    from depthlib.models import load_mvsnet
    from depthlib.profiles import get_profile
    from pathlib import Path

    profile = get_profile(args.profile)
    model = load_mvsnet(args.ckpt).to(profile.device)
    n_views, n_depths = _mvs_sizes(args, profile, model.metadata)
    interval_scale = args.interval_scale or model.metadata.get("interval_scale")
    if args.data:  # a scan of the training layout: --data synthetic|dtu:PATH --scan scanN
        dataset = DTUMVS(_dtu_data(args.data, profile, args.n_scans), "test", n_views=n_views, n_depths=n_depths,
                         interval_scale=interval_scale, scans=[args.scan])
        pairs = dataset.pairs
    else:  # MVSNet's test layout: --scan DIR with images/, cams/, pair.txt
        dataset = MVSScan(args.scan, n_views=n_views, n_depths=n_depths, size=args.size,
                          interval_scale=interval_scale)
        pairs = dataset.pairs
    out = Path(args.out)
    for folder in ("depth_est", "depth_init", "confidence", "cams", "images"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            result = model(item["imgs"][None].to(profile.device), item["proj_matrices"][None].to(profile.device),
                           item["depth_values"][None].to(profile.device))
            view = int(item["view_ids"][0])
            final = result.get("refined_depth", result["depth"])
            write_pfm(out / "depth_est" / f"{view:08d}.pfm", final[0, 0].float().cpu().numpy())
            write_pfm(out / "depth_init" / f"{view:08d}.pfm", result["depth"][0, 0].float().cpu().numpy())
            write_pfm(out / "confidence" / f"{view:08d}.pfm",
                      result["photometric_confidence"][0, 0].float().cpu().numpy())
            depth_values = item["depth_values"]
            write_cam_file(out / "cams" / f"{view:08d}_cam.txt", item["extrinsics"][0].double().numpy(),
                           item["intrinsics"][0].double().numpy(), float(depth_values[0]),
                           float(item["depth_interval"]), len(depth_values), float(depth_values[-1]))
            image = (item["imgs"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(image).save(out / "images" / f"{view:08d}.png")
    write_pair_file(out / "pair.txt", pairs)
    print(f"wrote depth_est/, depth_init/, confidence/ (PFM), cams/ (K at the depth-map resolution), images/ and "
          f"pair.txt for {len(dataset)} views to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _fuse(args) -> int:
    from depthlib.fusion import fuse_scan, write_ply

    start = time.perf_counter()
    points, colors, stats = fuse_scan(args.scan, depth_folder=args.depth_folder,
                                      photometric_threshold=args.photometric_threshold,
                                      pixel_threshold=args.pixel_threshold, depth_threshold=args.depth_threshold,
                                      min_views=args.min_views)
    seconds = time.perf_counter() - start
    write_ply(args.out, points, colors)
    print(f"fused {len(points)} points from {len(stats['views'])} views in {seconds:.2f} s; wrote {args.out}")
    return 0


def _add_fuse_command(commands) -> None:
    fuse = commands.add_parser("fuse", help="fuse the depth maps written by 'infer mvsnet' into a PLY point cloud")
    fuse.add_argument("--scan", required=True, help="the folder written by 'infer mvsnet' (depth_est/, confidence/, "
                                                    "cams/, images/, pair.txt)")
    fuse.add_argument("--out", required=True, help="output point cloud, binary PLY (e.g. cloud.ply)")
    fuse.add_argument("--depth-folder", default="depth_est", help="depth_est (refined) or depth_init")
    fuse.add_argument("--photometric-threshold", type=float, default=0.8, help="keep confidence > this")
    fuse.add_argument("--pixel-threshold", type=float, default=1.0, help="max reprojection error, pixels")
    fuse.add_argument("--depth-threshold", type=float, default=0.01, help="max relative depth difference")
    fuse.add_argument("--min-views", type=int, default=3, help="source views a pixel must agree with")
    fuse.set_defaults(run=_fuse)


def _eval_densedepth(args) -> int:
    from depthlib.bench import format_table
    from depthlib.data import NYUDepth
    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth
    from depthlib.profiles import get_profile
    from depthlib.train import load_weights

    weights, metadata = load_weights(args.ckpt)
    profile = get_profile(args.profile)
    size = args.size or tuple(metadata.get("size", profile.nyu_size))
    max_depth = metadata.get("max_depth", args.max_depth)
    model = DenseDepth(args.encoder or metadata.get("encoder", "densenet169"))
    model.load_state_dict(weights)
    model.to(profile.device)
    test_set = NYUDepth(_nyu_data(args.data, profile, n_train=0, n_test=args.n_test), "test", size=size)
    metrics = evaluate(lambda images: predict_depth(model, images, max_depth), test_set,
                       flip_tta=not args.no_flip_tta, crop=None if args.crop == "none" else args.crop,
                       max_depth=max_depth)
    print(f"DenseDepth ({metadata.get('encoder', '?')}) on {len(test_set)} test images, {size[0]}x{size[1]}, "
          f"flip TTA {'off' if args.no_flip_tta else 'on'}, crop {args.crop}")
    print(format_table([{name: f"{value:.4f}" for name, value in metrics.items()}]))
    return 0


def _export(args) -> int:
    from depthlib.train import export_weights

    out = export_weights(args.ckpt, args.out, half=not args.full_precision)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _add_train_commands(commands) -> None:
    train = commands.add_parser("train", help="train a model (densedepth, mvsnet); use torchrun for several GPUs")
    train.add_argument("model", choices=["densedepth", "mvsnet"])
    train.add_argument("--data", default="synthetic",
                       help="'synthetic', or 'nyu:PATH' (folder or nyu_data.zip) / 'dtu:PATH' (DTU training layout)")
    train.add_argument("--profile", default="auto", help="cpu | gpu | auto: default sizes, epochs, batch size")
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt and log.jsonl")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float,
                       help="learning rate (default: 1e-4 for densedepth, as the paper; 1e-3 for mvsnet, as the paper)")
    train.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    train.add_argument("--encoder", choices=["densenet169", "densenet121", "small"],
                       help="default: the profile's (small for cpu, densenet169 for gpu)")
    train.add_argument("--pretrained", default="none", help="none | imagenet (needs internet) | PATH to weights")
    train.add_argument("--size", type=_size, help="input size HEIGHTxWIDTH (default: the profile's)")
    train.add_argument("--n-train", type=int, help="synthetic data: training frames (default: the profile's)")
    train.add_argument("--n-test", type=int, help="synthetic data: test frames (default: the profile's)")
    train.add_argument("--max-depth", type=float, default=10.0, help="metres; the network predicts max_depth / depth")
    train.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto")
    train.add_argument("--channels-last", action="store_true")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    train.add_argument("--val", action="store_true", help="evaluate on the test split after every epoch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--no-progress", action="store_true")
    _add_mvs_arguments(train)
    train.add_argument("--no-refine", action="store_true", help="mvsnet: without the refinement network")
    train.add_argument("--refine-weight", type=float, default=0.5,
                       help="mvsnet: w in total = (1 - w) initial + w refined loss (0.5: MVSNet's average)")
    train.add_argument("--freeze-backbone", action="store_true",
                       help="mvsnet: train the refinement alone on the --init backbone (frozen weights and BN)")
    train.add_argument("--init", help="start from these weights (fine-tuning; a checkpoint or exported file of the same model)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="print the depth metrics of a trained model")
    evaluate.add_argument("model", choices=["densedepth", "mvsnet"])
    evaluate.add_argument("--ckpt", required=True, help="checkpoint.pt or exported weights")
    evaluate.add_argument("--data", default="synthetic")
    evaluate.add_argument("--profile", default="auto")
    evaluate.add_argument("--encoder", choices=["densenet169", "densenet121", "small"])
    evaluate.add_argument("--size", type=_size)
    evaluate.add_argument("--n-test", type=int)
    evaluate.add_argument("--max-depth", type=float, default=10.0)
    evaluate.add_argument("--crop", choices=["eigen", "none"], default="none",
                          help="eigen: NYU's evaluation crop (for the real NYU test set)")
    evaluate.add_argument("--no-flip-tta", action="store_true")
    _add_mvs_arguments(evaluate)
    evaluate.add_argument("--baseline", action="store_true", help="mvsnet: also the classical plane sweep")
    evaluate.add_argument("--edge-band", action="store_true",
                          help="mvsnet: also inside the band around depth discontinuities and elsewhere")
    evaluate.set_defaults(run=_eval)

    infer = commands.add_parser("infer", help="write depth and confidence maps of every view of a scan (mvsnet)")
    infer.add_argument("model", choices=["mvsnet"])
    infer.add_argument("--ckpt", required=True, help="checkpoint.pt or exported weights")
    infer.add_argument("--scan", required=True,
                       help="a folder in MVSNet's test layout (images/, cams/, pair.txt), or with --data a scan "
                            "name of the training layout (e.g. scan9)")
    infer.add_argument("--data", help="'synthetic' or 'dtu:PATH': read --scan from that training-layout set")
    infer.add_argument("--out", required=True, help="output folder: depth_est/, confidence/, cams/, images/")
    infer.add_argument("--profile", default="auto")
    infer.add_argument("--size", type=_size, help="test layout: resize images to HEIGHTxWIDTH (multiples of 32)")
    _add_mvs_arguments(infer)
    infer.set_defaults(run=_infer_mvsnet)

    export = commands.add_parser("export", help="pack a checkpoint's model weights (fp16) into a small file")
    export.add_argument("--ckpt", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--full-precision", action="store_true")
    export.set_defaults(run=_export)


def _add_mvs_arguments(parser) -> None:
    parser.add_argument("--n-views", type=int, help="mvsnet: views per sample, reference included (default: profile)")
    parser.add_argument("--n-depths", type=int, help="mvsnet: depth planes D, a multiple of 8 (default: profile)")
    parser.add_argument("--interval-scale", type=float,
                        help="mvsnet: multiply the cam file's depth interval (default: D planes span its range)")
    parser.add_argument("--n-scans", type=int, help="mvsnet, synthetic data: number of scans (default: profile)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m depthlib", description="depthlib command line")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write a synthetic data set in the NYU (DenseDepth) or DTU (MVSNet) format")
    render.add_argument("format", choices=["nyu", "dtu"])
    render.add_argument("--out", required=True, help="output folder")
    render.add_argument("--profile", default="auto", help="cpu | gpu | auto: default sizes and counts")
    render.add_argument("--size", type=_size, help="image size HEIGHTxWIDTH (default: the profile's)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--n-train", type=int, help="nyu: training frames")
    render.add_argument("--n-test", type=int, help="nyu: test frames")
    render.add_argument("--zip", action="store_true", help="nyu: also pack nyu_data.zip, like DenseDepth's download")
    render.add_argument("--n-scans", type=int, help="dtu: number of scans")
    render.add_argument("--first-scan", type=int, default=1,
                        help="dtu: scans are numbered from this one (scan N shows scene 10000 * seed + N)")
    render.add_argument("--n-views", type=int, help="dtu: views per scan")
    render.add_argument("--n-lights", type=int, help="dtu: lighting conditions per view")
    render.set_defaults(run=_render)
    _add_train_commands(commands)
    _add_fuse_command(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
