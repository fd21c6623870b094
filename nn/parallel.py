"""How many CPU threads `nn` may use on the NumPy backend, and the machinery that uses them.

    from nn import parallel
    parallel.set_threads(4)      # or NN_THREADS=4, or --threads 4 on any command
    parallel.threads_setting()   # what set_threads was given (None: the default)
    parallel.get_threads()       # what is in force: set_threads, else NN_THREADS, else every core we may use

This module is the one place for the speed machinery that runs NumPy work on several cores; the layers
a student reads never deal with threads. The CuPy backend ignores it.
- `map(fn, items)` runs fn over items on get_threads() worker threads (NumPy releases the interpreter
  lock in its loops, copies and matrix products, so they really run at once);
- the BLAS library (OpenBLAS) is held to one thread inside each worker and to get_threads() outside,
  so `nn` never runs more threads than it was given (`set_blas_threads`);
- nn/data_parallel.py uses `map` to run a `Sequential` over chunks of the batch;
- `keep_freed_memory` asks the C library's allocator to keep the memory the passes free for reuse.
"""
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_threads = None   # set by set_threads(); None means: NN_THREADS, else all cores


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not Linux
        return max(1, os.cpu_count() or 1)


def parse_threads(value, source="--threads"):
    """A thread count from a command line or the environment: a whole number >= 1, else a
    one-line ValueError that names `source` and says what to give instead."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise ValueError(f"{source}={text!r} is not a thread count; give a whole number >= 1 "
                         f"(this machine lets us use {available_cores()})")
    return int(number)


def set_threads(n):
    """Use `n` threads from now on (None: back to NN_THREADS, else all cores). Returns the previous
    setting (a count, or None), so a caller can put it back with set_threads(previous)."""
    global _threads
    previous = _threads
    _threads = None if n is None else parse_threads(n)
    return previous


def threads_setting():
    """What set_threads() was last given (a count, or None: NN_THREADS, else all cores)."""
    return _threads


def get_threads():
    """The thread count in force: set_threads(), else NN_THREADS (checked here, when it is
    needed, so a bad value never breaks an import), else every core we may use."""
    if _threads is not None:
        return _threads
    env = os.environ.get("NN_THREADS", "").strip()
    if env:
        return parse_threads(env, source="NN_THREADS")
    return available_cores()


# --- the BLAS library's own threads ---------------------------------------------------------------

_SET_NUM_THREADS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads")
_blas_setters = None     # the set-thread-count functions of every OpenBLAS loaded, found on first use
_blas_now = None         # the count we last gave them


def _find_blas_setters():
    """The thread-count setters of the OpenBLAS copies loaded in this process (NumPy's, SciPy's), by
    reading the process's own memory map (Linux). Elsewhere, or for another BLAS: none, and BLAS keeps
    its own threads (OPENBLAS_NUM_THREADS and the like still work)."""
    import ctypes
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    setters = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SET_NUM_THREADS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], None
                setters.append(fn)
                break
    return setters


def blas_threads():
    """The BLAS thread count `nn` last set (None before it set one)."""
    return _blas_now


def set_blas_threads(n):
    """Let the BLAS library (OpenBLAS) use `n` threads for each matrix product from now on."""
    global _blas_setters, _blas_now
    if _blas_setters is None:
        _blas_setters = _find_blas_setters()
    if n != _blas_now:
        for fn in _blas_setters:
            fn(int(n))
        _blas_now = n


# --- the worker pool --------------------------------------------------------------------------------

_pool = None             # a ThreadPoolExecutor, made on first use, remade when the thread count changes
_pool_threads = 0


def map(fn, items):
    """[fn(item) for item in items], run on get_threads() worker threads, results in the items' order.

    NumPy releases the interpreter lock in its loops, copies and BLAS calls, so the workers really run
    at once. BLAS is held to one thread per worker meanwhile (never more threads than cores); outside,
    it gets get_threads() threads for the matrix products the main thread does on its own.
    """
    items = list(items)
    if threading.current_thread().name.startswith("nn-worker"):   # called from a worker: run here, in order
        return [fn(item) for item in items]
    threads = min(get_threads(), len(items))
    if threads <= 1:
        set_blas_threads(get_threads())
        return [fn(item) for item in items]
    global _pool, _pool_threads
    if _pool is None or _pool_threads != get_threads():
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool_threads = get_threads()
        _pool = ThreadPoolExecutor(max_workers=_pool_threads, thread_name_prefix="nn-worker")
    set_blas_threads(1)
    try:
        return list(_pool.map(fn, items))
    finally:
        set_blas_threads(get_threads())


# --- the C library's memory allocator ----------------------------------------------------------------

MALLOC_SETTINGS = {"M_MMAP_THRESHOLD": (-3, 32 << 20),   # allocations up to 32 MiB come from the heap ...
                   "M_TRIM_THRESHOLD": (-1, 1 << 30)}    # ... and up to 1 GiB of free heap is kept
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_malloc_kept = None      # None: not tried yet; then True (done) or False (not glibc, or the user set it)


def keep_freed_memory():
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    A chunked pass allocates and frees the same few-MiB temporaries for every chunk. By default glibc
    returns them to the system (large blocks are mapped and unmapped one by one, and the heap's free top
    is trimmed), so every chunk first touches fresh pages: measured on the ConvNet step (batch 128, one
    thread), 28,000 page faults per step and 12 % of its CPU time. With these settings the process keeps
    (at most) its peak memory instead. Done once, on the first chunked pass (nn/data_parallel.py); not
    where the user gave malloc settings in the environment, nor with another C library. Returns
    whether the settings are in force."""
    global _malloc_kept
    if _malloc_kept is None:
        _malloc_kept = False
        if not any(os.environ.get(name) for name in _USER_MALLOC_ENV):
            import ctypes
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):      # not Linux with glibc
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _malloc_kept = all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.values())
    return _malloc_kept
