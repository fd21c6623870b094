"""The experiment's report: table.md, results.json and the figures, from the stages' outputs.

    OUT/table.md        our accuracies beside the paper's (86 / 63 / 77 %), the mixing curve, timings
    OUT/results.json    every number, the settings, timings, backend and package versions
    OUT/figures/        fig6_procedural, fig7_dcgan_digit5, fig8_dcgan_digit5_iterations, dcgan_samples,
                        dcgan_digit_K (one grid per digit), simgan_pairs, confusion_matrices,
                        losses_dcgan, losses_simgan, losses_classifiers, accuracy_table, mixing_curve

The report stage writes them into its own stage folder; `publish_report` copies them to OUT.
"""
import json
import os
import platform
import shutil
import subprocess
import textwrap
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from common.figures import pyplot, save_figure
from common.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from gan import FIGURE_ITERATIONS, log_path, plot_losses, read_log, samples_path
from gan.simgan import LOSSES_FILE, PAIRS_FILE
from classify import draw_confusion, load_model, predict_labels
from experiment.layout import (TABLE_ROWS, classifier_name, dcgan_config, dcgan_run, dcgan_stage_of, mixing_points,
                               table_runs)
from experiment.stages import publish

PAPER = {"real": 0.86, "procedural": 0.63, "dcgan": 0.77, "simgan": None}
"""The paper's test accuracies (ConvNet trained on each set, tested on the real SVHN test set)."""
ROW_NAMES = {"real": "real SVHN", "procedural": "procedural (the paper's simple method)",
             "dcgan": "DCGAN (10 GANs, one per digit)", "simgan": "SimGAN-refined procedural"}
SET_NAMES = {None: "real only", "procedural": "+ procedural", "dcgan": "+ DCGAN", "simgan": "+ SimGAN"}
TITLE_STRIP = 16            # pixels of title above a grid drawn by svhn.imageset.save_grid_png
FIDELITY_IMAGES = 2000      # synthetic images per set whose labels the real-trained classifier checks


# ---------------------------------------------------------------------------------- collecting numbers

def stage_metrics(ctx, name):
    return json.loads((ctx.stage_dir(name) / "metrics.json").read_text())


