"""How do procedural crops differ from real ones? Image statistics side by side.

    python -m bench.procedural_stats REAL.npz SYNTH.npz [SYNTH2.npz ...] [--metrics metrics.json ...]

For every image set it prints the 10th, 50th and 90th percentile over images of a few
per-image statistics (intensity is Rec. 601 luma, 0..1):

- mean: mean intensity (exposure);
- contrast: 95th minus 5th percentile of the intensity (how far ink and plate lie apart);
- centre-edge: |mean intensity of the centre 12x12| minus that of the 4-pixel frame (how much
  the centre digit stands out of its surroundings);
- chroma: mean distance of the pixels from grey (colourfulness);
- lap/contrast: mean |Laplacian| of the intensity divided by the contrast (sharpness,
  independent of contrast: blur lowers it, noise and JPEG ringing raise it);
- hf share: share of the intensity's spectral energy (mean removed) above half the Nyquist
  frequency (fine detail and noise);
- noise: median absolute Laplacian in flat regions ~ the sensor noise floor, grey levels;
- ink height: a rough digit height, as a fraction of the crop: the rows of the centre 8
  columns holding a pixel far (> 40 % of the contrast) from that strip's median, from the first
  to the last such row (the same estimator on both sets, so compare the columns, not the values);
- dark-on-light: fraction of images whose centre is darker than their frame.

With --metrics (a classify metrics.json per set, tested on the real images) it also prints the
per-digit accuracy and the three commonest confusions. Nothing is trained; a few seconds on
one core.
"""
import argparse
import json
import sys

import numpy as np

from svhn.imageset import load_image_set

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luma(x):
    """Rec. 601 luma of uint8 images (N, H, W, 3) as float32 (N, H, W) in 0..1."""
    return (x.astype(np.float32) / 255) @ LUMA


def image_stats(x):
    """Per-image statistics of uint8 images (N, 32, 32, 3): {name: (N,) float array}."""
    f = x.astype(np.float32) / 255
    lum = f @ LUMA
    lo, hi = np.percentile(lum.reshape(len(x), -1), [5, 95], axis=1)
    contrast = hi - lo
    centre = lum[:, 10:22, 10:22].mean(axis=(1, 2))
    frame = np.concatenate([lum[:, :4].reshape(len(x), -1), lum[:, -4:].reshape(len(x), -1),
                            lum[:, 4:-4, :4].reshape(len(x), -1), lum[:, 4:-4, -4:].reshape(len(x), -1)],
                           axis=1).mean(axis=1)
    chroma = np.linalg.norm(f - lum[..., None], axis=-1).mean(axis=(1, 2))
    lap = np.abs(4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1]
                 - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:])
    spec = np.abs(np.fft.fft2(lum - lum.mean(axis=(1, 2), keepdims=True))) ** 2
    k = np.abs(np.fft.fftfreq(32))
    high = (np.maximum(k[:, None], k[None, :]) > 0.25)
    hf = (spec * high).sum(axis=(1, 2)) / np.maximum(spec.sum(axis=(1, 2)), 1e-12)
    # noise floor: the Laplacian where the image is flat (its smallest quarter)
    flat = np.quantile(lap.reshape(len(x), -1), 0.25, axis=1) * 255
    strip = lum[:, :, 12:20]
    far = np.abs(strip - np.median(strip.reshape(len(x), -1), axis=1)[:, None, None]) > \
        0.4 * contrast[:, None, None]
    rows = far.any(axis=2)
    first = rows.argmax(axis=1)
    last = 31 - rows[:, ::-1].argmax(axis=1)
    height = np.where(rows.any(axis=1), (last - first + 1) / 32, 0.0)
    return {
        "mean": lum.mean(axis=(1, 2)),
        "contrast": contrast,
        "centre-edge": np.abs(centre - frame),
        "chroma": chroma,
        "lap/contrast": lap.mean(axis=(1, 2)) / np.maximum(contrast, 0.02),
        "hf share": hf,
        "noise": flat,
        "ink height": height,
        "dark-on-light": (centre < frame).astype(np.float32),
    }


def table(names, sets):
    """Rows of 'statistic  set1 p10/p50/p90  set2 ...' text."""
    stats = [image_stats(x) for x in sets]
    head = f"{'statistic':<14}" + "".join(f"{n[:24]:>26}" for n in names)
    lines = [head, "-" * len(head)]
    for key in stats[0]:
        cells = []
        for s in stats:
            v = s[key]
            if key == "dark-on-light":
                cells.append(f"{v.mean():.2f}")
            else:
                p = np.percentile(v, [10, 50, 90])
                cells.append(f"{p[0]:.3f} {p[1]:.3f} {p[2]:.3f}")
        lines.append(f"{key:<14}" + "".join(f"{c:>26}" for c in cells))
    return lines


def load_metrics(path):
    """A classify metrics.json as a dict; a ValueError naming the file when it is missing or has no
    confusion matrix."""
    try:
        m = json.load(open(path))
        m["confusion_matrix"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a classify metrics.json ({e}); pass the file train wrote") from None
    return m


def confusion_lines(name, path):
    m = load_metrics(path)
    C = np.array(m["confusion_matrix"])
    per = " ".join(f"{k}:{100 * a:.0f}" for k, a in enumerate(m["per_digit_accuracy"]))
    off = C.copy()
    np.fill_diagonal(off, 0)
    top = np.dstack(np.unravel_index(np.argsort(off.ravel())[::-1][:3], C.shape))[0]
    conf = ", ".join(f"{i}->{j} x{C[i, j]}" for i, j in top)
    return [f"{name}: accuracy {100 * m['test_accuracy']:.1f} % (n={m['n_test']}); per digit % {per}; top confusions {conf}"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="+", metavar="SET.npz", help="image sets; the first is the reference (real)")
    p.add_argument("--n", type=int, default=5000, help="use at most this many images of each set (default %(default)s)")
    p.add_argument("--metrics", nargs="*", default=[], help="classify metrics.json files to summarise")
    args = p.parse_args(argv)
    for path in args.metrics:
        try:
            load_metrics(path)
        except ValueError as e:
            print(f"procedural_stats: {e}", file=sys.stderr)
            return 2
    sets = []
    for path in args.sets:
        try:
            x, _ = load_image_set(path)
        except (ValueError, RuntimeError, OSError) as e:
            print(f"procedural_stats: cannot read {path}: {e}", file=sys.stderr)
            return 2
        sets.append(x[:args.n])
    print("\n".join(table([s.rsplit("/", 1)[-1] for s in args.sets], sets)))
    for path in args.metrics:
        print("\n".join(confusion_lines(path, path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
