"""Command line: ``python -m depthlib <command>`` (``python -m depthlib --help`` lists them).

``render`` writes a synthetic data set in a real on-disk format (chapter 01); ``train``, ``eval``
and ``export`` train DenseDepth or MVSNet, print their metrics and pack their weights (chapters 05,
06, 08, 09, 11); ``infer mvsnet`` writes depth and confidence maps of a scan and ``fuse`` turns them
into a point cloud (chapter 10).
Under ``torchrun --nproc_per_node N -m depthlib train ...`` training runs with DDP.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from depthlib.cascade_cli import add_stage_arguments

__all__ = ["main", "build_parser"]


from depthlib import cli_args as arg


def _render(args) -> int:
    from depthlib.data import write_dtu_like, write_nyu_like
    from depthlib.data.dtu import dtu_splits
    from depthlib.profiles import get_profile

    profile = get_profile(args.profile)
    marker = {"nyu": ("data/nyu2_train.csv", "nyu_data.zip"), "dtu": ("Cameras/pair.txt", "lists")}[args.format]
    found = [name for name in marker if (Path(args.out) / name).exists()]
    if found and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a data set ({', '.join(found)}): choose another --out, "
                              "or pass --overwrite to write over it")
    start = time.perf_counter()
    if args.format == "nyu":
        height, width = arg.first_given(args.size, profile.nyu_render_size)
        out = write_nyu_like(args.out, n_train=arg.first_given(args.n_train, profile.nyu_train),
                             n_test=arg.first_given(args.n_test, profile.nyu_test),
                             height=height, width=width, seed=args.seed, zip=args.zip)
    else:
        height, width = arg.first_given(args.size, profile.mvs_size)
        n_scans = arg.first_given(args.n_scans, profile.mvs_train_scans + profile.mvs_test_scans)
        n_views = arg.first_given(args.n_views, profile.mvs_views_per_scan)
        n_lights = arg.first_given(args.n_lights, profile.mvs_lights)
        scan_ids = range(args.first_scan, args.first_scan + n_scans)
        # the profile's set: its own test scans, as dtu_synthetic writes it; --n-scans: the last fifth
        splits = dtu_splits(scan_ids, profile.mvs_test_scans) if args.n_scans is None else None
        out = write_dtu_like(args.out, n_scans=n_scans, n_views=n_views, height=height, width=width, n_lights=n_lights,
                             seed=args.seed, scan_ids=scan_ids, splits=splits)
        if args.raw_depths:  # CasMVSNet's full-resolution depth maps (train casmvsnet --data dtu:OUT)
            from depthlib.data import write_raw_depths
            write_raw_depths(out, seed=args.seed)
    print(f"wrote {args.format} set ({height}x{width}) to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _eval_mvsnet(args) -> int:
    from depthlib.bench import format_table
    from depthlib.data import DTUMVS
    from depthlib.models import evaluate_mvsnet, load_mvsnet
    from depthlib.profiles import get_profile

    model = load_mvsnet(args.ckpt).to(get_profile(args.profile).device)
    profile = get_profile(args.profile)
    n_views, n_depths = arg.mvs_sizes(args, profile, model.metadata)
    interval_scale = arg.first_given(args.interval_scale, model.metadata.get("interval_scale"))
    root = arg.dtu_root(args.data, profile, args.n_scans, args.size)
    test_set = DTUMVS(root, "test", n_views=n_views, n_depths=n_depths, interval_scale=interval_scale)
    metrics = evaluate_mvsnet(model, test_set, baseline=args.baseline, edge_band=args.edge_band)
    height, width = test_set[0]["imgs"].shape[-2:]
    print(f"MVSNet on {len(test_set)} test samples, {n_views} views of {height}x{width}, D={n_depths}; "
          "less-one / less-three: fraction within 1 / 3 depth intervals; mae in scene units (mm for DTU)")
    regions = (("", ""), (f" edge band ({metrics.get('band_share', 0):.0%})", "band_"), (" elsewhere", "elsewhere_"))
    rows = []
    for region, part in regions if args.edge_band else regions[:1]:
        for name, prefix in (("initial", ""), ("refined", "refined_"), ("plane sweep (ZNCC)", "baseline_")):
            if f"{prefix}{part}less_one" in metrics:
                rows.append({"depth": name + region, **{key: f"{metrics[prefix + part + key]:.4f}"
                                                        for key in ("less_one", "less_three", "mae")}})
    print(format_table(rows))
    return 0


def _train(args) -> int:
    from depthlib import cli_train
    from depthlib.cascade_cli import train_casmvsnet

    cli_train.prepare_run(args)
    run = {"densedepth": cli_train.train_densedepth, "mvsnet": cli_train.train_mvsnet, "casmvsnet": train_casmvsnet}
    return run[args.model](args)


def _eval(args) -> int:
    if args.net_size is not None and args.model != "densedepth":
        raise ValueError(f"--net-size is for eval densedepth; eval {args.model} runs at --size")
    if args.model == "casmvsnet":
        from depthlib.cascade_cli import eval_casmvsnet
        return eval_casmvsnet(args)
    return (_eval_mvsnet if args.model == "mvsnet" else _eval_densedepth)(args)


def _infer(args) -> int:
    if args.model == "casmvsnet":
        from depthlib.cascade_cli import infer_casmvsnet
        return infer_casmvsnet(args)
    return _infer_mvsnet(args)


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
    n_views, n_depths = arg.mvs_sizes(args, profile, model.metadata)
    interval_scale = arg.first_given(args.interval_scale, model.metadata.get("interval_scale"))
    if args.data:  # a scan of the training layout: --data synthetic|dtu:PATH --scan scanN
        root = arg.dtu_root(args.data, profile, args.n_scans, args.size)
        dataset = DTUMVS(root, "test", n_views=n_views, n_depths=n_depths, interval_scale=interval_scale,
                         scans=[args.scan])
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
    counts = stats["counts"]
    kept = (f"of {counts['pixels']} reference pixels {counts['with_depth']} have depth, {counts['photometric']} pass "
            f"the photometric filter (confidence > {args.photometric_threshold:g}), {counts['geometric']} the "
            f"geometric one (>= {args.min_views} agreeing views), {counts['kept']} both")
    if len(points) == 0:  # valid, but almost surely a mistake: say which filter removed everything
        arg.report_error(f"fused 0 points from {len(stats['views'])} views ({kept}); no PLY written. Check the "
                         "thresholds, --depth-folder and that cams/ hold K at the depth-map resolution")
        return 1
    write_ply(args.out, points, colors)
    print(f"fused {len(points)} points from {len(stats['views'])} views in {seconds:.2f} s; wrote {args.out}\n"
          f"filters: {kept}")
    return 0


def _add_fuse_command(commands) -> None:
    fuse = commands.add_parser("fuse", help="fuse the depth maps written by 'infer mvsnet' into a PLY point cloud")
    fuse.add_argument("--scan", required=True, help="the folder written by 'infer mvsnet' (depth_est/, confidence/, "
                                                    "cams/, images/, pair.txt)")
    fuse.add_argument("--out", required=True, help="output point cloud, binary PLY (e.g. cloud.ply)")
    fuse.add_argument("--depth-folder", default="depth_est", help="depth_est (refined) or depth_init")
    fuse.add_argument("--photometric-threshold", type=arg.real(0.0, 1.0, high_open=True), default=0.8,
                      help="keep confidence > this, in [0, 1)")
    fuse.add_argument("--pixel-threshold", type=arg.positive_real, default=1.0, help="max reprojection error, pixels")
    fuse.add_argument("--depth-threshold", type=arg.positive_real, default=0.01, help="max relative depth difference")
    fuse.add_argument("--min-views", type=arg.count, default=3, help="source views a pixel must agree with (0: off)")
    fuse.set_defaults(run=_fuse)


def _eval_densedepth(args) -> int:
    from depthlib.bench import format_table
    from depthlib.data import NYUDepth
    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth
    from depthlib.profiles import get_profile
    from depthlib.checkpoint_io import load_model_state, run_differences
    from depthlib.checkpoint_io import load_weights

    weights, metadata = load_weights(args.ckpt)
    if metadata.get("model", "densedepth") != "densedepth":
        raise ValueError(f"{args.ckpt} holds a {metadata['model']!r} model, expected 'densedepth' "
                         f"(try: eval {metadata['model']})")
    # the network predicts max_depth / depth: another max_depth would rescale every prediction
    asked = {key: value for key, value in (("encoder", args.encoder), ("max_depth", args.max_depth)) if value is not None}
    run_differences(metadata, asked, args.ckpt)
    profile = get_profile(args.profile)
    trained_size = metadata.get("size") and tuple(metadata["size"])
    size = arg.first_given(args.size, trained_size, profile.nyu_size)
    # the network runs at the size it was trained at (chapter 06: its depths are wrong at another one)
    net_size = tuple(arg.first_given(args.net_size, trained_size, size))
    max_depth = arg.first_given(args.max_depth, metadata.get("max_depth"), 10.0)
    model = DenseDepth(arg.first_given(args.encoder, metadata.get("encoder"), "densenet169"))
    load_model_state(model, weights, args.ckpt)
    model.to(profile.device)
    test_set = NYUDepth(arg.nyu_root(args.data, profile, n_train=0, n_test=args.n_test), "test", size=size)
    metrics = evaluate(lambda images: predict_depth(model, images, max_depth, size=net_size), test_set,
                       flip_tta=not args.no_flip_tta, crop=None if args.crop == "none" else args.crop,
                       max_depth=max_depth)
    network = f" (network at {net_size[0]}x{net_size[1]})" if net_size != tuple(size) else ""
    print(f"DenseDepth ({metadata.get('encoder', '?')}) on {len(test_set)} test images, {size[0]}x{size[1]}{network}, "
          f"flip TTA {'off' if args.no_flip_tta else 'on'}, crop {args.crop}")
    print(format_table([{name: f"{value:.4f}" for name, value in metrics.items()}]))
    return 0


def _export(args) -> int:
    from depthlib.checkpoint_io import export_weights

    out = export_weights(args.ckpt, args.out, half=not args.full_precision)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _add_train_command(commands) -> None:
    """``train``: every model, every data set, one command (torchrun for several GPUs)."""
    train = commands.add_parser("train", help="train a model (densedepth, mvsnet, casmvsnet); use torchrun for several GPUs")
    train.add_argument("model", choices=["densedepth", "mvsnet", "casmvsnet"])
    train.add_argument("--data", default="synthetic",
                       help="'synthetic', or 'nyu:PATH' (folder or nyu_data.zip) / 'dtu:PATH' (DTU training layout)")
    train.add_argument("--profile", default="auto", help="cpu | gpu | auto: default sizes, epochs, batch size")
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt and log.jsonl")
    train.add_argument("--epochs", type=arg.positive, help="default: the resumed run's, else the profile's")
    train.add_argument("--batch-size", type=arg.positive)
    train.add_argument("--lr", type=arg.non_negative_real,
                       help="learning rate (default: 1e-4 for densedepth, as the paper; 1e-3 for mvsnet, as the paper)")
    train.add_argument("--schedule", choices=["constant", "cosine"], help="default: constant")
    train.add_argument("--warmup-steps", type=arg.count,
                       help="the lr rises linearly to --lr over the first N steps, then follows --schedule "
                            "(default 0: no warm-up)")
    train.add_argument("--encoder", choices=["densenet169", "densenet121", "small"],
                       help="default: the profile's (small for cpu, densenet169 for gpu)")
    train.add_argument("--pretrained", type=arg.pretrained, default="none",
                       help="none | imagenet (needs internet) | PATH to weights")
    train.add_argument("--size", type=arg.size,
                       help="input size HEIGHTxWIDTH (mvsnet, casmvsnet: the size --data synthetic is rendered at; "
                            "default: the profile's)")
    train.add_argument("--n-train", type=arg.positive, help="synthetic data: training frames (default: the profile's)")
    train.add_argument("--n-test", type=arg.positive, help="synthetic data: test frames (default: the profile's)")
    train.add_argument("--max-depth", type=arg.positive_real,
                       help="metres (default 10); the network predicts max_depth / depth")
    train.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto")
    train.add_argument("--channels-last", action="store_true")
    train.add_argument("--compile", nargs="?", const=True, default=False, type=arg.compile_mode, metavar="MODE",
                       help="torch.compile the model, in torch.compile's default mode or in MODE (e.g. "
                            "reduce-overhead: CUDA graphs, for steps that wait on kernel launches)")
    train.add_argument("--cudnn-benchmark", action="store_true",
                       help="let cuDNN pick the fastest convolution algorithms for the run's sizes (GPU)")
    train.add_argument("--sync-bn", action="store_true",
                       help="under torchrun on GPUs: BatchNorm statistics over the global batch")
    train.add_argument("--checkpoint-every", type=arg.positive, help="also checkpoint every N steps")
    train.add_argument("--val", action="store_true", help="evaluate on the test split after every epoch")
    train.add_argument("--seed", type=arg.count, help="default 0")
    train.add_argument("--resume", action="store_true",
                       help="continue OUT/checkpoint.pt; options left out take the run's values")
    train.add_argument("--overwrite", action="store_true",
                       help="OUT holds a run: delete its checkpoint and log and start again")
    train.add_argument("--accept-changes", action="store_true",
                       help="--resume / --init with sizes, depth range, planes or optimiser settings other "
                            "than the stored run's: go on with the new ones (the model itself must match)")
    train.add_argument("--no-progress", action="store_true")
    _add_mvs_arguments(train)
    train.add_argument("--no-refine", action="store_true", default=None,
                       help="mvsnet: without the refinement network")
    train.add_argument("--init", type=arg.weights_file,
                       help="start from these weights (fine-tuning; a checkpoint or exported file of the same model; "
                            "casmvsnet also takes an mvsnet one: encoder and first regulariser)")
    train.add_argument("--refine-weight", type=arg.fraction,
                       help="mvsnet: w in total = (1 - w) initial + w refined loss (default 0.5: MVSNet's average)")
    train.add_argument("--freeze-backbone", action="store_true", default=None,
                       help="mvsnet: train the refinement alone on the --init backbone (frozen weights and BN)")
    add_stage_arguments(train)
    train.set_defaults(run=_train)


def _add_eval_command(commands) -> None:
    """``eval``: a trained model's depth metrics."""
    evaluate = commands.add_parser("eval", help="print the depth metrics of a trained model")
    evaluate.add_argument("model", choices=["densedepth", "mvsnet", "casmvsnet"])
    evaluate.add_argument("--ckpt", required=True, type=arg.weights_file, help="checkpoint.pt or exported weights")
    evaluate.add_argument("--data", default="synthetic")
    evaluate.add_argument("--profile", default="auto")
    evaluate.add_argument("--encoder", choices=["densenet169", "densenet121", "small"],
                          help="default: the checkpoint's (another one is an error)")
    evaluate.add_argument("--size", type=arg.size,
                          help="densedepth: the test images' size, where depth is scored (default: the "
                               "checkpoint's); mvsnet, casmvsnet: the size --data synthetic is rendered at "
                               "(default: the profile's)")
    evaluate.add_argument("--net-size", type=arg.size,
                          help="densedepth: the size the network runs at, its depth then resized to --size "
                               "(default: the checkpoint's training size; another size changes the depths it "
                               "predicts, chapter 06)")
    evaluate.add_argument("--n-test", type=arg.positive)
    evaluate.add_argument("--max-depth", type=arg.positive_real,
                          help="default: the checkpoint's (another one is an error: it rescales every prediction)")
    evaluate.add_argument("--crop", choices=["eigen", "none"], default="none",
                          help="eigen: NYU's evaluation crop (for the real NYU test set)")
    evaluate.add_argument("--no-flip-tta", action="store_true")
    _add_mvs_arguments(evaluate)
    evaluate.add_argument("--baseline", action="store_true", help="mvsnet: also the classical plane sweep")
    evaluate.add_argument("--mvsnet", help="casmvsnet: also this MVSNet checkpoint, up-sampled to full resolution")
    evaluate.add_argument("--interval-planes", type=int,
                          help="casmvsnet: less-one's interval is the spacing of this many planes over the depth "
                               "range (default: the profile's MVSNet planes)")
    evaluate.add_argument("--edge-band", action="store_true",
                          help="mvsnet: also inside the band around depth discontinuities and elsewhere")
    evaluate.set_defaults(run=_eval)


