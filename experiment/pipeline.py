"""The experiment's stages, in the order they run, and `run_experiment`, which runs them.

    data         the real SVHN images (svhn.load), the subsets the settings ask for
    procedural   the procedural training set (the paper's "simple method") and Figure 6
    dcgan_digit_K  the DCGAN of digit K (one per digit, ten in all), trained on the real images of that digit;
                 digit 5's sample grids at iterations 1, 51, 76, 201, 401, 701 are Figures 7-8
    dcgan_digits the same ten DCGANs trained together as one grouped model, in place of the ten stages
                 above when dcgan_together is on (by default with CuPy)
    dcgan_set    dcgan_per_digit images sampled from each digit's generator (the paper's DCGAN set)
    simgan       a SimGAN refiner trained on the procedural and real images; the refined procedural set
    classify_*   the ConvNet trained on one training set and tested on the real test set:
                   classify_real-all               real images (the paper's 86 %)
                   classify_real-0+procedural      procedural images (63 %)
                   classify_real-0+dcgan           DCGAN images (77 %)
                   classify_real-0+simgan          SimGAN-refined procedural images (beyond the paper)
                   classify_real-100+dcgan, ...    the mixing curve: k real images with/without a synthetic set
    report       table.md, results.json and the figures

Every stage lives in OUT/stages/NAME (see experiment/stages.py for how reruns are decided). Stages
that do not read each other's outputs (the ten DCGANs, the SimGAN, most classifiers) can run at the
same time in worker processes (`jobs`).
"""
import dataclasses
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import svhn
from nn import backend, parallel
from common.files import atomic_savez, atomic_write_json
from svhn.data import data_dir_for, file_digest, split_path
from svhn.imageset import load_image_set, save_grid_png, save_image_set
from procedural import ProceduralSettings, generate, preview_images
from gan import copy_digit_run, prepare_run, read_status, sample, train_digit, train_together
from gan.simgan import REFINED_FILE, SimGANConfig, train_simgan
from classify import NONE, AugmentConfig, did_not_learn, save_model, train_classifier, validation_size
from experiment.stages import Runner, Stage, content_hash, fingerprint
from experiment.layout import (TABLE_ROWS, classifier_name, dcgan_config, dcgan_group_stage, dcgan_run, dcgan_stage,
                               dcgan_stage_of, dcgan_together, gan_tag, given, mixing_points, set_stage, table_runs)
from experiment.report import publish_report, run_report



@dataclass
class Context:
    """What every stage needs: the settings and where things are."""
    settings: object
    out: Path
    data_dir: str = None
    backend: str = "numpy"
    threads: int = None                                    # nn.parallel's thread count (None: its default)
    tf32: bool = False                                     # TF32 matrix products on the GPU
    seed: int = 0
    preset: str = "custom"
    progress: bool = True
    log: object = print
    jobs: int = 1
    started: float = field(default_factory=time.time)     # when this invocation began (wall clock)
    cache: dict = field(default_factory=dict)

    def __getstate__(self):
        """What a worker process gets: no memoised arrays, plain printing, no progress bars (the
        workers' bars would interleave; the main process prints each stage's line)."""
        return {**self.__dict__, "cache": {}, "log": print, "progress": False}

    def __setstate__(self, state):
        """In a worker process: the same array backend (and thread count) as the main process."""
        self.__dict__.update(state)
        backend.reuse_freed_memory()
        backend.set_tf32(self.tf32)
        backend.set_backend(self.backend)
        parallel.set_threads(self.threads)

    def stage_dir(self, name):
        return self.out / "stages" / name

    def real(self):
        """(x_train, y_train, x_test, y_test): the real images the data stage chose (memoised)."""
        if "real" not in self.cache:
            with np.load(self.stage_dir("data") / "subset.npz") as f:
                train_idx, test_idx = f["train_idx"], f["test_idx"]
            x_tr, y_tr = svhn.load("train", self.data_dir)
            x_te, y_te = svhn.load("test", self.data_dir)
            self.cache["real"] = (x_tr[train_idx], y_tr[train_idx], x_te[test_idx], y_te[test_idx])
        return self.cache["real"]

    def real_order(self):
        """A fixed random order of the real training images: the mixing curve's k real images are
        the first k, so a larger k holds every image of a smaller one."""
        n = len(self.real()[1])
        return np.random.default_rng([self.seed, 12]).permutation(n)

    def image_set(self, name):
        """A synthetic training set by name: 'procedural', 'dcgan', 'dcgan-g1', ..., 'simgan'."""
        stage, file = set_stage(name)
        return load_image_set(self.stage_dir(stage) / file)


