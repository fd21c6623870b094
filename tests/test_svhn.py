"""Tests of the svhn package: .mat loading, the cache, downloads, the image-set contract, the CLI.

Small files in the official layout are written to tmp_path with scipy.io.savemat; downloads
use file:// URLs or a local http.server, so nothing here touches the network.
"""
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import svhn
from svhn import data, download
from svhn.imageset import ImageSetError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_COUNTS = {"train": [44, 169, 104, 94, 86, 74, 52, 52, 60, 48],
                 "test": [22, 58, 37, 40, 24, 38, 26, 18, 18, 19]}


# ---------------------------------------------------------------- helpers and fixtures

def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_mat(path, x, digits):
    """Write NHWC images and digits 0..9 as an official SVHN .mat (X (32,32,3,N), y (N,1), 10 = digit 0)."""
    labels = np.where(np.asarray(digits) == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": labels})
    return Path(path)


def assert_one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert str(fragment) in message, (fragment, message)


def closed_port():
    """A local TCP port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's folders and from the network."""
    monkeypatch.setenv("SVHN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SVHN_DIR", raising=False)
    monkeypatch.setattr(download, "URL_BASE", f"http://127.0.0.1:{closed_port()}/")


@pytest.fixture
def mats(tmp_path):
    """A data folder with a 10-image train file (digits 0..9) and a 4-image test file."""
    folder = tmp_path / "data"
    folder.mkdir()
    train_x, test_x = random_images(10, seed=1), random_images(4, seed=2)
    write_mat(folder / "train_32x32.mat", train_x, np.arange(10))
    write_mat(folder / "test_32x32.mat", test_x, [0, 0, 5, 9])
    return folder, train_x, test_x


# ---------------------------------------------------------------- loading

def test_load_gives_nhwc_uint8_and_maps_label_10_to_0(mats):
    folder, train_x, _ = mats
    x, y = svhn.load("train", data_dir=folder)
    assert x.dtype == np.uint8 and x.shape == (10, 32, 32, 3) and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.tolist() == list(range(10))
    np.testing.assert_array_equal(x, train_x)
    svhn.check_image_set(x, y)


def test_data_dir_from_env_and_default_user_folder(mats, tmp_path, monkeypatch):
    folder, _, test_x = mats
    monkeypatch.setenv("SVHN_DIR", str(folder))
    x, y = svhn.load("test")
    np.testing.assert_array_equal(x, test_x)
    assert y.tolist() == [0, 0, 5, 9]

    monkeypatch.delenv("SVHN_DIR")
    default = tmp_path / "xdg" / "svhn-gan" / "svhn"
    default.mkdir(parents=True)
    write_mat(default / "test_32x32.mat", test_x[:2], [3, 4])
    assert svhn.load("test")[1].tolist() == [3, 4]


def test_cache_is_reused_without_reading_the_mat(mats, tmp_path, monkeypatch):
    folder, train_x, _ = mats
    svhn.load("train", data_dir=folder)
    assert len(list((tmp_path / "cache").glob("train_32x32-*.npz"))) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["test_32x32.mat", "train_32x32.mat"]

    def forbidden(*args, **kwargs):
        raise AssertionError("loadmat called although the cache is valid")
    monkeypatch.setattr(scipy.io, "loadmat", forbidden)
    x, y = svhn.load("train", data_dir=folder)
    np.testing.assert_array_equal(x, train_x)
    assert y.tolist() == list(range(10))


def test_cache_goes_to_user_cache_folder_by_default(mats, tmp_path, monkeypatch):
    monkeypatch.delenv("SVHN_CACHE_DIR")
    svhn.load("test", data_dir=mats[0])
    assert len(list((tmp_path / "xdg" / "svhn-gan" / "arrays").glob("test_32x32-*.npz"))) == 1


def test_cache_is_rebuilt_when_the_source_changes(mats, tmp_path):
    folder, _, _ = mats
    svhn.load("test", data_dir=folder)
    path = folder / "test_32x32.mat"
    old = path.stat().st_mtime_ns
    write_mat(path, random_images(3, seed=5), [7, 8, 9])
    os.utime(path, ns=(old + 10**9, old + 10**9))
    x, y = svhn.load("test", data_dir=folder)
    assert y.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(x, random_images(3, seed=5))
    assert len(list((tmp_path / "cache").glob("test_32x32-*.npz"))) == 1  # the stale one is gone


def test_damaged_cache_is_only_a_miss(mats, tmp_path):
    folder, train_x, _ = mats
    svhn.load("train", data_dir=folder)
    cached, = (tmp_path / "cache").glob("train_32x32-*.npz")
    cached.write_bytes(b"not an npz")
    np.testing.assert_array_equal(svhn.load("train", data_dir=folder)[0], train_x)


@pytest.mark.parametrize("variables, problem", [
    ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "missing variable(s) y"),
    ({"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1), np.uint8)}, "X must have shape (32, 32, 3, N)"),
    ({"X": np.zeros((32, 32, 3, 2), np.float32), "y": np.ones((2, 1), np.uint8)}, "X must be uint8"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1), np.uint8)}, "y must have shape (2, 1)"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1), np.float64)}, "integer labels"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [5]], np.uint8)}, "labels must be 1..10"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [5]], np.uint8)}, "found values in 5..11"),
])
def test_bad_mat_contents_raise_one_line_svhnerror(tmp_path, variables, problem):
    scipy.io.savemat(tmp_path / "train_32x32.mat", variables)
    with pytest.raises(svhn.SVHNError) as exc_info:
        svhn.load("train", data_dir=tmp_path)
    assert isinstance(exc_info.value, ValueError)
    assert_one_line(exc_info, tmp_path / "train_32x32.mat", problem)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_or_truncated_mat_raises_one_line_svhnerror(mats, damage):
    folder = mats[0]
    path = folder / "train_32x32.mat"
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": os.urandom(5000), "empty": b""}[damage])
    with pytest.raises(svhn.SVHNError) as exc_info:
        svhn.load("train", data_dir=folder)
    assert_one_line(exc_info, path, "not a readable SVHN .mat file")


