"""Loading SVHN's cropped digits from the official `.mat` files, with a fast `.npz` cache.

Where the files are looked for, first match wins:
  1. the `data_dir` argument (the command line's `--data-dir`);
  2. the environment variable `SVHN_DIR`;
  3. the per-user folder `$XDG_CACHE_HOME/svhn-gan/svhn` (default `~/.cache/svhn-gan/svhn`).
A file that is missing there is downloaded (with an md5 check). Files a user already has
are used as they are; `verify` compares them with the official checksums on request.

Reading a `.mat` takes seconds, so the first `load` of a split writes its arrays to an
uncompressed `.npz` in the per-user cache (`SVHN_CACHE_DIR`, default
`$XDG_CACHE_HOME/svhn-gan/arrays`), never beside the user's data. The cache file's name
holds a hash of the source's absolute path, size and modification time, so a changed
source is simply a cache miss and the stale file is replaced.
"""
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from common.files import atomic_savez, atomic_write_bytes
from svhn import download as dl

SPLITS = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


class SVHNError(ValueError):
    """A bad split name, data folder or `.mat` file; the message is one line naming it."""


def user_cache_root():
    """The per-user cache folder of this project: `$XDG_CACHE_HOME/svhn-gan` or `~/.cache/svhn-gan`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "svhn-gan"


def data_dir_for(data_dir=None):
    """The folder holding the `.mat` files: `data_dir`, else `$SVHN_DIR`, else the user cache.

    A folder the user names must exist (a typo should not start a 180 MB download into a
    new folder); the default per-user folder is created when needed.
    """
    chosen = data_dir or os.environ.get("SVHN_DIR")
    if not chosen:
        return user_cache_root() / "svhn"
    path = Path(chosen).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise SVHNError(f"SVHN data folder {path} {what} (from {'--data-dir' if data_dir else 'SVHN_DIR'})")
    return path


def cache_dir():
    """Where the `.npz` caches go: `$SVHN_CACHE_DIR`, else `<user cache>/arrays`."""
    return Path(os.environ.get("SVHN_CACHE_DIR") or user_cache_root() / "arrays")


def parse_splits(text):
    """'train,test' -> ['train', 'test'], each checked to be a known split."""
    splits = [s.strip() for s in str(text).split(",") if s.strip()]
    if not splits:
        raise SVHNError("no split given; choose from train, test, extra")
    for split in splits:
        split_file(split)
    return splits


def split_file(split):
    """The official file name of a split ('train' -> 'train_32x32.mat')."""
    if split not in SPLITS:
        raise SVHNError(f"unknown SVHN split {split!r}; choose from {', '.join(SPLITS)}")
    return SPLITS[split]


def split_path(split, data_dir=None, download=True, url_base=None):
    """The path of a split's `.mat` file, downloading it first if it is missing."""
    filename = split_file(split)
    folder = data_dir_for(data_dir)
    path = folder / filename
    if not path.is_file() and download:
        dl.download_file(filename, folder, url_base=url_base or dl.URL_BASE, md5=dl.MD5.get(filename))
    return path


