"""Tests for depthlib.data.io: PFM, cam.txt, pair.txt and image files."""
import numpy as np
import pytest
from PIL import Image

from depthlib.data.io import (read_cam_file, read_image, read_pair_file, read_pfm, write_cam_file,
                              write_pair_file, write_pfm)

CAM_TEXT = """extrinsic
0.970263 0.00747983 0.241939 -191.02
-0.0147429 0.999493 0.0282234 3.28832
-0.241605 -0.030951 0.969881 22.5401
0.0 0.0 0.0 1.0

intrinsic
361.54125 0.0 82.900625
0.0 360.3975 66.383875
0.0 0.0 1.0

425.0 2.5
"""


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
@pytest.mark.parametrize("little_endian", [True, False])
def test_pfm_round_trip_keeps_values_and_scale(tmp_path, shape, little_endian):
    array = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    write_pfm(tmp_path / "a.pfm", array, scale=2.5, little_endian=little_endian)
    loaded, scale = read_pfm(tmp_path / "a.pfm")
    assert loaded.dtype == np.float32 and loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)
    assert scale == 2.5


def test_pfm_file_stores_rows_bottom_to_top_little_endian(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_pfm(tmp_path / "a.pfm", array)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n3 2\n-1.0\n")
    body = np.frombuffer(raw[len(b"Pf\n3 2\n-1.0\n"):], dtype="<f4")
    np.testing.assert_array_equal(body, [3, 4, 5, 0, 1, 2])


def test_read_pfm_big_endian_file_written_by_hand(tmp_path):
    rows_bottom_to_top = np.array([[7.0, 8.0], [1.0, 2.0]], dtype=">f4")
    (tmp_path / "b.pfm").write_bytes(b"Pf\n2 2\n1.0\n" + rows_bottom_to_top.tobytes())
    loaded, scale = read_pfm(tmp_path / "b.pfm")
    np.testing.assert_array_equal(loaded, [[1.0, 2.0], [7.0, 8.0]])
    assert scale == 1.0


def test_read_pfm_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pfm"):
        read_pfm(tmp_path / "missing.pfm")


def test_read_pfm_bad_header_raises_value_error(tmp_path):
    (tmp_path / "bad.pfm").write_bytes(b"P6\n2 2\n-1.0\n" + bytes(16))
    with pytest.raises(ValueError, match=r"bad\.pfm.*header.*expected"):
        read_pfm(tmp_path / "bad.pfm")


def test_read_pfm_bad_dimensions_line_raises_value_error(tmp_path):
    (tmp_path / "dims.pfm").write_bytes(b"Pf\n2 x\n-1.0\n" + bytes(16))
    with pytest.raises(ValueError, match=r"dims\.pfm.*dimensions"):
        read_pfm(tmp_path / "dims.pfm")


def test_read_pfm_short_data_raises_value_error(tmp_path):
    (tmp_path / "short.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + bytes(4 * 5))
    with pytest.raises(ValueError, match=r"short\.pfm.*5 floats, expected 6"):
        read_pfm(tmp_path / "short.pfm")


def test_read_cam_file_parses_dtu_training_cam(tmp_path):
    (tmp_path / "00000000_cam.txt").write_text(CAM_TEXT)
    cam = read_cam_file(tmp_path / "00000000_cam.txt")
    assert cam["extrinsic"].shape == (4, 4) and cam["extrinsic"].dtype == np.float64
    assert cam["extrinsic"][0, 3] == -191.02 and cam["extrinsic"][3, 3] == 1.0
    assert cam["intrinsic"][0, 0] == 361.54125 and cam["intrinsic"][1, 2] == 66.383875
    assert (cam["depth_min"], cam["depth_interval"]) == (425.0, 2.5)
    assert cam["depth_num"] is None and cam["depth_max"] is None


@pytest.mark.parametrize("depth_line, expected", [
    ("425 2.5 192", (192, None)),
    ("425 2.5 192 904.5", (192, 904.5)),
])
def test_read_cam_file_optional_depth_num_and_max(tmp_path, depth_line, expected):
    (tmp_path / "cam.txt").write_text(CAM_TEXT.replace("425.0 2.5", depth_line))
    cam = read_cam_file(tmp_path / "cam.txt")
    assert (cam["depth_num"], cam["depth_max"]) == expected


def test_cam_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    extrinsic = np.eye(4)
    extrinsic[:3, :4] = rng.normal(size=(3, 4))
    intrinsic = np.array([[100.123456789, 0, 20.5], [0, 99.5, 15.25], [0, 0, 1]])
    write_cam_file(tmp_path / "cam.txt", extrinsic, intrinsic, 0.123456789, 0.01, 64, 0.77)
    cam = read_cam_file(tmp_path / "cam.txt")
    np.testing.assert_array_equal(cam["extrinsic"], extrinsic)
    np.testing.assert_array_equal(cam["intrinsic"], intrinsic)
    assert (cam["depth_min"], cam["depth_interval"], cam["depth_num"], cam["depth_max"]) == \
        (0.123456789, 0.01, 64, 0.77)


@pytest.mark.parametrize("old, new, message", [
    ("extrinsic\n", "extrinsics\n", r"cam\.txt:1: .*expected 'extrinsic'"),
    ("intrinsic\n", "", r"cam\.txt:7: .*expected 'intrinsic'"),
    ("0.0 360.3975 66.383875", "0.0 360.3975", r"cam\.txt:9: 2 numbers .*expected 3"),
    ("-191.02", "abc", r"cam\.txt:2: .*not numeric"),
    ("425.0 2.5", "425.0", r"cam\.txt:12: 1 numbers .*expected 2 or 3 or 4"),
    ("425.0 2.5", "425.0 2.5 19.5", r"cam\.txt:12: depth_num 19.5"),
])
def test_read_cam_file_malformed_raises_value_error_with_line(tmp_path, old, new, message):
    (tmp_path / "cam.txt").write_text(CAM_TEXT.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        read_cam_file(tmp_path / "cam.txt")


def test_read_cam_file_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope_cam.txt"):
        read_cam_file(tmp_path / "nope_cam.txt")


def test_pair_file_round_trip_keeps_order_and_scores(tmp_path):
    pairs = [(0, [(10, 2346.41), (1, 2036.53), (9, 1243.89)]), (1, [(0, 0.1), (2, 1e-7)]), (2, [])]
    write_pair_file(tmp_path / "pair.txt", pairs)
    assert read_pair_file(tmp_path / "pair.txt") == pairs
    assert (tmp_path / "pair.txt").read_text().splitlines()[:3] == \
        ["3", "0", "3 10 2346.41 1 2036.53 9 1243.89"]


def test_read_pair_file_wrong_source_count_raises_value_error(tmp_path):
    (tmp_path / "pair.txt").write_text("1\n0\n3 1 0.5 2 0.25\n")
    with pytest.raises(ValueError, match=r"pair\.txt:3: "):
        read_pair_file(tmp_path / "pair.txt")


def test_read_image_returns_uint8_rgb_and_converts_gray(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (4, 5, 3) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[..., 2], rgb[..., 0])


def test_read_image_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_image.png"):
        read_image(tmp_path / "no_image.png")