def test_bad_split_and_bad_data_dir(tmp_path):
    with pytest.raises(svhn.SVHNError) as exc_info:
        svhn.load("valid", data_dir=tmp_path)
    assert_one_line(exc_info, "'valid'", "train, test, extra")
    with pytest.raises(svhn.SVHNError) as exc_info:
        svhn.load("train", data_dir=tmp_path / "nowhere")
    assert_one_line(exc_info, tmp_path / "nowhere", "does not exist")
    assert data.parse_splits(" train,extra ") == ["train", "extra"]
    with pytest.raises(svhn.SVHNError):
        data.parse_splits("train,tset")


# ---------------------------------------------------------------- downloads and checksums

@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served as file:// holding a tiny test_32x32.mat whose md5 is made 'official'."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    path = write_mat(folder / "test_32x32.mat", random_images(3, seed=9), [1, 2, 0])
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(download.MD5, "test_32x32.mat", md5)
    monkeypatch.setitem(download.OFFICIAL, "test_32x32.mat", (path.stat().st_size, md5))
    return folder, folder.as_uri() + "/", md5


def test_missing_file_is_downloaded_checked_and_loaded(mirror, tmp_path, monkeypatch):
    src, url, _ = mirror
    monkeypatch.setattr(download, "URL_BASE", url)
    dest = tmp_path / "user_data"
    dest.mkdir()
    x, y = svhn.load("test", data_dir=dest)
    assert y.tolist() == [1, 2, 0] and x.shape == (3, 32, 32, 3)
    assert [p.name for p in dest.iterdir()] == ["test_32x32.mat"]
    assert (dest / "test_32x32.mat").read_bytes() == (src / "test_32x32.mat").read_bytes()


def test_download_from_local_http_server(mirror, tmp_path):
    src, _, md5 = mirror
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        path = download.download_file("test_32x32.mat", tmp_path / "new", url_base=url, md5=md5, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert download.md5sum(path) == md5


def test_md5_mismatch_leaves_no_file(mirror, tmp_path):
    _, url, _ = mirror
    dest = tmp_path / "dest"
    with pytest.raises(download.DownloadError) as exc_info:
        download.download_file("test_32x32.mat", dest, url_base=url, md5="0" * 32, progress=False)
    assert isinstance(exc_info.value, RuntimeError)
    assert_one_line(exc_info, "does not match", "0" * 32, "discarded")
    assert not dest.exists()                        # the folder the download made is removed too
    dest.mkdir()                                    # a folder that was there stays, empty
    with pytest.raises(download.DownloadError):
        download.download_file("test_32x32.mat", dest, url_base=url, md5="0" * 32, progress=False)
    assert list(dest.iterdir()) == []


def test_existing_user_file_is_never_overwritten(mirror, tmp_path):
    _, url, md5 = mirror
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "test_32x32.mat").write_bytes(b"mine")
    download.download_file("test_32x32.mat", dest, url_base=url, md5=md5, progress=False)
    assert (dest / "test_32x32.mat").read_bytes() == b"mine"
    assert [p.name for p in dest.iterdir()] == ["test_32x32.mat"]