def _add_infer_command(commands) -> None:
    """``infer``: depth and confidence maps of a scan."""
    infer = commands.add_parser("infer", help="write depth and confidence maps of every view of a scan (mvsnet, "
                                              "casmvsnet)")
    infer.add_argument("model", choices=["mvsnet", "casmvsnet"])
    infer.add_argument("--ckpt", required=True, type=arg.weights_file, help="checkpoint.pt or exported weights")
    infer.add_argument("--scan", required=True,
                       help="a folder in MVSNet's test layout (images/, cams/, pair.txt), or with --data a scan "
                            "name of the training layout (e.g. scan9)")
    infer.add_argument("--data", help="'synthetic' or 'dtu:PATH': read --scan from that training-layout set")
    infer.add_argument("--out", required=True,
                       help="output folder: depth_est/, depth_init/, confidence/, cams/, images/, pair.txt")
    infer.add_argument("--profile", default="auto")
    infer.add_argument("--size", type=arg.size32,
                       help="test layout: resize images to HEIGHTxWIDTH; --data synthetic: render the set at this size "
                            "(multiples of 32)")
    _add_mvs_arguments(infer)
    infer.set_defaults(run=_infer)


def _add_export_command(commands) -> None:
    """``export``: a checkpoint's weights in a small file."""
    export = commands.add_parser("export", help="pack a checkpoint's model weights (fp16) into a small file")
    export.add_argument("--ckpt", required=True, type=arg.local_file, help="a training checkpoint (or weights file)")
    export.add_argument("--out", required=True,
                        help="the file to write; it may replace an earlier export, never a training checkpoint")
    export.add_argument("--full-precision", action="store_true")
    export.set_defaults(run=_export)


