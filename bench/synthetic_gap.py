"""Why do synthetic digits not transfer to real ones? Measurements of the gap, nothing trained.

    python -m bench.synthetic_gap --train real_train.npz --test real_test.npz \\
        --set dcgan=dcgan_set.npz --set procedural=procedural.npz \\
        [--metrics real=M.json --metrics dcgan=M.json ...] [--figures DIR]

For the real training images (what the GANs learnt from), the real test images and each synthetic
set (NAME=PATH, labelled 0..9) it prints:

1. spectrum: the radially averaged power spectrum of the luma (each image's mean removed, the
   power |FFT|^2 / pixels averaged over images and over the ring of integer radius k = 1..16
   cycles per 32 pixels), and each set's ratio to the real training set in three bands;
2. nearest real: for every image, the RMS distance per pixel value (RGB in 0..1) to its nearest
   real training image of the same digit. The real test images give the natural baseline: a
   generated image much closer to a training image than test images are is a near-copy. Printed:
   the 5th/25th/50th/75th/95th percentiles and the share below the real test images' 5th percentile;
3. variety: per digit, the mean RMS distance between two different images of that digit (mode
   collapse makes it small); its ratio to the real training set's;
4. the image statistics of bench/procedural_stats.py (contrast, chroma, sharpness, noise ...), over
   all images and per digit; and the "fingerprint": how well a digit's label can be told from global
   features that hold no shape (fingerprint_accuracy) -- near chance for real crops;
5. with --metrics NAME=metrics.json (classify runs tested on the real test images): per true digit,
   the accuracy and the commonest answer, and how often each digit was answered overall.

With --figures DIR it writes spectra_real_vs_synthetic.png, NAME_nearest_real.png (histograms of
the distances of item 2) and NAME_closest_pairs.png (the closest generated images beside their
nearest real one). A few seconds to a minute on one core for 7,300-image sets.
"""
import argparse
import re
from pathlib import Path

import numpy as np

from bench.procedural_stats import image_stats, load_metrics, luma, table
from common.cli import ArgumentParser, run_cli
from common.figures import pyplot, save_figure
from common.files import check_output_path
from svhn.imageset import load_image_set

BANDS = ((1, 4), (5, 10), (11, 16))     # low, middle and high rings of the spectrum (cycles per 32 px)


def luma_power(x):
    """Per-image luma power spectra of uint8 images (N, S, S, 3): each image's mean luma removed, the
    power |FFT|^2 / S^2 (so white noise of variance v has power v at every frequency); returns
    (power (N, S, S), radius (S, S): each frequency's distance from zero in cycles per image width)."""
    lum = luma(x)
    lum = lum - lum.mean(axis=(1, 2), keepdims=True)
    size = lum.shape[1]
    f = np.fft.fftfreq(size) * size
    return np.abs(np.fft.fft2(lum)) ** 2 / size ** 2, np.hypot(f[:, None], f[None, :])


