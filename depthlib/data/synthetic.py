"""The default rendered data sets, built once and cached on disk (chapter 01).

``nyu_synthetic()`` / ``dtu_synthetic()`` return the root of a NYU-like / DTU-like set sized by a
run profile, in the real on-disk formats (read them with ``NYUDepth`` / ``DTUMVS``). Sets live in
``cache_dir``, else ``$DEPTHLIB_CACHE``, else ``~/.cache/depthlib``, in a folder named after their
parameters (e.g. ``nyu-192x256-256-64-seed0-v2``). A set is built in a temporary sibling folder
and renamed into place when complete, so an interrupted build never leaves a half set.
"""
__all__ = ["FORMAT_VERSION", "cache_root", "nyu_synthetic", "dtu_synthetic"]

import os
import shutil
import tempfile
from pathlib import Path

FORMAT_VERSION = 2  # bump when the renderer or the writers change what a set contains


def cache_root(cache_dir=None):
    """The cache folder: ``cache_dir``, else ``$DEPTHLIB_CACHE``, else ``~/.cache/depthlib``."""
    chosen = cache_dir or os.environ.get("DEPTHLIB_CACHE") or Path.home() / ".cache" / "depthlib"
    return Path(chosen).expanduser()


def _resolve_profile(profile):
    from depthlib.profiles import Profile, get_profile

    if isinstance(profile, Profile):
        return profile
    if profile is None or isinstance(profile, str):
        return get_profile("auto" if profile is None else profile)
    raise ValueError(f"profile {profile!r}: expected None, a profile name or a depthlib.profiles.Profile")


def _workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cached(folder, build):
    """Return ``folder``, first calling ``build(tmp)`` on a temporary sibling and renaming it there."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        build(tmp)
        os.replace(tmp, folder)
    except OSError:
        if not folder.is_dir():  # a genuine failure, not another process finishing first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _size(value, name):
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} {value}: expected (height, width) with positive ints")
    return int(value[0]), int(value[1])


def nyu_synthetic(profile=None, *, n_train=None, n_test=None, size=None, seed=0, cache_dir=None):
    """Root (the folder containing ``data/``) of a cached NYU-like set in DenseDepth's layout.

    Defaults come from the profile (None = "auto"): ``nyu_render_size``, ``nyu_train``, ``nyu_test``.
    Rendered with ``write_nyu_like`` (4 frames per room) on all CPU cores the first time.
    Example:
        >>> dataset = NYUDepth(nyu_synthetic("cpu"), "train")  # doctest: +SKIP
    """
    from depthlib.data.nyu import write_nyu_like

    settings = _resolve_profile(profile)
    height, width = _size(settings.nyu_render_size if size is None else size, "size")
    n_train = settings.nyu_train if n_train is None else int(n_train)
    n_test = settings.nyu_test if n_test is None else int(n_test)
    if n_train < 0 or n_test < 0:
        raise ValueError(f"nyu_synthetic: n_train={n_train}, n_test={n_test}; expected non-negative counts")
    folder = cache_root(cache_dir) / f"nyu-{height}x{width}-{n_train}-{n_test}-seed{seed}-v{FORMAT_VERSION}"
    return _cached(folder, lambda tmp: write_nyu_like(tmp, n_train, n_test, height, width, seed=seed,
                                                      workers=_workers()))


def dtu_synthetic(profile=None, *, n_scans=None, n_views=None, size=None, n_lights=None, seed=0, cache_dir=None):
    """Root of a cached DTU-like set in MVSNet's training layout (``Cameras/``, ``Rectified/``, ...).

    Defaults come from the profile (None = "auto"): ``mvs_size``, ``mvs_views_per_scan``, ``mvs_lights``
    and ``mvs_train_scans`` + ``mvs_test_scans`` scans. The last ``mvs_test_scans`` scans (a fifth when
    ``n_scans`` is given) form the test list and also the val list; the others the train list.
    Example:
        >>> dataset = DTUMVS(dtu_synthetic("cpu"), "train", n_views=3)  # doctest: +SKIP
    """
    from depthlib.data.dtu import dtu_splits, write_dtu_like

    settings = _resolve_profile(profile)
    height, width = _size(settings.mvs_size if size is None else size, "size")
    n_views = settings.mvs_views_per_scan if n_views is None else int(n_views)
    n_lights = settings.mvs_lights if n_lights is None else int(n_lights)
    if n_scans is None:
        n_scans, n_test = settings.mvs_train_scans + settings.mvs_test_scans, settings.mvs_test_scans
    else:
        n_scans, n_test = int(n_scans), None  # dtu_splits' default: the last fifth
    if n_scans < 1 or n_views < 2 or n_lights < 1:
        raise ValueError(f"dtu_synthetic: n_scans={n_scans}, n_views={n_views}, n_lights={n_lights}; "
                         "expected n_scans >= 1, n_views >= 2, n_lights >= 1")
    splits = dtu_splits(range(1, n_scans + 1), n_test)  # refuses as many test scans as scans
    n_test = 0 if splits["test"] == splits["train"] else len(splits["test"])
    folder = cache_root(cache_dir) / (f"dtu-{height}x{width}-{n_scans}scans-{n_test}test-{n_views}views-"
                                      f"{n_lights}lights-seed{seed}-v{FORMAT_VERSION}")
    return _cached(folder, lambda tmp: write_dtu_like(tmp, n_scans, n_views, height, width, n_lights, seed=seed,
                                                      splits=splits, workers=_workers()))
