"""SimGAN (Shrivastava et al. 2017), the seed paper's named next step: a refiner that makes
procedural digits look like real SVHN crops while keeping their labels.

    from gan.simgan import train_simgan, refine
    train_simgan(real_x, proc_x, "runs/simgan", proc_y=proc_y, lambda_reg=10.0, kg=2, steps=1000)
    x_refined = refine("runs/simgan", proc_x)           # uint8 (N, 32, 32, 3), same order as proc_x

The schedule (SimGAN's Algorithm 1, Kd = 1):
  0. only with the label term (label_weight μ > 0, our addition): `label_steps` updates of the digit
     keeper C, a small classifier, on the procedural images and their labels (then C is frozen);
  1. `pretrain_r` refiner updates on the self-regularisation alone, mean|R(x) - x| (R learns the identity);
  2. `pretrain_d` discriminator updates against that refiner;
  3. `steps` iterations of `kg` refiner updates on L_R = BCE(X(R(x)), 0) + λ·mean|R(x) - x|
     followed by one discriminator update (half its refined batch from the history buffer);
     with μ > 0, L_R also holds μ·CE(C(R(x)), y).
The networks, losses and steps are in gan/simgan/nets.py; run folders work as in gan/runs.py.

A run folder holds
    RUN_DIR/config.json       the settings (a later `train` on the folder resumes with them)
    RUN_DIR/checkpoint.npz    R, D, both Adam states, the history buffer, the iteration and the RNG state
    RUN_DIR/log.csv           per iteration: phase, losses, D's accuracies, seconds
    RUN_DIR/losses.png        the loss curves
    RUN_DIR/pairs.png         procedural images (odd rows) above their refined versions (even rows)
    RUN_DIR/refined.npz       the whole procedural set refined, with its labels (when labels are given)

Command line: `python -m gan.simgan train|refine --help`.
"""
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nn import backend
from common.figures import pyplot, save_figure
from svhn.imageset import IMAGE_SHAPE, check_image_set, save_grid_png, save_image_set, to_float, to_uint8
from gan import runs
from gan.simgan.nets import SimGAN, build_flow_net, build_label_net, build_patch_discriminator, build_refiner

LOG_EVERY = 25      # iterations between reads of the log rows from the device

PHASES = ("pretrain_C", "pretrain_R", "pretrain_D", "adversarial")
LOG_FIELDS = ("iteration", "phase", "loss_R", "loss_adv", "loss_reg", "loss_label", "loss_flow", "loss_D", "acc_real",
              "acc_refined", "acc_label", "X_real", "X_refined", "lambda_reg", "seconds")
LABEL_NET_WIDTH = 32         # channels of the digit keeper's first stage
FLOW_NET_WIDTH = 16          # channels of the flow net's first stage (the warp)
DIGITS = 10                  # maps of the conditional discriminator, one per digit
REFINED_FILE = "refined.npz"   # the whole procedural set refined (when its labels are given)
PAIRS_FILE = "pairs.png"
LOSSES_FILE = "losses.png"
PAIR_COLUMNS = 8
PAIR_ROWS = 5                # pairs of rows: 40 procedural images and their refined versions


class SimGANError(ValueError):
    """Bad settings, data or run folder; the message is one line."""


class SimGANDiverged(RuntimeError):
    """A loss became NaN or infinite during training."""


