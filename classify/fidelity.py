"""Label fidelity: does a classifier trained on real images see digit k in the images made as digit k?

    report = fidelity("runs/dcgan", data_dir="svhn_data")      # {"mean": .., "per_digit": ..}
    label_fidelity(lambda x: predict_labels(model, x), x, y)   # any labelled synthetic set

It needs both a generator (`gan`) and a classifier (this package), so it lives here, above `gan`.
Command line: `python -m classify fidelity --help`.
"""
import json
from pathlib import Path

import numpy as np

from common.files import atomic_write_json, check_output_path
from gan import load_config, sample

from classify.evaluate import predict_labels
from classify.model import load_model, save_model
from classify.train import train_classifier

FIDELITY_FILE = "fidelity.json"
CLASSIFIER_FILE = "fidelity_classifier.npz"


def train_reference_classifier(data_dir, seed=0, progress=True, steps=None):
    """The ConvNet (its default recipe; `steps`: fewer optimizer steps than its default, to save
    time on a CPU) trained on the real training images."""
    settings = {"min_steps": int(steps)} if steps else {}
    model, _ = train_classifier(["real"], data_dir=str(data_dir) if data_dir else None, seed=seed,
                                progress=progress, **settings)
    return model


def get_classifier(path, data_dir, seed=0, progress=True, log=print, steps=None):
    """Load the classifier saved at `path`, or train it on the real training images and save it there."""
    path = Path(path)
    if path.is_file():
        model = load_model(path)
        log(f"classifier: loaded {path}")
        return model
    log(f"classifier: training the classify ConvNet on the real training images of {data_dir} "
        f"(saved to {path})")
    model = train_reference_classifier(data_dir, seed=seed, progress=progress, steps=steps)
    save_model(model, path)
    return model


def label_fidelity(predict, x, y):
    """Fraction of generated images of each digit that `predict` (uint8 images -> digits) labels as
    that digit. Returns {"mean": mean over digits, "per_digit": {digit: fraction}, "n": ...}."""
    pred = np.asarray(predict(x))
    per_digit = {int(d): float((pred[y == d] == d).mean()) for d in np.unique(y)}
    return {"mean": float(np.mean(list(per_digit.values()))), "per_digit": per_digit, "n": int(len(y))}


def fidelity(run_dir, data_dir=None, classifier_path=None, per_digit=500, digits=None, seed=0,
             progress=True, log=print, classifier_steps=None):
    """Label fidelity of a DCGAN run's generators: a classifier trained on the real training images
    (the ConvNet, trained once and kept at `classifier_path`, default RUN_DIR/fidelity_classifier.npz)
    labels `per_digit` generated images of each digit. Writes RUN_DIR/fidelity.json and returns the
    same dict."""
    classifier_path = Path(classifier_path or Path(run_dir) / CLASSIFIER_FILE)
    load_config(run_dir)                     # not a DCGAN run folder: one line naming it
    check_output_path(Path(run_dir) / FIDELITY_FILE, "file")
    if classifier_path.is_file():
        load_model(classifier_path)          # an unreadable classifier is reported before any work
    else:
        check_output_path(classifier_path, "file", "--classifier")
    x, y = sample(run_dir, per_digit, digits, seed, progress=progress, log=log)
    model = get_classifier(classifier_path, data_dir, seed=seed, progress=progress, log=log, steps=classifier_steps)
    result = label_fidelity(lambda images: predict_labels(model, images), x, y)
    result.update({"per_digit_images": per_digit, "seed": seed, "classifier": str(classifier_path)})
    atomic_write_json(Path(run_dir) / FIDELITY_FILE, result)
    return result


def read_fidelity(run_dir):
    path = Path(run_dir) / FIDELITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None
