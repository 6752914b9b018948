"""Tests for depthlib.data.synthetic: cached default sets (naming, reuse, atomic builds)."""
import pytest

from depthlib.data import dtu, nyu
from depthlib.data.dtu import DTUMVS
from depthlib.data.nyu import NYUDepth
from depthlib.data.synthetic import FORMAT_VERSION, _cached, cache_root, dtu_synthetic, nyu_synthetic
from depthlib.profiles import get_profile


def test_cache_root_prefers_argument_then_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("DEPTHLIB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "depthlib"


def test_nyu_synthetic_builds_once_then_reuses(tmp_path, monkeypatch):
    root = nyu_synthetic("cpu", n_train=3, n_test=2, size=(32, 40), cache_dir=tmp_path)
    assert root == tmp_path / f"nyu-32x40-3-2-seed0-v{FORMAT_VERSION}"
    assert len(NYUDepth(root, "train")) == 3 and len(NYUDepth(root, "test")) == 2
    assert NYUDepth(root, "test")[1]["image"].shape == (3, 32, 40)

    def must_not_render(*args, **kwargs):
        raise AssertionError("the cached set was rendered again")
    monkeypatch.setattr(nyu, "write_nyu_like", must_not_render)
    assert nyu_synthetic("cpu", n_train=3, n_test=2, size=(32, 40), cache_dir=tmp_path) == root
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]


def test_sizes_and_counts_come_from_the_profile(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(nyu, "write_nyu_like", lambda root, *args, **kwargs: calls.append(args))
    profile = get_profile("cpu", nyu_render_size=(24, 32), nyu_train=5, nyu_test=1)
    root = nyu_synthetic(profile, seed=3, cache_dir=tmp_path)
    assert root.name == f"nyu-24x32-5-1-seed3-v{FORMAT_VERSION}" and calls == [(5, 1, 24, 32)]
    cpu = get_profile("cpu")
    expected = (f"nyu-{cpu.nyu_render_size[0]}x{cpu.nyu_render_size[1]}-{cpu.nyu_train}-{cpu.nyu_test}"
                f"-seed0-v{FORMAT_VERSION}")
    assert nyu_synthetic("cpu", cache_dir=tmp_path).name == expected


def test_interrupted_build_leaves_no_set_and_no_temporary_folder(tmp_path, monkeypatch):
    def crash(root, *args, **kwargs):
        (root / "data").mkdir()
        (root / "data" / "nyu2_train.csv").write_text("half\n")
        raise KeyboardInterrupt
    monkeypatch.setattr(nyu, "write_nyu_like", crash)
    with pytest.raises(KeyboardInterrupt):
        nyu_synthetic("cpu", n_train=2, n_test=1, size=(32, 40), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_build_finished_by_another_process_first_is_reused(tmp_path):
    folder = tmp_path / "set"

    def slow_build(tmp):
        (tmp / "mine.txt").write_text("mine")
        folder.mkdir()                                   # another process renamed its copy into place
        (folder / "theirs.txt").write_text("theirs")
    assert _cached(folder, slow_build) == folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert [p.name for p in folder.iterdir()] == ["theirs.txt"]


def test_dtu_synthetic_splits_follow_profile_and_reader_loads_it(tmp_path):
    profile = get_profile("cpu", mvs_size=(64, 80), mvs_views_per_scan=4, mvs_train_scans=2, mvs_test_scans=1,
                          mvs_lights=2)
    root = dtu_synthetic(profile, cache_dir=tmp_path)
    assert root.name == f"dtu-64x80-3scans-1test-4views-2lights-seed0-v{FORMAT_VERSION}"
    assert (root / "lists/train.txt").read_text().split() == ["scan1", "scan2"]
    assert (root / "lists/test.txt").read_text().split() == ["scan3"]
    assert (root / "lists/val.txt").read_text().split() == ["scan3"]
    train = DTUMVS(root, "train", n_views=3, n_depths=16)
    assert len(train) == 2 * 2 * 4                       # scans x lights x reference views
    assert train[0]["imgs"].shape == (3, 3, 64, 80) and train[0]["depth"].shape == (1, 16, 20)
    assert len(DTUMVS(root, "test", n_views=3)) == 1 * 1 * 4


def test_dtu_synthetic_with_explicit_scan_count_holds_out_a_fifth(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(dtu, "write_dtu_like", lambda *args, **kwargs: calls.append(kwargs["splits"]))
    root = dtu_synthetic("cpu", n_scans=10, n_views=5, size=(64, 80), n_lights=1, cache_dir=tmp_path)
    assert root.name == f"dtu-64x80-10scans-2test-5views-1lights-seed0-v{FORMAT_VERSION}"
    assert calls == [{"train": list(range(1, 9)), "val": [9, 10], "test": [9, 10]}]


@pytest.mark.parametrize("call, message", [
    (lambda d: nyu_synthetic(42, cache_dir=d), "profile 42"),
    (lambda d: nyu_synthetic("cpu", size=(0, 4), cache_dir=d), r"size \(0, 4\)"),
    (lambda d: dtu_synthetic("cpu", n_views=1, cache_dir=d), "n_views=1"),
    (lambda d: nyu_synthetic("tpu", cache_dir=d), "tpu"),
])
def test_bad_arguments_raise_value_error(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path)
