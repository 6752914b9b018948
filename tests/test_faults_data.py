"""Faults of data files (issue 14): bad cameras, index files that disagree with the files they name,
payloads that disagree with their headers, undecodable files, missing files and downloads.

Each test states the fault and the exact error: its type, the file (and line) it names, what was
expected. Data sets are written by hand in the real layouts, a few pixels each.
"""
import socket
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from depthlib.data import DTUMVS, MVSScan, NYUDepth
from depthlib.data import download
from depthlib.data.io import read_cam_file, read_image, read_pair_file, read_pfm, write_cam_file, write_pair_file, write_pfm
from depthlib.fusion import fuse_depth_maps, read_ply, write_ply

CAM = """extrinsic
1 0 0 0
0 1 0 0
0 0 1 0
0 0 0 1

intrinsic
20 0 10
0 20 8
0 0 1

425 2.5
"""


# ----------------------------------------------------------------------------- cameras

@pytest.mark.parametrize("old, new, words", [
    ("425 2.5", "425 -2.5", r"cam\.txt:12: depth_min 425, depth_interval -2\.5; expected both positive"),
    ("425 2.5", "425 0", r"cam\.txt:12: depth_min 425, depth_interval 0; expected both positive"),
    ("425 2.5", "-425 2.5", r"cam\.txt:12: depth_min -425"),
    ("425 2.5", "425 2.5 192 400", r"cam\.txt:12: depth_max 400 <= depth_min 425"),
    ("425 2.5", "425 nan", r"cam\.txt:12: '425 nan' holds a non-finite value"),
    ("0 1 0 0", "0 1 0 inf", r"cam\.txt:3: '0 1 0 inf' holds a non-finite value"),
    ("20 0 10", "0 0 10", r"cam\.txt:8: fx = 0, expected a positive focal length"),
    ("0 20 8", "0 -20 8", r"cam\.txt:9: fy = -20"),
    ("0 0 1\n\n425", "0 0 0\n\n425", r"cam\.txt:10: intrinsic bottom row \[0\.0, 0\.0, 0\.0\], expected 0 0 1"),
    ("0 0 0 1\n", "0 0 1 1\n", r"cam\.txt:5: extrinsic bottom row"),
    ("1 0 0 0\n0 1 0 0", "1 0 0 0\n1 0 0 0", r"cam\.txt:2: the extrinsic rotation \(rows 2-4\) is singular"),
])
def test_bad_camera_is_rejected_where_it_is_read_naming_file_and_line(tmp_path, old, new, words):
    (tmp_path / "cam.txt").write_text(CAM.replace(old, new, 1))
    with pytest.raises(ValueError, match=words):
        read_cam_file(tmp_path / "cam.txt")


def _dtu(root, n_views=3, lights=(0,), scans=("scan1",)):
    """A hand-made DTU training layout: 16x16 images, 4x4 depth maps, one shared rig, lists/train.txt."""
    (root / "Cameras").mkdir(parents=True)
    (root / "lists").mkdir()
    for view in range(n_views):
        extrinsic = np.eye(4)
        extrinsic[0, 3] = 10.0 * view
        write_cam_file(root / f"Cameras/{view:08d}_cam.txt", extrinsic, np.diag([5.0, 5.0, 1.0]), 425, 2.5)
    write_pair_file(root / "Cameras/pair.txt", [(r, [(v, 1.0) for v in range(n_views) if v != r]) for r in range(n_views)])
    for scan in scans:
        (root / f"Rectified/{scan}_train").mkdir(parents=True)
        (root / f"Depths/{scan}_train").mkdir(parents=True)
        for view in range(n_views):
            for light in lights:
                Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(
                    root / f"Rectified/{scan}_train/rect_{view + 1:03d}_{light}_r5000.png")
            write_pfm(root / f"Depths/{scan}_train/depth_map_{view:04d}.pfm", np.full((4, 4), 500.0, np.float32))
            Image.fromarray(np.full((4, 4), 200, np.uint8)).save(root / f"Depths/{scan}_train/depth_visual_{view:04d}.png")
    (root / "lists/train.txt").write_text("".join(f"{scan}\n" for scan in scans))
    return root


