"""Fetching the official SVHN files: one URL, a progress bar, an md5 check, no half files.

A download goes to a temporary name in the destination folder, its md5 is computed while
it streams, and only a file whose md5 matches is renamed to its real name. A failure
(offline, timeout, HTTP error, wrong checksum) deletes that temporary file, and nothing
else, and raises DownloadError with one line saying what to put where.
"""
import contextlib
import hashlib
import http.client
import os
import signal
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

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
    created = not dest_dir.exists()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(dest_dir, filename)
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.{os.getpid()}.", suffix=".part", dir=dest_dir)
    except OSError as exc:
        raise DownloadError(f"cannot write into {dest_dir} ({exc.strerror or exc}); "
                            f"put {filename} there by hand or choose another --data-dir") from None
    try:
        with os.fdopen(fd, "wb") as out, _terminate_as_exit():
            digest = _stream(url, out, filename, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        _discard(tmp, dest_dir, created)
        raise DownloadError(f"could not download {url} ({_reason(exc)}); put {filename} into "
                            f"{dest_dir} by hand, or point --data-dir / SVHN_DIR at a folder that has it") from None
    except BaseException:                 # Ctrl-C, SIGTERM (see _terminate_as_exit), ...
        _discard(tmp, dest_dir, created)
        raise
    if md5 is not None and digest != md5:
        _discard(tmp, dest_dir, created)
        raise DownloadError(f"{url}: md5 {digest} does not match the expected {md5}; the download was "
                            f"discarded (try again, or put {filename} into {dest_dir} by hand)")
    if dest.exists():
        os.unlink(tmp)
    else:
        os.replace(tmp, dest)
    return dest


def _discard(tmp, dest_dir, created):
    """Delete a failed download's temporary file, and the folder when this download created it."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    if created:
        with contextlib.suppress(OSError):
            dest_dir.rmdir()              # only when empty


def remove_stale_parts(dest_dir, filename):
    """Delete `.FILENAME.PID.*.part` files left by downloads whose process is gone (killed
    outright, so it could not clean up); a part of a download still running is left alone."""
    for part in Path(dest_dir).glob(f".{filename}.*.part"):
        pid = part.name[len(filename) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            part.unlink()


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _terminate_as_exit():
    """While downloading, SIGTERM raises SystemExit (status 143) so that the temporary file is
    deleted as on Ctrl-C (by default SIGTERM ends Python without running any cleanup)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _reason(exc):
    """A short one-line reason for a failed download."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _stream(url, out, filename, timeout, progress):
    """Copy `url` into the open file `out` with a progress bar; return the md5 hex digest."""

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
