"""Atomic writes, and checking before any work that an output path the user gave can be written.

Files are written to a temporary name in the destination folder and renamed into place,
so an interrupt never leaves a half-written file under the real name.
"""
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


class OutputPathError(ValueError):
    """An output path cannot be written; the one-line message names the user's path and why."""


SUFFIX_MEANING = {".npz": "an image set", ".png": "a PNG image"}


def check_output_path(path, kind="file", option=None, suffix=None):
    """Check, without writing anything, that `path` can be written as a `kind` ("file" or "dir").
    With `suffix` (such as ".npz" or ".png"), a file's name must end in it, so that what is written
    can be read back by name (the image set readers take only .npz names).

    The path itself may be missing, and so may folders above it (they are created when the output
    is written), but the nearest existing folder above it must be a folder we may write into, no
    part of the path may be a regular file, a file must not be an existing folder, and a folder
    must not be an existing file. Raises OutputPathError, one line naming `path` (and the
    `option` it came from, such as "--out") and what is wrong; returns the path as a Path.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"check_output_path: kind must be 'file' or 'dir', got {kind!r}")
    shown = f"{option} {path}" if option else str(path)
    text = str(path)
    if not text.strip():
        raise OutputPathError(f"{option or 'output path'}: empty path; give a {'file' if kind == 'file' else 'folder'} name")
    path = Path(text).expanduser()

    def fail(problem):
        raise OutputPathError(f"{shown}: {problem}; choose another {'file' if kind == 'file' else 'folder'}")

    if kind == "file":
        if text.endswith(os.sep) or path.is_dir():
            fail("is a folder, not a file name")
        if path.exists() and not path.is_file():
            fail("exists and is not a regular file")
        if suffix and path.suffix != suffix:
            what = SUFFIX_MEANING.get(suffix, f"a {suffix} file")
            raise OutputPathError(f"{shown}: {what} is written here, so the name must end in {suffix}; "
                                  f"give e.g. {path.with_suffix(suffix)}")
    elif path.exists() and not path.is_dir():
        fail("exists and is not a folder")
    folder = path.parent if kind == "file" else path
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            fail(f"{existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{existing} is a file, so no folder can be made under it")
    try:   # the truest test of "may we create files here": create one and delete it
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        fail(f"cannot write into the folder {existing} ({exc.strerror or exc})")
    return path


def npz_problem(exc):
    """A short reason why np.load(..., allow_pickle=False) failed, without NumPy's advice to load
    the file "unsafely" (a file that is no .npz archive at all gets that advice)."""
    text = str(exc).strip()
    if not text or "pickle" in text or "zip" in text.lower() or isinstance(exc, EOFError):
        return "it is not an .npz archive"
    return text.splitlines()[0]


def atomic_write_bytes(path, data):
    """Write `data` to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _host(a):
    """A NumPy array from a NumPy or CuPy array (CuPy's `.get()` copies to the host)."""
    get = getattr(a, "get", None)
    return get() if callable(get) and not isinstance(a, np.ndarray) else np.asarray(a)


def atomic_savez(path, compressed=False, **arrays):
    """`np.savez` (or `savez_compressed`) to `path`, atomically; every array is brought to the host."""
    buf = io.BytesIO()
    arrays = {k: _host(v) for k, v in arrays.items()}
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