def radial_spectrum(x):
    """Mean over images of the radially averaged luma power spectrum (luma_power) of uint8 images
    (N, S, S, 3): the power averaged over the ring of frequencies whose radius rounds to k.
    Returns (k, power) for k = 1 .. S/2 (cycles per image width)."""
    power, radius = luma_power(x)
    power, ring = power.mean(axis=0), np.rint(radius).astype(int)
    k = np.arange(1, x.shape[1] // 2 + 1)
    return k, np.array([power[ring == r].mean() for r in k])


def band_ratios(k, power, ref_power):
    """Mean power of `power` over ref_power in each band of BANDS (1 = same as the reference)."""
    return [power[(k >= lo) & (k <= hi)].mean() / ref_power[(k >= lo) & (k <= hi)].mean() for lo, hi in BANDS]


def _flat(x):
    """uint8 images as float64 rows in 0..1 (one row per image)."""
    return x.reshape(len(x), -1).astype(np.float64) / 255


def pairwise_rms(a, b):
    """RMS distance per pixel value (0..1 units) between every row of a (n, d) and of b (m, d): (n, m)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0) / a.shape[1])


def nearest_same_digit(x, y, ref_x, ref_y):
    """For each image of (x, y), the RMS distance to its nearest image of the same digit in
    (ref_x, ref_y) and that image's index in ref_x: (distance (N,), index (N,))."""
    dist, index = np.full(len(x), np.nan), np.full(len(x), -1)
    for d in np.unique(y):
        mine, theirs = np.flatnonzero(y == d), np.flatnonzero(ref_y == d)
        if len(theirs) == 0:
            continue
        D = pairwise_rms(_flat(x[mine]), _flat(ref_x[theirs]))
        dist[mine] = D.min(axis=1)
        index[mine] = theirs[D.argmin(axis=1)]
    return dist, index


def variety(x, y, max_per_digit=1000, seed=0):
    """Per digit 0..9, the mean RMS distance between two different images of that digit (0 when
    all are the same; nan for fewer than two images). At most max_per_digit images of a digit are
    used (a random subset), which leaves the expected value unchanged."""
    rng = np.random.default_rng(seed)
    out = np.full(10, np.nan)
    for d in range(10):
        idx = np.flatnonzero(y == d)
        if len(idx) > max_per_digit:
            idx = rng.choice(idx, max_per_digit, replace=False)
        if len(idx) < 2:
            continue
        D = pairwise_rms(_flat(x[idx]), _flat(x[idx]))
        out[d] = D[~np.eye(len(idx), dtype=bool)].mean()
    return out


def fingerprint_features(x):
    """Per-image global features that carry no digit shape: the statistics of image_stats (without
    the ink height, a crude shape measure), the mean of each colour channel and the image's luma
    power in the three bands of BANDS (log). (N, F) float64."""
    stats = image_stats(x)
    cols = [v for name, v in stats.items() if name != "ink height"]
    cols += list((x.astype(np.float64) / 255).mean(axis=(1, 2)).T)
    power, radius = luma_power(x)
    ring = np.rint(radius)
    cols += [np.log(power[:, (ring >= lo) & (ring <= hi)].mean(axis=1) + 1e-12) for lo, hi in BANDS]
    return np.stack(cols, axis=1).astype(np.float64)


def fingerprint_accuracy(x, y, seed=0):
    """How well the digit label can be told from global image features alone (fingerprint_features):
    the accuracy of linear discriminant analysis (nearest class mean in the metric of the pooled
    within-digit covariance, slightly regularised) fitted on a random half of the images and tested
    on the other half, then the halves swapped and the two accuracies averaged. Real crops should sit
    near chance (0.1 for balanced labels); a set where each digit comes from its own generator can be
    separable by the generators' traits instead of by the digits' shapes."""
    feats = fingerprint_features(x)
    half = np.random.default_rng(seed).permutation(len(x)) < len(x) // 2
    scores = []
    for fit in (half, ~half):
        z = (feats - feats[fit].mean(0)) / (feats[fit].std(0) + 1e-12)
        digits = np.unique(y[fit])
        centres = np.stack([z[fit][y[fit] == d].mean(0) for d in digits])
        within = z[fit] - centres[np.searchsorted(digits, y[fit])]
        cov = within.T @ within / len(within) + 1e-3 * np.eye(z.shape[1])
        w = np.linalg.solve(cov, centres.T)                       # (F, digits)
        score = z[~fit] @ w - 0.5 * (centres * w.T).sum(1)        # LDA with equal priors
        scores.append((digits[score.argmax(1)] == y[~fit]).mean())
    return float(np.mean(scores))


def answers(metrics):
    """From a classify metrics dict: per true digit (accuracy, commonest answer, its count, n), and
    how often each digit was answered in all (the confusion matrix's column sums)."""
    C = np.array(metrics["confusion_matrix"])
    rows = []
    for d in range(len(C)):
        n = C[d].sum()
        top = int(C[d].argmax())
        rows.append((C[d, d] / n if n else np.nan, top, int(C[d, top]), int(n)))
    return rows, C.sum(axis=0)


# ---------------------------------------------------------------- report

def spectrum_lines(spectra):
    names = list(spectra)
    ref_k, ref_p = spectra[names[0]]
    lines = ["## Luma power spectrum (radial mean; ratio to " + names[0] + " per band)",
             f"{'set':<16}" + "".join(f"{f'k {lo}-{hi}':>10}" for lo, hi in BANDS) + "   power at k=1, 4, 8, 16"]
    for name in names:
        k, p = spectra[name]
        lines.append(f"{name:<16}" + "".join(f"{r:>10.2f}" for r in band_ratios(k, p, ref_p))
                     + "   " + " ".join(f"{p[i - 1]:.2e}" for i in (1, 4, 8, 16)))
    return lines


def nearest_lines(nearest, baseline):
    cut = np.percentile(nearest[baseline][0], 5)
    lines = ["## Nearest real training image of the same digit (RMS per pixel value, 0..1)",
             f"{'set':<16}{'n':>6}{'p5':>8}{'p25':>8}{'p50':>8}{'p75':>8}{'p95':>8}"
             f"   share < p5 of {baseline} ({cut:.3f})"]
    for name, (dist, _) in nearest.items():
        p = np.percentile(dist, [5, 25, 50, 75, 95])
        lines.append(f"{name:<16}{len(dist):>6}" + "".join(f"{v:>8.3f}" for v in p)
                     + f"   {100 * (dist < cut).mean():.1f} %")
    return lines


def variety_lines(varieties):
    names = list(varieties)
    ref = varieties[names[0]]
    lines = ["## Variety: mean RMS distance between two images of a digit (ratio to " + names[0] + ")",
             f"{'digit':<6}" + "".join(f"{n[:14]:>16}" for n in names)]
    for d in range(10):
        lines.append(f"{d:<6}" + "".join(f"{v[d]:>8.3f} ({v[d] / ref[d]:.2f})" for v in varieties.values()))
    lines.append(f"{'mean':<6}" + "".join(f"{np.nanmean(v):>8.3f} ({np.nanmean(v) / np.nanmean(ref):.2f})"
                                          for v in varieties.values()))
    return lines


def per_digit_lines(sets, keys=("contrast", "dark-on-light", "noise", "chroma")):
    """Per digit, the median of some image statistics (the share for dark-on-light) in each set, and
    the fingerprint accuracy of each set (fingerprint_accuracy; chance about 0.1)."""
    lines = ["## Per digit: median statistic (dark-on-light: share) in each set",
             f"{'statistic':<14}{'set':<14}" + "".join(f"{d:>7}" for d in range(10)) + "   max-min"]
    stats = {name: (image_stats(x), y) for name, (x, y) in sets.items()}
    for key in keys:
        for name, (s, y) in stats.items():
            agg = np.mean if key == "dark-on-light" else np.median
            v = np.array([agg(s[key][y == d]) if (y == d).any() else np.nan for d in range(10)])
            lines.append(f"{key:<14}{name[:13]:<14}" + "".join(f"{c:>7.3f}" for c in v)
                         + f"   {np.nanmax(v) - np.nanmin(v):.3f}")
    lines += ["", "## Fingerprint: digit told from global, shape-free features (linear discriminant, "
                  "half fitted / half tested; chance ~0.10)"]
    lines += [f"{name:<16}{fingerprint_accuracy(x, y):.3f}" for name, (x, y) in sets.items()]
    return lines


def answer_lines(metrics):
    lines = ["## Classifiers on the real test images: per true digit, accuracy % / commonest answer (count of n)"]
    lines.append(f"{'digit':<6}" + "".join(f"{name[:22]:>24}" for name in metrics))
    table_ = {name: answers(m) for name, m in metrics.items()}
    for d in range(10):
        cells = []
        for rows, _ in table_.values():
            acc, top, count, n = rows[d]
            cells.append(f"{100 * acc:.0f} / {top} ({count} of {n})")
        lines.append(f"{d:<6}" + "".join(f"{c:>24}" for c in cells))
    lines.append(f"{'all':<6}" + "".join(f"{100 * m['test_accuracy']:>23.1f}%" for m in metrics.values()))
    for name, (_, said) in table_.items():
        lines.append(f"{name}: answered " + " ".join(f"{d}:{c}" for d, c in enumerate(said)))
    return lines


# ---------------------------------------------------------------- figures

def plot_spectra(spectra, path):
    """Log-log plot of each set's radial spectrum."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (name, (k, p)) in enumerate(spectra.items()):
        ax.loglog(k, p, "o-" if i == 0 else ".-", ms=3, lw=2 if i == 0 else 1.2, label=name)
    ax.set_xlabel("spatial frequency k (cycles per 32 pixels)")
    ax.set_ylabel("luma power (radial mean)")
    ax.set_title("Radially averaged luma power spectrum")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_nearest(nearest, name, baseline, path):
    """Histograms (as densities) of the nearest-real distances of `name` and of the baseline."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    all_d = np.concatenate([nearest[name][0], nearest[baseline][0]])
    bins = np.linspace(0, np.percentile(all_d, 99.5), 50)
    for n in (baseline, name):
        ax.hist(nearest[n][0], bins=bins, density=True, alpha=0.55, label=f"{n} (n={len(nearest[n][0])})")
    cut = np.percentile(nearest[baseline][0], 5)
    ax.axvline(cut, color="k", ls="--", lw=1, label=f"5th percentile of {baseline}")
    ax.set_xlabel("RMS distance to the nearest real training image of the same digit (0..1)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_closest_pairs(x, nearest, ref_x, path, n=12):
    """The n generated images closest to a real training image (top row) above that image."""
    plt = pyplot()
    dist, index = nearest
    order = np.argsort(dist)[:n]
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6))
    for j, i in enumerate(order):
        axes[0, j].imshow(x[i])
        axes[0, j].set_title(f"{dist[i]:.3f}", fontsize=7)
        axes[1, j].imshow(ref_x[index[i]])
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("closest generated images (top, RMS distance) and their nearest real training image", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


# ---------------------------------------------------------------- command line

def _named(text, option):
    """NAME=PATH as (name, path); NAME is letters, digits, '-' and '_' (it names figure files)."""
    name, sep, path = text.partition("=")
    if not sep or not path or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"{option} {text!r} is not NAME=PATH (NAME: letters, digits, - and _)")
    return name, path


