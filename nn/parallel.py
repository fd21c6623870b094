"""How many CPU threads `nn` may use on the NumPy backend.

    from nn import parallel
    parallel.set_threads(4)      # or NN_THREADS=4, or --threads 4 on any command
    parallel.get_threads()       # what is in force: set_threads, else NN_THREADS, else every core we may use

This module is the one place for the speed machinery that runs NumPy work on several cores;
the layers a student reads never deal with threads. The CuPy backend ignores it.
"""
import math
import os

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
    """Use `n` threads from now on (None: back to NN_THREADS, else all cores)."""
    global _threads
    _threads = None if n is None else parse_threads(n)


def get_threads():
    """The thread count in force: set_threads(), else NN_THREADS (checked here, when it is
    needed, so a bad value never breaks an import), else every core we may use."""
    if _threads is not None:
        return _threads
    env = os.environ.get("NN_THREADS", "").strip()
    if env:
        return parse_threads(env, source="NN_THREADS")
    return available_cores()