# ---------------------------------------------------------------------------------- data

def file_content(path):
    """The sha256 of a file's bytes (cached per path, size and modification time, so computed once),
    or None when it is missing. Stages are keyed on it, not on where the file is: copying, moving
    or touching the data folder redoes nothing."""
    path = Path(path)
    return file_digest(path) if path.is_file() else None


def data_files(ctx):
    """{split: sha256 of its .mat file, or None when it is missing (the data stage downloads it)}."""
    return {split: file_content(split_path(split, ctx.data_dir, download=False)) for split in ("train", "test")}


def data_stage(ctx):
    s = ctx.settings
    settings = {"files_sha256": data_files(ctx), "train_n": s.train_n, "test_n": s.test_n, "seed": ctx.seed}
    return Stage("data", partial(run_data, ctx), settings, what="real SVHN images (svhn.load), subsets")


def subset(n, limit, rng):
    """Sorted indices of `limit` of n images drawn by rng (all of them when limit is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:limit])


def run_data(ctx, folder, upstream):
    s = ctx.settings
    x_tr, y_tr = svhn.load("train", ctx.data_dir)          # downloads the split when it is missing
    x_te, y_te = svhn.load("test", ctx.data_dir)
    rng = np.random.default_rng([ctx.seed, 11])
    train_idx, test_idx = subset(len(x_tr), s.train_n, rng), subset(len(x_te), s.test_n, rng)
    files = data_files(ctx)
    atomic_savez(folder / "subset.npz", train_idx=train_idx, test_idx=test_idx)
    info = {"data_dir": str(data_dir_for(ctx.data_dir)), "files_sha256": files, "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
            "n_train_available": int(len(x_tr)), "n_test_available": int(len(x_te)),
            "train_digit_counts": np.bincount(y_tr[train_idx], minlength=10).tolist(),
            "test_digit_counts": np.bincount(y_te[test_idx], minlength=10).tolist()}
    atomic_write_json(folder / "info.json", info)
    ctx.cache.pop("real", None)
    return {**info, "note": f"{len(train_idx)} training and {len(test_idx)} test images",
            "content": fingerprint({"idx": content_hash(train_idx, test_idx), "files": files})}


# ---------------------------------------------------------------------------------- synthetic sets

def run_procedural(ctx, folder, upstream):
    """The paper's procedural set and its Figure 6 (row k: ten images of digit k)."""
    n = ctx.settings.procedural_n
    with tqdm(total=n, unit="img", desc="procedural", disable=not ctx.progress, leave=False) as bar:
        x, y = generate(n, seed=ctx.seed, progress=bar.update)
    save_image_set(folder / "images.npz", x, y)
    save_grid_png(folder / "fig6_procedural.png", preview_images(x, y), nrow=10, scale=3,
                  title="procedural samples (Figure 6)")
    return {"n": int(n), "note": f"{n} images", "content": content_hash(x, y)}


def dcgan_iterations(ctx, digit, g=0):
    """dcgan_iters, and at least dcgan_iters_digit5 for digit 5 of the first set (Figures 7-8)."""
    s = ctx.settings
    return max(s.dcgan_iters, s.dcgan_iters_digit5) if digit == 5 and g == 0 else s.dcgan_iters