def read_mat(path):
    """Read one official-layout `.mat` file: `X` uint8 (32, 32, 3, N), `y` (N, 1) in 1..10.

    Returns x uint8 (N, 32, 32, 3) and y int64 (N,) with label 10 mapped to digit 0.
    Anything else raises SVHNError naming the file and the problem.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # scipy raises many types for truncated or foreign files
        raise SVHNError(f"{path}: not a readable SVHN .mat file ({_one_line(exc)})") from None
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise SVHNError(f"{path}: missing variable(s) {', '.join(missing)}; expected X (32, 32, 3, N) and y (N, 1)")
    X, y = mat["X"], mat["y"]
    _check_arrays(path, X, y)
    x = np.ascontiguousarray(X.transpose(3, 0, 1, 2))
    y = y.reshape(-1).astype(np.int64) % 10
    return x, y


def _check_arrays(path, X, y):
    """Raise SVHNError unless X and y have the official shapes, dtypes and label range."""
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] == 0:
        raise SVHNError(f"{path}: X must have shape (32, 32, 3, N) with N > 0, got {X.shape}")
    if X.dtype != np.uint8:
        raise SVHNError(f"{path}: X must be uint8, got {X.dtype}")
    n = X.shape[3]
    if y.shape not in ((n, 1), (1, n)):
        raise SVHNError(f"{path}: y must have shape ({n}, 1) to match X, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise SVHNError(f"{path}: y must hold integer labels, got {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 1 or hi > 10:
        raise SVHNError(f"{path}: labels must be 1..10 (10 means digit 0), found values in {lo}..{hi}")


def cache_path(source):
    """The cache file for a source `.mat`: its stem, a hash of its absolute path, and a hash
    of its size and modification time (so a changed source gets a new name)."""
    source = Path(source).resolve()
    stat = source.stat()
    where = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    version = hashlib.sha1(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / f"{source.stem}-{where}-{version}.npz"


def file_digest(path):
    """The sha256 of a file's bytes, computed once per (absolute path, size, modification time):
    the result is kept in the per-user cache (`cache_dir()/digests`), so asking again about an
    unchanged file costs nothing, and a copied, moved or touched file with the same bytes gets
    the same digest after one read. A digest that cannot be cached is only recomputed next time."""
    source = Path(path).resolve()
    stat = source.stat()
    key = hashlib.sha1(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    memo = cache_dir() / "digests" / f"{source.name}-{key}.sha256"
    try:
        text = memo.read_text().strip()
        if len(text) == 64:
            return text
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(dl.CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        atomic_write_bytes(memo, value.encode())
    except OSError:
        pass
    return value


def load(split, data_dir=None):
    """Load one SVHN split ('train', 'test' or 'extra') as an image set.

    Returns x uint8 (N, 32, 32, 3) and y int64 (N,) with digits 0..9 (label 10 read as 0).
    The file is found (or downloaded) as the module docstring says; the arrays come from
    the per-user `.npz` cache when it matches the file, else from the `.mat`, which then
    refreshes the cache.
    """
    source = split_path(split, data_dir)
    cached = cache_path(source)
    arrays = _read_cache(cached)
    if arrays is not None:
        return arrays
    x, y = read_mat(source)
    _write_cache(cached, x, y)
    return x, y


def _read_cache(path):
    """The (x, y) stored in a cache file, or None if it is missing or unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    except Exception:  # a damaged cache is only a miss
        return None
    x_ok = x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (32, 32, 3)
    y_ok = y.dtype == np.int64 and y.shape == (len(x),)
    return (x, y) if x_ok and y_ok else None


def _write_cache(path, x, y):
    """Store (x, y) atomically and remove older caches of the same source; a cache that
    cannot be written only costs speed, so it is a warning, not an error."""
    try:
        atomic_savez(path, x=x, y=y)
    except OSError as exc:
        warnings.warn(f"could not write the SVHN cache {path} ({_one_line(exc)}); loading will stay slow")
        return
    stem_and_source = path.name.rsplit("-", 1)[0]
    for old in path.parent.glob(f"{stem_and_source}-*.npz"):
        if old != path:
            old.unlink(missing_ok=True)


def verify(split, data_dir=None):
    """Compare a split's file with the official size and md5 (no download).

    Returns (ok, message): ok is True only for the official file; the message is one line
    saying what was found (a missing file or a different file, such as a subset, is not an
    error here: files a user has still load if their contents are valid).
    """
    filename = split_file(split)
    path = data_dir_for(data_dir) / filename
    if not path.is_file():
        return False, f"{path}: missing (python -m svhn download --splits {split} fetches it)"
    size, md5 = dl.OFFICIAL[filename]
    actual_size, actual_md5 = path.stat().st_size, dl.md5sum(path)
    if actual_md5 == md5:
        return True, f"{path}: OK, the official file (md5 {md5})"
    return False, (f"{path}: not the official file: md5 {actual_md5} ({actual_size:,} bytes), official "
                   f"{md5} ({size:,} bytes); a subset such as the development sample differs by design, "
                   f"and it still loads if its contents are valid")


def _one_line(exc):
    """First line of an exception's message, or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