@dataclass
class SimGANConfig:
    """Everything that defines a run (saved as RUN_DIR/config.json).

    λ = 10: with images in [-1, 1] and both terms means, λ = 1 let the refiner change images by 12.4
    grey levels on average and damage labels (label fidelity 78.0 % raw → 71.9 % refined); λ = 10
    changes them by 5.6 and keeps labels (79.5 %), and 73,000 images refined with it trained a
    better ConvNet than the raw ones on average (README, "73,000 synthetic images").

    μ (label_weight, default 0: off, SimGAN as published) weighs the label term μ·CE(C(R(x)), y) of a
    digit keeper C trained first for `label_steps` updates on the procedural images and their labels.
    With λ = 1 and μ = 1 the refiner changes images 2.5× as much as with λ = 10 and keeps label fidelity,
    but the refined set trains no better ConvNet than the raw one (docs/results.md §3.2), so it stays off.

    d_standardize (off) makes D blind to each image's brightness, contrast and colour cast, which were three
    quarters of a λ = 1, μ = 1 refiner's change; its refiner changes local structure instead, and still trains
    no better ConvNet (−0.7 ± 0.5 points against raw, docs/results.md §3.3).

    d_conditional (off) gives D one map per digit and judges every image by its own digit's map: real images
    with their labels (so the real images' labels are used), refined ones with the procedural labels. With the
    standardising D, λ = 1 and μ = 1 it trains no better ConvNet either (−1.2 ± 0.1 points against raw after 400
    adversarial steps, −0.4 ± 0.7 after 1,200; docs/results.md §3.4).

    κ (flow_weight, default 0: off) adds the warp: a flow net F predicts a smooth displacement field and the
    refined image is R(x) resampled at the displaced points, so the refiner can move strokes (slant, stretch,
    thin a digit), not only recolour them; κ·mean(F(x)²) (pixels²) keeps the displacements small. Added to the
    conditional, standardising D with λ = 1, μ = 1 (κ = 0.05), it removed that D's small loss but trained no better
    ConvNet than the raw images (−0.1 ± 0.2 points, +0.3 ± 0.1 with F's lr 1e-3; docs/results.md §3.5), and the
    refiners kept their displacements under a pixel, so it stays off.

    lambda_final (default 0: off, λ constant) makes λ a schedule over the adversarial steps, from lambda_reg at
    the first to lambda_final at the last, geometrically: λ_t = lambda_reg·(lambda_final/lambda_reg)^(t/(steps-1)).
    From 10 down to 1, say, the refiner starts as the λ = 10 one (close to its input while D and R find their
    balance) and ends free to change images as much as a λ = 1 one. Because the path spans `steps`, a run with
    a schedule cannot be resumed with other `steps`.
    """
    lambda_reg: float = 10.0     # λ, the weight of the self-regularisation mean|R(x) - x| (why 10: above)
    lambda_final: float = 0.0    # λ at the last adversarial step, reached geometrically from lambda_reg; 0: constant
    kg: int = 2                  # refiner updates per discriminator update
    steps: int = 1000            # adversarial iterations (each: kg refiner updates + 1 D update)
    pretrain_r: int = 500        # refiner updates on the L1 term alone
    pretrain_d: int = 200        # discriminator updates before the adversarial phase
    buffer_size: int = 512       # images in the history buffer
    batch_size: int = 32
    lr_pretrain_r: float = 1e-3  # refiner learning rate while it learns the identity (phase 1)
    lr_r: float = 1e-4
    lr_d: float = 1e-3
    beta1: float = 0.5
    width: int = 64              # refiner channels
    blocks: int = 4              # refiner ResNet blocks
    identity_init: bool = True   # start the refiner near the identity (needs width >= 6)
    d_width: int = 32            # discriminator channels of the first stage
    d_standardize: bool = False  # D sees each image's colour channels standardised (blind to colour and contrast)
    d_conditional: bool = False  # D has one map per digit and judges each image by its digit's (needs real labels)
    label_weight: float = 0.0    # μ, the weight of the label term CE(C(R(x)), y); 0: no digit keeper
    label_steps: int = 1000      # updates of the digit keeper C before the refiner's phases (when μ > 0)
    flow_weight: float = 0.0     # κ, the weight of the warp's penalty mean(F(x)²); 0: no warp
    lr_flow: float = 0.0         # the flow net's learning rate (Adam), with the warp; 0: the refiner's lr_r
    seed: int = 0
    checkpoint_every: int = 100

    def check(self):
        for name in ("kg", "batch_size", "width", "d_width", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise SimGANError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "pretrain_r", "pretrain_d", "buffer_size", "blocks", "label_steps"):
            if int(getattr(self, name)) < 0:
                raise SimGANError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise SimGANError(f"batch_size must be >= 2 (half the refined batch comes from the buffer), "
                              f"got {self.batch_size}")
        if self.identity_init and self.width < 6:
            raise SimGANError(f"the identity initialisation needs width >= 6, got {self.width} (or use --random-init)")
        for name in ("lambda_reg", "lambda_final", "label_weight", "flow_weight"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise SimGANError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if self.lambda_final > 0 and self.lambda_reg == 0:
            raise SimGANError("a λ schedule (lambda_final > 0) starts from lambda_reg, which must then be > 0")
        for name in ("lr_pretrain_r", "lr_r", "lr_d"):
            if not 0 < getattr(self, name) < 1:
                raise SimGANError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if not (self.lr_flow == 0 or 0 < self.lr_flow < 1):
            raise SimGANError(f"lr_flow must be 0 (the refiner's lr_r) or in (0, 1), got {self.lr_flow}")
        if not 0 <= self.beta1 < 1:
            raise SimGANError(f"beta1 must be in [0, 1), got {self.beta1}")
        return self

    @property
    def label_phase(self):
        """Updates of the digit keeper: label_steps with the label term, none without."""
        return self.label_steps if self.label_weight > 0 else 0

    @property
    def total(self):
        """Iterations of all the phases together."""
        return self.label_phase + self.pretrain_r + self.pretrain_d + self.steps

    def lambda_at(self, iteration):
        """λ during the 0-based `iteration`: lambda_reg, or with a schedule (lambda_final > 0) the geometric
        path from lambda_reg at the first adversarial iteration to lambda_final at the last."""
        if self.lambda_final == 0:
            return self.lambda_reg
        t = (iteration - (self.total - self.steps)) / max(self.steps - 1, 1)    # 0 .. 1 over the adversarial phase
        return self.lambda_reg * (self.lambda_final / self.lambda_reg) ** min(max(t, 0.0), 1.0)

    def phase(self, iteration):
        """The phase (a name of PHASES) of the 0-based `iteration`."""
        ends = np.cumsum([self.label_phase, self.pretrain_r, self.pretrain_d])
        return PHASES[int(np.searchsorted(ends, iteration, side="right"))]

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SimGANError(f"unknown SimGAN setting(s): {', '.join(unknown)}")
        return cls(**d)


RESUMABLE = ("steps", "checkpoint_every")   # settings a resumed run may change (steps: not with a λ schedule)


# ----------------------------------------------------------------------------- run folders

def load_config(run_dir):
    return runs.read_run_config(run_dir, SimGANConfig, "SimGAN", SimGANError)


def resolve_config(run_dir, settings):
    """The checked config a run in RUN_DIR would use, writing nothing: a folder holding a trained run
    (a checkpoint) keeps its settings, and of the ones given only `steps` (train further; not with a λ
    schedule, whose path spans the steps) and `checkpoint_every` may differ; a folder whose run never saved
    an iteration takes the new ones."""
    def trained(folder):
        return (Path(folder) / runs.CHECKPOINT_FILE).is_file()

    config = runs.resolve_config(run_dir, lambda: SimGANConfig.from_dict(settings), settings, RESUMABLE,
                                 load_config, trained, SimGANError)
    if config.lambda_final > 0 and trained(run_dir):
        saved_steps = load_config(run_dir).steps
        if config.steps != saved_steps:
            raise SimGANError(f"{run_dir}: this run's λ schedule spans its {saved_steps} adversarial steps, so it "
                              f"cannot train to {config.steps}; use a new --out folder")
    return config


def prepare_run(run_dir, settings):
    """Create RUN_DIR with these settings, or reopen it (see `resolve_config`); writes config.json
    and returns the config."""
    return runs.save_config(run_dir, resolve_config(run_dir, settings))


def build_simgan(config):
    """R and D with the run's architecture and its initial weights (from the run's seed)."""
    backend.seed(config.seed)
    R = build_refiner(config.width, config.blocks, config.identity_init)
    D = build_patch_discriminator(config.d_width, config.d_standardize, DIGITS if config.d_conditional else 1)
    C = build_label_net(LABEL_NET_WIDTH) if config.label_weight > 0 else None   # drawn after R and D
    F = build_flow_net(FLOW_NET_WIDTH) if config.flow_weight > 0 else None       # drawn after R, D and C
    return SimGAN(R, D, lambda_reg=config.lambda_reg, lr_r=config.lr_r, lr_d=config.lr_d, beta1=config.beta1,
                  buffer_size=config.buffer_size, label_net=C, label_weight=config.label_weight,
                  conditional=config.d_conditional, flow_net=F, flow_weight=config.flow_weight,
                  lr_flow=config.lr_flow or config.lr_r)


def save_checkpoint(path, sg, iteration, rng):
    """Both nets, both optimizers, the buffer, the iteration and the RNG state in one .npz (atomic)."""
    runs.save_checkpoint(path, sg.state_dict(), rng, iteration=np.array(iteration))


def load_checkpoint(path, sg):
    """Restore `sg` from a checkpoint; returns (iteration, rng) as they were saved."""
    state, rng = runs.load_checkpoint(path, SimGANError, "SimGAN checkpoint")
    sg.load_state_dict(state, source=str(path))
    return int(state["iteration"]), rng


# ----------------------------------------------------------------------------- logs and figures

def read_log(path, up_to=None):
    """Rows of log.csv (numbers as floats, empty cells as None), optionally only iterations <= up_to."""
    return runs.read_log(path, up_to, text=("phase",))


def write_log(path, rows):
    runs.write_log(path, rows, LOG_FIELDS, text=("phase",))


def plot_losses(path, rows, title):
    """Three panels over the iterations: the refiner's terms, D's loss, D's accuracies."""
    if not rows:
        return
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
    curves = (("refiner (and digit keeper)", [("loss_reg", "mean|R(x) - x|"), ("loss_adv", "adversarial term"),
                                              ("loss_label", "CE(C(·), y)"), ("loss_flow", "mean F(x)² (px²)"),
                                              ("lambda_reg", "λ (the L1 term's weight)")]),
              ("discriminator", [("loss_D", "L_D (BCE over patches)")]),
              ("D's accuracy on patches", [("acc_real", "real"), ("acc_refined", "refined")]))
    for ax, (name, keys) in zip(axes, curves):
        for key, label in keys:
            values = [np.nan if r.get(key) is None else r[key] for r in rows]   # gaps where a phase has no value
            if not np.all(np.isnan(values)):
                ax.plot([r["iteration"] for r in rows], values, lw=0.7, label=label)
        for phase in PHASES[2:]:
            starts = [r["iteration"] for r in rows if r["phase"] == phase]
            if starts:
                ax.axvline(starts[0], color="grey", lw=0.6, ls="--")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.suptitle(title + "  (dashed: D pretraining, adversarial phase start)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def pair_indices(n, labels, seed):
    """Which procedural images the pairs figure shows: 4 of each digit when labels are known
    (PAIR_ROWS·PAIR_COLUMNS in all), otherwise a random choice; fixed by the run's seed."""
    rng = np.random.default_rng([int(seed), 2])
    k = min(n, PAIR_ROWS * PAIR_COLUMNS)
    if labels is None:
        return np.sort(rng.choice(n, size=k, replace=False))
    chosen = [rng.permutation(np.flatnonzero(labels == d))[:k // 10] for d in range(10)]
    idx = np.concatenate(chosen)
    if len(idx) < k:
        rest = np.setdiff1d(np.arange(n), idx)
        idx = np.concatenate([idx, rng.choice(rest, size=k - len(idx), replace=False)])
    return idx[:k]


def save_pairs(path, R, proc_x, title):
    """procedural rows and refined rows, alternating, PAIR_COLUMNS images per row."""
    refined = refine_images(R, proc_x)
    rows = []
    for start in range(0, len(proc_x), PAIR_COLUMNS):
        rows += [proc_x[start:start + PAIR_COLUMNS], refined[start:start + PAIR_COLUMNS]]
    cells = [np.concatenate([r, np.zeros((PAIR_COLUMNS - len(r), 32, 32, 3), np.uint8)]) for r in rows]
    save_grid_png(path, np.concatenate(cells), nrow=PAIR_COLUMNS, scale=3, title=title)


# ----------------------------------------------------------------------------- training

def _check_images(x, what):
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8 or len(x) == 0:
        raise SimGANError(f"{what}: expected uint8 images (N, 32, 32, 3) with N > 0, got {x.dtype} {x.shape}")
    return x


def _batch(x, rng, n, labels=None):
    """n random images of the host uint8 array x, as float NCHW in [-1, 1] on the device, and their
    labels on the device (None when `labels`, host integers, is None)."""
    idx = np.sort(rng.choice(len(x), size=n, replace=len(x) < n))
    images = backend.asarray(to_float(x[idx]))
    return images, (None if labels is None else backend.asarray(labels[idx].astype(np.int64)))


def train_iteration(sg, config, phase, real_x, proc_x, rng, proc_y=None, real_y=None):
    """One iteration of the named phase; returns its log row (without iteration/seconds).
    proc_y (host integer labels of proc_x) is needed with the label term or the conditional D,
    real_y (of real_x) with the conditional D; labels are sent to the device only when needed."""
    b = config.batch_size
    row = {"phase": phase}
    sg.opt_R.lr = config.lr_pretrain_r if phase == "pretrain_R" else config.lr_r
    proc_labels = proc_y if config.label_weight > 0 or config.d_conditional else None
    real_labels = real_y if config.d_conditional else None
    if phase == "pretrain_C":
        row.update(sg.label_net_step(*_batch(proc_x, rng, b, proc_y)))
        return row
    if phase == "pretrain_R":
        row.update(sg.refiner_pretrain_step(_batch(proc_x, rng, b)[0]))
        return row
    if phase == "adversarial":
        for _ in range(config.kg):
            metrics = sg.refiner_step(*_batch(proc_x, rng, b, proc_labels))
        row.update(metrics, lambda_reg=sg.lambda_reg)
    (real, y_real), (x, y) = _batch(real_x, rng, b, real_labels), _batch(proc_x, rng, b, proc_labels)
    row.update(sg.discriminator_step(real, x, rng, real_y=y_real, y=y))
    return row


def train_simgan(real_x, proc_x, out_dir, proc_y=None, progress=True, log=print, figures=True, real_y=None,
                 **settings):
    """Train (or resume) a SimGAN refiner in `out_dir`.

    real_x: uint8 (N, 32, 32, 3) real images; real_y: their labels, used (and needed) by the
        conditional D only.
    proc_x: uint8 (M, 32, 32, 3) procedural images to refine; proc_y: their labels (optional): with
        them, the whole set is refined at the end and written as RUN_DIR/refined.npz.
    settings: fields of SimGANConfig (lambda_reg, lambda_final, kg, steps, pretrain_r, pretrain_d, buffer_size,
        batch_size, lr_pretrain_r, lr_r, lr_d, beta1, width, blocks, identity_init, d_width, d_standardize,
        d_conditional, label_weight, label_steps, flow_weight, lr_flow, seed, checkpoint_every).
    figures: write pairs.png and losses.png at the end.
    Returns a summary dict: iteration, the last log row, seconds, and the paths written.
    """
    real_x, proc_x = _check_images(real_x, "real images"), _check_images(proc_x, "procedural images")
    if proc_y is not None:
        proc_y = np.asarray(proc_y)
        check_image_set(proc_x, proc_y, "procedural images")
    out_dir = Path(out_dir)
    config = resolve_config(out_dir, settings)
    if config.label_weight > 0 and proc_y is None:
        raise SimGANError("the label term (label_weight > 0) needs the procedural images' labels (proc_y)")
    if config.d_conditional:
        if proc_y is None or real_y is None:
            raise SimGANError("the conditional discriminator needs the labels of the real and the procedural images")
        real_y = np.asarray(real_y)
        check_image_set(real_x, real_y, "real images")
    config = prepare_run(out_dir, settings)
    sg = build_simgan(config)
    ckpt = out_dir / runs.CHECKPOINT_FILE
    if ckpt.is_file():
        iteration, rng = load_checkpoint(ckpt, sg)
    else:
        iteration, rng = 0, np.random.default_rng([config.seed, 1])
    rows = read_log(out_dir / runs.LOG_FILE, up_to=iteration)
    shown = proc_x[pair_indices(len(proc_x), None if proc_y is None else np.asarray(proc_y), config.seed)]

    def checkpoint():
        save_checkpoint(ckpt, sg, iteration, rng)
        write_log(out_dir / runs.LOG_FILE, rows)

    started = time.perf_counter()
    bar = tqdm(total=config.total, initial=min(iteration, config.total), desc="simgan", disable=not progress,
               dynamic_ncols=True)
    pending = runs.PendingRows(rows, _check_finite, bar,
                               ("loss_reg", "loss_adv", "loss_label", "loss_flow", "loss_D", "acc_real",
                                "acc_refined", "acc_label"))

    while iteration < config.total:
        phase = config.phase(iteration)
        sg.lambda_reg = config.lambda_at(iteration)
        row = train_iteration(sg, config, phase, real_x, proc_x, rng, proc_y, real_y)
        iteration += 1
        row.update(iteration=iteration)
        pending.add(row)
        if iteration % config.checkpoint_every == 0 or config.phase(iteration) != phase:
            pending.read()
            checkpoint()
        elif len(pending) >= LOG_EVERY:
            pending.read()
        bar.update(1)
    pending.read()
    bar.close()
    checkpoint()
    title = (f"SimGAN lambda={lambda_text(config)}, Kg={config.kg}, iteration {iteration}: "
             f"procedural (odd rows) -> refined (even rows)")
    names = ["config.json", "checkpoint.npz", "log.csv"]
    if figures:
        save_pairs(out_dir / PAIRS_FILE, sg.refiner, shown, title)
        plot_losses(out_dir / LOSSES_FILE, rows, f"SimGAN λ={lambda_text(config)}, Kg={config.kg}")
        names += ["losses.png", "pairs.png"]
    summary = {"iteration": iteration, "last": rows[-1] if rows else None,
               "seconds": round(time.perf_counter() - started, 1), "files": [str(out_dir / n) for n in names]}
    if proc_y is not None:
        refined = refine_images(sg.refiner, proc_x, progress=progress)
        save_image_set(out_dir / REFINED_FILE, refined, np.asarray(proc_y))
        summary["files"].append(str(out_dir / REFINED_FILE))
    log(f"SimGAN: {iteration} iterations in {summary['seconds']} s; wrote {', '.join(summary['files'])}")
    return summary


def lambda_text(config):
    """λ for titles: "10", or "10->1" with a schedule."""
    return f"{config.lambda_reg:g}" + (f"->{config.lambda_final:g}" if config.lambda_final > 0 else "")


def _check_finite(row):
    for key in ("loss_R", "loss_reg", "loss_D", "loss_label", "loss_flow"):
        if key in row and not math.isfinite(row[key]):
            raise SimGANDiverged(f"{key} is {row[key]} at iteration {row['iteration']}; "
                                 "try a smaller learning rate")


# ----------------------------------------------------------------------------- refining

def refine_images(R, x, batch_size=256, progress=False):
    """R applied to uint8 images x (N, 32, 32, 3), in batches -> uint8 (N, 32, 32, 3)."""
    out = np.empty_like(x)
    for i in tqdm(range(0, len(x), batch_size), desc="refine", disable=not progress, leave=False):
        refined = R.forward(backend.asarray(to_float(x[i:i + batch_size])), training=False)
        out[i:i + batch_size] = to_uint8(backend.to_numpy(refined))
    return out


def check_trained(run_dir, option=None):
    """The config of a trained run (one with a checkpoint), or a one-line SimGANError; `option`
    (e.g. "--run") names where the folder was given."""
    config = load_config(run_dir)
    if not (Path(run_dir) / runs.CHECKPOINT_FILE).is_file():
        where = f"{option} {run_dir}" if option else str(run_dir)
        raise SimGANError(f"{where}: no {runs.CHECKPOINT_FILE} (train the run first)")
    return config


def load_refiner(run_dir):
    """The refiner of a run, with its latest weights (from the checkpoint): R, or R with its warp
    (`WarpedRefiner`); either maps images x to refined images by `.forward(x, training=False)`."""
    config = check_trained(run_dir)
    path = Path(run_dir) / runs.CHECKPOINT_FILE
    sg = build_simgan(config)
    load_checkpoint(path, sg)
    return sg.refiner


def refine(run_dir, x, batch_size=256, progress=False):
    """The procedural images x (uint8 (N, 32, 32, 3)) refined by the run's refiner, as uint8 images
    in the same order (R has no randomness: the same input gives the same output)."""
    return refine_images(load_refiner(run_dir), _check_images(x, "images to refine"), batch_size, progress)
