"""Training the ten DCGANs, one per digit, each on the real training images of its digit.

A run folder holds one sub-folder per digit:

    RUN_DIR/config.json             the settings (a later `train` on the folder resumes with them)
    RUN_DIR/losses.png              every digit's loss curves
    RUN_DIR/digit_5/checkpoint.npz  G, D (parameters + BatchNorm buffers), both Adam states, the
                                    iteration, the random generator's state, the fixed noise
    RUN_DIR/digit_5/log.csv         per iteration: losses D and G, D's accuracy on real/generated
    RUN_DIR/digit_5/status.json     running | done | stopped (with the one-line reason)
    RUN_DIR/digit_5/samples_0001.png  grids from the fixed noise at iterations 1, 51, 76, 201, 401,
                                    701 (the paper's Figures 7 and 8) and at the end
    RUN_DIR/digit_5/losses.png      this digit's loss curves
    RUN_DIR/digit_all/...           the same files for a conditional run (`Config.conditional`): one GAN for
                                    all ten digits (gan/dcgan/conditional.py); its grids show a digit per row

Every file is written atomically, so an interrupted run resumes from its last checkpoint and
takes exactly the step it would have taken.
"""
import json
import math
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

import svhn
from nn import backend
from common.files import atomic_write_json, check_output_path
from common.figures import pyplot, save_figure
from svhn.imageset import save_grid_png, to_float, to_uint8
from gan import runs
from gan.dcgan.nets import DCGAN, LOSSES, UPSAMPLE_MODES, Z_DIM, build_discriminator, build_generator, generate
from gan.dcgan.conditional import (N_DIGITS, ConditionalDCGAN, build_conditional_discriminator,
                                   build_conditional_generator, generator_input)

FIGURE_ITERATIONS = (1, 51, 76, 201, 401, 701)   # the paper's Figures 7 and 8
LOG_EVERY = 25      # iterations between reads of the metrics from the device (log, health check, progress bar)
LOG_FIELDS = ("iteration", "loss_D", "loss_G", "acc_real", "acc_fake", "X_real", "X_fake", "seconds")
STATUS_FILE = "status.json"
GRID_SIZE = 64                                   # images in each fixed-noise grid
CONDITIONAL = "all"      # the "digit" of a conditional run: its one GAN lives in RUN_DIR/digit_all
GENERATOR_LR = {"paper": 1e-3, "bce": 3e-3}      # G's default Adam rate per loss (README "DCGAN label fidelity")


class DivergedError(RuntimeError):
    """A digit's training stopped: a loss became NaN/inf or the discriminator got stuck."""


