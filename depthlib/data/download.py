"""Download helpers for the real NYU Depth v2 (DenseDepth) and DTU (MVSNet) sets, for Colab (chapter 11).

Nothing in depthlib downloads on its own: the book uses rendered sets; these helpers are for
readers who want the real data. Downloads go to ``<name>.part`` and are renamed when complete,
so an interrupted download resumes (HTTP Range) instead of leaving a broken file.
"""
__all__ = ["NYU_URL", "DTU_URL", "REPOSITORY_URL", "download_file", "extract_archive", "download_nyu", "download_dtu",
           "shipped_file"]

import hashlib
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

NYU_URL = "https://s3-eu-west-1.amazonaws.com/densedepth/nyu_data.zip"  # DenseDepth README, 4.1 GB
DTU_URL = "https://drive.google.com/file/d/1eDjh-_bxKKnEuz5h-HXS7EDJn59clx6V/view"  # MVSNet README: dtu_training.rar
# The book's repository (as in _config.yml; tests/test_notebooks.py checks they agree): files that
# the book ships in data/ are fetched from here when depthlib was installed without the repository.
REPOSITORY_URL = "https://github.com/depth-book/depth-book"
_CHUNK = 1 << 20


def _check_url(url):
    scheme = urllib.parse.urlparse(str(url)).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"download URL {url!r} has scheme {scheme!r}, expected http or https")


def _prepare_dest(dest_dir):
    dest_dir = Path(dest_dir).expanduser()
    if dest_dir.exists() and not dest_dir.is_dir():
        raise ValueError(f"{dest_dir} is a file, expected a folder to download into")
    dest_dir.mkdir(parents=True, exist_ok=True)
    return dest_dir


def _report(path, checksum):
    """Print the size (and SHA-256) of a finished download, so readers can compare with the source."""
    size = path.stat().st_size
    line = f"{path.name}: {size / 2**30:.2f} GiB ({size} bytes)"
    if checksum:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(block)
        line += f", sha256 {digest.hexdigest()}"
    print(line)


def download_file(url, dest_path, expected_size=None, checksum=True, timeout=60.0):
    """Download ``url`` to ``dest_path`` with a progress bar, resuming a previous ``.part`` file.

    An existing ``dest_path`` is kept (no request is made). ``expected_size`` (bytes), when given,
    is checked before the rename. Prints the size and, with ``checksum``, the SHA-256.
    ``timeout``: seconds the connection and each read may wait; a failure is an OSError naming the URL
    (the ``.part`` file is kept for the next try). Returns the path.
    """
    _check_url(url)
    if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise ValueError(f"download_file: timeout {timeout!r}, expected a finite positive number of seconds")
    dest_path = Path(dest_path).expanduser()
    if dest_path.is_file():
        print(f"{dest_path} already downloaded")
        return dest_path
    part = dest_path.with_name(dest_path.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if done and response.status != 206:  # the server ignored Range: start again
                done = 0
            remaining = response.headers.get("Content-Length")
            total = done + int(remaining) if remaining is not None else None
            with open(part, "ab" if done else "wb") as handle, \
                    tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=dest_path.name) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(block)
                    bar.update(len(block))
    except OSError as error:  # URLError, HTTPError, socket timeouts: say what was tried
        raise ConnectionError(f"download of {url} failed ({type(error).__name__}: {error}; time-out {timeout:g} s); "
                              f"{part.name} keeps what arrived, call again to resume") from error
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ValueError(f"{part}: {size} bytes, expected {expected_size}; delete it and download again")
    os.replace(part, dest_path)
    _report(dest_path, checksum)
    return dest_path


