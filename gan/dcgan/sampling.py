"""Synthesis from trained DCGANs: an image set of generated digits, labelled by their generator.

    x, y = sample("runs/dcgan", per_digit=7300, digits=range(10), seed=0)   # uint8 NHWC, int64

(Label fidelity, which also needs a classifier, is in `classify.fidelity`.)
"""

import numpy as np
from tqdm import tqdm

from nn import backend
from svhn.imageset import to_uint8
from gan.dcgan.nets import Z_DIM, generate
from gan.dcgan.train import checkpoint_path, load_config, load_generator, read_status


def trained_digits(run_dir):
    """Digits of the run that have a checkpoint."""
    return [d for d in range(10) if checkpoint_path(run_dir, d).is_file()]


def sample(run_dir, per_digit, digits=None, seed=0, batch_size=64, bn="batch", progress=False, log=None):
    """`per_digit` generated images of each digit (default: every trained digit), labelled with the
    digit whose generator made them. Deterministic under `seed` (the noise is drawn on the host).

    Returns (x uint8 (N, 32, 32, 3), y int64 (N,)), the image-set format.
    """
    load_config(run_dir)                     # not a run folder: one line naming it
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
    return tqdm(items, desc="sampling", unit="digit", disable=not enabled)
