"""Does refining help? The ConvNet trained on N refined images against the one trained on the same N
raw procedural images, both tested on real SVHN images neither saw in training.

    report = compare("runs/simgan", proc_x, proc_y, data_dir="svhn_data", n=7000, seeds=(0, 1, 2))
    report["mean"]["refined"]["test"] - report["mean"]["procedural"]["test"]

Two real test sets: SVHN's test split ("test", the fair one: the refiner never saw it) and the
test split together with the training split ("train+test"; the refiner's discriminator saw the
training images, so it is reported but is not a clean test). The classifier is `classify`'s
default recipe; only its seed changes between repeats. Optionally, label fidelity: how often a
ConvNet trained on the real training images labels raw and refined images with their procedural
label (does the refiner keep the digit?).
It needs both the refiner (`gan.simgan`) and the classifier (this package), so it lives here, above
`gan`. Command line: `python -m classify compare-simgan --help`.
"""
import json
import time
from pathlib import Path

import numpy as np

import svhn
from common.files import atomic_write_json
from gan.simgan import refine

from classify.evaluate import evaluate, predict_labels
from classify.fidelity import CLASSIFIER_FILE, get_classifier, label_fidelity
from classify.train import train_classifier

COMPARE_FILE = "compare.json"

SETS = ("procedural", "refined")


def real_test_sets(data_dir):
    """{"test": (x, y), "train+test": (x, y)} from the SVHN files in data_dir."""
    x_tr, y_tr = svhn.load("train", data_dir)
    x_te, y_te = svhn.load("test", data_dir)
    return {"test": (x_te, y_te), "train+test": (np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te]))}


def image_statistics(x):
    """A few numbers that tell image sets apart, each a mean over the images (uint8 NHWC in, 0..255 scale):
    brightness  mean grey level;          contrast   standard deviation of the grey levels in an image;
    saturation  mean of max - min over the three colour channels of a pixel;
    detail      mean |grey - its 3×3 box blur| (edges, texture and noise: high for sharp, noisy images)."""
    x = np.asarray(x, dtype=np.float32)
    grey = x.mean(axis=3)
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blur = sum(padded[:, i:i + 32, j:j + 32] for i in range(3) for j in range(3)) / 9
    return {"brightness": float(grey.mean()), "contrast": float(grey.std(axis=(1, 2)).mean()),
            "saturation": float((x.max(axis=3) - x.min(axis=3)).mean()), "detail": float(np.abs(grey - blur).mean())}


def accuracies(model, tests):
    """{test set name: accuracy} of a trained classifier (classify's evaluate, with its TTA)."""
    return {name: float(evaluate(model, x, y)["accuracy"]) for name, (x, y) in tests.items()}


def compare(run_dir, proc_x, proc_y, data_dir, n=None, seeds=(0,), sets=SETS, progress=True, log=print,
            fidelity=False, **classifier_settings):
    """Train the classifier on the first `n` procedural images and on their refined versions, once per
    seed, and test both on the real test sets. Writes RUN_DIR/compare.json and returns it:
    {"runs": [{seed, set, test, train+test, seconds}], "mean": {set: {test set: mean accuracy}}, ...}.
    sets: which training sets to run ("procedural", "refined"; the raw baseline does not depend on
    the run, so a second run can skip it). classifier_settings: TrainConfig fields for
    `classify.train_classifier` (e.g. min_steps).
    """
    n = len(proc_x) if n is None else int(n)
    if not 1 <= n <= len(proc_x):
        raise ValueError(f"n must be in 1..{len(proc_x)} (the procedural images given), got {n}")
    unknown = set(sets) - set(SETS)
    if unknown or not sets:
        raise ValueError(f"sets must be some of {', '.join(SETS)}, got {', '.join(sets) or 'none'}")
    x_raw, y = proc_x[:n], np.asarray(proc_y[:n])
    started = time.perf_counter()
    x_ref = refine(run_dir, x_raw, progress=progress)
    change = float(np.abs(x_ref.astype(np.float32) - x_raw).mean())
    log(f"refined {n} images in {time.perf_counter() - started:.0f} s; "
        f"mean |refined - procedural| = {change:.2f} grey levels")
    tests = real_test_sets(data_dir)
    report = {"run": str(run_dir), "n": n, "data_dir": str(data_dir),
              "classifier_settings": classifier_settings, "mean_abs_change_grey_levels": change,
              "image_statistics": {"procedural": image_statistics(x_raw), "refined": image_statistics(x_ref),
                                   "real (train+test)": image_statistics(tests["train+test"][0])},
              "test_sets": {k: int(len(v[1])) for k, v in tests.items()}, "runs": []}
    earlier = _earlier_report(Path(run_dir) / COMPARE_FILE, report)
    redo = {(int(s), name) for s in seeds for name in sets}
    report["runs"] = [r for r in earlier.get("runs", []) if (r["seed"], r["set"]) not in redo]
    if "label_fidelity" in earlier:
        report["label_fidelity"] = earlier["label_fidelity"]
    for seed in seeds:
        for name, x in zip(SETS, (x_raw, x_ref)):
            if name not in sets:
                continue
            t0 = time.perf_counter()
            model, metrics = train_classifier([(x, y)], seed=seed, progress=progress, **classifier_settings)
            row = {"seed": int(seed), "set": name, **accuracies(model, tests),
                   "seconds": round(time.perf_counter() - t0, 1)}
            if "warning" in metrics:
                row["warning"] = metrics["warning"]
            report["runs"].append(row)
            log(json.dumps(row))
            _summarise(report)
            atomic_write_json(Path(run_dir) / COMPARE_FILE, report)
    if fidelity:
        report["label_fidelity"] = label_fidelity_of(x_raw, x_ref, y, data_dir, run_dir, progress, log)
        atomic_write_json(Path(run_dir) / COMPARE_FILE, report)
    return report


def _earlier_report(path, report):
    """An earlier compare.json made with the same n, classifier settings, test sets and refiner (the same
    mean change, as refining is deterministic) ({} if none),
    so that separate calls (say, the raw baseline once, then the refined set, or more seeds) add up to
    one report: its rows are kept except the (seed, set) pairs being redone."""
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    same = ("n", "classifier_settings", "test_sets", "mean_abs_change_grey_levels")
    return old if all(old.get(k) == report[k] for k in same) else {}


def _summarise(report):
    """Means over the seeds done so far, per training set and test set."""
    report["mean"] = {}
    for name in SETS:
        rows = [r for r in report["runs"] if r["set"] == name]
        if rows:
            report["mean"][name] = {t: float(np.mean([r[t] for r in rows])) for t in report["test_sets"]}
            report["mean"][name]["repeats"] = len(rows)


def label_fidelity_of(x_raw, x_ref, y, data_dir, run_dir, progress=True, log=print):
    """Fraction of raw and of refined images that a ConvNet trained on the real training images
    labels with their procedural label (the classifier is kept at RUN_DIR/fidelity_classifier.npz)."""
    model = get_classifier(Path(run_dir) / CLASSIFIER_FILE, data_dir, progress=progress, log=log)
    return {name: label_fidelity(lambda images: predict_labels(model, images), x, y)["mean"]
            for name, x in zip(SETS, (x_raw, x_ref))}