def extract_archive(archive, dest_dir):
    """Unpack a .zip (zipfile) or .rar (``rarfile``, else the ``unrar`` / ``7z`` / ``bsdtar`` command)."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(dest_dir)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # a corrupt member: name the archive
            raise ValueError(f"{archive}: cannot unpack ({error}); download it again") from error
        return dest_dir
    if archive.suffix.lower() != ".rar":
        raise ValueError(f"{archive}: not a zip and not a .rar, expected one of them")
    try:
        import rarfile
        with rarfile.RarFile(archive) as handle:
            handle.extractall(dest_dir)
        return dest_dir
    except ImportError:
        pass
    commands = {"unrar": ["unrar", "x", "-o+", str(archive), f"{dest_dir}{os.sep}"],
                "7z": ["7z", "x", "-y", f"-o{dest_dir}", str(archive)],
                "bsdtar": ["bsdtar", "-xf", str(archive), "-C", str(dest_dir)]}
    for tool, command in commands.items():
        if shutil.which(tool):
            subprocess.run(command, check=True)
            return dest_dir
    raise RuntimeError(f"cannot unpack {archive}: install `pip install rarfile` plus `apt-get install unrar` "
                       "(Colab has unrar), or unpack it by hand")


def download_nyu(dest_dir, url=NYU_URL, unzip=False, checksum=True):
    """Download DenseDepth's ``nyu_data.zip`` (NYU Depth v2, 50K train + 654 test pairs, 4.1 GB).

    ``NYUDepth`` reads the zip directly, so by default it is not unpacked. Returns the zip path,
    or with ``unzip=True`` the folder that contains ``data/`` (pass either to ``NYUDepth``).
    """
    dest_dir = _prepare_dest(dest_dir)
    _check_url(url)
    zip_path = download_file(url, dest_dir / "nyu_data.zip", checksum=checksum)
    if not unzip:
        return zip_path
    extract_archive(zip_path, dest_dir)
    return dest_dir


def _drive_file_id(url):
    match = re.search(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:.*&)?id=)([\w-]+)", url)
    return match.group(1) if match else None


def download_dtu(dest_dir, url=DTU_URL, extract=True, checksum=True):
    """Download MVSNet's preprocessed DTU training set (``dtu_training.rar``, Google Drive, ~20 GB unpacked).

    Google Drive files need ``gdown`` (``pip install gdown``); it resumes interrupted downloads
    and renames its temporary file when done. With ``extract=True`` the archive is unpacked and
    the folder that holds ``Cameras/`` and ``Rectified/`` (``mvs_training/dtu``) is returned.
    """
    dest_dir = _prepare_dest(dest_dir)
    _check_url(url)
    archive = dest_dir / "dtu_training.rar"
    file_id = _drive_file_id(url)
    if file_id is None:
        download_file(url, archive, checksum=checksum)
    elif archive.is_file():
        print(f"{archive} already downloaded")
    else:
        try:
            import gdown
        except ImportError:
            raise RuntimeError(f"{url} is a Google Drive file: `pip install gdown` and call download_dtu again, "
                               f"or download it in a browser and save it as {archive}") from None
        if gdown.download(id=file_id, output=str(archive), quiet=False, resume=True) is None:
            raise RuntimeError(f"gdown could not download {url} (Drive quota?); download it in a browser "
                               f"and save it as {archive}")
        _report(archive, checksum)
    if not extract:
        return archive
    extract_archive(archive, dest_dir)
    roots = sorted(p.parent for p in dest_dir.rglob("Cameras") if (p.parent / "Rectified").is_dir())
    return roots[0] if roots else dest_dir


def shipped_file(name, cache_dir=None) -> Path:
    """Path of a file the book ships in ``data/`` (e.g. a small checkpoint).

    ``name`` may be an existing path. Else a bare file name or ``data/NAME`` is looked up in the
    repository's ``data/`` next to the ``depthlib`` package (a clone or an editable install), and
    otherwise downloaded once from ``REPOSITORY_URL`` into the depthlib cache (a pip install from git,
    as on Colab). Any other missing path is a FileNotFoundError at once (no download is tried).
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.parent not in (Path("."), Path("data")):
        raise FileNotFoundError(f"{name}: no such file")
    local = Path(__file__).resolve().parents[2] / "data" / path.name
    if local.is_file():
        return local
    from depthlib.data.synthetic import cache_root

    target = cache_root(cache_dir) / "shipped" / path.name
    if not target.is_file():
        url = f"{REPOSITORY_URL}/raw/main/data/{path.name}"
        try:
            download_file(url, target, checksum=False)
        except OSError as error:
            raise FileNotFoundError(f"{name}: not a file, not in the repository's data/ ({local.parent}), "
                                    f"and the download from {url} failed ({error})") from None
    return target