@dataclass
class Config:
    """Everything that defines a run (saved as RUN_DIR/config.json).

    1,500 iterations per digit: on the 783-image sample a ConvNet trained on 73,000 images of ten BCE GANs
    read the real test digits at 50.7 % after 300 iterations, 69.8 % after 600, 73.3 % after 900 (two GAN
    seeds) and 77.1 % after 1,500 (one GAN seed, three classifier seeds; +5.7 ± 1.0 points paired with that
    seed's own 900-iteration set; docs/results.md
    §10-11, §14). The other defaults are the recipe that worked
    best on that sample in 300 iterations: the
    paper's nearest-upsampling generator (the transposed-convolution one collapsed to one periodic
    texture), DiffAugment, a generator learning rate of 1e-3 (3e-3 with BCE) against the discriminator's
    2e-4 (DCGAN's 2e-4 for both let the discriminator win within 10 iterations), and images drawn from a
    moving average of G's weights (label fidelity over the ten digits, same runs, G → average:
    0.639 → 0.707 with the paper's loss, 0.687 → 0.707 with BCE), and batches of 128 (with the
    average: paper's loss 0.707 → 0.788, BCE 0.707 → 0.784, at twice the time per iteration; all seed 0;
    over three seeds BCE averages 0.767 with lr 1e-3, 0.787 with 2e-3 and 0.811 with 3e-3, the paper's
    loss 0.727 with 1e-3; README "DCGAN label fidelity").
    `Config(upsample="deconv", augment=False, lr=2e-4, lr_d=None, ema_decay=0)` is plain DCGAN.
    conditional=True: one class-conditional GAN for all ten digits instead of ten (beyond the paper;
    gan/dcgan/conditional.py), trained on every real training image, `iters` iterations in all.
    """
    iters: int = 1500
    loss: str = "paper"
    upsample: str = "nearest"
    width: int = 32
    batch_size: int = 128            # real and generated images per iteration (64 halves the time per iteration)
    lr: float = None                 # G's Adam learning rate (and D's when lr_d is None); None: GENERATOR_LR[loss]
    lr_d: float = 2e-4               # the discriminator's Adam learning rate
    beta1: float = 0.5
    label_smoothing: float = 0.0
    d_every: int = 1
    augment: bool = True             # DiffAugment on every image the discriminator sees
    ema_decay: float = 0.999         # images come from a moving average of G's weights (0 = from G itself)
    seed: int = 0
    checkpoint_every: int = 50
    stuck_iters: int = 200
    data_dir: str = None
    conditional: bool = False

    def __post_init__(self):
        if self.lr is None:
            self.lr = GENERATOR_LR.get(self.loss)     # an unknown loss is reported by check()

    def check(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {self.upsample!r}; choose from {', '.join(UPSAMPLE_MODES)}")
        for name in ("iters", "batch_size", "width", "checkpoint_every", "d_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm needs a batch), got {self.batch_size}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.stuck_iters < 0:
            raise ValueError(f"stuck_iters must be >= 0 (0 switches the check off), got {self.stuck_iters}")
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ValueError(f"{name} (learning rate) must be in (0, 1), got {value}")
        return self

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        d = {"ema_decay": 0.0, **d}      # runs saved before the weight average existed had none
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------- run folders

def digit_dir(run_dir, digit):
    return Path(run_dir) / f"digit_{digit}"


def checkpoint_path(run_dir, digit):
    return digit_dir(run_dir, digit) / runs.CHECKPOINT_FILE


def log_path(run_dir, digit):
    return digit_dir(run_dir, digit) / runs.LOG_FILE


def samples_path(run_dir, digit, iteration=None):
    """The grid from the fixed noise at `iteration` (one of FIGURE_ITERATIONS), or at the end (None)."""
    return digit_dir(run_dir, digit) / ("samples_final.png" if iteration is None else f"samples_{iteration:04d}.png")


def load_config(run_dir):
    return runs.read_run_config(run_dir, Config, "DCGAN")


def has_trained(run_dir):
    """True when some digit of the run has a checkpoint (a completed, saved iteration)."""
    return any(Path(run_dir).glob("digit_*/checkpoint.npz"))


RESUMABLE = ("iters", "checkpoint_every", "stuck_iters", "data_dir")   # settings a resumed run may change


def resolve_config(run_dir, config, explicit=()):
    """The checked config a run in RUN_DIR would use, writing nothing. A folder that holds a trained
    run keeps the saved settings; of the settings named in `explicit` (given on the command line)
    only `iters` (train further), `checkpoint_every`, `stuck_iters` and `data_dir` may differ. A
    folder whose run never saved an iteration takes the new settings."""
    return runs.resolve_config(run_dir, lambda: config, {name: getattr(config, name) for name in explicit},
                               RESUMABLE, load_config, has_trained)


def prepare_run(run_dir, config, explicit=()):
    """Create RUN_DIR with `config`, or reopen an existing one (see `resolve_config`), and write its
    config.json. Returns the config to use."""
    return runs.save_config(run_dir, resolve_config(run_dir, config, explicit))


def digit_seed(seed, digit):
    """One independent integer seed per (run seed, digit); a conditional run's GAN counts as digit 10."""
    key = N_DIGITS if digit == CONDITIONAL else int(digit)
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0])


def build_gan(config, digit):
    """G and D with the run's architecture and the digit's initial weights, inside a DCGAN (with
    config.conditional: the conditional pair, digit CONDITIONAL, inside a ConditionalDCGAN)."""
    backend.seed(digit_seed(config.seed, digit))
    if config.conditional:
        G = build_conditional_generator(config.upsample, config.width)
        D = build_conditional_discriminator(config.width)
    else:
        G = build_generator(config.upsample, config.width)
        D = build_discriminator(config.width)
    kind = ConditionalDCGAN if config.conditional else DCGAN
    return kind(G, D, loss=config.loss, lr=config.lr, lr_d=config.lr_d, beta1=config.beta1,
                 label_smoothing=config.label_smoothing, d_every=config.d_every, augment=config.augment,
                 ema_decay=config.ema_decay)


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, gan, rng, fixed_z):
    """G, D, both optimizers, the iteration, the RNG state and the fixed noise, in one .npz (atomic)."""
    runs.save_checkpoint(path, gan.state_dict(), rng, fixed_z=backend.to_numpy(fixed_z))


