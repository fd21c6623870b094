"""Where the ConvNet's images come from: named image sets, capped and mixed.

A set is named on the command line as
    real            the real SVHN training split (`svhn.load("train", data_dir)`);
                    as a test set, the real SVHN test split (`svhn.load("test", data_dir)`)
    procedural      images from the procedural synthesizer (`procedural.generate`)
    PATH.npz        any image set file (the project's format: x uint8 (N, 32, 32, 3), y int64 0..9)
optionally capped to N images as `NAME:N` (a random subset, drawn with the run's seed).
Several training sets are concatenated ("mixed").
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import procedural
import svhn
from svhn.imageset import check_image_set, load_image_set

PROCEDURAL_DEFAULT_N = 73_257     # as many synthetic images as real SVHN training images


class ClassifyError(ValueError):
    """Bad input to the classifier (an image set, a set name, a model file); the message is one line."""


@dataclass(frozen=True)
class SetSpec:
    """A parsed set name: `name` ("real", "procedural" or a path) and an optional cap `limit`."""
    name: str
    limit: int = None

    def __str__(self):
        return self.name if self.limit is None else f"{self.name}:{self.limit}"


def parse_spec(text):
    """'real' -> SetSpec('real'); 'dcgan.npz:20000' -> SetSpec('dcgan.npz', 20000).

    Only a final ':digits' is a cap, so a path that merely contains ':' still works."""
    text = str(text).strip()
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and head:
        if int(tail) <= 0:
            raise ClassifyError(f"{text}: a set's cap must be a positive number of images, got {tail}")
        return SetSpec(head, int(tail))
    if not text:
        raise ClassifyError("an empty image-set name; use real, procedural or PATH.npz[:N]")
    return SetSpec(text)


def check_specs(texts, option):
    """Parse set names given as `option` (e.g. "--train") and check, without loading anything, that
    each is real, procedural or an existing PATH.npz; returns the SetSpecs."""
    specs = []
    for text in texts:
        spec = parse_spec(text)
        if spec.name not in ("real", "procedural"):
            path = Path(spec.name)
            if path.suffix != ".npz":
                raise ClassifyError(f"{option} {text}: not a set name; use real, procedural or a PATH.npz image set")
            if not path.is_file():
                raise ClassifyError(f"{option} {text}: no such image set file")
        specs.append(spec)
    return specs


def load_named_set(spec, split="train", data_dir=None, seed=0):
    """The (x uint8, y int64) pair a SetSpec names, before capping.

    split: which SVHN split `real` means ("train" or "test"); seed: the procedural generator's seed.
    """
    if spec.name == "real":
        return svhn.load(split, data_dir)
    if spec.name == "procedural":
        x, y = procedural.generate(spec.limit or PROCEDURAL_DEFAULT_N, seed=seed)
        return check_image_set(np.asarray(x), np.asarray(y), source="procedural")
    path = Path(spec.name)
    if path.suffix != ".npz":
        raise ClassifyError(f"{spec.name}: not a set name; use real, procedural or a PATH.npz image set")
    return load_image_set(path)


def cap(x, y, limit, rng, source):
    """A random subset of `limit` images drawn with `rng`; the whole set, unchanged, when limit is None
    or the set's size."""
    if limit is None or limit == len(x):
        return x, y
    if limit > len(x):
        raise ClassifyError(f"{source}: asks for {limit} images but the set has only {len(x)}")
    keep = rng.permutation(len(x))[:limit]
    return x[keep], y[keep]


def resolve_sets(sets, split="train", data_dir=None, seed=0):
    """Load, check, cap and concatenate image sets.

    sets: a list whose items are set names ("real", "procedural", "a.npz", "real:300"), SetSpecs,
    or (x, y) pairs of arrays. Returns x uint8 (N, 32, 32, 3), y int64 (N,) and a list of
    {"name": ..., "n": ...} describing each part (for metrics.json's `train_sets`).
    """
    if isinstance(sets, (str, SetSpec)) or (isinstance(sets, tuple) and len(sets) == 2
                                            and isinstance(sets[0], np.ndarray)):
        sets = [sets]
    if not sets:
        raise ClassifyError("no image set given")
    rng = np.random.default_rng(seed)
    xs, ys, described = [], [], []
    for i, item in enumerate(sets):
        if isinstance(item, (str, SetSpec)):
            spec = item if isinstance(item, SetSpec) else parse_spec(item)
            x, y = load_named_set(spec, split, data_dir, seed)
            source, limit = str(spec), spec.limit
        else:
            x, y = item
            source, limit = f"image set {i} (arrays)", None
        check_image_set(x, y, source)
        x, y = cap(x, y, limit, rng, source)
        xs.append(x)
        ys.append(y.astype(np.int64, copy=False))
        described.append({"name": source, "n": int(len(x))})
    return np.concatenate(xs), np.concatenate(ys), described