def dcgan_set_run(ctx, digit, g=0):
    """The run folder the g-th DCGAN set samples digit `digit` from: for digit 5, when it trains longer
    than the others for Figures 7-8, a copy of its run at dcgan_iters (so every digit's images come
    from a generator trained equally long); otherwise the digit's run itself."""
    snapshot = ctx.stage_dir(dcgan_stage_of(ctx, digit, g)) / "run_at_dcgan_iters"
    if snapshot.is_dir() and (snapshot / f"digit_{digit}").is_dir():
        return snapshot
    return dcgan_run(ctx, digit, g)


def digit_images(ctx, digit):
    """The real training images of one digit (what its DCGAN learns from)."""
    x, y = ctx.real()[:2]
    mine = x[y == digit]
    if len(mine) == 0:
        raise ValueError(f"the real training images hold no digit {digit}: a DCGAN per digit needs some (raise train_n)")
    return mine


def run_dcgan_digit(ctx, digit, g, folder, upstream):
    """The DCGAN of one digit in the g-th set of ten, trained on the real training images of that
    digit, in folder/run (resumable from its checkpoints after an interrupt)."""
    mine = digit_images(ctx, digit)
    iters, set_iters = dcgan_iterations(ctx, digit, g), ctx.settings.dcgan_iters
    snapshot = folder / "run_at_dcgan_iters"
    if iters > set_iters and not snapshot.is_dir():
        # Digit 5 trains on for Figures 7-8; the DCGAN set takes its images from the generator at
        # dcgan_iters, like every other digit's (a longer-trained digit 5 makes sharper images, and a
        # classifier trained on the set learns "sharp means 5").
        config = prepare_run(folder / "run", dataclasses.replace(dcgan_config(ctx, g), iters=set_iters),
                             explicit=("iters",))
        status = train_digit(mine, digit, folder / "run", config, progress=ctx.progress, log=ctx.log)
        if status["state"] != "done":
            return {"iterations": iters, "n_real": int(len(mine)), "status": status,
                    "note": f"stopped early at iteration {status['iteration']}: {status['message']}"}
        copy_digit_run(folder / "run", digit, snapshot)
    config = prepare_run(folder / "run", dataclasses.replace(dcgan_config(ctx, g), iters=iters), explicit=("iters",))
    status = train_digit(mine, digit, folder / "run", config, progress=ctx.progress, log=ctx.log)
    note = f"{status['iteration']} iterations on {len(mine)} real images of digit {digit}"
    if status["state"] != "done":
        note += f"; stopped early: {status['message']}"
    return {"iterations": iters, "n_real": int(len(mine)), "status": status, "note": note}


def run_dcgan_digits(ctx, g, folder, upstream):
    """The g-th set's ten DCGANs trained together as one grouped model (gan.dcgan.grouped: each digit's
    run equals training it alone, within float32 rounding) in folder/run, to dcgan_iters; then, as in
    run_dcgan_digit, digit 5 of the first set trains on alone for Figures 7-8 after a copy of its run
    at dcgan_iters is kept for the DCGAN set. Resumable from the checkpoints after an interrupt."""
    images = {d: digit_images(ctx, d) for d in range(10)}
    set_iters, iters5 = ctx.settings.dcgan_iters, dcgan_iterations(ctx, 5, g)
    run, snapshot = folder / "run", folder / "run_at_dcgan_iters"
    if not snapshot.is_dir():                       # (once the copy exists, the ten are done)
        config = prepare_run(run, dataclasses.replace(dcgan_config(ctx, g), iters=set_iters), explicit=("iters",))
        train_together(images, run, config, progress=ctx.progress, log=ctx.log)
        if iters5 > set_iters and read_status(run, 5)["state"] == "done":
            copy_digit_run(run, 5, snapshot)
    if snapshot.is_dir():
        config = prepare_run(run, dataclasses.replace(dcgan_config(ctx, g), iters=iters5), explicit=("iters",))
        train_digit(images[5], 5, run, config, progress=ctx.progress, log=ctx.log)
    digits = {str(d): {"iterations": dcgan_iterations(ctx, d, g), "n_real": int(len(images[d])),
                       "status": read_status(run, d)} for d in range(10)}
    note = f"ten digits together to iteration {set_iters}" + (f", digit 5 on to {iters5}" if snapshot.is_dir() else "")
    stopped = [f"digit {d} ({p['status']['message']})" for d, p in digits.items() if p["status"]["state"] != "done"]
    if stopped:
        note += f"; stopped early: {'; '.join(stopped)}"
    return {"digits": digits, "note": note}