def test_a_negative_interval_in_one_cam_file_stops_the_dataset_when_it_is_built(tmp_path):
    root = _dtu(tmp_path)
    write_cam_file(root / "Cameras/00000002_cam.txt", np.eye(4), np.diag([5.0, 5.0, 1.0]), 425, 1.0)
    text = (root / "Cameras/00000002_cam.txt").read_text().replace("425.0 1.0", "425.0 -1.0")
    (root / "Cameras/00000002_cam.txt").write_text(text)
    with pytest.raises(ValueError, match=r"00000002_cam\.txt:12: depth_min 425, depth_interval -1; expected both"):
        DTUMVS(root, "train", n_views=3, n_depths=8)  # not at sample 2 of epoch 5


@pytest.mark.parametrize("scale", [-1.0, 0.0, float("nan"), float("inf")])
def test_a_non_positive_or_non_finite_interval_scale_is_rejected(tmp_path, scale):
    root = _dtu(tmp_path)
    with pytest.raises(ValueError, match=r"DTUMVS: interval_scale=.*, expected None or a finite positive number"):
        DTUMVS(root, "train", n_views=3, n_depths=8, interval_scale=scale)


# ----------------------------------------------------------------------------- index files

def test_dtu_files_named_by_pair_and_lists_are_checked_when_the_set_is_built(tmp_path):
    root = _dtu(tmp_path, lights=(0, 1), scans=("scan1", "scan4"))
    (root / "Rectified/scan4_train/rect_003_1_r5000.png").unlink()  # one light of one view of the second scan
    with pytest.raises(FileNotFoundError, match=r"scan4_train/rect_003_1_r5000\.png: no such file \(scan scan4 from "
                                                r"line 2 of .*lists/train\.txt, light 1, reference view"):
        DTUMVS(root, "train", n_views=3, n_depths=8)
    (root / "lists/train.txt").write_text("scan1\nscan9\n")
    with pytest.raises(FileNotFoundError, match=r"scan9_train: no such scan folder \(scan scan9, split train, from "
                                                r"line 2 of .*train\.txt\)"):
        DTUMVS(root, "train", n_views=3, n_depths=8)


def test_an_empty_split_names_its_list(tmp_path):
    root = _dtu(tmp_path)
    (root / "lists/val.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"lists/val\.txt: no scans; the val split is empty"):
        DTUMVS(root, "val", n_views=3, n_depths=8)
    (root / "Cameras/pair.txt").write_text("0\n")
    with pytest.raises(ValueError, match=r"pair\.txt: lists no view"):
        DTUMVS(root, "train", n_views=3, n_depths=8)


@pytest.mark.parametrize("text, words", [
    ("2\n0\n1 0 1.0\n1\n1 0 1.0\n", r"pair\.txt:3: source views \[0\] of reference view 0, expected distinct views"),
    ("2\n0\n2 1 1.0 1 0.5\n1\n1 0 1.0\n", r"pair\.txt:3: source views \[1, 1\]"),
    ("2\n0\n1 1 1.0\n0\n1 1 1.0\n", r"pair\.txt:4: reference view 0 again \(first on line 2\)"),
])
def test_pair_file_with_repeated_or_self_referencing_views_names_the_line(tmp_path, text, words):
    (tmp_path / "pair.txt").write_text(text)
    with pytest.raises(ValueError, match=words):
        read_pair_file(tmp_path / "pair.txt")


def test_test_layout_checks_every_image_and_camera_pair_txt_names_when_built(tmp_path):
    root = tmp_path / "scan"
    (root / "images").mkdir(parents=True)
    (root / "cams").mkdir()
    for view in range(3):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"{view:08d}.png")
        write_cam_file(root / "cams" / f"{view:08d}_cam.txt", np.eye(4), np.diag([20.0, 20.0, 1.0]), 425, 2.5)
    write_pair_file(root / "pair.txt", [(r, [(v, 1.0) for v in range(3) if v != r]) for r in range(3)])
    (root / "cams" / "00000002_cam.txt").write_text(CAM.replace("425 2.5", "425 -2.5"))
    with pytest.raises(ValueError, match=r"00000002_cam\.txt:12: .*expected both positive"):
        MVSScan(root, n_views=3, n_depths=8)
    write_cam_file(root / "cams" / "00000002_cam.txt", np.eye(4), np.diag([20.0, 20.0, 1.0]), 425, 2.5)
    (root / "images" / "00000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"images: no 00000001\.jpg or \.png"):
        MVSScan(root, n_views=3, n_depths=8)
    with pytest.raises(ValueError, match=r"MVSScan: interval_scale=-1\.0"):
        MVSScan(root, n_views=3, n_depths=8, interval_scale=-1.0)


def _nyu(root, depth=None, rows=1):
    """A hand-made NYU layout: `rows` train pairs (8x8 JPEG + 8-bit PNG) and one test pair."""
    (root / "data/nyu2_train/a_out").mkdir(parents=True)
    (root / "data/nyu2_test").mkdir(parents=True)
    lines = []
    for k in range(rows):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / f"data/nyu2_train/a_out/{k}.jpg")
        Image.fromarray(np.full((8, 8), 100, np.uint8) if depth is None else depth).save(
            root / f"data/nyu2_train/a_out/{k}.png")
        lines.append(f"data/nyu2_train/a_out/{k}.jpg,data/nyu2_train/a_out/{k}.png\n")
    (root / "data/nyu2_train.csv").write_text("".join(lines))
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / "data/nyu2_test/00000_colors.png")
    Image.fromarray(np.full((8, 8), 2000, np.uint16)).save(root / "data/nyu2_test/00000_depth.png")
    (root / "data/nyu2_test.csv").write_text("data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n")
    return root