def test_offline_download_fails_fast_with_what_to_put_where(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(download.DownloadError) as exc_info:
        svhn.load("train", data_dir=dest)
    assert_one_line(exc_info, "train_32x32.mat", f"put train_32x32.mat into {dest}", "--data-dir")
    assert list(dest.iterdir()) == []
    with pytest.raises(download.DownloadError) as exc_info:  # a missing file on a mirror
        download.download_file("extra_32x32.mat", dest, url_base=(tmp_path / "none").as_uri(), progress=False)
    assert_one_line(exc_info, "extra_32x32.mat")
    assert list(dest.iterdir()) == []


def test_verify_reports_official_different_and_missing(mirror, tmp_path):
    src, _, md5 = mirror
    ok, message = svhn.verify("test", data_dir=src)
    assert ok and md5 in message
    (src / "test_32x32.mat").write_bytes(b"a subset")
    ok, message = svhn.verify("test", data_dir=src)
    assert not ok and "not the official file" in message and "\n" not in message
    ok, message = svhn.verify("train", data_dir=src)
    assert not ok and "missing" in message


def test_verify_sample_says_it_is_not_official(sample_dir):
    ok, message = svhn.verify("train", data_dir=sample_dir)
    assert not ok and "not the official file" in message and download.MD5["train_32x32.mat"] in message


# ---------------------------------------------------------------- the image-set contract

def test_image_set_round_trip(tmp_path):
    x, y = random_images(5), np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    svhn.save_image_set(tmp_path / "set.npz", x, y)
    x2, y2 = svhn.load_image_set(tmp_path / "set.npz")
    np.testing.assert_array_equal(x2, x)
    assert y2.dtype == np.int64 and y2.tolist() == [0, 9, 3, 3, 1]
    with np.load(tmp_path / "set.npz") as stored:
        assert sorted(stored.files) == ["x", "y"] and stored["y"].dtype == np.int64


@pytest.mark.parametrize("x, y, problem", [
    (np.zeros((2, 32, 32), np.uint8), np.zeros(2, np.int64), "x must have shape (N, 32, 32, 3), got (2, 32, 32)"),
    (np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64), "got (2, 3, 32, 32)"),
    (np.zeros((2, 32, 32, 3), np.float32), np.zeros(2, np.int64), "x must be uint8, got float32"),
    (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), "empty"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros(3, np.int64), "y must have shape (2,) to match x, got (3,)"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 1), np.int64), "got (2, 1)"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.float32), "y must be an integer array, got float32"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.array([3, 10]), "found values in 3..10"),
    (np.zeros((2, 32, 32, 3), np.uint8), np.array([-1, 0]), "found values in -1..0"),
    ([[0]], np.zeros(1, np.int64), "must be NumPy arrays"),
])
def test_check_image_set_errors(x, y, problem):
    with pytest.raises(ImageSetError) as exc_info:
        svhn.check_image_set(x, y, source="my set")
    assert isinstance(exc_info.value, ValueError)
    assert_one_line(exc_info, "my set", problem)


def test_save_image_set_validates_before_writing(tmp_path):
    with pytest.raises(ImageSetError) as exc_info:
        svhn.save_image_set(tmp_path / "bad.npz", random_images(2), np.array([1, 12]))
    assert_one_line(exc_info, tmp_path / "bad.npz", "0..9")
    assert not (tmp_path / "bad.npz").exists()


def test_load_image_set_errors_name_the_file(tmp_path):
    cases = {"missing.npz": None, "text.npz": b"hello", "truncated.npz": None, "nokey.npz": None}
    np.savez(tmp_path / "nokey.npz", x=random_images(1))
    svhn.save_image_set(tmp_path / "full.npz", random_images(2), np.array([1, 2]))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:3000])
    (tmp_path / "text.npz").write_bytes(cases["text.npz"])
    expected = {"missing.npz": "not found", "text.npz": "not a readable .npz",
                "truncated.npz": "not a readable .npz", "nokey.npz": "missing array(s) y"}
    for name, problem in expected.items():
        with pytest.raises(ImageSetError) as exc_info:
            svhn.load_image_set(tmp_path / name)
        assert_one_line(exc_info, tmp_path / name, problem)


