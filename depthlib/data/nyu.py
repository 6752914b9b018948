"""NYU Depth v2 in DenseDepth's layout (CSV + JPEG/PNG, optionally zipped): writer and Dataset (chapter 01).

Layout of DenseDepth's ``nyu_data.zip`` (and of the folder it unzips to):
``data/nyu2_train.csv`` rows ``data/nyu2_train/<scene>_out/<k>.jpg,data/nyu2_train/<scene>_out/<k>.png``
(RGB JPEG; depth 8-bit PNG, 255 = 10 m) and ``data/nyu2_test.csv`` rows
``data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png`` (RGB PNG; depth 16-bit PNG in
millimetres, 0 = invalid). The synthetic writer adds ``data/synthetic_meta.json`` (cameras per
CSV row), which the real set lacks; ``NYUDepth`` reads it only with ``with_camera=True``.
"""
__all__ = ["NYU_MAX_DEPTH", "TEST_SEED_OFFSET", "write_nyu_like", "read_synthetic_meta", "NYUDepth"]

import csv
import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

NYU_MAX_DEPTH = 10.0        # metres that an 8-bit train depth of 255 stands for (DenseDepth)
TEST_SEED_OFFSET = 100_000  # test rooms are seeded apart from train rooms, so the splits share no room
_CSV = {"train": "data/nyu2_train.csv", "test": "data/nyu2_test.csv"}
_META = "data/synthetic_meta.json"


def _encode_depth(depth, split):
    """Depth (H, W) metres -> the PNG array of a split: 8-bit 0..10 m (train) or 16-bit mm (test)."""
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if split == "train":
        return np.round(np.clip(depth, 0.0, NYU_MAX_DEPTH) / NYU_MAX_DEPTH * 255).astype(np.uint8)
    return np.round(np.clip(depth * 1000.0, 0, 65535)).astype(np.uint16)


def _write_split(root, frames, split):
    """Write the images and the CSV of one split; returns the meta rows (one per CSV row)."""
    rows, meta, counts = [], [], {}
    for index, frame in enumerate(frames):
        if split == "train":
            scene = f"{frame['scene']}_out"
            k = counts[scene] = counts.get(scene, -1) + 1
            rgb, depth = f"data/nyu2_train/{scene}/{k}.jpg", f"data/nyu2_train/{scene}/{k}.png"
        else:
            rgb, depth = f"data/nyu2_test/{index:05d}_colors.png", f"data/nyu2_test/{index:05d}_depth.png"
        (root / rgb).parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.asarray(frame["image"], dtype=np.uint8))
        image.save(root / rgb, **({"quality": 95} if split == "train" else {}))
        Image.fromarray(_encode_depth(frame["depth"], split)).save(root / depth)
        rows.append(f"{rgb},{depth}")
        meta.append({"rgb": rgb, "depth": depth, "scene": frame["scene"],
                     "K": np.asarray(frame["K"]).tolist(), "extrinsic": np.asarray(frame["extrinsic"]).tolist()})
    (root / _CSV[split]).write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return meta


def write_nyu_like(root, n_train, n_test, height=480, width=640, seed=0, frames_per_room=4, zip=False, workers=1):
    """Render rooms and write them in DenseDepth's NYU layout under ``root`` (see the module doc).

    Train rooms are seeded ``seed, seed+1, ...``; test rooms ``seed + TEST_SEED_OFFSET, ...``.
    Also writes ``data/synthetic_meta.json``: per split, per CSV row, ``K`` (3, 3), world-to-camera
    ``extrinsic`` (4, 4) and the room name. With ``zip=True`` also packs the ``data/`` tree
    into ``root/nyu_data.zip`` (the real file's layout) and returns that path; else returns ``root``.
    ``workers`` > 1 renders in that many processes (same files).
    """
    from depthlib.data.scenes import room_frames  # lazy: the renderer is only needed to write

    if n_train < 0 or n_test < 0 or height < 1 or width < 1:
        raise ValueError(f"write_nyu_like: n_train={n_train}, n_test={n_test}, size={height}x{width}; "
                         "expected non-negative counts and a positive size")
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    meta = {"format": "depthlib synthetic NYU", "max_depth": NYU_MAX_DEPTH, "height": height, "width": width,
            "seed": seed, "frames_per_room": frames_per_room}
    train_frames = room_frames(n_train, height, width, seed, frames_per_room, workers=workers)
    meta["train"] = _write_split(root, train_frames, "train")
    test_frames = room_frames(n_test, height, width, seed + TEST_SEED_OFFSET, frames_per_room, workers=workers)
    meta["test"] = _write_split(root, test_frames, "test")
    (root / _META).write_text(json.dumps(meta), encoding="utf-8")
    if not zip:
        return root
    zip_path, part = root / "nyu_data.zip", root / "nyu_data.zip.part"
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as archive:  # JPEG/PNG are compressed already
        for name in [_CSV["train"], _CSV["test"], _META] + [r[k] for s in ("train", "test")
                                                            for r in meta[s] for k in ("rgb", "depth")]:
            archive.write(root / name, name)
    os.replace(part, zip_path)
    return zip_path


