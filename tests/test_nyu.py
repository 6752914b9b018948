"""Tests for depthlib.data.nyu: DenseDepth's NYU layout (writer, folder / zip reader, augmentation)."""
import csv
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.data.nyu import NYUDepth, read_synthetic_meta, write_nyu_like


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    zip_path = write_nyu_like(root, n_train=5, n_test=3, height=32, width=40, seed=0, frames_per_room=2, zip=True)
    return root, zip_path


def _hand_made_set(root, train_depth=None, test_depth=None, image_size=(5, 4)):
    """A real-layout set with one train and one test pair, written by hand."""
    width, height = image_size
    (root / "data/nyu2_train/kitchen_0001_out").mkdir(parents=True)
    (root / "data/nyu2_test").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "data/nyu2_train/kitchen_0001_out/0.jpg", quality=95)
    Image.fromarray(rgb).save(root / "data/nyu2_test/00000_colors.png")
    if train_depth is None:
        train_depth = np.tile(np.array([0, 51, 255, 128, 1], np.uint8), (4, 1))
    if test_depth is None:
        test_depth = np.tile(np.array([0, 1234, 65535, 500, 1], np.uint16), (4, 1))
    Image.fromarray(train_depth).save(root / "data/nyu2_train/kitchen_0001_out/0.png")
    Image.fromarray(test_depth).save(root / "data/nyu2_test/00000_depth.png")
    (root / "data/nyu2_train.csv").write_text(
        "data/nyu2_train/kitchen_0001_out/0.jpg,data/nyu2_train/kitchen_0001_out/0.png\n")
    (root / "data/nyu2_test.csv").write_text("data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n")
    return rgb


def test_writer_follows_densedepth_csv_and_png_layout(synthetic_root):
    root, _ = synthetic_root
    train_rows = list(csv.reader((root / "data/nyu2_train.csv").read_text().splitlines()))
    test_rows = list(csv.reader((root / "data/nyu2_test.csv").read_text().splitlines()))
    assert len(train_rows) == 5 and len(test_rows) == 3
    assert train_rows[0] == ["data/nyu2_train/room_0000_out/0.jpg", "data/nyu2_train/room_0000_out/0.png"]
    assert train_rows[3] == ["data/nyu2_train/room_0001_out/1.jpg", "data/nyu2_train/room_0001_out/1.png"]
    assert test_rows[2] == ["data/nyu2_test/00002_colors.png", "data/nyu2_test/00002_depth.png"]
    modes = set()
    for name in train_rows[0] + test_rows[0]:
        with Image.open(root / name) as image:
            modes.add((image.format, image.mode))
    assert modes == {("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGB"), ("PNG", "I;16")}
    meta = read_synthetic_meta(root)
    train_rooms = {row["scene"] for row in meta["train"]}
    test_rooms = {row["scene"] for row in meta["test"]}
    assert len(train_rooms) == 3 and train_rooms.isdisjoint(test_rooms)


def test_writer_encodes_depth_as_8bit_train_and_millimetre_test(synthetic_root):
    from depthlib.data.scenes import room_frames
    root, _ = synthetic_root
    train_frame = next(iter(room_frames(1, 32, 40, seed=0, frames_per_room=2)))
    expected_train = np.round(np.clip(train_frame["depth"].astype(np.float64), 0, 10) / 10 * 255)
    stored_train = np.asarray(Image.open(root / "data/nyu2_train/room_0000_out/0.png"))
    np.testing.assert_array_equal(stored_train, expected_train)
    test_frame = next(iter(room_frames(1, 32, 40, seed=100_000, frames_per_room=2)))
    stored_test = np.asarray(Image.open(root / "data/nyu2_test/00000_depth.png")).astype(np.int64)
    np.testing.assert_array_equal(stored_test, np.round(test_frame["depth"].astype(np.float64) * 1000))
    assert (stored_test > 0).mean() > 0.9


def test_reader_converts_png_values_to_metres(tmp_path):
    rgb = _hand_made_set(tmp_path)
    train, test = NYUDepth(tmp_path, "train", augment=False)[0], NYUDepth(tmp_path, "test")[0]
    torch.testing.assert_close(train["depth"][0, 0], torch.tensor([0, 2.0, 10.0, 128 / 25.5, 1 / 25.5]))
    torch.testing.assert_close(test["depth"][0, 0], torch.tensor([0, 1.234, 65.535, 0.5, 0.001]))
    assert train["mask"][0, 0].tolist() == [False, True, True, True, True]
    assert test["image"].dtype == torch.float32 and test["image"].shape == (3, 4, 5)
    torch.testing.assert_close(test["image"], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_reader_zip_and_folder_give_same_items_and_zip_dataset_pickles(synthetic_root):
    root, zip_path = synthetic_root
    with zipfile.ZipFile(zip_path) as archive:
        assert "data/nyu2_train.csv" in archive.namelist()
    for split in ("train", "test"):
        folder, packed = NYUDepth(root, split, augment=False), NYUDepth(zip_path, split, augment=False)
        assert folder.samples == packed.samples and len(packed) == (5 if split == "train" else 3)
        first = packed[len(packed) - 1]  # opens the zip handle
        clone = pickle.loads(pickle.dumps(packed))
        for item in (first, clone[len(packed) - 1]):
            for key in ("image", "depth", "mask"):
                torch.testing.assert_close(item[key], folder[len(packed) - 1][key])


def test_seeded_dataloader_workers_read_the_zip_reproducibly(synthetic_root):
    _, zip_path = synthetic_root
    dataset = NYUDepth(zip_path, "train", size=(16, 20))

    def one_epoch(seed):
        torch.manual_seed(seed)
        batches = list(torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2))
        return torch.cat([batch["image"] for batch in batches]), torch.cat([batch["depth"] for batch in batches])
    first, again, other_seed = one_epoch(0), one_epoch(0), one_epoch(1)
    assert len(first[0]) == 5
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other_seed[0])   # augmentation follows torch's seed, not NumPy's