def test_an_empty_nyu_split_names_its_csv(tmp_path):
    root = _nyu(tmp_path)
    (root / "data/nyu2_test.csv").write_text("")
    with pytest.raises(ValueError, match=r"nyu2_test\.csv: no 'rgb_path,depth_path' rows; the test split is empty"):
        NYUDepth(root, "test")


def test_nyu_cameras_are_matched_with_the_csv_when_the_set_is_built(tmp_path):
    import json

    root = _nyu(tmp_path, rows=2)
    row = {"rgb": "data/nyu2_train/a_out/0.jpg", "depth": "data/nyu2_train/a_out/0.png", "scene": "a",
           "K": np.eye(3).tolist(), "extrinsic": np.eye(4).tolist()}
    (root / "data/synthetic_meta.json").write_text(json.dumps({"train": [row], "test": []}))
    with pytest.raises(ValueError, match=r"synthetic_meta\.json: 1 train rows, but .*nyu2_train\.csv has 2"):
        NYUDepth(root, "train", augment=False, with_camera=True)
    (root / "data/synthetic_meta.json").write_text("{")
    with pytest.raises(ValueError, match=r"synthetic_meta\.json: not valid JSON"):
        NYUDepth(root, "train", augment=False, with_camera=True)


@pytest.mark.parametrize("max_depth", [0.0, -1.0, float("nan")])
def test_nyu_max_depth_must_be_positive_and_finite(tmp_path, max_depth):
    with pytest.raises(ValueError, match=r"NYUDepth: max_depth .*, expected a finite positive number of metres"):
        NYUDepth(_nyu(tmp_path), "train", max_depth=max_depth)


# ----------------------------------------------------------------------------- payloads and low-level failures

def test_pfm_payload_must_match_its_header_exactly_before_it_is_read(tmp_path):
    write_pfm(tmp_path / "d.pfm", np.ones((2, 3), np.float32))
    (tmp_path / "padded.pfm").write_bytes((tmp_path / "d.pfm").read_bytes() + b"\0" * 4)
    with pytest.raises(ValueError, match=r"padded\.pfm: PFM data holds 7 floats, expected 6 = 3 x 2 x 1"):
        read_pfm(tmp_path / "padded.pfm")
    (tmp_path / "huge.pfm").write_bytes(b"Pf\n100000 100000\n-1.0\n" + bytes(24))  # must not allocate 40 GB
    with pytest.raises(ValueError, match=r"huge\.pfm: PFM data holds 6 floats, expected 10000000000"):
        read_pfm(tmp_path / "huge.pfm")


def test_ply_payload_must_match_its_header(tmp_path):
    write_ply(tmp_path / "c.ply", np.zeros((2, 3), np.float32))
    (tmp_path / "padded.ply").write_bytes((tmp_path / "c.ply").read_bytes() + bytes(12))
    with pytest.raises(ValueError, match=r"padded\.ply: 3 vertices of 12 bytes, expected 2 \(24 bytes after the "
                                         r"header, exactly"):
        read_ply(tmp_path / "padded.ply")
    (tmp_path / "count.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex -2\nend_header\n")
    with pytest.raises(ValueError, match=r"count\.ply:3: 'element vertex -2', expected .* non-negative integer count"):
        read_ply(tmp_path / "count.ply")


