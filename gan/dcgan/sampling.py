"""Synthesis from trained DCGANs: an image set of generated digits, labelled by their generator.

    x, y = sample("runs/dcgan", per_digit=7300, digits=range(10), seed=0)   # uint8 NHWC, int64
    x, y = sample("runs/dcgan", per_digit=7300, keep=0.5)   # draw 14,600 per digit, keep the 7,300 that
                                                           # the digit's discriminator finds most real

(Label fidelity, which also needs a classifier, is in `classify.fidelity`.)
"""

import numpy as np
from tqdm import tqdm

from nn import backend
from svhn.imageset import to_uint8
from gan.dcgan.nets import Z_DIM, belief_synthetic, generate
from gan.dcgan.train import checkpoint_path, load_config, load_gan, read_status


def trained_digits(run_dir):
    """Digits of the run that have a checkpoint."""
    return [d for d in range(10) if checkpoint_path(run_dir, d).is_file()]


def sample(run_dir, per_digit, digits=None, seed=0, batch_size=64, bn="batch", keep=1.0, progress=False, log=None):
    """`per_digit` generated images of each digit (default: every trained digit), labelled with the
    digit whose generator made them. Deterministic under `seed` (the noise is drawn on the host).

    keep < 1: discriminator selection. Draw per_digit / keep images of each digit and keep the
    per_digit of them that the digit's own discriminator believes least synthetic (lowest X), in
    the order they were drawn. The discriminator saw only its digit's real images and generated
    ones, never a label, so the set stays "generated images labelled by their generator".

    Returns (x uint8 (N, 32, 32, 3), y int64 (N,)), the image-set format.
    """
    load_config(run_dir)                     # not a run folder: one line naming it
    per_digit = int(per_digit)
    if per_digit < 1:
        raise ValueError(f"per-digit count must be >= 1, got {per_digit}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    digits = trained_digits(run_dir) if digits is None else list(digits)
    if not digits:
        raise ValueError(f"{run_dir}: no trained digit (no digit_*/checkpoint.npz)")
    drawn = int(np.ceil(per_digit / keep - 1e-9))           # (the 1e-9: 7300 / 0.5 must not round up to 14,601)
    xs, ys = [], []
    for digit in _maybe_progress(digits, progress):
        status = read_status(run_dir, digit)
        if status["state"] != "done" and log:
            log(f"digit {digit}: sampling from a generator whose training is {status['state']} "
                f"(iteration {status['iteration']})")
        gan = load_gan(run_dir, digit)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(digit), 1]))
        n = -(-drawn // batch_size) * batch_size              # whole batches: BatchNorm sees full ones
        z = backend.asarray(rng.standard_normal((n, Z_DIM)).astype(np.float32))
        images = generate(gan.sampler, z, batch_size=batch_size, bn=bn)[:drawn]
        if drawn > per_digit:
            X = backend.to_numpy(belief_synthetic(gan.D, images, batch_size))
            images = images[backend.asarray(np.sort(np.argsort(X, kind="stable")[:per_digit]))]
        xs.append(to_uint8(backend.to_numpy(images)))
        ys.append(np.full(per_digit, digit, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _maybe_progress(items, enabled):
    return tqdm(items, desc="sampling", unit="digit", disable=not enabled)
