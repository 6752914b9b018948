"""File formats: PFM depth maps, MVSNet cam.txt / pair.txt, RGB images (chapter 01), PLY point clouds (chapter 10)."""
__all__ = [
    "read_pfm",
    "write_pfm",
    "read_cam_file",
    "write_cam_file",
    "read_pair_file",
    "write_pair_file",
    "read_image",
    "write_ply",
    "read_ply",
    "as_point_array",
]

import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image


def _require_file(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def read_pfm(path):
    """Read a PFM image (the depth format of MVSNet's DTU set).

    PFM stores float32 rows bottom-to-top after a 3-line header: "Pf" (1 channel) or
    "PF" (3 channels), "width height", and a scale whose sign gives the byte order
    (negative = little endian).
    Returns:
        (array, scale): float32 (H, W) or (H, W, 3) with rows top-to-bottom, and |scale| > 0.
    Example:
        >>> depth, scale = read_pfm("depth_map_0000.pfm")  # doctest: +SKIP
    """
    path = _require_file(path)
    with open(path, "rb") as handle:
        header = handle.readline().rstrip()
        if header not in (b"PF", b"Pf"):
            raise ValueError(f"{path}: PFM header is {header[:20]!r}, expected b'PF' or b'Pf'")
        channels = 3 if header == b"PF" else 1
        dims_line = handle.readline()
        match = re.fullmatch(rb"\s*(\d+)\s+(\d+)\s*", dims_line)
        if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
            raise ValueError(f"{path}: PFM dimensions line is {dims_line[:40]!r}, "
                             "expected two positive integers 'width height'")
        width, height = int(match.group(1)), int(match.group(2))
        scale_line = handle.readline()
        try:
            scale = float(scale_line)
        except ValueError:
            raise ValueError(f"{path}: PFM scale line is {scale_line[:40]!r}, "
                             "expected a non-zero number") from None
        if scale == 0 or not np.isfinite(scale):
            raise ValueError(f"{path}: PFM scale is {scale}, expected a finite non-zero number")
        dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
        count = width * height * channels
        payload = os.fstat(handle.fileno()).st_size - handle.tell()
        if payload != count * 4:  # checked before reading: a wrong header must not allocate or misread
            raise ValueError(f"{path}: PFM data holds {payload / 4:g} floats, expected {count} = {width} x {height} "
                             f"x {channels} ({count * 4} bytes after the header, exactly; truncated or padded file?)")
        data = np.frombuffer(handle.read(count * 4), dtype=dtype)
    shape = (height, width, 3) if channels == 3 else (height, width)
    array = np.flipud(data.reshape(shape)).astype(np.float32)  # stored bottom-to-top
    return np.ascontiguousarray(array), abs(scale)


def write_pfm(path, array, scale=1.0, little_endian=True):
    """Write a float (H, W) or (H, W, 3) array (rows top-to-bottom) as PFM.

    The file stores rows bottom-to-top; the sign of the written scale records the byte
    order (negative = little endian), as the PFM specification requires.
    """
    array = np.asarray(array)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or array.size == 0:
        raise ValueError(f"write_pfm({path}): array shape {array.shape}, expected (H, W) or (H, W, 3)")
    if not scale > 0:
        raise ValueError(f"write_pfm({path}): scale {scale}, expected a positive number")
    header = b"PF" if array.ndim == 3 else b"Pf"
    dtype = np.dtype("<f4") if little_endian else np.dtype(">f4")
    signed_scale = -abs(scale) if little_endian else abs(scale)
    height, width = array.shape[:2]
    with open(path, "wb") as handle:
        handle.write(header + b"\n" + f"{width} {height}\n{signed_scale!r}\n".encode("ascii"))
        handle.write(np.flipud(array).astype(dtype).tobytes())


def _parse_numbers(path, line_number, line, counts):
    """Numbers on one cam.txt line; counts: allowed numbers of values."""
    try:
        values = [float(token) for token in line.split()]
    except ValueError:
        raise ValueError(f"{path}:{line_number}: {line.strip()!r} is not numeric") from None
    if len(values) not in counts:
        raise ValueError(f"{path}:{line_number}: {len(values)} numbers in {line.strip()!r}, "
                         f"expected {' or '.join(map(str, counts))}")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"{path}:{line_number}: {line.strip()!r} holds a non-finite value, expected finite numbers")
    return values


