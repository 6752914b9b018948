"""Tests for depthlib.data.download, without any network: argument checks, resume logic on a fake
server response, archive extraction, and the gdown hint."""
import io
import sys
import urllib.request
import zipfile

import pytest

from depthlib.data import download
from depthlib.data.download import DTU_URL, NYU_URL, download_dtu, download_file, download_nyu, extract_archive


class _FakeResponse(io.BytesIO):
    """What urlopen returns: a byte stream with a status and headers."""

    def __init__(self, body, status):
        super().__init__(body)
        self.status, self.headers = status, {"Content-Length": str(len(body))}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to open a URL")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_published_urls_are_densedepth_and_mvsnet_links():
    assert NYU_URL == "https://s3-eu-west-1.amazonaws.com/densedepth/nyu_data.zip"
    assert download._drive_file_id(DTU_URL) == "1eDjh-_bxKKnEuz5h-HXS7EDJn59clx6V"


@pytest.mark.parametrize("url", ["ftp://example.org/nyu_data.zip", "/local/nyu_data.zip", "file:///etc/hosts"])
def test_non_http_url_raises_value_error(tmp_path, no_network, url):
    with pytest.raises(ValueError, match="expected http or https"):
        download_nyu(tmp_path, url=url)


def test_destination_that_is_a_file_raises_value_error(tmp_path, no_network):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match=r"taken is a file"):
        download_dtu(tmp_path / "taken")


def test_existing_download_is_kept_without_a_request(tmp_path, no_network):
    (tmp_path / "nyu_data.zip").write_bytes(b"complete")
    assert download_nyu(tmp_path) == tmp_path / "nyu_data.zip"


def test_partial_download_resumes_with_range_and_is_renamed(tmp_path, monkeypatch):
    body = bytes(range(256)) * 10
    (tmp_path / "f.bin.part").write_bytes(body[:1000])
    requests = []

    def fake_urlopen(request, timeout=None):
        requests.append(request.headers.get("Range"))
        return _FakeResponse(body[1000:], 206)
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    path = download_file("https://example.org/f.bin", tmp_path / "f.bin", expected_size=len(body), checksum=True)
    assert requests == ["bytes=1000-"] and path.read_bytes() == body
    assert not (tmp_path / "f.bin.part").exists()


def test_server_ignoring_range_restarts_and_wrong_size_keeps_part(tmp_path, monkeypatch):
    body = b"abcdef" * 100
    (tmp_path / "f.bin.part").write_bytes(b"stale")
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: _FakeResponse(body, 200))
    assert download_file("https://example.org/f.bin", tmp_path / "f.bin", checksum=False).read_bytes() == body
    with pytest.raises(ValueError, match=r"g\.bin\.part: 600 bytes, expected 601"):
        download_file("https://example.org/g.bin", tmp_path / "g.bin", expected_size=601, checksum=False)
    assert (tmp_path / "g.bin.part").stat().st_size == 600 and not (tmp_path / "g.bin").exists()


def test_google_drive_link_without_gdown_explains_what_to_do(tmp_path, monkeypatch, no_network):
    monkeypatch.setitem(sys.modules, "gdown", None)  # makes `import gdown` fail
    with pytest.raises(RuntimeError, match=r"pip install gdown.*dtu_training\.rar"):
        download_dtu(tmp_path)


def test_extract_archive_unpacks_zip_and_rejects_other_files(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("data/nyu2_test.csv", "x,y\n")
    extract_archive(tmp_path / "a.zip", tmp_path / "out")
    assert (tmp_path / "out/data/nyu2_test.csv").read_text() == "x,y\n"
    (tmp_path / "b.tar").write_bytes(b"not an archive we know")
    with pytest.raises(ValueError, match=r"b\.tar: not a zip"):
        extract_archive(tmp_path / "b.tar", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"c\.zip"):
        extract_archive(tmp_path / "c.zip", tmp_path / "out")
