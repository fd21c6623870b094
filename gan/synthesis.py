"""Synthesis from trained DCGANs, and label fidelity: does a classifier see digit k in digit k's images?

    x, y = sample("runs/dcgan", per_digit=7300, digits=range(10), seed=0)   # uint8 NHWC, int64
    report = fidelity("runs/dcgan", data_dir="svhn_data")            # {"mean": .., "per_digit": ..}
"""
import json
from pathlib import Path

import numpy as np

from nn import backend
from gan.dcgan import Z_DIM, generate
from gan.train import digit_dir, load_generator, read_status


def trained_digits(run_dir):
    """Digits of the run that have a checkpoint."""
    return [d for d in range(10) if (digit_dir(run_dir, d) / "checkpoint.npz").is_file()]


def sample(run_dir, per_digit, digits=None, seed=0, batch_size=64, bn="batch", progress=False, log=None):
    """`per_digit` generated images of each digit (default: every trained digit), labelled with the
    digit whose generator made them. Deterministic under `seed` (the noise is drawn on the host).

    Returns (x uint8 (N, 32, 32, 3), y int64 (N,)), the image-set format.
    """
    from svhn.imageset import to_uint8
    if not Path(run_dir, "config.json").is_file():
        raise ValueError(f"{run_dir}: not a DCGAN run folder (no config.json)")
    per_digit = int(per_digit)
    if per_digit < 1:
        raise ValueError(f"per-digit count must be >= 1, got {per_digit}")
    digits = trained_digits(run_dir) if digits is None else list(digits)
    if not digits:
        raise ValueError(f"{run_dir}: no trained digit (no digit_*/checkpoint.npz)")
    xs, ys = [], []
    for digit in _maybe_progress(digits, progress):
        status = read_status(run_dir, digit)
        if status["state"] != "done" and log:
            log(f"digit {digit}: sampling from a generator whose training is {status['state']} "
                f"(iteration {status['iteration']})")
        G = load_generator(run_dir, digit)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(digit), 1]))
        n = -(-per_digit // batch_size) * batch_size          # whole batches: BatchNorm sees full ones
        z = backend.asarray(rng.standard_normal((n, Z_DIM)).astype(np.float32))
        images = backend.to_numpy(generate(G, z, batch_size=batch_size, bn=bn))[:per_digit]
        xs.append(to_uint8(images))
        ys.append(np.full(per_digit, digit, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _maybe_progress(items, enabled):
    from tqdm import tqdm
    return tqdm(items, desc="sampling", unit="digit", disable=not enabled)


# ----------------------------------------------------------------------------- label fidelity

def train_reference_classifier(data_dir, seed=0, progress=True, steps=None):
    """The ConvNet of the `classify` package (its default recipe; `steps`: fewer optimizer steps than
    its default, to save time on a CPU) trained on the real training images."""
    try:
        from classify import train_classifier
    except ImportError as exc:
        raise RuntimeError(f"label fidelity needs the classify package ({exc})") from None
    settings = {"min_steps": int(steps)} if steps else {}
    model, _ = train_classifier(["real"], data_dir=str(data_dir) if data_dir else None, seed=seed,
                                progress=progress, **settings)
    return model


def get_classifier(path, data_dir, seed=0, progress=True, log=print, steps=None):
    """Load the classifier saved at `path`, or train it on the real training images and save it there."""
    from classify import load_model, save_model
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
    """Label fidelity of a run's generators: a classifier trained on the real training images
    (the `classify` ConvNet, trained once and kept at `classifier_path`, default
    RUN_DIR/fidelity_classifier.npz) labels `per_digit` generated images of each digit.
    Writes RUN_DIR/fidelity.json and returns the same dict."""
    from classify import predict_labels
    from common.files import atomic_write_json
    from common.files import check_output_path
    classifier_path = Path(classifier_path or Path(run_dir) / "fidelity_classifier.npz")
    if not Path(run_dir, "config.json").is_file():
        raise ValueError(f"{run_dir}: not a DCGAN run folder (no config.json)")
    check_output_path(Path(run_dir) / "fidelity.json", "file")
    if classifier_path.is_file():
        from classify import load_model
        load_model(classifier_path)          # an unreadable classifier is reported before any work
    else:
        check_output_path(classifier_path, "file", "--classifier")
    x, y = sample(run_dir, per_digit, digits, seed, progress=progress, log=log)
    model = get_classifier(classifier_path, data_dir, seed=seed, progress=progress, log=log, steps=classifier_steps)
    result = label_fidelity(lambda images: predict_labels(model, images), x, y)
    result.update({"per_digit_images": per_digit, "seed": seed, "classifier": str(classifier_path)})
    atomic_write_json(Path(run_dir) / "fidelity.json", result)
    return result


def read_fidelity(run_dir):
    path = Path(run_dir) / "fidelity.json"
    return json.loads(path.read_text()) if path.is_file() else None