def load_checkpoint(path, gan):
    """Restore `gan` from a checkpoint; returns (rng, fixed_z) positioned as they were saved."""
    state, rng = runs.load_checkpoint(path)
    gan.load_state_dict(state, source=str(path))
    return rng, backend.asarray(state["fixed_z"])


def load_gan(run_dir, digit):
    """The DCGAN of one digit (G, its moving average, D, optimizers) as its checkpoint left it."""
    config = load_config(run_dir)
    path = checkpoint_path(run_dir, digit)
    if not path.is_file():
        raise ValueError(f"{run_dir}: digit {digit} has no checkpoint (was it trained?)")
    gan = build_gan(config, digit)
    load_checkpoint(path, gan)
    return gan


def load_generator(run_dir, digit):
    """The trained generator of one digit, from its checkpoint (the latest state): the moving
    average of its weights when the run kept one (ema_decay > 0), else G itself."""
    return load_gan(run_dir, digit).sampler


# ----------------------------------------------------------------------------- logs and figures

def read_log(path, up_to=None):
    """Rows of log.csv as dicts of floats, optionally only iterations <= up_to."""
    return runs.read_log(path, up_to)


def write_log(path, rows):
    runs.write_log(path, rows, LOG_FIELDS)


def save_samples(path, G, fixed_z, title):
    """A grid of G(fixed noise), 8 per row."""
    images = to_uint8(backend.to_numpy(generate(G, fixed_z, batch_size=len(fixed_z))))
    save_grid_png(path, images, nrow=8, scale=2, title=title)


