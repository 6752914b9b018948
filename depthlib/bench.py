"""Benchmarks that print tables (speed targets live here, never in unit tests).

Usage: ``python -m depthlib.bench render [--frames N]``. Later chapters add their models.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

__all__ = ["bench_render", "format_table", "main"]


def format_table(rows: list[dict]) -> str:
    """Render a list of dicts (same keys) as a Markdown table."""
    keys = list(rows[0])
    cells = [[str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda items: "| " + " | ".join(x.ljust(w) for x, w in zip(items, widths)) + " |"  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths]), *map(line, cells)])


def _rate(fn, n_frames):
    start = time.perf_counter()
    fn()
    return n_frames / (time.perf_counter() - start)


def bench_render(frames: int = 64, sizes=((128, 160), (480, 640)), workers=(1, 2)) -> list[dict]:
    """Frames per second of the synthetic renderer (rooms with shadows; DTU-like scans, 1 light per image)."""
    from depthlib.data.scenes import object_scan, room_frames

    list(room_frames(1, 32, 40))  # warm-up: imports, caches
    rows = []
    for height, width in sizes:
        n = frames if height * width <= 128 * 160 else max(4, frames // 8)
        for w in workers:
            fps = _rate(lambda: list(room_frames(n, height, width, seed=100, workers=w)), n)
            rows.append({"scene": "room (NYU-like)", "size": f"{height}x{width}", "workers": w,
                         "frames": n, "frames/s": f"{fps:.1f}"})
        n_views = 12 if height * width <= 128 * 160 else 4
        fps = _rate(lambda: object_scan(0, n_views=n_views, height=height, width=width, n_lights=1), n_views)
        rows.append({"scene": "objects (DTU-like)", "size": f"{height}x{width}", "workers": 1,
                     "frames": n_views, "frames/s": f"{fps:.1f}"})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m depthlib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["render"], help="what to benchmark")
    parser.add_argument("--frames", type=int, default=64, help="frames per measurement at 128x160")
    args = parser.parse_args(argv)
    print(f"# depthlib.bench {args.what}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    if args.what == "render":
        print(format_table(bench_render(args.frames)))


if __name__ == "__main__":
    main()
