"""Run folders, shared by the DCGAN and SimGAN trainers.

    RUN_DIR/config.json     the run's settings (a later `train` on the folder resumes with them)
    ...checkpoint.npz       the networks, optimizers, iteration and the random generator's state
    ...log.csv              one row per iteration
    ...losses.png           the loss curves

Every file is written atomically, so an interrupted run resumes from its last checkpoint and
takes exactly the step it would have taken.
"""
import csv
import io
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nn import backend

from common.files import atomic_savez, atomic_write_json, atomic_write_text, npz_problem

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.npz"
LOG_FILE = "log.csv"


# ----------------------------------------------------------------------------- settings

def read_run_config(run_dir, config_cls, kind, error=ValueError):
    """The settings saved in RUN_DIR/config.json as a `config_cls` (which has `from_dict`);
    a folder without one, or an unreadable one, raises `error` with one line naming it."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise error(f"{run_dir}: not a {kind} run folder (no {CONFIG_FILE})")
    try:
        return config_cls.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise error(f"{path}: unreadable run configuration ({exc})") from None


def resolve_config(run_dir, new_config, given, resumable, load, trained, error=ValueError):
    """The checked config a run in RUN_DIR would use, writing nothing.

    A folder that holds a trained run (`trained(run_dir)`: it saved an iteration) keeps its saved
    settings (`load(run_dir)`); of the settings `given` ({name: value}, e.g. from the command line)
    only those in `resumable` may differ (they replace the saved ones). A folder whose run never
    saved an iteration takes `new_config()`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise error(f"{run_dir}: exists and is not a folder; give a run folder")
    if not ((run_dir / CONFIG_FILE).is_file() and trained(run_dir)):
        return new_config().check()
    config = load(run_dir)
    for name, value in given.items():
        if name in resumable:
            setattr(config, name, value)
        elif not hasattr(config, name):
            raise error(f"unknown setting {name!r}")
        elif value != getattr(config, name):
            raise error(f"{run_dir}: this run was trained with {name}={getattr(config, name)!r}, "
                        f"not {value!r}; use a new --out folder to change it")
    return config.check()


def save_config(run_dir, config):
    """Write RUN_DIR/config.json (a dataclass); returns the config."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, asdict(config))
    return config


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, state, rng, **extra):
    """A flat dict of host arrays (the nets' and optimizers' `state_dict`, which holds "iteration"),
    the random generator's state and any `extra` arrays, in one .npz (atomic)."""
    state = dict(state, **extra)
    state["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
    atomic_savez(path, **state)


def load_checkpoint(path, error=ValueError, what="checkpoint"):
    """(state dict, rng) from a checkpoint, the random generator positioned as it was saved; an
    unreadable file raises `error` with one line."""
    try:
        with np.load(path, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
        int(state["iteration"])
        rng_state = json.loads(str(state["rng_state"]))
    except Exception as exc:
        raise error(f"{path}: not a readable {what} ({npz_problem(exc)})") from None
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    return state, rng


# ----------------------------------------------------------------------------- logs and figures

def read_log(path, up_to=None, text=()):
    """Rows of log.csv as dicts: numbers as floats, empty cells as None, the columns named in `text`
    as strings; optionally only iterations <= up_to."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: (v if k in text else (float(v) if v != "" else None)) for k, v in row.items()}
                for row in csv.DictReader(f)]
    return [r for r in rows if up_to is None or r["iteration"] <= up_to]


def write_log(path, rows, columns, text=()):
    """log.csv with these columns: iteration as a whole number, `text` columns as they are, other
    numbers to 6 significant digits, missing values as empty cells."""
    def cell(key, value):
        if value is None:
            return ""
        if key == "iteration":
            return int(value)
        return value if key in text else f"{value:.6g}"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: cell(k, r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


class PendingRows:
    """A trainer's per-iteration log rows, kept on the device and read in one copy every few iterations
    (a training step never waits for the device). `read()` gives each new row `seconds` (the mean wall time
    per iteration since the last read), appends it to `rows`, passes it to `check` in order (which raises
    to stop a run, so the log ends at the first bad row) and shows the newest row's `shown` values on `bar`."""

    def __init__(self, rows, check, bar, shown):
        self.rows, self.check, self.bar, self.shown = rows, check, bar, shown
        self.pending = backend.ScalarLog()
        self.clock = time.perf_counter()

    def __len__(self):
        return len(self.pending)

    def add(self, row):
        self.pending.add(row)

    def read(self):
        new = self.pending.flush()
        now = time.perf_counter()
        for row in new:
            self.rows.append({**row, "seconds": (now - self.clock) / len(new)})
            self.check(self.rows[-1])
        self.clock = now
        if new:
            self.bar.set_postfix({k: f"{new[-1][k]:.3f}" for k in self.shown if k in new[-1]}, refresh=False)