class _Source:
    """Reads members of the ``data/`` tree from a folder or a zip (the zip opens lazily, per process)."""

    def __init__(self, root_or_zip):
        self.path = Path(root_or_zip)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such NYU folder or zip (expected the folder that "
                                    "contains data/, or nyu_data.zip)")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise ValueError(f"{self.path}: not a zip file (expected nyu_data.zip or a folder)")
        self._archive, self._pid, self._names = None, None, None

    def __getstate__(self):  # DataLoader workers get a copy without the open handle
        return {**self.__dict__, "_archive": None, "_pid": None}

    def _zip(self):
        if self._archive is None or self._pid != os.getpid():
            self._archive, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._archive

    def describe(self, name):
        return f"{self.path}:{name}" if self.is_zip else str(self.path / name)

    def exists(self, name):
        if not self.is_zip:
            return (self.path / name).is_file()
        if self._names is None:
            self._names = set(self._zip().namelist())
        return name in self._names

    def read(self, name):
        if not self.exists(name):
            raise FileNotFoundError(f"{self.describe(name)}: no such file")
        try:
            return self._zip().read(name) if self.is_zip else (self.path / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a corrupt member (bad CRC, cut data)
            raise ValueError(f"{self.describe(name)}: cannot read this zip member ({error})") from error


def read_synthetic_meta(root_or_zip):
    """The cameras of a synthetic NYU set: dict with ``train`` / ``test`` lists (one entry per CSV row:
    ``rgb``, ``depth``, ``scene``, ``K`` (3, 3) and ``extrinsic`` (4, 4) as NumPy float64).

    Real NYU downloads have no such file (FileNotFoundError).
    """
    source = _Source(root_or_zip)
    try:
        meta = json.loads(source.read(_META))
    except json.JSONDecodeError as error:
        raise ValueError(f"{source.describe(_META)}: not valid JSON ({error})") from None
    for split in ("train", "test"):
        for row in meta[split]:
            row["K"], row["extrinsic"] = np.array(row["K"]), np.array(row["extrinsic"])
    return meta


def _read_csv(source, split):
    text = source.read(_CSV[split]).decode("utf-8")
    samples, line_numbers = [], []
    for line_number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{source.describe(_CSV[split])}:{line_number}: {len(fields)} fields, "
                             "expected 'rgb_path,depth_path'")
        for name in fields:
            if not source.exists(name):
                raise FileNotFoundError(f"{source.describe(name)}: no such file "
                                        f"(listed on line {line_number} of {source.describe(_CSV[split])})")
        samples.append((fields[0], fields[1]))
        line_numbers.append(line_number)
    if not samples:
        raise ValueError(f"{source.describe(_CSV[split])}: no 'rgb_path,depth_path' rows; the {split} split is empty")
    return samples, line_numbers


def _check_cameras(source, split, samples, cameras):
    """The meta file's rows must name the CSV's files, row for row (checked once, when the set is built)."""
    if len(cameras) != len(samples):
        raise ValueError(f"{source.describe(_META)}: {len(cameras)} {split} rows, but {source.describe(_CSV[split])} "
                         f"has {len(samples)}; expected one camera per CSV row")
    for index, (row, sample) in enumerate(zip(cameras, samples)):
        if (row["rgb"], row["depth"]) != sample:
            raise ValueError(f"{source.describe(_META)}: {split} row {index} is {row['rgb']}, expected {sample[0]} "
                             "(meta file does not match the CSV)")