def collect(ctx, upstream):
    """Every number of the run as one JSON-ready dict (results.json)."""
    data = upstream["data"]["summary"]
    table = [table_row(ctx, row, real, syn) for row, real, syn in TABLE_ROWS]
    mixing = []
    for real, syn in mixing_points(ctx.settings, data["n_train"]):
        name = classifier_name(real, syn)
        m = stage_metrics(ctx, name)
        mixing.append({"real_images": data["n_train"] if real == "all" else real, "all_real": real == "all",
                       "synthetic_set": syn, "n_images": m["n_images"], "test_accuracy": m["test_accuracy"],
                       "per_digit_accuracy": m["per_digit_accuracy"], "stage": name})
    mixing.sort(key=lambda p: (p["real_images"], str(p["synthetic_set"])))
    stages = {name: {"what": m.get("what", ""), "seconds": m["seconds"], "cpu_seconds": m.get("cpu_seconds"),
                     "resumed": m.get("resumed", False), "finished": m["finished"],
                     "this_run": m.get("finished_unix", 0) >= ctx.started, "note": m["summary"].get("note", "")}
              for name, m in upstream.items()}
    ran = sum(s["this_run"] for s in stages.values())
    return {
        "preset": ctx.preset, "backend": ctx.backend, "seed": ctx.seed,
        "data": {"data_dir": data.get("data_dir"), **data},
        "settings": ctx.settings.as_dict(),
        "table": table,
        "mixing_curve": mixing,
        "label_fidelity": label_fidelity(ctx),
        "dcgan": dcgan_summary(ctx, upstream),
        "simgan": upstream["simgan"]["summary"],
        "stages": stages,
        "run_time_s": round(sum(s["seconds"] for s in stages.values()), 1),
        "this_run": {"wall_s_to_report": round(time.time() - ctx.started, 1), "stages_ran": ran,
                     "stages_reused": len(stages) - ran, "jobs": ctx.jobs},
        "versions": versions(ctx.backend),
        "machine": machine(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def mean_and_se(values):
    """The mean of `values` and its standard error (sample SD / sqrt(n); None for one value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None)


def table_row(ctx, row, real, synthetic):
    """One row of the table: the mean test accuracy of the ConvNets behind it (clf_seeds classifier
    seeds on each of its sets: dcgan_seeds sets for the DCGAN row) with its standard error, the mean
    per-digit accuracy, the summed confusion matrix, and the first ConvNet's training curve."""
    runs = table_runs(ctx.settings, synthetic)
    names = [classifier_name(real, syn, clf) for syn, clf in runs]
    ms = [stage_metrics(ctx, name) for name in names]
    accuracy, se = mean_and_se([m["test_accuracy"] for m in ms])
    per_digit = [None if any(m["per_digit_accuracy"][d] is None for m in ms)
                 else float(np.mean([m["per_digit_accuracy"][d] for m in ms])) for d in range(10)]
    return {"row": row, "training_set": ROW_NAMES[row], "stage": names[0], "stages": names,
            "n_images": ms[0]["n_images"], "test_accuracy": accuracy, "test_accuracy_se": se,
            "test_accuracies": [m["test_accuracy"] for m in ms], "paper_accuracy": PAPER[row],
            "classifier_seeds": ctx.settings.clf_seeds,
            "gan_seeds": ctx.settings.dcgan_seeds if synthetic == "dcgan" else None,
            "per_digit_accuracy": per_digit,
            "confusion_matrix": np.sum([m["confusion_matrix"] for m in ms], axis=0).tolist(),
            "steps": ms[0]["steps"], "val_accuracy": ms[0].get("val_accuracy"), "history": ms[0].get("history", [])}


def dcgan_summary(ctx, upstream):
    """Iterations and final state of each digit's DCGAN; the digits that stopped early, with the reason."""
    per = {}
    for d in range(10):
        summary = upstream[dcgan_stage_of(ctx, d)]["summary"]
        per[d] = summary["digits"][str(d)] if "digits" in summary else summary     # a grouped stage's: all ten
    return {"iterations": {str(d): p["iterations"] for d, p in per.items()},
            "state": {str(d): p["status"]["state"] for d, p in per.items()},
            "real_images": {str(d): p["n_real"] for d, p in per.items()},
            "stopped": {str(d): p["status"]["message"] for d, p in per.items() if p["status"]["state"] != "done"}}


def label_fidelity(ctx):
    """How often the ConvNet trained on the real images labels each synthetic set's images with the
    digit they were made as (up to FIDELITY_IMAGES per set, single view): does the set show its digits?"""
    model = load_model(ctx.stage_dir(classifier_name("all", None)) / "model.npz")
    out = {}
    for name in ("procedural", "dcgan", "simgan"):
        x, y = ctx.image_set(name)
        keep = np.sort(np.random.default_rng([ctx.seed, 13]).permutation(len(y))[:FIDELITY_IMAGES])
        pred = predict_labels(model, x[keep], tta=False)
        per_digit = [float((pred[y[keep] == d] == d).mean()) if (y[keep] == d).any() else None for d in range(10)]
        out[name] = {"mean": float((pred == y[keep]).mean()), "per_digit": per_digit, "n": int(len(keep))}
    return out


def versions(backend_name):
    """Versions of Python and the packages the run used (CuPy's only where it is installed)."""
    v = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "matplotlib", "pillow", "tqdm", "cupy-cuda12x", "cupy-cuda13x", "cupy"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        root = Path(__file__).resolve().parents[1]
        v["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                         text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        v["git_commit"] = None
    if backend_name == "cupy":
        try:
            import cupy
            v["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception as exc:          # reporting only: never fail the run for a version string
            v["gpu"] = f"unknown ({type(exc).__name__})"
    return v


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    return {"platform": platform.platform(), "processor": cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average_at_report": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"}


# ---------------------------------------------------------------------------------- table.md

def pct(a):
    return "—" if a is None else f"{100 * a:.1f} %"


def pct_se(a, se):
    """'73.6 % ± 0.8' (mean and standard error, in points), or '73.6 %' when there is one run."""
    return pct(a) if se is None else f"{100 * a:.1f} % ± {100 * se:.1f}"


def seeds_text(t):
    """How many runs stand behind a table row: '3 classifier seeds', '2 GAN × 3 classifier seeds'."""
    c = t["classifier_seeds"]
    text = f"{c} classifier seed" + ("s" if c > 1 else "")
    return text if t["gan_seeds"] is None else f"{t['gan_seeds']} GAN × {text}"


def paper_pct(a):
    return "—" if a is None else f"{100 * a:.0f} %"


def run_time_line(r):
    t = r["this_run"]
    where = (f"on {r['machine']['processor']} ({r['machine']['cpu_count']} CPUs"
             + (f", GPU {r['versions']['gpu']}" if "gpu" in r["versions"] else "") + ")")
    if t["stages_reused"] == 0:
        first = f"Run time: {t['wall_s_to_report'] / 60:.1f} min wall, every stage run ({t['jobs']} at a time), {where}"
    else:
        first = (f"Run time of the last invocation: {t['wall_s_to_report'] / 60:.1f} min wall ({t['stages_ran']} "
                 f"stages run, {t['stages_reused']} reused from earlier runs; {t['jobs']} at a time), {where}")
    return first + f"; the stages' own times add up to {r['run_time_s'] / 60:.1f} min."


def table_markdown(r):
    d = r["data"]
    lines = [
        "# Training on synthetic images, testing on real SVHN",
        "",
        f"Preset **{r['preset']}**, backend **{r['backend']}**, seed {r['seed']}; data `{d['data_dir']}` "
        f"({d['n_train']:,} real training images, {d['n_test']:,} real test images; the paper: 73,257 and 26,032).",
        run_time_line(r),
        "",
        "| training set | training images | our test accuracy | seeds behind it | paper |",
        "|---|---:|---:|---|---:|",
    ]
    lines += [f"| {t['training_set']} | {t['n_images']:,} | {pct_se(t['test_accuracy'], t['test_accuracy_se'])} | "
              f"{seeds_text(t)} | {paper_pct(t['paper_accuracy'])} |" for t in r["table"]]
    lines += ["", "Each row: the paper's ConvNet (6 conv, 3 pool, 1 dense; `classify`) trained on that set alone and "
              "tested on the real test images; the mean over the seeds behind it, ± its standard error where there "
              "is more than one run (more: `--set clf_seeds=3 --set dcgan_seeds=2`). The DCGAN row's GAN seeds are "
              "independent sets of ten DCGANs, each sampled into its own training set."]
    fid = r["label_fidelity"]
    lines += ["", "Label fidelity (the ConvNet trained on the real images labels each synthetic set's images with the "
              "digit they were made as): " + ", ".join(f"{k} {pct(v['mean'])}" for k, v in fid.items()) + "."]
    lines += ["", "## Mixing curve: real training images with and without synthetic ones", ""]
    lines += mixing_markdown(r["mixing_curve"], [None] + r["settings"]["mix_synthetic"])
    stopped = r["dcgan"].get("stopped") or {}
    if stopped:
        lines += ["", "DCGAN digits stopped early (the set samples each from its last checkpoint, or digit 5 from "
                  "its copy at dcgan_iters when that was reached): "
                  + "; ".join(f"{d}: {m}" for d, m in stopped.items())]
    lines += ["", "## Stages", "", "| stage | seconds | CPU seconds | what it did |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {s['seconds']:.1f} | {s['cpu_seconds'] or 0:.1f} | {s['note']} |"
              for name, s in r["stages"].items()]
    lines += ["", f"Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v) + ".", ""]
    return "\n".join(lines)


def mixing_markdown(points, sets):
    """Rows: numbers of real images; columns: the synthetic set added (none first)."""
    by = {(p["real_images"], p["synthetic_set"]): p for p in points}
    reals = sorted({p["real_images"] for p in points})
    lines = ["| real images | " + " | ".join(SET_NAMES[s] for s in sets) + " |",
             "|---:|" + "---:|" * len(sets)]
    for k in reals:
        lines.append(f"| {k:,} | " + " | ".join(pct(by[(k, s)]["test_accuracy"]) if (k, s) in by else "—"
                                               for s in sets) + " |")
    return lines


# ---------------------------------------------------------------------------------- figures

def _save(fig, path):
    save_figure(fig, path, dpi=100)


def copy_figure(src, dst):
    if Path(src).is_file():
        atomic_write_bytes(dst, Path(src).read_bytes())
        return True
    return False


def figure_dcgan_iterations(run_dir, digit, path):
    """The paper's Figure 8 (and 7): digit 5's fixed-noise samples at iterations 1, 51, 76, 201, 401, 701."""
    from PIL import Image
    found = [(i, samples_path(run_dir, digit, i)) for i in FIGURE_ITERATIONS]
    found = [(i, p) for i, p in found if p.is_file()]
    if not found:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, len(found), figsize=(max(7.0, 2.6 * len(found)), 3.2), squeeze=False)
    for ax, (i, p) in zip(axes[0], found):
        image = np.asarray(Image.open(p).convert("RGB"))[TITLE_STRIP:]   # below the grid's title
        ax.imshow(image, interpolation="nearest")
        ax.set_title(f"iteration {i}", fontsize=10)
        ax.axis("off")
    fig.suptitle("DCGAN digit 5, fixed noise, across training (the paper's Figures 7-8)")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    _save(fig, path)
    return True


def figure_dcgan_losses(ctx, path):
    """Every digit's DCGAN loss curves and D's accuracies (gan's plot)."""
    logs = {d: read_log(log_path(dcgan_run(ctx, d), d)) for d in range(10)}
    plot_losses(path, logs, f"DCGAN per digit, loss {dcgan_config(ctx).loss}")


def figure_confusions(table, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(table), figsize=(4.2 * len(table), 4.2), squeeze=False)
    for ax, t in zip(axes[0], table):
        draw_confusion(ax, t["confusion_matrix"], fontsize=6)
        ax.set_title(f"{t['row']}: {pct(t['test_accuracy'])}", fontsize=10)
    fig.suptitle("Confusion matrices on the real test images (rows: true digit; summed over each row's ConvNets)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    _save(fig, path)


def figure_classifier_curves(table, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for t in table:
        h = t["history"]
        if not h:
            continue
        steps = [e["step"] for e in h]
        axes[0].plot(steps, [e["train_loss"] for e in h], label=t["row"], lw=1)
        if all("val_accuracy" in e for e in h):
            axes[1].plot(steps, [e["val_accuracy"] for e in h], label=t["row"], lw=1)
    axes[0].set_title("training loss (smoothed)")
    axes[1].set_title("validation accuracy (held-out part of the training set)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def figure_accuracy_bars(table, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(table))
    ours = [100 * t["test_accuracy"] for t in table]
    errors = [0 if t["test_accuracy_se"] is None else 100 * t["test_accuracy_se"] for t in table]
    paper = [np.nan if t["paper_accuracy"] is None else 100 * t["paper_accuracy"] for t in table]
    ax.bar(x - 0.2, ours, 0.4, yerr=errors, capsize=3, label="ours (± standard error over seeds)")
    ax.bar(x + 0.2, paper, 0.4, label="paper")
    for xi, v, e in zip(x, ours, errors):
        ax.text(xi - 0.2, v + e + 1, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, [textwrap.fill(t["row"], 12, break_long_words=False) for t in table], fontsize=8)
    ax.set_ylabel("test accuracy on real SVHN (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("ConvNet trained on each set, tested on real images")
    fig.tight_layout()
    _save(fig, path)


def figure_mixing(points, n_train, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for s in sorted({p["synthetic_set"] for p in points}, key=lambda s: (s is not None, str(s))):
        mine = sorted((p for p in points if p["synthetic_set"] == s), key=lambda p: p["real_images"])
        ax.plot([p["real_images"] for p in mine], [100 * p["test_accuracy"] for p in mine], "o-",
                label=SET_NAMES[s])
    ax.set_xscale("symlog", linthresh=max(1, min([p["real_images"] for p in points if p["real_images"]] or [1])))
    ticks = sorted({p["real_images"] for p in points})
    ax.set_xticks(ticks, [f"{k:,}" for k in ticks])          # the curve's own points, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel(f"real training images (all = {n_train:,})")
    ax.set_ylabel("test accuracy on real SVHN (%)")
    ax.set_title("Can synthetic images stand in for labelled real ones?")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def write_figures(ctx, r, figures):
    figures.mkdir(parents=True, exist_ok=True)
    d5 = dcgan_run(ctx, 5)
    copy_figure(ctx.stage_dir("procedural") / "fig6_procedural.png", figures / "fig6_procedural.png")
    last = max([i for i in FIGURE_ITERATIONS if samples_path(d5, 5, i).is_file()] or [0])
    copy_figure(samples_path(d5, 5, 701 if last == 701 else None),
                figures / "fig7_dcgan_digit5.png")
    figure_dcgan_iterations(d5, 5, figures / "fig8_dcgan_digit5_iterations.png")
    copy_figure(ctx.stage_dir("dcgan_set") / "samples.png", figures / "dcgan_samples.png")
    for k in range(10):
        copy_figure(ctx.stage_dir("dcgan_set") / f"digit_{k}.png", figures / f"dcgan_digit_{k}.png")
    copy_figure(ctx.stage_dir("simgan") / "run" / PAIRS_FILE, figures / "simgan_pairs.png")
    figure_dcgan_losses(ctx, figures / "losses_dcgan.png")
    copy_figure(ctx.stage_dir("simgan") / "run" / LOSSES_FILE, figures / "losses_simgan.png")
    figure_confusions(r["table"], figures / "confusion_matrices.png")
    figure_classifier_curves(r["table"], figures / "losses_classifiers.png")
    figure_accuracy_bars(r["table"], figures / "accuracy_table.png")
    figure_mixing(r["mixing_curve"], r["data"]["n_train"], figures / "mixing_curve.png")


# ---------------------------------------------------------------------------------- the stage

def run_report(ctx, folder, upstream):
    """The report stage: results.json, table.md and figures/ in the stage folder."""
    r = collect(ctx, upstream)
    write_figures(ctx, r, folder / "figures")
    r["figures"] = sorted(p.name for p in (folder / "figures").glob("*.png"))
    for t in r["table"]:
        t.pop("history")            # in each classifier's metrics.json; too long for results.json
    atomic_write_json(folder / "results.json", r)
    atomic_write_text(folder / "table.md", table_markdown(r))
    rows = ", ".join(f"{t['row']} {pct_se(t['test_accuracy'], t['test_accuracy_se'])}" for t in r["table"])
    return {"note": rows}


def publish_report(ctx, manifest):
    """Copy the report stage's table.md, results.json and figures/ to OUT (each file atomically,
    the figures folder swapped in whole)."""
    src = ctx.stage_dir("report")
    for name in ("table.md", "results.json"):
        atomic_write_bytes(ctx.out / name, (src / name).read_bytes())
    tmp = ctx.out / f".figures.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "figures", tmp)
    publish(tmp, ctx.out / "figures")
