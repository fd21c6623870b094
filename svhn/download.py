"""Fetching the official SVHN files: one URL, a progress bar, an md5 check, no half files.

A download goes to a temporary name in the destination folder, its md5 is computed while
it streams, and only a file whose md5 matches is renamed to its real name. A failure
(offline, timeout, HTTP error, wrong checksum) deletes that temporary file, and nothing
else, and raises DownloadError with one line saying what to put where.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

URL_BASE = "http://ufldl.stanford.edu/housenumbers/"
TIMEOUT_S = 30
CHUNK = 1 << 20

# The official files, as published at URL_BASE: name -> (bytes, md5).
OFFICIAL = {
    "train_32x32.mat": (182_040_794, "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test_32x32.mat": (64_275_384, "eb5a983be6a315427106f1b164d9cef3"),
    "extra_32x32.mat": (1_329_278_602, "a93ce644f1a588dc4d68dda5feec44a7"),
}
MD5 = {name: md5 for name, (_, md5) in OFFICIAL.items()}


class DownloadError(RuntimeError):
    """A file could not be downloaded (or did not match its checksum); one-line message."""


def md5sum(path):
    """The md5 hex digest of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_url(filename, url_base=URL_BASE):
    """`url_base` joined with `filename` (http://, https:// or file:// bases all work)."""
    return url_base.rstrip("/") + "/" + filename


def download_file(filename, dest_dir, url_base=URL_BASE, md5=None, timeout=TIMEOUT_S, progress=True):
    """Download `url_base/filename` into `dest_dir/filename` and return that path.

    The data streams to a temporary file beside the destination, with a tqdm progress bar
    (shown on a terminal only, unless `progress` is False). If `md5` is given and differs,
    the temporary file is deleted and DownloadError raised. An existing destination file
    is never overwritten: if one appeared meanwhile, it is kept and the download dropped.
    """
    dest_dir = Path(dest_dir)
    dest = dest_dir / filename
    url = file_url(filename, url_base)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
    except OSError as exc:
        raise DownloadError(f"cannot write into {dest_dir} ({exc.strerror or exc}); "
                            f"put {filename} there by hand or choose another --data-dir") from None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, filename, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        os.unlink(tmp)
        raise DownloadError(f"could not download {url} ({_reason(exc)}); put {filename} into "
                            f"{dest_dir} by hand, or point --data-dir / SVHN_DIR at a folder that has it") from None
    except BaseException:
        os.unlink(tmp)
        raise
    if md5 is not None and digest != md5:
        os.unlink(tmp)
        raise DownloadError(f"{url}: md5 {digest} does not match the expected {md5}; the download was "
                            f"discarded (try again, or put {filename} into {dest_dir} by hand)")
    if dest.exists():
        os.unlink(tmp)
    else:
        os.replace(tmp, dest)
    return dest


def _reason(exc):
    """A short one-line reason for a failed download."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _stream(url, out, filename, timeout, progress):
    """Copy `url` into the open file `out` with a progress bar; return the md5 hex digest."""
    from tqdm import tqdm

    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=filename, disable=None if progress else True, leave=False) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()
