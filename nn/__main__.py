"""`python -m nn`: gradient-check every layer and every loss of `nn` in float64 and print a table.

    python -m nn                  # one row per check: what, max relative error, pass/fail
    python -m nn --tol 1e-8       # a stricter threshold

Each layer's backward pass (the input gradient and every parameter gradient) and each loss's
gradient is compared with central differences (`nn.gradcheck`). Exit status 0 when every check
passes, 1 when one fails, 2 on a bad argument. Uses only `nn` and NumPy; runs in a few seconds.
"""
import argparse
import math
import sys

import numpy as np

from nn import backend, gradcheck, gradcheck_loss, layers, losses
from nn.layers import upconv_fast

TOL = 1e-6   # float64 central differences give ~1e-9 when the gradient is right, ~1e-1 when it is wrong


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _away_from_zero(*shape, seed=0):
    """Normal numbers with none closer to 0 than 0.05 (ReLU's kink, where the gradient jumps)."""
    x = _normal(*shape, seed=seed)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def _tie_free(*shape, seed=0):
    """Distinct values 0.1 apart (a max-pool gradient is undefined where two inputs tie)."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1


def _probabilities(*shape, seed=0):
    """Numbers in (0.05, 0.95): discriminator outputs away from BCE's clipping and |X1 - X|'s kink."""
    return 0.05 + 0.9 * np.random.default_rng(seed).random(shape)


def _image_and_displacements(n, c, h, w, seed=0):
    """An image (c channels) and a displacement field (2 channels, up to ±3 pixels, so some points fall off the
    edge and are clipped) stacked as `Warp`'s input; no displacement within 0.01 of a whole pixel (where the
    bilinear weights' derivative jumps)."""
    rng = np.random.default_rng(seed)
    disp = rng.uniform(-3, 3, (n, 2, h, w))
    disp = np.where(np.abs(disp - np.round(disp)) < 0.01, disp + 0.3, disp)
    return np.concatenate([rng.standard_normal((n, c, h, w)), disp], axis=1)


def layer_checks():
    """(name, layer factory, input, training) for every layer of `nn.layers`."""
    return [
        ("Conv2D im2col 3x3 pad 1", lambda: layers.Conv2D(3, 4, 3, padding=1, method="im2col"), _normal(2, 3, 5, 5), True),
        ("Conv2D im2col 3x2 stride 2", lambda: layers.Conv2D(2, 3, (3, 2), stride=2, padding=(1, 0), method="im2col"),
         _normal(2, 2, 7, 6), True),
        ("Conv2D winograd 3x3 pad 1", lambda: layers.Conv2D(3, 4, 3, padding=1, method="winograd"), _normal(2, 3, 6, 5), True),
        ("ConvTranspose2D 4x4 stride 2", lambda: layers.ConvTranspose2D(3, 2, 4, stride=2, padding=1), _normal(2, 3, 3, 4), True),
        ("Dense", lambda: layers.Dense(6, 4), _normal(3, 6), True),
        ("MaxPool2D 2x2", lambda: layers.MaxPool2D(2), _tie_free(2, 3, 6, 6), True),
        ("MaxPool2D 2x2 fast kernel", lambda: layers.MaxPool2D(2, method="auto"), _tie_free(2, 3, 6, 6), True),
        ("MaxPool2D 3x3 stride 2 pad 1", lambda: layers.MaxPool2D(3, stride=2, padding=1), _tie_free(2, 2, 5, 5), True),
        ("AvgPool2D 2x2", lambda: layers.AvgPool2D(2), _normal(2, 3, 6, 6), True),
        ("Upsample2D x2", lambda: layers.Upsample2D(2), _normal(2, 3, 3, 4), True),
        ("BilinearUpsample2D x4", lambda: layers.BilinearUpsample2D(4), _normal(2, 3, 3, 4), True),
        ("Warp (bilinear, displacements up to 3 px)", lambda: layers.Warp(), _image_and_displacements(2, 3, 5, 6), True),
        ("Upsample2D x2 + Conv2D 3x3 fused kernel", lambda: upconv_fast.UpsampleConv(
            layers.Conv2D(3, 4, 3, padding=1, method="auto")), _normal(2, 3, 3, 4), True),
        ("BatchNorm1D train", lambda: layers.BatchNorm1D(5), _normal(6, 5), True),
        ("BatchNorm1D eval", lambda: layers.BatchNorm1D(5), _normal(6, 5), False),
        ("BatchNorm2D train", lambda: layers.BatchNorm2D(3), _normal(4, 3, 3, 2) * 2 + 1, True),
        ("BatchNorm2D eval", lambda: layers.BatchNorm2D(3), _normal(4, 3, 3, 2) * 2 + 1, False),
        ("ReLU", lambda: layers.ReLU(), _away_from_zero(4, 3, 2, 2), True),
        ("LeakyReLU 0.2", lambda: layers.LeakyReLU(0.2), _away_from_zero(4, 3, 2, 2), True),
        ("Sigmoid", lambda: layers.Sigmoid(), _normal(4, 3, 2, 2), True),
        ("Tanh", lambda: layers.Tanh(), _normal(4, 3, 2, 2), True),
        ("Flatten", lambda: layers.Flatten(), _normal(4, 3, 2, 2), True),
        ("Reshape", lambda: layers.Reshape((6, 2)), _normal(4, 3, 2, 2), True),
        ("Dropout 0.3", lambda: layers.Dropout(0.3), _normal(4, 3, 2, 2), True),
        ("Scale 0.25", lambda: layers.Scale(0.25), _normal(4, 3, 2, 2), True),
        ("Standardize", lambda: layers.Standardize(), _normal(4, 3, 2, 2) * 2 + 1, True),
        ("Standardize per channel", lambda: layers.Standardize(per_channel=True), _normal(4, 3, 2, 2) * 2 + 1, True),
    ]


