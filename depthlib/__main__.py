"""Command line: ``python -m depthlib <command>`` (``python -m depthlib --help`` lists them).

``render`` writes a synthetic data set in a real on-disk format (chapter 01); training,
evaluation and inference commands are added by the chapters that build them.
"""
from __future__ import annotations

import argparse
import sys
import time

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
        out = write_dtu_like(args.out, n_scans=n_scans, n_views=args.n_views or profile.mvs_views_per_scan,
                             height=height, width=width, n_lights=args.n_lights or profile.mvs_lights, seed=args.seed)
    print(f"wrote {args.format} set ({height}x{width}) to {out} in {time.perf_counter() - start:.1f} s")
    return 0


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
    render.add_argument("--n-views", type=int, help="dtu: views per scan")
    render.add_argument("--n-lights", type=int, help="dtu: lighting conditions per view")
    render.set_defaults(run=_render)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