def parse_args(argv):
    p = ArgumentParser(prog="python -m bench.synthetic_gap", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, metavar="REAL_TRAIN.npz", help="the real training images")
    p.add_argument("--test", required=True, metavar="REAL_TEST.npz", help="the real test images (the baseline)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=PATH", dest="sets",
                   help="a synthetic image set, labelled 0..9 (repeat for more)")
    p.add_argument("--metrics", action="append", default=[], metavar="NAME=metrics.json",
                   help="a classify metrics.json tested on the real test images (repeat for more)")
    p.add_argument("--figures", metavar="DIR", help="write the PNG figures into this folder")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    named_sets = dict(_named(t, "--set") for t in args.sets)
    named_metrics = {name: load_metrics(path) for name, path in (_named(t, "--metrics") for t in args.metrics)}
    if args.figures:
        check_output_path(args.figures, kind="dir", option="--figures")
    train, test = load_image_set(args.train), load_image_set(args.test)
    sets = {"real train": train, "real test": test}
    sets.update({name: load_image_set(path) for name, path in named_sets.items()})

    spectra = {name: radial_spectrum(x) for name, (x, _) in sets.items()}
    nearest = {name: nearest_same_digit(x, y, *train) for name, (x, y) in sets.items() if name != "real train"}
    varieties = {name: variety(x, y) for name, (x, y) in sets.items()}
    report = [*spectrum_lines(spectra), "", *nearest_lines(nearest, "real test"), "",
              *variety_lines(varieties), "", *per_digit_lines(sets), "", "## Image statistics (10th / 50th / 90th percentile over images)",
              *table(list(sets), [x for x, _ in sets.values()])]
    if named_metrics:
        report += ["", *answer_lines(named_metrics)]
    print("\n".join(report))

    if args.figures:
        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        plot_spectra(spectra, out / "spectra_real_vs_synthetic.png")
        for name in named_sets:
            plot_nearest(nearest, name, "real test", out / f"{name}_nearest_real.png")
            plot_closest_pairs(sets[name][0], nearest[name], train[0], out / f"{name}_closest_pairs.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
