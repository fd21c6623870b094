"""The NumPy/CuPy swap.

Every kernel in `nn` asks this module for the current array module and uses nothing else:

    from nn import backend
    xp = backend.xp          # numpy or cupy, read at call time

`set_backend("cupy")` switches the whole library to the GPU. Importing `nn` never fails and always
starts on NumPy; the environment variable NN_BACKEND is read by the command lines (their
--backend defaults to it) and by `set_backend(default_backend_name())`. Weights are always drawn on the host from
one seeded NumPy generator (`host_rng()`) and then moved with `asarray`, so both backends
start from identical weights for the same seed.
"""
import ctypes
import os
import sys

import numpy

xp = numpy          # the current array module: numpy or cupy
name = "numpy"      # its name

_seed = 0
_host_rng = numpy.random.default_rng(0)
_device_rng = None  # created lazily for the current backend


class BackendError(RuntimeError):
    """The requested backend cannot be used on this machine."""


CUPY_HINT = ("install CuPy for your CUDA version: pip install cupy-cuda12x (CUDA 12) "
             "or pip install cupy-cuda13x (CUDA 13)")


def reuse_freed_memory():
    """Keep freed large blocks in the process instead of returning them to the OS (glibc only).
    A process-wide setting, so `nn` never does it by itself: an application opts in by calling this
    (the project's command lines do, through `common.cli.apply_backend_options`).

    A training step allocates and frees the same few large arrays (im2col columns, activations)
    every iteration. By default glibc hands large blocks (mmap'ed, over 128 KiB to 32 MiB) back to the kernel at once, so each
    new allocation pays for zeroed fresh pages again (measured: ~25 % of a NumPy training step).
    These two settings make freed memory reusable. Set NN_MALLOC_TUNING=0 to leave glibc alone.
    """
    if os.environ.get("NN_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)     # serve blocks up to 1 GiB from the reusable heap
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)  # and never shrink the heap
    except (OSError, AttributeError):
        pass


def set_backend(backend_name):
    """Select "numpy" (CPU) or "cupy" (GPU) for every layer, loss and optimizer."""
    global xp, name, _device_rng
    if backend_name == "numpy":
        xp, name = numpy, "numpy"
    elif backend_name == "cupy":
        try:
            import cupy
        except ImportError:
            raise BackendError(f"backend 'cupy' asked for but CuPy is not installed; {CUPY_HINT}") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing or broken
            raise BackendError(f"backend 'cupy' asked for but CuPy finds no usable GPU ({str(exc).splitlines()[0]}); "
                               "run on a machine with an NVIDIA GPU and driver, or use --backend numpy") from None
        if count == 0:
            raise BackendError("backend 'cupy' asked for but CuPy finds no GPU; "
                               "run on a machine with an NVIDIA GPU, or use --backend numpy")
        xp, name = cupy, "cupy"
    else:
        raise ValueError(f"unknown backend {backend_name!r}; choose 'numpy' or 'cupy'")
    _device_rng = None


def default_backend_name():
    """NN_BACKEND when it is set and not empty, else "numpy" (checked only when it is used)."""
    return os.environ.get("NN_BACKEND", "").strip() or "numpy"


def cupy_available():
    """True where CuPy imports and sees at least one GPU (used by tests to skip)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def seed(value):
    """Seed the host generator (weights, shuffling) and the device generator (dropout)."""
    global _seed, _host_rng, _device_rng
    _seed = int(value)
    _host_rng = numpy.random.default_rng(_seed)
    _device_rng = None


def host_rng():
    """The seeded NumPy generator from which all weights are drawn."""
    return _host_rng


def random_uniform(shape, dtype):
    """Uniform [0, 1) numbers on the current device, from a generator seeded by `seed()`."""
    global _device_rng
    if _device_rng is None:
        _device_rng = (numpy.random.default_rng(_seed + 1) if name == "numpy"
                       else xp.random.RandomState(_seed + 1))
    if name == "numpy":
        return _device_rng.random(shape, dtype=dtype)
    return _device_rng.random_sample(shape, dtype=dtype)


def scatter_add(target, indices, values):
    """target[indices] += values, where an index that repeats adds every one of its values (plain
    `target[indices] += values` would keep only one). In place; `target`, `indices` and `values` are 1-D.
    `add.at` on NumPy and on CuPy >= 13 (atomic adds on the GPU, no wait for the host); an older CuPy counts
    with `bincount`, which waits for the GPU to learn the output's length."""
    if hasattr(xp.add, "at"):
        xp.add.at(target, indices, values)
    else:
        target += xp.bincount(indices, weights=values, minlength=target.size).astype(target.dtype)