def test_an_undecodable_nyu_image_names_the_file_and_the_csv_line(tmp_path):
    root = _nyu(tmp_path, rows=2)
    (root / "data/nyu2_train/a_out/1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = NYUDepth(root, "train", augment=False)
    with pytest.raises(ValueError, match=r"a_out/1\.jpg \(line 2 of .*nyu2_train\.csv\): cannot decode the image"):
        dataset[1]
    assert dataset.describe(1).startswith("data/nyu2_train/a_out/1.jpg, data/nyu2_train/a_out/1.png (line 2 of")


def test_a_corrupt_zip_member_names_the_zip_and_the_member(tmp_path):
    root = _nyu(tmp_path)
    with zipfile.ZipFile(root / "nyu_data.zip", "w", zipfile.ZIP_STORED) as archive:
        for name in ("data/nyu2_train.csv", "data/nyu2_test.csv", "data/nyu2_train/a_out/0.jpg",
                     "data/nyu2_train/a_out/0.png", "data/nyu2_test/00000_colors.png", "data/nyu2_test/00000_depth.png"):
            archive.write(root / name, name)
    raw = bytearray((root / "nyu_data.zip").read_bytes())
    payload = (root / "data/nyu2_train/a_out/0.png").read_bytes()
    start = bytes(raw).index(payload)
    raw[start + len(payload) // 2] ^= 0xFF  # one flipped byte: the member's CRC no longer matches
    (root / "nyu_data.zip").write_bytes(bytes(raw))
    dataset = NYUDepth(root / "nyu_data.zip", "train", augment=False)
    with pytest.raises(ValueError, match=r"nyu_data\.zip:data/nyu2_train/a_out/0\.png: cannot read this zip member "
                                         r"\(Bad CRC-32"):
        dataset[0]


def test_an_undecodable_dtu_image_names_the_file(tmp_path):
    root = _dtu(tmp_path)
    (root / "Rectified/scan1_train/rect_002_0_r5000.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(ValueError, match=r"rect_002_0_r5000\.png: cannot decode the image"):
        DTUMVS(root, "train", n_views=3, n_depths=8)[0]
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.png: cannot decode the image"):
        read_image(tmp_path / "x.png")


# ----------------------------------------------------------------------------- missing files, downloads

def test_a_missing_local_path_is_reported_at_once_without_a_download(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried for a local path")
    monkeypatch.setattr(download, "download_file", no_download)
    with pytest.raises(FileNotFoundError, match=r"runs/dd/checkpont\.pt: no such file"):
        download.shipped_file("runs/dd/checkpont.pt", cache_dir=tmp_path)


def test_a_download_has_a_time_out_and_says_what_it_tried(tmp_path, monkeypatch):
    calls = []

    def stalled(request, timeout=None):
        calls.append(timeout)
        raise socket.timeout("timed out")
    monkeypatch.setattr(urllib.request, "urlopen", stalled)
    with pytest.raises(ConnectionError, match=r"download of https://example\.org/w\.pt failed \([A-Za-z]+: timed out; "
                                              r"time-out 5 s\)"):
        download.download_file("https://example.org/w.pt", tmp_path / "w.pt", timeout=5)
    assert calls == [5] and not (tmp_path / "w.pt").exists()
    with pytest.raises(FileNotFoundError, match=r"not-shipped\.pt: not a file, .* the download from "
                                                r"https://github\.com/.*/data/not-shipped\.pt failed"):
        download.shipped_file("not-shipped.pt", cache_dir=tmp_path)


def test_a_corrupt_archive_member_names_the_archive(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("data/x.txt", "x" * 1000)
    raw = bytearray((tmp_path / "a.zip").read_bytes())
    raw[raw.index(b"x" * 1000) + 10] = ord("y")
    (tmp_path / "a.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"a\.zip: cannot unpack \(Bad CRC-32 for file 'data/x\.txt'\)"):
        download.extract_archive(tmp_path / "a.zip", tmp_path / "out")


# ----------------------------------------------------------------------------- fusion numbers

@pytest.mark.parametrize("thresholds, words", [
    ({"photometric_threshold": 1.0}, "photometric 1.0"),
    ({"pixel_threshold": 0.0}, "pixel 0.0"),
    ({"depth_threshold": float("nan")}, "depth nan"),
    ({"min_views": -1}, "min_views -1"),
])
def test_fusion_thresholds_out_of_range_are_rejected(thresholds, words):
    depths = np.ones((2, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=rf"fusion thresholds: .*{words}.*expected 0 <= photometric < 1"):
        fuse_depth_maps(depths, None, np.stack([np.eye(3)] * 2), np.stack([np.eye(4)] * 2), **thresholds)
