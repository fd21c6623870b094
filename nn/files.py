"""Small helpers every package shares: atomic writes and the command-line error convention.

Files are written to a temporary name in the destination folder and renamed into place,
so an interrupt never leaves a half-written file under the real name.
"""
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


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


def atomic_savez(path, compressed=False, **arrays):
    """`np.savez` (or `savez_compressed`) to `path`, atomically; every array is brought to the host."""
    from nn.backend import to_numpy
    buf = io.BytesIO()
    arrays = {k: to_numpy(v) for k, v in arrays.items()}
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def run_cli(main, argv=None):
    """Run a command-line `main(argv)`; a ValueError or RuntimeError becomes one line on
    stderr and exit status 2 (no traceback), as DESIGN.md's error contract asks."""
    try:
        code = main(argv)
    except (ValueError, RuntimeError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