def run_dcgan_set(ctx, g, folder, upstream):
    """dcgan_per_digit images from each digit's generator of the g-th set of ten, and a grid of each
    digit's samples."""
    n = ctx.settings.dcgan_per_digit
    parts = [sample(dcgan_set_run(ctx, d, g), n, digits=[d], seed=ctx.seed + g, log=ctx.log) for d in range(10)]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    save_image_set(folder / "images.npz", x, y)
    for d in range(10):
        save_grid_png(folder / f"digit_{d}.png", x[y == d][:64], nrow=8, scale=2, title=f"DCGAN digit {d}")
    firsts = np.concatenate([x[y == d][:10] for d in range(10)])
    save_grid_png(folder / "samples.png", firsts, nrow=10, scale=3, title="DCGAN samples, row k: digit k")
    return {"n": int(len(x)), "note": f"{len(x)} images ({n} per digit)", "content": content_hash(x, y)}


SIMGAN_SETTING = {"lambda_reg": "simgan_lambda", "lambda_final": "simgan_lambda_final", "kg": "simgan_kg",
                  "steps": "simgan_steps", "pretrain_r": "simgan_pretrain_r", "pretrain_d": "simgan_pretrain_d",
                  "batch_size": "simgan_batch", "width": "simgan_width", "blocks": "simgan_blocks",
                  "label_weight": "simgan_label_weight", "label_steps": "simgan_label_steps",
                  "d_standardize": "simgan_d_standardize", "d_conditional": "simgan_d_conditional",
                  "flow_weight": "simgan_flow_weight"}
"""run_all.py's name (--set) of each SimGAN setting it passes on."""


def simgan_settings(ctx):
    """The SimGAN settings that are given (not None); gan.simgan's recipe supplies the rest."""
    return {**given(**{name: getattr(ctx.settings, setting) for name, setting in SIMGAN_SETTING.items()}),
            "seed": ctx.seed}


def run_simgan(ctx, folder, upstream):
    """A SimGAN refiner trained on the real training images and the procedural set, which it then
    refines (labels kept): folder/run/refined.npz."""
    x_real, y_real = ctx.real()[:2]
    x_proc, y_proc = load_image_set(ctx.stage_dir("procedural") / "images.npz")
    summary = train_simgan(x_real, x_proc, folder / "run", proc_y=y_proc, real_y=y_real, progress=ctx.progress,
                           log=lambda line: None, **simgan_settings(ctx))
    x_ref, y_ref = load_image_set(folder / "run" / REFINED_FILE)
    change = float(np.abs(x_ref.astype(np.float32) - x_proc).mean())
    return {"iterations": summary["iteration"], "mean_abs_change_grey_levels": round(change, 2),
            "note": f"{summary['iteration']} iterations; refined {len(x_ref)} images "
                    f"(mean change {change:.1f} grey levels)",
            "content": fingerprint({"images": content_hash(x_ref, y_ref)})}


# ---------------------------------------------------------------------------------- classifiers