class NYUDepth(Dataset):
    """NYU Depth v2 pairs in DenseDepth's layout, from the folder that contains ``data/`` or from the zip.

    Items: ``image`` float32 [3, H, W] in [0, 1]; ``depth`` float32 [1, H, W] metres (train PNG / 255 *
    ``max_depth``, test PNG / 1000); ``mask`` bool [1, H, W] = finite depth > 0. ``size=(H, W)`` resizes
    (image: bilinear with antialias; depth: nearest). ``augment`` (default: on for train) flips
    image and depth together with p = 0.5 and permutes the RGB channels with p = 0.25, as DenseDepth,
    drawing from torch's global RNG. ``with_camera=True`` adds ``K`` [3, 3] (for the returned size)
    and ``extrinsic`` [4, 4] from a synthetic set's meta file (no augmentation allowed then).
    """

    def __init__(self, root_or_zip, split="train", size=None, augment=None, max_depth=NYU_MAX_DEPTH,
                 with_camera=False):
        if split not in _CSV:
            raise ValueError(f"NYUDepth: split {split!r}, expected 'train' or 'test'")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"NYUDepth: size {size}, expected None or (height, width) with positive ints")
        if not (isinstance(max_depth, (int, float)) and math.isfinite(max_depth) and max_depth > 0):
            raise ValueError(f"NYUDepth: max_depth {max_depth!r}, expected a finite positive number of metres")
        self.split, self.size, self.max_depth = split, None if size is None else tuple(size), float(max_depth)
        self.augment = (split == "train") if augment is None else bool(augment)
        if with_camera and self.augment:
            raise ValueError("NYUDepth: with_camera=True needs augment=False (a flip changes the camera)")
        self.source = _Source(root_or_zip)
        self.samples, self.csv_lines = _read_csv(self.source, split)
        self.cameras = read_synthetic_meta(self.source.path)[split] if with_camera else None
        if self.cameras is not None:
            _check_cameras(self.source, split, self.samples, self.cameras)

    def __len__(self):
        return len(self.samples)

    def describe(self, index) -> str:
        """Where sample ``index`` comes from: its files and the CSV line that lists them."""
        rgb, depth = self.samples[index]
        return f"{rgb}, {depth} (line {self.csv_lines[index]} of {self.source.describe(_CSV[self.split])})"

    def _open(self, name, index):
        """The decoded PIL image of a member; errors name the file and the CSV line that lists it."""
        try:
            image = Image.open(io.BytesIO(self.source.read(name)))
            image.load()
            return image
        except (OSError, SyntaxError, ValueError) as error:  # PIL: unidentified, truncated or corrupt data
            raise ValueError(f"{self.source.describe(name)} (line {self.csv_lines[index]} of "
                             f"{self.source.describe(_CSV[self.split])}): cannot decode the image "
                             f"({type(error).__name__}: {error})") from error

    def _load_depth(self, rgb_name, depth_name, image_size, index):
        with self._open(depth_name, index) as png:
            mode, png_size = png.mode, png.size
            raw = np.asarray(png)
        expected = ("L",) if self.split == "train" else ("I;16", "I;16B", "I;16L", "I")
        line = f"line {self.csv_lines[index]} of {self.source.describe(_CSV[self.split])}"
        if mode not in expected:
            bits = "8-bit (mode 'L')" if self.split == "train" else "16-bit (mode 'I;16')"
            raise ValueError(f"{self.source.describe(depth_name)}: PNG mode {mode!r}, expected a {bits} "
                             f"{self.split} depth map ({line})")
        if png_size != image_size:
            raise ValueError(f"{self.source.describe(depth_name)} is {png_size[0]}x{png_size[1]} (WxH) but "
                             f"{self.source.describe(rgb_name)} is {image_size[0]}x{image_size[1]} ({line}); "
                             "expected equal")
        depth = raw.astype(np.float32)
        depth = depth / 255.0 * self.max_depth if self.split == "train" else depth / 1000.0
        return torch.from_numpy(depth)[None]

    def __getitem__(self, index):
        rgb_name, depth_name = self.samples[index]
        with self._open(rgb_name, index) as image_file:
            image_size = image_file.size
            image = torch.from_numpy(np.asarray(image_file.convert("RGB"), dtype=np.float32) / 255.0)
        image = image.permute(2, 0, 1).contiguous()
        depth = self._load_depth(rgb_name, depth_name, image_size, index)
        if self.size is not None and tuple(image.shape[1:]) != self.size:
            image = F.interpolate(image[None], size=self.size, mode="bilinear", align_corners=False,
                                  antialias=True)[0].clamp(0.0, 1.0)
            depth = F.interpolate(depth[None], size=self.size, mode="nearest-exact")[0]
        if self.augment:
            if torch.rand(()) < 0.5:
                image, depth = image.flip(-1), depth.flip(-1)
            if torch.rand(()) < 0.25:
                image = image[torch.randperm(3)]
        item = {"image": image, "depth": depth, "mask": torch.isfinite(depth) & (depth > 0)}
        if self.cameras is not None:
            item.update(self._camera(index, image_size))
        return item

    def _camera(self, index, image_size):
        row = self.cameras[index]  # rows were matched with the CSV when the set was built
        K = row["K"]
        if self.size is not None:
            from depthlib.geometry import scale_intrinsics
            K = scale_intrinsics(K, self.size[1] / image_size[0], self.size[0] / image_size[1])
        return {"K": torch.as_tensor(K, dtype=torch.float32),
                "extrinsic": torch.as_tensor(row["extrinsic"], dtype=torch.float32)}