def asarray(a, dtype=None):
    """Move a (host) array to the current device; a no-op when it is already there."""
    return xp.asarray(a, dtype=dtype)


_host_reads = 0      # how many times to_host ran (device -> host transfers, each a synchronisation on a GPU)


def to_host(a):
    """Bring an array back to the host as a NumPy array (works for both backends and scalars).
    Every device -> host read of `nn` and of the training loops goes through here, and is counted
    (`host_reads()`): on a GPU each one waits for all queued work, so a training step should make none."""
    global _host_reads
    _host_reads += 1
    if hasattr(a, "get"):
        return a.get()
    return numpy.asarray(a)


to_numpy = to_host   # the older name


def host_reads():
    """How many device -> host reads (`to_host` calls) the process has made so far."""
    return _host_reads


def read_scalars(values):
    """Many 0-d device values (losses, metrics; Python numbers pass too) as Python floats, in one
    device -> host copy: they are stacked as float64 (exact for float32 values) and read at once."""
    values = list(values)
    if not values:
        return []
    stacked = xp.stack([xp.asarray(v, dtype=xp.float64) for v in values])
    return [float(v) for v in to_host(stacked)]


class ScalarLog:
    """Per-step scalars kept on the device and brought to the host in one copy when asked.

        log = ScalarLog()
        log.add({"loss": loss, "acc": acc})     # 0-d device arrays: no synchronisation
        rows = log.flush()                      # every N steps: [{"loss": 0.69, "acc": 0.5}, ...]

    Strings and Python ints (a phase name, an iteration number) pass through unread; every other
    value comes back as a Python float, equal to float(value)."""

    def __init__(self):
        self.rows = []

    def __len__(self):
        return len(self.rows)

    def add(self, row):
        self.rows.append(dict(row))

    def flush(self):
        """The rows added since the last flush, read to the host (one transfer), oldest first."""
        rows, self.rows = self.rows, []
        keys = [(i, k) for i, r in enumerate(rows) for k, v in r.items()
                if not isinstance(v, (str, int)) or isinstance(v, bool)]
        for (i, k), value in zip(keys, read_scalars(rows[i][k] for i, k in keys)):
            rows[i][k] = value
        return rows


# ----------------------------------------------------------------------------- precision

_tf32 = False


def set_tf32(enabled):
    """Allow TF32 matrix products on the GPU (inputs rounded to a 10-bit mantissa, float32
    accumulation: tensor-core speed, ~1e-3 relative rounding) or keep strict FP32 (the default).

    CuPy's documented switch is the environment variable CUPY_TF32=1: CuPy reads it the first time
    it needs the cuBLAS compute type for float32 products, and keeps that choice. So this sets (or
    removes) CUPY_TF32 for the process and, where CuPy is already imported, also resets its cached
    compute type for float32 (cupy._core._routines_linalg.set_compute_type, the function the
    variable feeds) so that a change after the first product takes effect too. On NumPy it is a no-op;
    `precision()` says what is in force."""
    global _tf32
    _tf32 = bool(enabled)
    if _tf32:
        os.environ["CUPY_TF32"] = "1"
    else:
        os.environ.pop("CUPY_TF32", None)
    linalg = sys.modules.get("cupy._core._routines_linalg")
    compute_type = getattr(linalg, "COMPUTE_TYPE_TF32" if _tf32 else "COMPUTE_TYPE_DEFAULT", None)
    if compute_type is not None and hasattr(linalg, "set_compute_type"):
        linalg.set_compute_type(numpy.float32, compute_type)


def tf32_enabled():
    """True when set_tf32(True) is in force (whatever the backend)."""
    return _tf32


def precision():
    """"tf32" where TF32 matrix products are in force (CuPy with set_tf32(True)), else "fp32"."""
    return "tf32" if _tf32 and name == "cupy" else "fp32"


def synchronize():
    """Wait for queued GPU work to finish (for honest timings); a no-op on NumPy."""
    if name == "cupy":
        xp.cuda.Device().synchronize()

