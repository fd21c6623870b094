"""The command-line conventions every package shares.

    run_cli(main)                       # errors: one line on stderr, exit status 2, no traceback
    add_backend_options(parser)         # --backend NAME, --threads N and --tf32
    apply_backend_options(args)         # check them and put them in force (before any long work)

The environment variables NN_BACKEND, NN_THREADS and NN_TF32 give the defaults. They are read when a
command needs them, never at import, so `--help` and `--backend numpy` work whatever they hold.
"""
import argparse
import math
import os
import sys

BACKENDS = ("numpy", "cupy")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (and exit status 2), like every other
    error of the project's commands; `--help` is as usual. Sub-command parsers are of this class too."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def whole(low=None, high=None):
    """An argparse `type`: a whole number in [low, high] (either end may be None: open)."""
    def parse(text):
        try:
            value = float(str(text).strip().replace("_", ""))
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and value == int(value)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{_range(low, high, '[', ']')}")
        return int(value)
    parse.__name__ = "whole number"
    return parse


def number(low=None, high=None, low_open=False, high_open=False):
    """An argparse `type`: a finite number in the range (an open end excludes its bound)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a finite number{_range(low, high, '(' if low_open else '[', ')' if high_open else ']')}")
        return value
    parse.__name__ = "number"
    return parse


def _range(low, high, left, right):
    if low is None and high is None:
        return ""
    if high is None:
        return f" >= {low}" if left == "[" else f" > {low}"
    if low is None:
        return f" <= {high}" if right == "]" else f" < {high}"
    return f" in {left}{low}, {high}{right}"


def default_backend_name():
    """NN_BACKEND when it is set and not empty, else "numpy" (as nn.backend.default_backend_name;
    here too, so that commands without `nn` can check the name)."""
    return os.environ.get("NN_BACKEND", "").strip() or "numpy"


def backend_name(given=None):
    """The backend a command uses: `given` (the --backend option), else NN_BACKEND, else numpy.
    An unknown name raises a one-line ValueError saying where it came from and what to give."""
    if given is not None:
        if given not in BACKENDS:
            raise ValueError(f"--backend {given!r} is not a backend; choose numpy or cupy")
        return given
    name = default_backend_name()
    if name not in BACKENDS:
        raise ValueError(f"NN_BACKEND={name!r} is not a backend; set it to numpy or cupy, unset it, "
                         f"or give --backend numpy")
    return name


def tf32_setting(given=False):
    """Whether TF32 matrix products are asked for: --tf32 (given=True), else NN_TF32 (1/0, on/off,
    true/false, yes/no; unset or empty: off). A bad NN_TF32 raises a one-line ValueError."""
    if given:
        return True
    text = os.environ.get("NN_TF32", "").strip().lower()
    if text in ("", "0", "off", "false", "no"):
        return False
    if text in ("1", "on", "true", "yes"):
        return True
    raise ValueError(f"NN_TF32={text!r} is not a switch; set it to 1 (TF32 matrix products on the GPU) "
                     f"or 0 (strict FP32), or unset it")


def add_backend_options(parser, threads=True, backend_list=False):
    """--backend (default: $NN_BACKEND or numpy) and, with `threads`, --threads (default: $NN_THREADS
    or every core). Both are checked by `apply_backend_options`, not by argparse, so a bad
    environment variable never breaks --help. With `backend_list`, --backend takes a comma list
    (see `check_backend_list`)."""
    if backend_list:
        parser.add_argument("--backend", default=None, metavar="LIST",
                            help="numpy, cupy, or numpy,cupy (default: $NN_BACKEND or numpy)")
    else:
        parser.add_argument("--backend", default=None, metavar="NAME",
                            help="array library: numpy (CPU) or cupy (GPU) (default: $NN_BACKEND or numpy)")
    if threads:
        parser.add_argument("--threads", default=None, metavar="N",
                            help="CPU threads for the NumPy backend (default: $NN_THREADS or every core)")
    parser.add_argument("--tf32", action="store_true",
                        help="TF32 matrix products on the GPU (faster, ~1e-3 relative rounding; default: "
                             "strict FP32, or $NN_TF32=1); no effect on NumPy")
    return parser


def check_backend_options(args):
    """Check --backend / NN_BACKEND, --threads / NN_THREADS and --tf32 / NN_TF32 without importing
    `nn`'s backend machinery; returns (backend name, thread count or None for the default)."""
    name = backend_name(getattr(args, "backend", None))
    tf32_setting(getattr(args, "tf32", False))
    from nn.parallel import get_threads, parse_threads   # here, not at the top: svhn and procedural use
    #                                                       common without depending on nn (tests/test_layering.py)
    given = getattr(args, "threads", None)
    threads = None if given is None else parse_threads(given, source="--threads")
    if threads is None and name == "numpy":
        get_threads()                    # a bad NN_THREADS is reported here, before any work
    return name, threads


def check_backend_list(args):
    """`check_backend_options` for a command whose --backend is a comma list (numpy,cupy); the default
    is the rule's one backend ($NN_BACKEND or numpy). Returns (list of backend names, threads or None)."""
    text = getattr(args, "backend", None)
    names = [backend_name(b.strip()) for b in text.split(",")] if text is not None else [backend_name()]
    threads = None
    for name in names:
        _, threads = check_backend_options(argparse.Namespace(
            backend=name, threads=getattr(args, "threads", None), tf32=getattr(args, "tf32", False)))
    return names, threads


def apply_backend_options(args):
    """Check the backend, thread and precision options (see `check_backend_options`) and put them
    in force; a missing CuPy or GPU is a one-line error. Returns the backend's name."""
    name, threads = check_backend_options(args)
    from nn import backend, parallel      # here, not at the top: see check_backend_options
    backend.reuse_freed_memory()           # the process-wide allocator tweak nn leaves to applications
    backend.set_tf32(tf32_setting(getattr(args, "tf32", False)))    # before CuPy's first matrix product
    backend.set_backend(name)
    parallel.set_threads(threads)
    return name


class MovedCommandError(ValueError):
    """A sub-command that moved to another package; the message names its new place."""


def check_moved(argv, prog, moved):
    """Raise a one-line MovedCommandError when the sub-command in `argv` (default: sys.argv[1:]) is
    one of `moved` ({name: the command that replaces it}); checked before parsing, so the old
    command's options need not be known."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in moved:
        raise MovedCommandError(f"`{prog} {argv[0]}` moved: run `{moved[argv[0]]}` with the same options")


def _close_progress_bars():
    """Remove progress bars still on the terminal, so an error line starts a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()) or ()):
        try:
            bar.leave = False
            bar.close()
        except Exception:
            pass


def run_cli(main, argv=None):
    """Run a command-line `main(argv)`; a ValueError, RuntimeError or OSError becomes one line on
    stderr and exit status 2 (no traceback), Ctrl-C a line and status 130."""
    try:
        code = main(argv)
    except (ValueError, RuntimeError, OSError) as exc:
        _close_progress_bars()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
