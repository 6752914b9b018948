"""Tests for depthlib.data.dtu: MVSNet's DTU layout (writer, view selection, DTUMVS reader)."""
import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.data.dtu import (DTU_TEST_SCANS, DTU_TRAIN_SCANS, DTU_VAL_SCANS, DTUMVS, view_selection_scores,
                               write_dtu_like)
from depthlib.data.io import read_cam_file, read_pair_file, read_pfm, write_cam_file, write_pair_file, write_pfm

N_VIEWS, N_LIGHTS = 6, 2


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu")
    write_dtu_like(root, 3, n_views=N_VIEWS, height=64, width=80, n_lights=N_LIGHTS, seed=0, scan_ids=[3, 5, 9],
                   splits={"train": [3, 5], "val": [9], "test": ["scan9"]})
    return root


def _real_layout(root, scans=("scan2", "scan6"), n_views=3, lights=(0, 1, 2, 3, 4), image_hw=(16, 20),
                 depth_hw=(4, 5)):
    """A hand-made set in the real download's layout: training cams in Cameras/train, full-res in Cameras/."""
    rng = np.random.default_rng(0)
    (root / "Cameras/train").mkdir(parents=True)
    for view in range(n_views):
        extrinsic = np.eye(4)
        extrinsic[:3, 3] = [10.0 * view, 0.0, 0.0]
        write_cam_file(root / f"Cameras/train/{view:08d}_cam.txt", extrinsic, np.diag([20.0, 20.0, 1.0]), 425, 2.5)
        write_cam_file(root / f"Cameras/{view:08d}_cam.txt", extrinsic, np.diag([2892.0, 2892.0, 1.0]), 425, 2.5)
    write_pair_file(root / "Cameras/pair.txt",
                    [(ref, [(v, 100.0 - v) for v in range(n_views) if v != ref]) for ref in range(n_views)])
    for scan in scans:
        (root / f"Rectified/{scan}_train").mkdir(parents=True)
        (root / f"Depths/{scan}_train").mkdir(parents=True)
        for view in range(n_views):
            for light in lights:
                image = rng.integers(0, 256, size=(*image_hw, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / f"Rectified/{scan}_train/rect_{view + 1:03d}_{light}_r5000.png")
            depth = np.full(depth_hw, 500.0 + view, np.float32)
            depth[0, 0] = 0.0                   # invalid
            visual = np.full(depth_hw, 200, np.uint8)
            visual[0, 1] = 5                    # valid depth, but the visual mask says no
            write_pfm(root / f"Depths/{scan}_train/depth_map_{view:04d}.pfm", depth)
            Image.fromarray(visual).save(root / f"Depths/{scan}_train/depth_visual_{view:04d}.png")
    return root


def test_builtin_split_lists_are_mvsnets():
    assert (len(DTU_TRAIN_SCANS), len(DTU_VAL_SCANS), len(DTU_TEST_SCANS)) == (79, 18, 22)
    ids = [set(int(s[4:]) for s in split) for split in (DTU_TRAIN_SCANS, DTU_VAL_SCANS, DTU_TEST_SCANS)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) <= set(range(1, 129)) and {1, 4, 9, 10, 114, 118} <= ids[2]


def test_writer_follows_mvsnet_layout_in_millimetres(synthetic_root):
    root = synthetic_root
    for scan in (3, 5, 9):
        for view in range(N_VIEWS):
            for light in range(N_LIGHTS):
                assert (root / f"Rectified/scan{scan}_train/rect_{view + 1:03d}_{light}_r5000.png").is_file()
            depth, _ = read_pfm(root / f"Depths/scan{scan}_train/depth_map_{view:04d}.pfm")
            visual = np.asarray(Image.open(root / f"Depths/scan{scan}_train/depth_visual_{view:04d}.png"))
            assert depth.shape == (16, 20) and visual.shape == (16, 20) and visual.dtype == np.uint8
            assert np.array_equal(visual > 0, depth > 0) and visual[depth > 0].min() >= 20
            cam = read_cam_file(root / f"Cameras/{view:08d}_cam.txt")
            valid = depth[depth > 0]
            assert 300 < valid.min() and valid.max() < 1500           # millimetres, ~0.6 m away
            assert cam["depth_min"] <= valid.min() and valid.max() <= cam["depth_min"] + 191 * cam["depth_interval"]
    assert (root / "lists/train.txt").read_text().split() == ["scan3", "scan5"]
    assert (root / "lists/test.txt").read_text().split() == ["scan9"]
    cams = [read_cam_file(root / f"Cameras/{view:08d}_cam.txt") for view in range(N_VIEWS)]
    assert all(np.array_equal(c["intrinsic"], cams[0]["intrinsic"]) for c in cams)  # one pinhole, like DTU
    assert cams[0]["intrinsic"][0, 2] == pytest.approx((20 - 1) / 2)                 # K at depth-map size


def _bilinear(image, u, v):
    """Bilinear sample at float pixel coordinates (all four neighbours inside), NaN where any is invalid."""
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    du, dv = u - u0, v - v0
    corners = [image[v0, u0], image[v0, u0 + 1], image[v0 + 1, u0], image[v0 + 1, u0 + 1]]
    value = (corners[0] * (1 - du) * (1 - dv) + corners[1] * du * (1 - dv) + corners[2] * (1 - du) * dv
             + corners[3] * du * dv)
    return np.where(np.min(corners, axis=0) > 0, value, np.nan)


def test_written_depths_and_cameras_agree_across_views(synthetic_root):
    root = synthetic_root
    cams = [read_cam_file(root / f"Cameras/{view:08d}_cam.txt") for view in range(N_VIEWS)]
    depths = [read_pfm(root / f"Depths/scan5_train/depth_map_{view:04d}.pfm")[0] for view in range(N_VIEWS)]
    rows, cols = np.nonzero(depths[0] > 0)
    z = depths[0][rows, cols]
    K, ref, src = cams[0]["intrinsic"], cams[0]["extrinsic"], cams[1]["extrinsic"]
    points_cam = np.linalg.inv(K) @ np.stack([cols, rows, np.ones_like(cols)]) * z
    points_world = ref[:3, :3].T @ (points_cam - ref[:3, 3:])
    in_src = K @ (src[:3, :3] @ points_world + src[:3, 3:])
    u, v = in_src[:2] / in_src[2]
    inside = (u >= 0) & (u < 19) & (v >= 0) & (v < 15)
    relative_error = np.abs(_bilinear(depths[1], u[inside], v[inside]) / in_src[2][inside] - 1)
    assert inside.mean() > 0.8
    assert np.nanmedian(relative_error) < 0.003   # occlusions and edges make the tail, not the median


def _bruteforce_scores(depths, K, extrinsics):
    """MVSNet's score, one point at a time."""
    n_views, height, width = depths.shape
    centres = [-e[:3, :3].T @ e[:3, 3] for e in extrinsics]
    scores = np.zeros((n_views, n_views))
    for ref in range(n_views):
        for row in range(height):
            for col in range(width):
                if depths[ref, row, col] <= 0:
                    continue
                point_cam = depths[ref, row, col] * np.linalg.solve(K, [col, row, 1.0])
                point = extrinsics[ref][:3, :3].T @ (point_cam - extrinsics[ref][:3, 3])
                for src in range(n_views):
                    x = extrinsics[src][:3, :3] @ point + extrinsics[src][:3, 3]
                    if src == ref or x[2] <= 0:
                        continue
                    u, v = K[0] @ x / x[2], K[1] @ x / x[2]
                    if not (0 <= u < width - 1 and 0 <= v < height - 1):
                        continue
                    sampled = _bilinear(depths[src], np.array([u]), np.array([v]))[0]
                    if not abs(sampled - x[2]) <= 0.01 * x[2]:   # NaN (invalid neighbour) fails too
                        continue
                    a, b = centres[ref] - point, centres[src] - point
                    theta = np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
                    sigma = 1.0 if theta <= 5.0 else 10.0
                    scores[ref, src] += np.exp(-(theta - 5.0) ** 2 / (2 * sigma ** 2))
    return scores


def test_view_selection_scores_match_bruteforce_and_rank_pair_file(synthetic_root):
    root = synthetic_root
    K = read_cam_file(root / "Cameras/00000000_cam.txt")["intrinsic"]
    extrinsics = np.stack([read_cam_file(root / f"Cameras/{v:08d}_cam.txt")["extrinsic"] for v in range(N_VIEWS)])
    total = np.zeros((N_VIEWS, N_VIEWS))
    for scan in (3, 5, 9):
        depths = np.stack([read_pfm(root / f"Depths/scan{scan}_train/depth_map_{v:04d}.pfm")[0]
                           for v in range(N_VIEWS)])
        scores = view_selection_scores(depths, K, extrinsics)
        np.testing.assert_allclose(scores, _bruteforce_scores(depths, K, extrinsics), rtol=1e-9)
        total += scores
    assert (total > 0).sum() == N_VIEWS * (N_VIEWS - 1)
    for ref, sources in read_pair_file(root / "Cameras/pair.txt"):
        assert [v for v, _ in sources] == sorted(set(range(N_VIEWS)) - {ref}, key=lambda v: -total[ref, v])
        np.testing.assert_allclose([s for _, s in sources], sorted(total[ref][total[ref] > 0])[::-1], atol=0.02)


def test_reader_returns_mvsnet_sample_of_synthetic_set(synthetic_root):
    dataset = DTUMVS(synthetic_root, "train", n_views=3, n_depths=48)
    assert len(dataset) == 2 * N_LIGHTS * N_VIEWS
    assert {(scan, light) for scan, light, _, _ in dataset.metas} == {(s, l) for s in ("scan3", "scan5")
                                                                      for l in range(N_LIGHTS)}
    item = dataset[N_VIEWS + 2]  # scan3, light 1, reference view 2
    assert item["imgs"].shape == (3, 3, 64, 80) and item["imgs"].dtype == torch.float32
    assert 0 <= item["imgs"].min() and item["imgs"].max() <= 1
    assert item["depth"].shape == (1, 16, 20) and item["mask"].dtype == torch.bool
    assert item["scan"] == "scan3" and item["light"] == 1 and item["view_ids"][0] == 2
    pairs = read_pair_file(synthetic_root / "Cameras/pair.txt")
    assert item["view_ids"].tolist() == [2] + [v for v, _ in pairs[2][1][:2]]
    cam = read_cam_file(synthetic_root / "Cameras/00000002_cam.txt")
    expected_proj = cam["extrinsic"].copy()
    expected_proj[:3] = cam["intrinsic"] @ cam["extrinsic"][:3]
    torch.testing.assert_close(item["proj_matrices"][0], torch.tensor(expected_proj, dtype=torch.float32))
    interval = cam["depth_interval"] * 191 / 47  # first to last of the 192 file planes
    torch.testing.assert_close(item["depth_interval"], torch.tensor(interval, dtype=torch.float32))
    torch.testing.assert_close(item["depth_values"], torch.tensor(cam["depth_min"] + interval * np.arange(48),
                                                                  dtype=torch.float32))
    assert item["mask"].float().mean() > 0.3
    expected_image = np.asarray(Image.open(synthetic_root / "Rectified/scan3_train/rect_003_1_r5000.png"))
    torch.testing.assert_close(item["imgs"][0], torch.tensor(expected_image).permute(2, 0, 1).float() / 255)


def test_reader_uses_middle_light_for_val_and_lists_file(synthetic_root):
    val = DTUMVS(synthetic_root, "val", n_views=2)
    assert {(scan, light) for scan, light, _, _ in val.metas} == {("scan9", 1)}   # lights 0, 1 -> middle is 1
    chosen = DTUMVS(synthetic_root, "val", n_views=2, scans=[3], lights=[0])
    assert {(scan, light) for scan, light, _, _ in chosen.metas} == {("scan3", 0)}


def test_reader_prefers_cameras_train_and_reads_real_layout(tmp_path):
    _real_layout(tmp_path)
    dataset = DTUMVS(tmp_path, "train", n_views=3, n_depths=96, scans=["scan2", "scan6"])
    assert len(dataset) == 2 * 5 * 3              # scans x lights on disk x reference views
    item = dataset[0]
    torch.testing.assert_close(item["intrinsics"][0], torch.diag(torch.tensor([20.0, 20.0, 1.0])))
    assert item["view_ids"].tolist() == [0, 1, 2] and item["imgs"].shape == (3, 3, 16, 20)
    assert item["depth_interval"].item() == pytest.approx(2.5 * 191 / 95)  # 96 planes span 425 .. 902.5 mm
    assert item["depth_values"][0].item() == 425 and item["depth_values"][-1].item() == pytest.approx(902.5, abs=1e-3)
    assert item["mask"][0].tolist()[0] == [False, False, True, True, True]
    assert item["mask"][0].sum() == 4 * 5 - 2
    torch.testing.assert_close(item["depth"][0, 1, 1], torch.tensor(500.0))
    scaled = DTUMVS(tmp_path, "test", n_depths=192, interval_scale=1.06, scans=["scan2"])
    assert {light for _, light, _, _ in scaled.metas} == {3}
    assert scaled[0]["depth_interval"].item() == pytest.approx(2.5 * 1.06)


def test_reader_without_lists_falls_back_to_mvsnet_split(tmp_path):
    _real_layout(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"scan7_train"):   # scan2, scan6 exist; scan7 is next
        DTUMVS(tmp_path, "train")


def test_missing_root_pair_scan_cam_image_depth_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_dtu"):
        DTUMVS(tmp_path / "no_dtu")
    _real_layout(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"scan99_train"):
        DTUMVS(tmp_path, scans=["scan99"])
    # the files that samples name are checked when the set is built, not when a sample is read
    (tmp_path / "Cameras/train/00000002_cam.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"00000002_cam\.txt"):
        DTUMVS(tmp_path, scans=["scan2"], lights=[0], n_views=3)  # scan2, ref 0, sources 1 and 2
    (tmp_path / "Rectified/scan6_train/rect_001_0_r5000.png").unlink()
    (tmp_path / "Depths/scan2_train/depth_map_0001.pfm").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth_map_0001\.pfm: no such file \(scan scan2 from scans="):
        DTUMVS(tmp_path, scans=["scan2"], lights=[0], n_views=2)
    with pytest.raises(FileNotFoundError, match=r"scan6_train/rect_001_0_r5000\.png"):
        DTUMVS(tmp_path, scans=["scan6"], lights=[0], n_views=2)
    (tmp_path / "Cameras/pair.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"pair\.txt"):
        DTUMVS(tmp_path, scans=["scan2"])


def test_too_few_source_views_raises_value_error_naming_scan_and_view(tmp_path):
    _real_layout(tmp_path)
    with pytest.raises(ValueError, match=r"scan scan2 view 0 has 2 source views, expected >= n_views - 1 = 3"):
        DTUMVS(tmp_path, scans=["scan2"], n_views=4)


def test_depth_map_not_quarter_of_image_raises_value_error(tmp_path):
    _real_layout(tmp_path, image_hw=(16, 20), depth_hw=(8, 10))
    with pytest.raises(ValueError, match=r"depth_map_0000\.pfm is \(8, 10\).*rect_001_0_r5000\.png is \(16, 20\)"):
        DTUMVS(tmp_path, scans=["scan2"], lights=[0])[0]


def test_test_layout_scan_matches_the_training_layout_sample(synthetic_root, tmp_path):
    from depthlib.data.mvs_scan import MVSScan, write_mvs_scan

    scan_dir = write_mvs_scan(synthetic_root, "scan9", tmp_path / "scan9")
    cam = read_cam_file(scan_dir / "cams" / "00000000_cam.txt")
    train_cam = read_cam_file(synthetic_root / "Cameras" / "00000000_cam.txt")
    # K at the image resolution (4x the depth map's, pixel centres): fx x4, cx' = (cx + 0.5) 4 - 0.5
    assert cam["intrinsic"][0, 0] == pytest.approx(4 * train_cam["intrinsic"][0, 0])
    assert cam["intrinsic"][0, 2] == pytest.approx((train_cam["intrinsic"][0, 2] + 0.5) * 4 - 0.5)
    scan = MVSScan(scan_dir, n_views=3, n_depths=16)
    reference = DTUMVS(synthetic_root, "test", n_views=3, n_depths=16)
    assert len(scan) == N_VIEWS and len(reference) == N_VIEWS
    a, b = scan[2], reference[2]
    for key in ("imgs", "proj_matrices", "intrinsics", "extrinsics", "depth_values", "view_ids"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-4)
    assert "depth" not in a  # the test layout has no ground truth
    resized = MVSScan(scan_dir, n_views=3, n_depths=16, size=(32, 40))[2]
    assert resized["imgs"].shape == (3, 3, 32, 40)
    torch.testing.assert_close(resized["intrinsics"][0, 0, 0], b["intrinsics"][0, 0, 0] / 2)


def test_test_layout_missing_parts_and_too_few_sources_raise(tmp_path, synthetic_root):
    from depthlib.data.mvs_scan import MVSScan, write_mvs_scan

    with pytest.raises(FileNotFoundError, match="images"):
        MVSScan(tmp_path)
    scan_dir = write_mvs_scan(synthetic_root, "scan9", tmp_path / "scan9")
    with pytest.raises(ValueError, match="source views"):
        MVSScan(scan_dir, n_views=N_VIEWS + 1)
    scan = MVSScan(scan_dir, n_views=3)
    ref_view = scan.pairs[0][0]
    (scan_dir / "images" / f"{ref_view:08d}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{ref_view:08d}"):
        scan[0]