def loss_checks():
    """(name, loss, input, targets) for every loss of `nn.losses`."""
    labels = np.array([0, 3, 1, 4, 2, 3])
    targets = (np.arange(12).reshape(6, 2) % 2).astype(np.float64)
    return [
        ("SoftmaxCrossEntropy", losses.SoftmaxCrossEntropy(), _normal(6, 5), (labels,)),
        ("BCE", losses.BCE(), _probabilities(6, 2), (targets,)),
        ("BCEWithLogits", losses.BCEWithLogits(), _normal(6, 2), (targets,)),
        ("PaperDiscriminatorLoss D = |X1 - X|", losses.PaperDiscriminatorLoss(), _probabilities(6, 2), (targets,)),
        ("PaperGeneratorLoss G = 1 - D", losses.PaperGeneratorLoss(), _probabilities(6, 2), ()),
    ]


def run_checks():
    """[(name, max relative error)] for every layer and loss, in float64 on the current backend."""
    results = []
    for name, make, x, training in layer_checks():
        backend.seed(0)
        results.append((name, gradcheck(make(), x, training=training)))
    for name, loss, x, targets in loss_checks():
        results.append((name, gradcheck_loss(loss, x, *(backend.asarray(t) for t in targets))))
    return results


def _tolerance(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """A bad argument: one line on stderr naming it, exit status 2 (no usage block)."""
        print(f"python -m nn: error: {message} (see python -m nn --help)", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    parser = _Parser(
        prog="python -m nn",
        description="Gradient-check every layer and loss of nn in float64 (central differences) and print a "
                    "table; exit status 0 when all pass, 1 otherwise.")
    parser.add_argument("--tol", type=_tolerance, default=TOL,
                        help="largest relative error that passes (default: %(default)g)")
    args = parser.parse_args(argv)
    results = run_checks()
    width = max(len(name) for name, _ in results)
    print(f"{'layer or loss':<{width}}  {'max relative error':>18}  result")
    print("-" * (width + 28))
    failed = 0
    for name, error in results:
        ok = error < args.tol
        failed += not ok
        print(f"{name:<{width}}  {error:>18.2e}  {'pass' if ok else 'FAIL'}")
    print("-" * (width + 28))
    print(f"{len(results) - failed} of {len(results)} passed (tolerance {args.tol:g}, float64, backend {backend.name})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