def _parse_matrix(path, lines, start, keyword, size):
    """Keyword line followed by `size` rows of `size` numbers; returns (matrix, next index)."""
    if start >= len(lines) or lines[start][1].strip() != keyword:
        line_number, text = lines[start] if start < len(lines) else (len(lines) + 1, "<end of file>")
        raise ValueError(f"{path}:{line_number}: found {text.strip()!r}, expected {keyword!r}")
    rows, numbers = [], []
    for index in range(start + 1, start + 1 + size):
        if index >= len(lines):
            raise ValueError(f"{path}: file ends inside the {keyword} matrix, expected {size} rows")
        rows.append(_parse_numbers(path, lines[index][0], lines[index][1], (size,)))
        numbers.append(lines[index][0])
    return np.array(rows, dtype=np.float64), numbers, start + 1 + size


def _check_camera(path, extrinsic, extrinsic_lines, intrinsic, intrinsic_lines):
    """A usable pinhole: extrinsic bottom row (0, 0, 0, 1) and an invertible rotation part; K with
    fx, fy > 0 and bottom row (0, 0, 1), so that K is invertible. Errors name the file and line."""
    if not np.allclose(extrinsic[3], [0, 0, 0, 1], rtol=0, atol=1e-9):
        raise ValueError(f"{path}:{extrinsic_lines[3]}: extrinsic bottom row {extrinsic[3].tolist()}, "
                         "expected 0 0 0 1")
    if abs(np.linalg.det(extrinsic[:3, :3])) < 1e-6:
        raise ValueError(f"{path}:{extrinsic_lines[0]}: the extrinsic rotation (rows {extrinsic_lines[0]}-"
                         f"{extrinsic_lines[2]}) is singular (determinant {np.linalg.det(extrinsic[:3, :3]):.3g}), "
                         "expected a rotation")
    if not np.allclose(intrinsic[2], [0, 0, 1], rtol=0, atol=1e-9):
        raise ValueError(f"{path}:{intrinsic_lines[2]}: intrinsic bottom row {intrinsic[2].tolist()}, "
                         "expected 0 0 1")
    for row, name in ((0, "fx"), (1, "fy")):
        if not intrinsic[row, row] > 0:
            raise ValueError(f"{path}:{intrinsic_lines[row]}: {name} = {intrinsic[row, row]:g}, expected a positive "
                             "focal length (K would be singular or mirrored)")