def test_reader_resizes_image_bilinear_and_depth_nearest(synthetic_root):
    root, _ = synthetic_root
    full = NYUDepth(root, "test")[1]
    small = NYUDepth(root, "test", size=(16, 20))[1]
    assert small["image"].shape == (3, 16, 20) and small["depth"].shape == (1, 16, 20)
    assert small["mask"].shape == (1, 16, 20) and small["mask"].dtype == torch.bool
    # nearest-exact halving picks the second pixel of every 2x2 block: an exact subsample
    torch.testing.assert_close(small["depth"], full["depth"][:, 1::2, 1::2])
    # antialiased bilinear = PIL's BILINEAR resize (a triangle filter widened by the scale factor)
    reference = [np.asarray(Image.fromarray(channel.numpy(), mode="F").resize((20, 16), Image.BILINEAR))
                 for channel in full["image"]]
    torch.testing.assert_close(small["image"], torch.from_numpy(np.stack(reference)), atol=1e-5, rtol=0)


def test_augmentation_flips_together_swaps_channels_and_is_seeded(tmp_path):
    _hand_made_set(tmp_path)
    dataset = NYUDepth(tmp_path, "train")
    plain = NYUDepth(tmp_path, "train", augment=False)[0]
    permutations = [list(p) for p in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])]
    torch.manual_seed(0)
    flips = swaps = 0
    draws = [dataset[0] for _ in range(400)]
    for item in draws:
        flipped = bool(torch.equal(item["depth"], plain["depth"].flip(-1)))
        assert flipped or torch.equal(item["depth"], plain["depth"])
        reference = plain["image"].flip(-1) if flipped else plain["image"]
        matches = [p for p in permutations if torch.equal(item["image"], reference[p])]
        assert matches, "image is not a channel permutation of the (flipped) original"
        flips += flipped
        swaps += matches[0] != [0, 1, 2]
    assert 160 < flips < 240                    # p = 0.5: mean 200, sd 10
    assert 50 < swaps < 117                     # p = 0.25 * 5/6 (randperm may be identity): mean 83, sd 8
    torch.manual_seed(0)
    again = [dataset[0] for _ in range(400)]
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
               for a, b in zip(draws, again))


def test_with_camera_returns_intrinsics_scaled_to_output_size(synthetic_root):
    from depthlib.geometry import scale_intrinsics
    root, _ = synthetic_root
    item = NYUDepth(root, "test", size=(16, 20), with_camera=True)[2]
    row = read_synthetic_meta(root)["test"][2]
    torch.testing.assert_close(item["K"], torch.tensor(scale_intrinsics(row["K"], 0.5, 0.5), dtype=torch.float32))
    torch.testing.assert_close(item["extrinsic"], torch.tensor(row["extrinsic"], dtype=torch.float32))
    with pytest.raises(ValueError, match="augment=False"):
        NYUDepth(root, "train", with_camera=True)


def test_missing_root_and_missing_csv_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        NYUDepth(tmp_path / "no_such_root")
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nyu2_train\.csv"):
        NYUDepth(tmp_path, "train")
    with zipfile.ZipFile(tmp_path / "nyu_data.zip", "w") as archive:
        archive.writestr("data/nyu2_train.csv", "")
    with pytest.raises(FileNotFoundError, match=r"nyu_data\.zip:data/nyu2_test\.csv"):
        NYUDepth(tmp_path / "nyu_data.zip", "test")


def test_missing_file_listed_in_csv_names_file_and_line(tmp_path):
    _hand_made_set(tmp_path)
    with (tmp_path / "data/nyu2_test.csv").open("a") as handle:
        handle.write("data/nyu2_test/00001_colors.png,data/nyu2_test/00001_depth.png\n")
    with pytest.raises(FileNotFoundError, match=r"00001_colors\.png.*line 2"):
        NYUDepth(tmp_path, "test")


def test_depth_size_different_from_image_raises_value_error(tmp_path):
    _hand_made_set(tmp_path, test_depth=np.ones((3, 5), np.uint16))
    with pytest.raises(ValueError, match=r"00000_depth\.png is 5x3.*00000_colors\.png is 5x4"):
        NYUDepth(tmp_path, "test")[0]


@pytest.mark.parametrize("split, train_depth, test_depth, mode", [
    ("train", np.ones((4, 5), np.uint16), None, "I;16"),
    ("test", None, np.ones((4, 5), np.uint8), "L"),
])
def test_depth_png_with_wrong_bit_depth_raises_value_error(tmp_path, split, train_depth, test_depth, mode):
    _hand_made_set(tmp_path, train_depth=train_depth, test_depth=test_depth)
    with pytest.raises(ValueError, match=rf"(00000_depth|0)\.png: PNG mode '{mode}'"):
        NYUDepth(tmp_path, split, augment=False)[0]