def plot_losses(path, logs, title):
    """Loss curves (and D's accuracies) of one or several digits: logs = {digit: rows}."""
    logs = {d: rows for d, rows in logs.items() if rows}
    if not logs:
        return
    n = len(logs)
    fig, axes = pyplot().subplots(2, n, figsize=(3.2 * n, 5), squeeze=False, sharex="col")
    for col, (digit, rows) in enumerate(sorted(logs.items())):
        it = [r["iteration"] for r in rows]
        ax = axes[0, col]
        ax.plot(it, [r["loss_D"] for r in rows], label="D (discriminator)", lw=0.8)
        ax.plot(it, [r["loss_G"] for r in rows], label="G (generator)", lw=0.8)
        ax.set_title(run_name(digit))
        ax = axes[1, col]
        ax.plot(it, [r["acc_real"] for r in rows], label="D acc. real", lw=0.8)
        ax.plot(it, [r["acc_fake"] for r in rows], label="D acc. generated", lw=0.8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("iteration")
    axes[0, 0].set_ylabel("loss")
    axes[1, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------- divergence

def check_health(row, history, stuck_iters):
    """Raise DivergedError if this iteration's losses are NaN/inf, or if the discriminator has been
    all-or-nothing (accuracy exactly 0 or 1 on real AND on generated images, the same pair every
    time) for `stuck_iters` iterations in a row (0 switches that check off)."""
    for key in ("loss_D", "loss_G"):
        if not math.isfinite(row[key]):
            raise DivergedError(f"{key} is {row[key]} at iteration {int(row['iteration'])}")
    if not stuck_iters or len(history) < stuck_iters:
        return
    recent = [(r["acc_real"], r["acc_fake"]) for r in history[-stuck_iters:]]
    first = recent[0]
    if first[0] in (0.0, 1.0) and first[1] in (0.0, 1.0) and all(p == first for p in recent):
        what = {(1.0, 1.0): "separates real and generated images perfectly",
                (0.0, 0.0): "calls every real image generated and every generated image real",
                (1.0, 0.0): "calls every image real", (0.0, 1.0): "calls every image generated"}[first]
        raise DivergedError(f"the discriminator {what} for {stuck_iters} iterations in a row "
                            f"(up to iteration {int(row['iteration'])}; see --stuck-iters)")


# ----------------------------------------------------------------------------- training

def run_name(digit):
    """How logs and figures name a run's GAN: "digit 5", or "conditional (a row per digit)"."""
    return "conditional (a row per digit)" if digit == CONDITIONAL else f"digit {digit}"


def write_status(folder, state, iteration, message=""):
    atomic_write_json(folder / STATUS_FILE, {"state": state, "iteration": iteration, "message": message})


def read_status(run_dir, digit):
    path = digit_dir(run_dir, digit) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"state": "new", "iteration": 0, "message": ""}


def fixed_noise(rng, config):
    """The fixed input of a run's sample grids: GRID_SIZE noise vectors, or for a conditional run 8 per
    digit (80, a digit per row of the grid) with their one-hot digits appended."""
    if not config.conditional:
        return backend.asarray(rng.standard_normal((GRID_SIZE, Z_DIM)).astype(np.float32))
    z = backend.asarray(rng.standard_normal((8 * N_DIGITS, Z_DIM)).astype(np.float32))
    return generator_input(z, backend.asarray(np.repeat(np.arange(N_DIGITS), 8)))


def train_digit(images, digit, run_dir, config, progress=True, log=print, labels=None):
    """Train (or resume) the DCGAN of one digit on `images` (uint8 NHWC, that digit's real images).
    A conditional run (config.conditional) trains its one GAN, digit CONDITIONAL, on the images of
    every digit, with their digits in `labels`.

    Returns the digit's status dict: state "done" or "stopped" (NaN/inf loss or a stuck
    discriminator, with the reason in "message"; the line is also passed to `log`).
    """
    folder = digit_dir(run_dir, digit)
    folder.mkdir(parents=True, exist_ok=True)
    status = read_status(run_dir, digit)
    if status["state"] == "stopped":
        log(f"{run_name(digit)}: skipped, it stopped earlier ({status['message']}); delete "
            f"{folder / 'status.json'} to train it again from its last checkpoint")
        return status
    real = backend.asarray(to_float(images))
    if len(real) == 0:
        raise ValueError(f"{run_name(digit)}: no training images")
    if config.conditional != (labels is not None):
        raise ValueError("train_digit: a conditional run needs the images' labels, and only it takes them")
    labels = None if labels is None else backend.asarray(np.asarray(labels, dtype=np.int64))
    gan = build_gan(config, digit)
    ckpt = checkpoint_path(run_dir, digit)
    if ckpt.is_file():
        rng, fixed_z = load_checkpoint(ckpt, gan)
    else:
        rng = np.random.default_rng(digit_seed(config.seed, digit) + 1)
        fixed_z = fixed_noise(rng, config)
    rows = read_log(log_path(run_dir, digit), up_to=gan.iteration)

    def checkpoint():
        save_checkpoint(ckpt, gan, rng, fixed_z)
        write_log(log_path(run_dir, digit), rows)
        write_status(folder, "running", gan.iteration)

    bar = _progress(total=config.iters, initial=min(gan.iteration, config.iters),
                    desc=run_name(digit), enabled=progress)
    pending = runs.PendingRows(rows, lambda row: check_health(row, rows, config.stuck_iters), bar,
                               ("loss_D", "loss_G", "acc_real", "acc_fake"))   # read every LOG_EVERY iterations

    try:
        while gan.iteration < config.iters:
            idx = rng.choice(len(real), size=config.batch_size, replace=len(real) < config.batch_size)
            z = backend.asarray(rng.standard_normal((config.batch_size, Z_DIM)).astype(np.float32))
            idx = backend.asarray(idx)
            extra = {} if labels is None else {"labels": labels[idx]}
            metrics = gan.train_step(real[idx], z, rng, **extra)
            pending.add({"iteration": gan.iteration, **metrics})
            figure = gan.iteration in FIGURE_ITERATIONS
            if figure or gan.iteration % config.checkpoint_every == 0 or len(pending) >= LOG_EVERY:
                pending.read()             # health-checked before anything is written
            if figure:
                save_samples(samples_path(run_dir, digit, gan.iteration), gan.sampler, fixed_z,
                             f"{run_name(digit)}, iteration {gan.iteration}")
            if gan.iteration % config.checkpoint_every == 0:
                checkpoint()
            bar.update(1)
        pending.read()
    except DivergedError as exc:
        bar.close()
        write_log(log_path(run_dir, digit), rows)
        message = str(exc)
        log(f"{run_name(digit)}: stopped: {message}")
        write_status(folder, "stopped", rows[-1]["iteration"], message)
        return read_status(run_dir, digit)
    bar.close()
    checkpoint()
    save_samples(samples_path(run_dir, digit), gan.sampler, fixed_z, f"{run_name(digit)}, iteration {gan.iteration} (final)")
    plot_losses(folder / "losses.png", {digit: rows}, f"DCGAN {run_name(digit)}, loss {config.loss}")
    write_status(folder, "done", gan.iteration)
    return read_status(run_dir, digit)


def _progress(total, initial, desc, enabled):
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=True, dynamic_ncols=True)


