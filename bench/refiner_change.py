"""What did a refiner change? Splits R(x) - x into a colour part (a gain and an offset) and a local part.

    python -m bench.refiner_change --input proc.npz --refined refined.npz [--refined other.npz ...] [--n 7300]

Both sets hold the same images in the same order (a refined set is its input passed through a SimGAN
refiner). classify's colour augmentation draws every training image's brightness, contrast, saturation,
channel order and polarity at random, so a ConvNet trained with it learns little from a change that
only moves an image's colour channels by a gain and an offset: one gain and offset for the whole image
(brightness and contrast) it randomises outright; a cast that differs between the channels it scrambles
(saturation, channel order) without undoing it. So, per image n and colour channel c, with x and
r = R(x) in grey levels (0..255, H·W values each):

    fit (a, b) = argmin Σ_pixels (r - (a·x + b))²        (least squares, one a and b per n and c)
    colour part  = a·x + b - x        local part  e = r - (a·x + b)
    colour share = 1 - Σ e² / Σ (r - x)²                 (summed over every image, channel and pixel)

The same with one a and b per image for all three channels gives the brightness-and-contrast share
(the part augmentation randomises outright; the colour share is the larger, per-channel one; both are 0
for an unchanged set).
Printed per refined set: the mean |r - x|, its RMS, both shares, the local part's RMS and where the
local part's luma power lies (the rings k = 1-4, 5-10, 11-16 cycles per 32 pixels, as in
bench/synthetic_gap.py, and the corners beyond). Nothing is trained; seconds for 7,300 images.
"""
import argparse

import numpy as np

from bench.synthetic_gap import BANDS, luma_power
from common.cli import ArgumentParser, run_cli, whole
from svhn.imageset import load_image_set


GREY_LEVELS = ("mean abs(r - x)", "RMS(r - x)", "local RMS")
"""The report's columns in grey levels; every other column is a share (printed in percent)."""


def affine_residual(x, r, axes):
    """r minus its least-squares fit a·x + b, with one (a, b) for each group of values that `axes`
    (the axes summed over) leaves; x, r float arrays of one shape. A constant x fits b alone."""
    xm, rm = x.mean(axis=axes, keepdims=True), r.mean(axis=axes, keepdims=True)
    xc, rc = x - xm, r - rm
    sxx = (xc * xc).sum(axis=axes, keepdims=True)
    a = (xc * rc).sum(axis=axes, keepdims=True) / np.where(sxx > 0, sxx, 1)    # sxx = 0: xc = 0, so a = 0
    return rc - a * xc


def band_shares(e):
    """Shares of the luma power of e (N, H, W, 3) in the rings of BANDS and beyond them (the corners
    of the spectrum, k > 16 on 32 pixels). `luma_power` removes each image's mean luma (k = 0), which is
    0 anyway for a per-channel residual; its 1/255 scale does not change a share."""
    power, radius = luma_power(e)
    power, ring = power.sum(axis=0), np.rint(radius)
    total = power.sum()
    if total == 0:
        return {**{f"k={lo}-{hi}": 0.0 for lo, hi in BANDS}, f"k>{BANDS[-1][1]}": 0.0}
    shares = {f"k={lo}-{hi}": power[(ring >= lo) & (ring <= hi)].sum() / total for lo, hi in BANDS}
    shares[f"k>{BANDS[-1][1]}"] = power[ring > BANDS[-1][1]].sum() / total
    return shares


def change_report(x, r):
    """The numbers of the module docstring for uint8 images x and r = R(x), (N, H, W, 3)."""
    if x.shape != r.shape:
        raise ValueError(f"the refined set has shape {r.shape}, its input {x.shape}: not the same images")
    x, r = x.astype(np.float64), r.astype(np.float64)
    d = r - x
    energy = (d * d).sum()
    per_channel = affine_residual(x, r, axes=(1, 2))
    per_image = affine_residual(x, r, axes=(1, 2, 3))

    def share(e):
        """The share of the change's energy that the fit leaving residual e explains (0 for no change)."""
        if energy == 0:
            return 0.0
        return max(0.0, 1 - (e * e).sum() / energy)

    return {"mean abs(r - x)": np.abs(d).mean(), "RMS(r - x)": np.sqrt((d * d).mean()),
            "colour share": share(per_channel), "brightness/contrast share": share(per_image),
            "local RMS": np.sqrt((per_channel ** 2).mean()), **band_shares(per_channel)}


def parse_args(argv):
    p = ArgumentParser(prog="python -m bench.refiner_change", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, metavar="INPUT.npz", help="the images the refiner was given")
    p.add_argument("--refined", required=True, action="append", metavar="REFINED.npz",
                   help="the same images refined (repeat for more refiners)")
    p.add_argument("--n", type=whole(1), default=7300, help="compare the first N images (default: 7300)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    x = load_image_set(args.input)[0][:args.n]
    reports = [(path, change_report(x, load_image_set(path)[0][:args.n])) for path in args.refined]
    keys = list(reports[0][1])
    print(f"# what the refiner changed, first {len(x)} images (grey levels 0..255; shares of the change's energy)")
    print("| set | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for path, rep in reports:
        cells = [f"{rep[k]:.2f}" if k in GREY_LEVELS else f"{100 * rep[k]:.0f} %" for k in keys]
        print(f"| {path} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    run_cli(main)
