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
from gan.dcgan.conditional import generator_input, with_label_planes
from gan.dcgan.train import CONDITIONAL, checkpoint_path, load_config, load_gan, read_status


def trained_digits(run_dir):
    """Digits of the run that have a checkpoint (all ten for a trained conditional run)."""
    if checkpoint_path(run_dir, CONDITIONAL).is_file():
        return list(range(10))
    return [d for d in range(10) if checkpoint_path(run_dir, d).is_file()]


def sample(run_dir, per_digit, digits=None, seed=0, batch_size=64, bn="batch", keep=1.0, progress=False, log=None):
    """`per_digit` generated images of each digit (default: every trained digit), labelled with the
    digit whose generator made them. Deterministic under `seed` (the noise is drawn on the host).

    keep < 1: discriminator selection. Draw per_digit / keep images of each digit and keep the
    per_digit of them that the digit's own discriminator believes least synthetic (lowest X), in
    the order they were drawn. The discriminator saw only its digit's real images and generated
    ones, never a label, so the set stays "generated images labelled by their generator".

    A conditional run (one GAN for all digits) draws every digit's images from its one generator,
    labelled with the digit they were conditioned on; its batches mix the digits, as in training, so
    that BatchNorm sees the same kind of batch.

    Returns (x uint8 (N, 32, 32, 3), y int64 (N,)), the image-set format.
    """
    config = load_config(run_dir)            # not a run folder: one line naming it
    per_digit = int(per_digit)
    if per_digit < 1:
        raise ValueError(f"per-digit count must be >= 1, got {per_digit}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    digits = trained_digits(run_dir) if digits is None else list(digits)
    if not digits:
        raise ValueError(f"{run_dir}: no trained digit (no digit_*/checkpoint.npz)")
    drawn = int(np.ceil(per_digit / keep - 1e-9))           # (the 1e-9: 7300 / 0.5 must not round up to 14,601)
    if config.conditional:
        return _sample_conditional(run_dir, per_digit, drawn, digits, seed, batch_size, bn, log)
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
        xs.append(to_uint8(backend.to_numpy(_select(gan.D, images, per_digit, batch_size))))
        ys.append(np.full(per_digit, digit, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _select(D, images, keep_n, batch_size, labels=None):
    """The first keep_n images if there are no more; else the keep_n that D believes least synthetic
    (lowest X), in the order they were drawn (labels: a conditional D's digits for these images)."""
    if len(images) <= keep_n:
        return images
    seen = images if labels is None else with_label_planes(images, labels)
    X = backend.to_numpy(belief_synthetic(D, seen, batch_size))
    return images[backend.asarray(np.sort(np.argsort(X, kind="stable")[:keep_n]))]


def _sample_conditional(run_dir, per_digit, drawn, digits, seed, batch_size, bn, log):
    """`sample` from a conditional run: `drawn` images of each digit from its one generator, the digits
    interleaved (0, 1, ..., 9, 0, 1, ...) so every batch holds them all; then per digit as `sample`."""
    status = read_status(run_dir, CONDITIONAL)
    if status["state"] != "done" and log:
        log(f"sampling from a conditional generator whose training is {status['state']} "
            f"(iteration {status['iteration']})")
    gan = load_gan(run_dir, CONDITIONAL)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), CONDITIONAL_STREAM, 1]))
    labels = np.tile(np.asarray(digits, dtype=np.int64), drawn)
    n = -(-len(labels) // batch_size) * batch_size           # whole batches: BatchNorm sees full ones
    labels = np.resize(labels, n)                            # (the extra images, cycling on, are dropped)
    z = backend.asarray(rng.standard_normal((n, Z_DIM)).astype(np.float32))
    images = generate(gan.sampler, generator_input(z, backend.asarray(labels)), batch_size=batch_size, bn=bn)
    xs, ys = [], []
    for digit in digits:
        mine = np.flatnonzero(labels[:len(digits) * drawn] == digit)
        chosen = _select(gan.D, images[backend.asarray(mine)], per_digit, batch_size,
                         labels=backend.asarray(np.full(len(mine), digit)))
        xs.append(to_uint8(backend.to_numpy(chosen)))
        ys.append(np.full(per_digit, digit, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


CONDITIONAL_STREAM = 10   # the conditional generator's noise stream (the per-digit runs use 0..9)


def _maybe_progress(items, enabled):
    return tqdm(items, desc="sampling", unit="digit", disable=not enabled)