def read_cam_file(path):
    """Read an MVSNet cam.txt: world->camera extrinsic, intrinsic K and the depth range.

    Layout: "extrinsic", 4 rows of 4; blank; "intrinsic", 3 rows of 3; blank; a depth line
    "depth_min depth_interval [depth_num [depth_max]]" (DTU: "425 2.5", mm).
    Checked (ValueError naming the file and line): finite numbers, extrinsic bottom row 0 0 0 1 and
    an invertible rotation, K with fx, fy > 0 and bottom row 0 0 1, depth_min > 0, depth_interval
    > 0, depth_max > depth_min.
    Returns:
        dict with extrinsic (4, 4) float64, intrinsic (3, 3) float64, depth_min,
        depth_interval (float), depth_num (int or None), depth_max (float or None).
    """
    path = _require_file(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    extrinsic, extrinsic_lines, index = _parse_matrix(path, lines, 0, "extrinsic", 4)
    intrinsic, intrinsic_lines, index = _parse_matrix(path, lines, index, "intrinsic", 3)
    _check_camera(path, extrinsic, extrinsic_lines, intrinsic, intrinsic_lines)
    if index >= len(lines):
        raise ValueError(f"{path}: no depth line after the intrinsic matrix, expected "
                         "'depth_min depth_interval [depth_num [depth_max]]'")
    if index + 1 < len(lines):
        raise ValueError(f"{path}:{lines[index + 1][0]}: unexpected extra line "
                         f"{lines[index + 1][1].strip()!r} after the depth line")
    line_number, line = lines[index]
    values = _parse_numbers(path, line_number, line, (2, 3, 4))
    if not values[0] > 0 or not values[1] > 0:
        raise ValueError(f"{path}:{line_number}: depth_min {values[0]:g}, depth_interval {values[1]:g}; expected "
                         "both positive (planes in front of the camera, increasing depth)")
    if len(values) == 4 and not values[3] > values[0]:
        raise ValueError(f"{path}:{line_number}: depth_max {values[3]:g} <= depth_min {values[0]:g}, expected "
                         "depth_max > depth_min")
    depth_num = None
    if len(values) >= 3:
        if values[2] != int(values[2]) or values[2] < 1:
            raise ValueError(f"{path}:{line_number}: depth_num {values[2]}, expected a positive integer")
        depth_num = int(values[2])
    return {
        "extrinsic": extrinsic,
        "intrinsic": intrinsic,
        "depth_min": values[0],
        "depth_interval": values[1],
        "depth_num": depth_num,
        "depth_max": values[3] if len(values) == 4 else None,
    }


def write_cam_file(path, extrinsic, intrinsic, depth_min, depth_interval, depth_num=None, depth_max=None):
    """Write an MVSNet cam.txt (see `read_cam_file` for the layout).

    depth_max needs depth_num (the format is positional). Numbers are written with
    full float64 precision so `read_cam_file` gives back the same values.
    """
    extrinsic, intrinsic = np.asarray(extrinsic, dtype=np.float64), np.asarray(intrinsic, dtype=np.float64)
    if extrinsic.shape != (4, 4) or intrinsic.shape != (3, 3):
        raise ValueError(f"write_cam_file({path}): extrinsic {extrinsic.shape}, intrinsic "
                         f"{intrinsic.shape}, expected (4, 4) and (3, 3)")
    if depth_max is not None and depth_num is None:
        raise ValueError(f"write_cam_file({path}): depth_max given without depth_num; "
                         "the depth line is 'depth_min depth_interval depth_num depth_max'")
    depth_values = [repr(float(depth_min)), repr(float(depth_interval))]
    if depth_num is not None:
        depth_values.append(str(int(depth_num)))
    if depth_max is not None:
        depth_values.append(repr(float(depth_max)))
    rows = ["extrinsic"] + [" ".join(repr(float(v)) for v in row) for row in extrinsic] + [""]
    rows += ["intrinsic"] + [" ".join(repr(float(v)) for v in row) for row in intrinsic] + [""]
    rows.append(" ".join(depth_values))
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def _pair_error(path, line_number, message):
    return ValueError(f"{path}:{line_number}: {message}")


def read_pair_file(path):
    """Read an MVSNet pair.txt (view selection: for each reference view, ranked source views).

    Layout: the number of views N, then per view a line with the reference id and a line
    "n src_0 score_0 src_1 score_1 ...".
    A reference view listed twice, or a source list naming the reference or one view twice, is a
    ValueError naming the line.
    Returns:
        list of (ref_view, [(src_view, score), ...]) in file order.
    """
    path = _require_file(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip().isdigit():
        raise _pair_error(path, 1, f"{(lines or [''])[0].strip()!r}, expected the number of views")
    n_views = int(lines[0])
    if len(lines) != 1 + 2 * n_views:
        raise _pair_error(path, len(lines), f"file has {len(lines)} lines, expected 1 + 2 x {n_views}")
    pairs, seen = [], {}
    for view_index in range(n_views):
        ref_line, src_line = 2 + 2 * view_index, 3 + 2 * view_index  # 1-based line numbers
        ref_text, tokens = lines[ref_line - 1].strip(), lines[src_line - 1].split()
        if not ref_text.isdigit():
            raise _pair_error(path, ref_line, f"{ref_text!r}, expected a reference view id")
        if not tokens or not tokens[0].isdigit() or len(tokens) != 1 + 2 * int(tokens[0]):
            raise _pair_error(path, src_line, f"{len(tokens)} tokens, expected 'n' then n (view, score) pairs")
        try:
            sources = [(int(tokens[i]), float(tokens[i + 1])) for i in range(1, len(tokens), 2)]
        except ValueError:
            raise _pair_error(path, src_line, "expected integer view ids and numeric scores") from None
        ref_view, source_ids = int(ref_text), [view for view, _ in sources]
        if ref_view in seen:
            raise _pair_error(path, ref_line, f"reference view {ref_view} again (first on line {seen[ref_view]}), "
                                              "expected each reference view once")
        if ref_view in source_ids or len(set(source_ids)) != len(source_ids):
            raise _pair_error(path, src_line, f"source views {source_ids} of reference view {ref_view}, expected "
                                              "distinct views other than the reference")
        seen[ref_view] = ref_line
        pairs.append((ref_view, sources))
    return pairs


def write_pair_file(path, pairs):
    """Write an MVSNet pair.txt from [(ref_view, [(src_view, score), ...]), ...]."""
    rows = [str(len(pairs))]
    for ref_view, sources in pairs:
        rows.append(str(int(ref_view)))
        rows.append(" ".join([str(len(sources))] + [f"{int(v)} {float(s)!r}" for v, s in sources]))
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def read_image(path):
    """Read an image file as uint8 (H, W, 3) RGB (grayscale / RGBA are converted).

    An undecodable or truncated file is a ValueError naming the path."""
    path = _require_file(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as error:  # PIL: unidentified, truncated or corrupt data
        raise ValueError(f"{path}: cannot decode the image ({type(error).__name__}: {error})") from error


# ----------------------------------------------------------------------------- PLY point clouds

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def as_point_array(points, name: str = "points", expected=None, finite: bool = False) -> np.ndarray:
    """``points`` (a tensor on any device, or array-like) as a NumPy array of shape (N, 3), or of
    shape ``expected`` (e.g. colours like their points); ValueError naming ``name`` otherwise, and,
    with ``finite``, naming the first row with a NaN or infinite coordinate."""
    points = np.asarray(points.detach().cpu()) if hasattr(points, "detach") else np.asarray(points)
    ok = points.ndim == 2 and points.shape[1] == 3 if expected is None else points.shape == expected
    if not ok:
        raise ValueError(f"{name} has shape {points.shape}, expected "
                         f"{'(N, 3)' if expected is None else f'{expected} like points'}")
    if finite and not np.isfinite(points).all():
        row = int(np.flatnonzero(~np.isfinite(points).all(1))[0])
        raise ValueError(f"{name} row {row} is {points[row]}, expected finite coordinates")
    return points


def write_ply(path, points, colors=None):
    """Write a point cloud as binary little-endian PLY (read by MeshLab, CloudCompare, Open3D).

    points: (N, 3) finite, stored as float32 x y z. colors: (N, 3) uint8 (or float in [0, 1]) stored
    as uchar red green blue, or None. Returns ``path``.
    """
    points = as_point_array(points, f"write_ply({path}): points", finite=True)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = as_point_array(colors, "colors", expected=points.shape)
        if colors.dtype != np.uint8:
            colors = np.clip(np.round(colors.astype(np.float64) * 255), 0, 255).astype(np.uint8)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = points.T.astype(np.float32)
    if colors is not None:
        vertices["red"], vertices["green"], vertices["blue"] = colors.T
    header = ["ply", "format binary_little_endian 1.0", "comment written by depthlib",
              f"element vertex {len(points)}"]
    header += [f"property {'float' if dtype == '<f4' else 'uchar'} {name}" for name, dtype in fields]
    with open(path, "wb") as handle:
        handle.write(("\n".join(header + ["end_header"]) + "\n").encode("ascii"))
        handle.write(vertices.tobytes())
    return path


def _ply_header(path: Path, handle):
    """(format, [(element, count, [(property, dtype)])]) of a PLY header; the handle ends after it."""
    if handle.readline().strip() != b"ply":
        raise ValueError(f"{path}: first line is not 'ply', expected a PLY file")
    fmt, elements = None, []
    for number, raw in enumerate(iter(handle.readline, b""), start=2):
        words = raw.decode("ascii", errors="replace").split()
        if words[:1] == ["format"] and len(words) == 3:
            fmt = words[1]
        elif words[:1] == ["element"] and len(words) == 3:
            if not words[2].isdigit():
                raise ValueError(f"{path}:{number}: {' '.join(words)!r}, expected 'element <name> <count>' with a "
                                 "non-negative integer count")
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            if not (words[1] == "list" and len(words) == 5 or len(words) == 3 and words[1] in _PLY_TYPES):
                raise ValueError(f"{path}:{number}: {raw.strip()!r}, expected 'property <type> <name>' "
                                 "or 'property list <type> <type> <name>'")
            elements[-1][2].append((words[-1], _PLY_TYPES.get(words[1])))  # None: a list property
        elif words == ["end_header"]:
            break
        elif words[:1] not in (["comment"], ["obj_info"]):
            raise ValueError(f"{path}:{number}: unexpected header line {raw.strip()!r}")
    else:
        raise ValueError(f"{path}: no 'end_header' line, expected a complete PLY header")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise ValueError(f"{path}: format {fmt!r}, expected binary_little_endian, binary_big_endian or ascii")
    return fmt, elements


def read_ply(path):
    """Read the vertices of a PLY point cloud (binary either endianness, or ascii).

    Returns (points (N, 3) float32, colors (N, 3) uint8 or None when the file has no red green blue).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as handle:
        fmt, elements = _ply_header(path, handle)
        names = [name for name, _, _ in elements]
        if "vertex" not in names or any(count for _, count, _ in elements[:names.index("vertex")]):
            raise ValueError(f"{path}: elements {names}, expected a 'vertex' element first")
        _, count, properties = elements[names.index("vertex")]
        if any(code is None for _, code in properties):
            raise ValueError(f"{path}: the vertex element has a list property, expected scalar properties only")
        order = ">" if fmt == "binary_big_endian" else "<"
        dtype = np.dtype([(name, order + code) for name, code in properties])
        if fmt == "ascii":
            rows = [handle.readline().split() for _ in range(count)]
            if any(len(row) < len(properties) for row in rows):
                raise ValueError(f"{path}: an ascii vertex line has fewer than {len(properties)} values")
            table = np.array([tuple(row[:len(properties)]) for row in rows], dtype=[(n, "U32") for n, _ in properties])
            vertices = table.astype(dtype) if count else np.empty(0, dtype)
        else:  # the payload is checked against the header before it is read
            payload, needed = path.stat().st_size - handle.tell(), count * dtype.itemsize
            if payload < needed or (len(elements) == 1 and payload != needed):
                raise ValueError(f"{path}: {payload / dtype.itemsize:g} vertices of {dtype.itemsize} bytes, expected "
                                 f"{count} ({needed} bytes after the header{', exactly' if len(elements) == 1 else ''};"
                                 " truncated or padded file?)")
            vertices = np.frombuffer(handle.read(needed), dtype=dtype)
    missing = [axis for axis in "xyz" if axis not in dtype.names]
    if missing:
        raise ValueError(f"{path}: vertex properties {list(dtype.names)}, expected x, y and z")
    points = np.stack([vertices[axis] for axis in "xyz"], 1).astype(np.float32)
    if not all(channel in dtype.names for channel in ("red", "green", "blue")):
        return points, None
    return points, np.stack([vertices[c] for c in ("red", "green", "blue")], 1).astype(np.uint8)