def parse_digits(text):
    """'0-9' -> [0..9], '1,5' -> [1, 5], '3' -> [3]; ranges and lists mix ('0-2,7')."""
    digits = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-"))
                digits += list(range(lo, hi + 1))
            else:
                digits.append(int(part))
        except ValueError:
            raise ValueError(f"bad digit list {text!r}: use a range such as 0-9 or a list such as 1,5") from None
    if not digits or any(d < 0 or d > 9 for d in digits):
        raise ValueError(f"bad digit list {text!r}: digits must be 0..9 (a range such as 0-9 or a list such as 1,5)")
    return sorted(set(digits))


def train_one_by_one(per_digit, run_dir, config, progress=True, log=print):
    """`train_digit` for each digit of per_digit = {digit: its real images}, in turn; {digit: status}."""
    return {digit: train_digit(mine, digit, run_dir, config, progress=progress, log=log)
            for digit, mine in per_digit.items()}


def train_all(run_dir, config, digits=range(10), images=None, labels=None, progress=True, log=print,
              explicit=(), trainer=train_one_by_one):
    """Train one DCGAN per digit in `digits` on the real images of that digit.

    images/labels: uint8 NHWC images and their digits; default `svhn.load("train", config.data_dir)`.
    A digit that stops (NaN/inf, stuck discriminator) is reported and the others go on.
    trainer: how the digits are trained, one after another (`train_one_by_one`) or all as one grouped
    model (`gan.dcgan.grouped.train_together`: the same results within float32 rounding, fewer and
    larger GPU launches). Returns {digit: status dict}.
    """
    check_output_path(run_dir, "dir", "--out")
    config = resolve_config(run_dir, config, explicit)      # nothing is written before the data is read
    if config.conditional and sorted(digits) != list(range(N_DIGITS)):
        raise ValueError("a conditional run trains one GAN on all ten digits: leave out --digits")
    if images is None:
        images, labels = svhn.load("train", config.data_dir)
    per_digit = {digit: images[np.asarray(labels) == digit] for digit in digits}
    for digit, mine in per_digit.items():
        if len(mine) == 0:
            raise ValueError(f"no training images of digit {digit} in the data")
    config = prepare_run(run_dir, config, explicit)
    if config.conditional:
        status = train_digit(images, CONDITIONAL, run_dir, config, progress=progress, log=log, labels=labels)
        plot_losses(Path(run_dir) / "losses.png", {CONDITIONAL: read_log(log_path(run_dir, CONDITIONAL))},
                    f"conditional DCGAN, all digits, loss {config.loss}")
        return {CONDITIONAL: status}
    results = trainer(per_digit, run_dir, config, progress=progress, log=log)
    logs = {d: read_log(log_path(run_dir, d)) for d in range(10)}
    plot_losses(Path(run_dir) / "losses.png", logs, f"DCGAN per digit, loss {config.loss}")
    return results


def copy_digit_run(run_dir, digit, target):
    """Copy a run's config and one digit's checkpoint and status to the run folder `target`
    (whole, or not at all): a snapshot that `sample` and `load_generator` read like the run."""
    run_dir, target = Path(run_dir), Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    digit_dir(tmp, digit).mkdir(parents=True)
    shutil.copy2(run_dir / runs.CONFIG_FILE, tmp / runs.CONFIG_FILE)
    for path in (checkpoint_path(run_dir, digit), digit_dir(run_dir, digit) / STATUS_FILE):
        shutil.copy2(path, digit_dir(tmp, digit) / path.name)
    tmp.rename(target)