def epochs_for(n, steps, batch):
    """Epochs giving at least `steps` optimizer steps on n images (after classify's validation split)."""
    n_train = n - validation_size(n)
    per_epoch = max(1, n_train // min(batch, n_train))
    return max(1, math.ceil(steps / per_epoch))


def augmentation(name):
    """classify's AugmentConfig for a clf_augment setting: recipe (classify's default), light or none."""
    if name == "light":
        return AugmentConfig(rotate_deg=5.0, scale=0.05, shear=0.05, shift_px=2.0, contrast=0.2, brightness=0.1,
                             saturation=0.2, channel_shuffle_p=0.0, invert_p=0.0, cutout_p=0.0)
    return NONE if name == "none" else AugmentConfig()


def run_classifier(ctx, real, synthetic, clf, folder, upstream):
    """Train the ConvNet (seed: the run's + clf) on `real` real images (a count or "all") plus the
    `synthetic` set (or none), test it on the real test images; writes model.npz and metrics.json
    (the report draws the figures)."""
    s = ctx.settings
    x_tr, y_tr, x_te, y_te = ctx.real()
    parts = []
    if real != 0:
        keep = ctx.real_order()[:None if real == "all" else real]
        parts.append((x_tr[keep], y_tr[keep]))
    if synthetic:
        parts.append(ctx.image_set(synthetic))
    n = sum(len(p[1]) for p in parts)
    epochs = epochs_for(n, s.clf_steps, s.clf_batch) if s.clf_steps else None
    shares = real_share(s, real, synthetic)
    model, metrics = train_classifier(parts, test=(x_te, y_te), arch=s.clf_arch, widths=tuple(s.clf_widths),
                                      batch_size=s.clf_batch, epochs=epochs, tta=s.clf_tta, seed=ctx.seed + clf,
                                      lr=s.clf_lr, augment=augmentation(s.clf_augment),
                                      batch_shares=None if shares is None else (shares, 1 - shares),
                                      progress=ctx.progress)
    save_model(model, folder / "model.npz")
    metrics = {"real_images": real, "synthetic_set": synthetic, "n_images": int(n), **metrics}
    if "warning" in metrics:             # the advice names run_all.py's options, not classify's
        metrics["warning"] = did_not_learn(metrics["history"], "--seed", "--set clf_lr") or metrics["warning"]
    atomic_write_json(folder / "metrics.json", metrics)
    acc = metrics["test_accuracy"]
    note = f"test accuracy {100 * acc:.1f} % ({metrics['steps']} steps on {n} images)"
    if "warning" in metrics:
        note += f"; warning: {metrics['warning']}"
    return {"test_accuracy": acc, "n_images": int(n), "steps": metrics["steps"], "note": note}


def real_share(settings, real, synthetic):
    """The share of real images in every batch of a classifier (mix_real_share), or None: in proportion to the
    counts (always so where the classifier sees only real or only synthetic images)."""
    return settings.mix_real_share if real != 0 and synthetic else None


def classifier_points(ctx, n_train):
    """[(real, synthetic, clf)]: the table's rows (clf_seeds classifiers each, on each DCGAN set for
    its row), then the mixing curve's other points (each once, with the first classifier seed)."""
    points = [(real, syn, clf) for _, real, row_set in TABLE_ROWS for syn, clf in table_runs(ctx.settings, row_set)]
    return points + [(real, syn, 0) for real, syn in mixing_points(ctx.settings, n_train)
                     if (real, syn, 0) not in points]


def classifier_stage(ctx, real, synthetic, clf=0):
    s = ctx.settings
    settings = {"real_images": real, "synthetic_set": synthetic, "steps": s.clf_steps, "arch": s.clf_arch,
                "widths": list(s.clf_widths), "batch_size": s.clf_batch, "lr": s.clf_lr, "augment": s.clf_augment,
                "tta": s.clf_tta, "seed": ctx.seed + clf, "backend": ctx.backend,
                **given(real_share=real_share(s, real, synthetic))}     # absent when proportional
    deps = ("data",) + ((set_stage(synthetic)[0],) if synthetic else ())
    what = (f"ConvNet on {real} real images" + (f" + the {synthetic} set" if synthetic else "")
            + (f", classifier seed +{clf}" if clf else ""))
    return Stage(classifier_name(real, synthetic, clf), partial(run_classifier, ctx, real, synthetic, clf), settings,
                 deps, what=what)


# ---------------------------------------------------------------------------------- the plan

LATER_FLAGS = ("conditional", "d_standardize", "d_conditional", "flow_weight", "lr_flow", "lambda_final")
"""Switches (and weights whose 0 means off) added to `gan`'s and `gan.simgan`'s configs after results folders existed
(the experiment never turns `conditional` on). A stage key leaves each out while it is off, so that such folders
resume their stages instead of training them again."""


def stage_key(config):
    """A config dataclass as a stage is keyed on it: its fields, without the LATER_FLAGS that are off."""
    return {k: v for k, v in asdict(config).items() if not (k in LATER_FLAGS and not v)}


def dcgan_key(ctx, g):
    """The g-th set's DCGAN settings as its stages are keyed on them (see `stage_key`)."""
    return stage_key(dcgan_config(ctx, g))


def simgan_key(ctx):
    """The SimGAN settings as the `simgan` stage is keyed on them (see `stage_key`)."""
    return stage_key(SimGANConfig(**simgan_settings(ctx)))


def plan(ctx, n_train):
    """Every stage after `data`, in order (n_train: the real training images the data stage chose)."""
    s, seed, be = ctx.settings, ctx.seed, ctx.backend
    stages = [
        Stage("procedural", partial(run_procedural, ctx),
              {"n": s.procedural_n, "seed": seed, "procedural": asdict(ProceduralSettings())},
              what="procedural training set, Figure 6"),
        Stage("simgan", partial(run_simgan, ctx), {**simgan_key(ctx), "backend": be},
              ("data", "procedural"), resumable=True, what="SimGAN refiner, refined procedural set"),
    ]
    for g in range(s.dcgan_seeds):                              # sets of ten DCGANs, GAN seed = seed + g
        of_set = f" (GAN seed +{g})" if g else ""
        if dcgan_together(ctx):                                 # one stage, the ten as one grouped model
            stages.append(Stage(dcgan_group_stage(g), partial(run_dcgan_digits, ctx, g),
                                {"config": dcgan_key(ctx, g), "iters_digit5": dcgan_iterations(ctx, 5, g),
                                 "backend": be}, ("data",), resumable=True,
                                what="the ten DCGANs together" + (", Figures 7-8" if g == 0 else "") + of_set))
        else:
            stages += [Stage(dcgan_stage(d, g), partial(run_dcgan_digit, ctx, d, g),
                             {"config": {**dcgan_key(ctx, g), "iters": dcgan_iterations(ctx, d, g)},
                              "set_iters": s.dcgan_iters, "backend": be},
                             ("data",), resumable=True,
                             what=f"the DCGAN of digit {d}" + (", Figures 7-8" if d == 5 and g == 0 else "") + of_set)
                       for d in (5, 0, 1, 2, 3, 4, 6, 7, 8, 9)]     # the longest first, for parallel runs
        stages.append(Stage("dcgan_set" + gan_tag(g), partial(run_dcgan_set, ctx, g),
                            {"per_digit": s.dcgan_per_digit, "seed": seed + g, "backend": be},
                            tuple(dict.fromkeys(dcgan_stage_of(ctx, d, g) for d in range(10))),
                            what="the DCGAN training set" + of_set))
    stages += [classifier_stage(ctx, real, syn, clf) for real, syn, clf in classifier_points(ctx, n_train)]
    labels = {"preset": ctx.preset, "backend": be, "settings": s.as_dict(), "seed": seed}
    stages.append(Stage("report", partial(run_report, ctx), labels, tuple(["data"] + [st.name for st in stages]),
                        what="table.md, results.json, figures"))
    return stages


def default_jobs(backend_name):
    """Stages run at once by default: one per CPU core on NumPy, one on a GPU (CuPy)."""
    if backend_name != "numpy":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def check_settings(ctx, redo=()):
    """Everything that can be checked before the data stage: the settings as the DCGAN and SimGAN
    packages will read them, and the --redo patterns (against every stage the plan can hold).
    Raises a one-line ValueError naming run_all.py's own options."""
    ctx.settings.check()
    try:
        dcgan_config(ctx).check()
    except ValueError as exc:
        raise ValueError(f"--set: the dcgan_* settings do not work together: {exc}") from None
    try:
        SimGANConfig(**simgan_settings(ctx)).check()
    except ValueError as exc:
        text = re.sub(r"\b(" + "|".join(SIMGAN_SETTING) + r")\b", lambda m: SIMGAN_SETTING[m.group(1)], str(exc))
        raise ValueError(f"--set: the simgan_* settings do not work together: {text.split(' (or use')[0]}") from None
    names = ["data"] + [st.name for n in (0, 10 ** 12) for st in plan(ctx, n)]   # 0: every count is "all"
    _matching(redo, list(dict.fromkeys(names)))
    return ctx


def run_experiment(settings, out="results", data_dir=None, backend_name="numpy", seed=0, preset="custom",
                   progress=True, log=print, redo=(), jobs=1, threads=None, tf32=False):
    """Run (or resume) the whole experiment into `out`; returns the Runner (its `manifests` and
    `actions`: {stage: "ran" | "skipped"}). `redo`: stage names or patterns (classify_*) to redo.
    jobs: stages run at once, in worker processes (1: all in this process, in order). threads:
    nn.parallel's thread count in every stage (None: its default). tf32: TF32 matrix products on
    the GPU in every stage. Every setting and pattern is
    checked before the first stage runs; a run that fails leaves no empty folders behind."""
    started = time.perf_counter()
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    if int(seed) < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    ctx = Context(settings=settings, out=Path(out), data_dir=data_dir, backend=backend_name, seed=int(seed),
                  preset=preset, progress=progress, log=log, jobs=jobs, threads=threads, tf32=bool(tf32))
    check_settings(ctx, redo)
    backend.reuse_freed_memory()
    backend.set_tf32(tf32)
    backend.set_backend(backend_name)
    parallel.set_threads(threads)
    created = [p for p in (ctx.out, ctx.out / "stages") if not p.exists()]
    try:
        runner = _run_stages(ctx, redo, jobs)
    except BaseException:
        for folder in reversed(created):          # folders this run made and left empty
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    ran = sum(a == "ran" for a in runner.actions.values())
    log(f"done in {time.perf_counter() - started:.1f} s: {ran} stage(s) ran, {len(runner.actions) - ran} skipped; "
        f"see {ctx.out / 'table.md'}")
    return runner


def _run_stages(ctx, redo, jobs):
    first = data_stage(ctx)
    runner = Runner(ctx.out / "stages", log=ctx.log, progress=ctx.progress)
    runner.force = _matching(redo, [first.name], allow_unmatched=True)
    runner.run(first, 1)
    stages = plan(ctx, runner.manifests["data"]["summary"]["n_train"])
    runner.force |= _matching(redo, [first.name] + [st.name for st in stages], allow_unmatched=True)
    runner.run_many(stages, jobs=jobs, first_index=2, total=len(stages) + 1)
    publish_report(ctx, runner.manifests["report"])
    return runner


def _matching(patterns, names, allow_unmatched=False):
    chosen = set()
    for pattern in patterns or ():
        hits = {n for n in names if fnmatch(n, pattern)}
        if not hits and not allow_unmatched:
            raise ValueError(f"--redo {pattern}: no stage of that name (stages: {', '.join(names)})")
        chosen |= hits
    return chosen