def test_to_float_and_to_uint8():
    x = random_images(4)
    x[0, 0, 0] = [0, 255, 128]
    f = svhn.to_float(x)
    assert f.dtype == np.float32 and f.shape == (4, 3, 32, 32)
    assert f[0, :, 0, 0].tolist() == [-1.0, 1.0, pytest.approx(128 / 127.5 - 1, abs=1e-6)]
    assert f.min() >= -1 and f.max() <= 1
    np.testing.assert_array_equal(svhn.to_uint8(f), x)
    np.testing.assert_array_equal(svhn.to_uint8(f + 0.003), x)  # rounds, not truncates
    wild = svhn.to_uint8(np.array([-3.0, 2.0, 0.0], np.float32).reshape(1, 3, 1, 1))
    assert wild.shape == (1, 1, 1, 3) and wild.dtype == np.uint8 and wild.ravel().tolist() == [0, 255, 128]


def test_image_grid_places_images_with_padding():
    x = random_images(7)
    grid = svhn.image_grid(x, nrow=3, pad=1)
    assert grid.shape == (3 * 33 + 1, 3 * 33 + 1, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[1:33, 1:33], x[0])
    np.testing.assert_array_equal(grid[1:33, 34:66], x[1])
    np.testing.assert_array_equal(grid[34:66, 1:33], x[3])
    assert not grid[67:99, 34:].any()  # the two empty cells after the 7th image
    assert not grid[0].any() and not grid[:, 33].any()
    assert svhn.image_grid(x).shape == (3 * 33 + 1, 3 * 33 + 1, 3)  # about square by default
    assert svhn.image_grid(x[:1], pad=0).shape == (32, 32, 3)


def test_save_grid_png(tmp_path):
    from PIL import Image
    x = random_images(20)
    svhn.save_grid_png(tmp_path / "g.png", x, nrow=10, scale=2)
    with Image.open(tmp_path / "g.png") as image:
        assert image.format == "PNG" and image.size == (2 * (10 * 33 + 1), 2 * (2 * 33 + 1))
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels[2:66:2, 2:66:2], x[0])
    svhn.save_grid_png(tmp_path / "t.png", x, nrow=10, scale=1, title="digit 5")
    with Image.open(tmp_path / "t.png") as image:
        assert image.size == (10 * 33 + 1, 2 * 33 + 1 + 16)


# ---------------------------------------------------------------- the command line

def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "svhn", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli_env(tmp_path):
    env = dict(os.environ, SVHN_CACHE_DIR=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("SVHN_DIR", None)
    return env


def test_cli_export_writes_one_image_set(mats, tmp_path, cli_env):
    folder, train_x, test_x = mats
    result = run_cli("export", "--data-dir", folder, "--splits", "train,test", "--out", tmp_path / "real.npz",
                     env=cli_env)
    assert result.returncode == 0, result.stderr
    x, y = svhn.load_image_set(tmp_path / "real.npz")
    np.testing.assert_array_equal(x, np.concatenate([train_x, test_x]))
    assert y.tolist() == list(range(10)) + [0, 0, 5, 9]


def test_cli_info_and_bad_data_dir(mats, tmp_path, cli_env):
    result = run_cli("info", "--data-dir", mats[0], env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "train: 10 images" in result.stdout and "test: 4 images" in result.stdout
    assert "per digit 0..9: 2 0 0 0 0 1 0 0 0 1" in result.stdout

    result = run_cli("export", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "x.npz", env=cli_env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "nowhere" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_cli_in_process_verify_preview_download(mats, mirror, tmp_path, capsys):
    from svhn.cli import main
    folder = mats[0]
    assert main(["verify", "--data-dir", str(folder), "--splits", "test"]) == 1
    assert "not the official file" in capsys.readouterr().out
    assert main(["preview", "--data-dir", str(folder), "--split", "train", "--n", "7",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dest = tmp_path / "fresh"
    dest.mkdir()
    assert main(["download", "--data-dir", str(dest), "--splits", "test", "--url", mirror[1], "--verify"]) == 0
    assert "OK, the official file" in capsys.readouterr().out


# ---------------------------------------------------------------- the real sample

@pytest.mark.parametrize("split", ["train", "test"])
def test_real_sample_counts(sample_dir, split):
    x, y = svhn.load(split, data_dir=sample_dir)
    assert x.shape == (sum(SAMPLE_COUNTS[split]), 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == SAMPLE_COUNTS[split]
    assert 60 < x.mean() < 200 and x.std() > 20  # real photos, not blank