def _add_mvs_arguments(parser) -> None:
    parser.add_argument("--n-views", type=arg.views, help="mvsnet: views per sample, reference included (default: profile)")
    parser.add_argument("--n-depths", type=arg.planes, help="mvsnet: depth planes D, a multiple of 8 (default: profile)")
    parser.add_argument("--interval-scale", type=arg.positive_real,
                        help="mvsnet: multiply the cam file's depth interval (default: D planes span its range)")
    parser.add_argument("--n-scans", type=arg.positive, help="mvsnet, synthetic data: number of scans (default: profile)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m depthlib", description="depthlib command line")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write a synthetic data set in the NYU (DenseDepth) or DTU (MVSNet) format")
    render.add_argument("format", choices=["nyu", "dtu"])
    render.add_argument("--out", required=True, help="output folder")
    render.add_argument("--profile", default="auto", help="cpu | gpu | auto: default sizes and counts")
    render.add_argument("--size", type=arg.size, help="image size HEIGHTxWIDTH (default: the profile's)")
    render.add_argument("--seed", type=arg.count, default=0)
    render.add_argument("--n-train", type=arg.count, help="nyu: training frames")
    render.add_argument("--n-test", type=arg.count, help="nyu: test frames")
    render.add_argument("--zip", action="store_true", help="nyu: also pack nyu_data.zip, like DenseDepth's download")
    render.add_argument("--n-scans", type=arg.positive,
                        help="dtu: number of scans (default: the profile's, with its test scans; given: the last fifth "
                             "are the test and val scans)")
    render.add_argument("--first-scan", type=arg.positive, default=1,
                        help="dtu: scans are numbered from this one (scan N shows scene 10000 * seed + N)")
    render.add_argument("--n-views", type=arg.views, help="dtu: views per scan")
    render.add_argument("--n-lights", type=arg.positive, help="dtu: lighting conditions per view")
    render.add_argument("--overwrite", action="store_true", help="OUT holds a data set: write over it")
    render.add_argument("--raw-depths", action="store_true",
                        help="dtu: also Depths_raw/ (full-resolution depth, CasMVSNet's layout; for casmvsnet)")
    render.set_defaults(run=_render)
    for add_command in (_add_train_command, _add_eval_command, _add_infer_command, _add_export_command,
                        _add_fuse_command):
        add_command(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


# What a user can act on from the message alone (a bad file, option or folder): one line, no traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                ConnectionError, FloatingPointError)


def run_command_line(argv=None) -> int:
    """``main`` for the shell (``python -m depthlib`` and the ``depthlib`` script): a user error is
    one line on stderr and exit status 1 (DEPTHLIB_TRACEBACK=1 shows the traceback instead)."""
    try:
        return main(argv)
    except _USER_ERRORS as error:
        if os.environ.get("DEPTHLIB_TRACEBACK", "") not in ("", "0"):
            raise
        arg.report_error(str(error))
        return 1


if __name__ == "__main__":
    sys.exit(run_command_line())
