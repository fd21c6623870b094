"""`python -m gan`: train the ten DCGANs and sample image sets from them."""
import argparse
import sys

import numpy as np

from common.cli import ArgumentParser, add_backend_options, apply_backend_options, check_moved, number, whole
from common.files import check_output_path
from svhn.data import data_dir_for
from svhn.imageset import save_grid_png, save_image_set
from gan.dcgan.sampling import sample
from gan.dcgan.grouped import train_together
from gan.dcgan.train import GENERATOR_LR, Config, parse_digits, train_all, train_one_by_one

DESCRIPTION = """\
The paper's DCGANs: one per digit, each trained on the real SVHN training images of
that digit. The discriminator outputs X, its belief that an image is synthetic; the
paper's losses are D = |X1 - X| (X1 = 1 generated, 0 real) and G = 1 - D.

train    train (or resume, when --out already holds a run) one DCGAN per digit
sample   write generated images of each digit as an image set (.npz: x uint8, y int64)
(label fidelity, which needs the classifier too: python -m classify fidelity)

Errors print one line and exit with status 2."""

EPILOG = """\
examples:
  python -m gan train --digits 0-9 --loss paper --data-dir DIR --out runs/paper     (1,500 iterations per digit)
  python -m gan train --digits 1,5 --iters 700 --loss bce --out runs/bce     (resumes if runs/bce exists)
  python -m gan train --conditional --iters 3000 --loss bce --out runs/cond     (one GAN for all digits)
  python -m gan sample --run runs/paper --per-digit 7300 --out dcgan.npz --seed 0
  python -m classify fidelity --run runs/paper --data-dir DIR     (label fidelity)
(DIR: a folder with SVHN's train_32x32.mat; default $SVHN_DIR, else the user cache)"""


def _common(backend_and_seed=True):
    p = ArgumentParser(add_help=False)
    if backend_and_seed:
        add_backend_options(p)
        p.add_argument("--seed", type=whole(0), default=None, help="random seed, >= 0 (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def build_parser():
    d = Config()
    parser = ArgumentParser(prog="python -m gan", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", parents=[_common()], help="train one DCGAN per digit (resumes an existing run)",
                       description="Train one DCGAN per digit on the real training images of that digit. "
                                   "On an existing --out folder the run resumes with its saved settings "
                                   "(--iters may be raised to train further).")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created, or resumed)")
    p.add_argument("--digits", default="0-9", help="digits to train: a range (0-9) or a list (1,5) (default: 0-9)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with train_32x32.mat (default: $SVHN_DIR or the user cache)")
    # None defaults: an option given on the command line is told apart from one left out (resume).
    p.add_argument("--iters", type=whole(1), help=f"iterations per digit (default: {d.iters})")
    p.add_argument("--loss", choices=("paper", "bce"),
                   help=f"paper: D = |X1 - X|, G = 1 - D; bce: binary cross-entropy, non-saturating G (default: {d.loss})")
    p.add_argument("--upsample", choices=("nearest", "deconv"),
                   help=f"generator stages: nearest upsampling + 3x3 conv, or stride-2 transposed conv "
                        f"(default: {d.upsample})")
    p.add_argument("--width", type=whole(1), help=f"channels of the narrowest stage; G uses 4w-2w-w, D w-2w-4w (default: {d.width})")
    p.add_argument("--batch-size", type=whole(2), help=f"real and generated images per iteration (default: {d.batch_size})")
    p.add_argument("--lr", type=number(0, 1, True, True), help=f"the generator's Adam learning rate (default: "
                                            f"{GENERATOR_LR['paper']} with --loss paper, {GENERATOR_LR['bce']} with bce)")
    p.add_argument("--lr-d", type=number(0, 1, True, True), help=f"the discriminator's own Adam learning rate (default: {d.lr_d})")
    p.add_argument("--beta1", type=number(0, 1, False, True), help=f"Adam beta1 (default: {d.beta1})")
    p.add_argument("--label-smoothing", type=number(0, 1, False, True),
                   help="discriminator target for real images X1 = s instead of 0 (one-sided smoothing; default: 0)")
    p.add_argument("--augment", choices=("none", "diffaug"),
                   help="diffaug: differentiable colour/translation/cutout augmentation of every image the "
                        "discriminator sees (Zhao et al. 2020), against D memorising few images (default: diffaug)")
    p.add_argument("--d-every", type=whole(1), help="update the discriminator every k-th iteration only (default: 1)")
    p.add_argument("--ema-decay", type=number(0, 1, False, True),
                   help=f"sample from a moving average of the generator's weights with this decay; 0: from the "
                        f"generator itself (default: {d.ema_decay})")
    p.add_argument("--checkpoint-every", type=whole(1), help=f"iterations between checkpoints (default: {d.checkpoint_every})")
    p.add_argument("--together", action="store_true",
                   help="train the digits as one grouped model (weights stacked along a digit axis, one batched "
                        "matrix product per layer for all of them): the same results within float32 rounding, "
                        "for GPUs, where ten small GANs cost ten times the kernel launches of one (on NumPy it "
                        "is slower: no Winograd, no chunking over cores) (default: one digit after another)")
    p.add_argument("--conditional", action="store_true", default=None,
                   help="beyond the paper: one class-conditional GAN for all ten digits (G and D are told the "
                        "digit) instead of ten, trained on every real image; --iters counts its iterations "
                        "(default: ten per-digit GANs)")
    p.add_argument("--stuck-iters", type=whole(0),
                   help=f"stop a digit whose discriminator is all-or-nothing (accuracy 0 or 1 on both real and "
                        f"generated, unchanged) this many iterations in a row; 0: never (default: {d.stuck_iters})")

    p = sub.add_parser("sample", parents=[_common()], help="write generated images as an image set .npz")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder written by train")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the image set to write")
    p.add_argument("--per-digit", type=whole(1), default=7300, help="images per digit (default: 7300, as the paper)")
    p.add_argument("--digits", default=None, help="digits to sample, e.g. 0-9 or 1,5 (default: every trained digit)")
    p.add_argument("--bn", choices=("batch", "running"), default="batch",
                   help="BatchNorm statistics while sampling: of each batch of 64, as in training, or the running "
                        "averages (default: batch)")
    p.add_argument("--keep", type=number(0, 1, True, False), default=1.0,
                   help="discriminator selection: draw per-digit / KEEP images of each digit and keep those its "
                        "discriminator finds least synthetic (default: 1, every image drawn)")
    p.add_argument("--grid", metavar="FILE.png", help="also write a PNG grid of the first 10 images of each digit")

    return parser


TRAIN_OPTIONS = ("iters", "loss", "upsample", "width", "batch_size", "lr", "lr_d", "beta1", "label_smoothing",
                 "d_every", "augment", "ema_decay", "checkpoint_every", "stuck_iters", "conditional")


def cmd_train(args):
    digits = parse_digits(args.digits)
    if args.conditional and args.together:
        raise ValueError("--conditional trains one GAN for all digits: there is nothing to train --together")
    given = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    if "augment" in given:
        given["augment"] = given["augment"] == "diffaug"
    if args.seed is not None:
        given["seed"] = args.seed
    if args.data_dir is not None:
        data_dir_for(args.data_dir)                  # a missing folder is reported before anything is written
        given["data_dir"] = args.data_dir
    config = Config(**given).check()
    results = train_all(args.out, config, digits, progress=not args.quiet, explicit=tuple(given),
                        log=lambda line: print(line, file=sys.stderr),
                        trainer=train_together if args.together else train_one_by_one)
    stopped = [d for d, s in results.items() if s["state"] != "done"]
    done = [d for d, s in results.items() if s["state"] == "done"]
    print(f"{args.out}: digits {','.join(map(str, done)) or 'none'} trained"
          + (f"; stopped: {','.join(map(str, stopped))}" if stopped else ""))
    return 1 if stopped else 0


def cmd_sample(args):
    digits = parse_digits(args.digits) if args.digits else None
    check_output_path(args.out, "file", "--out", suffix=".npz")
    if args.grid:
        check_output_path(args.grid, "file", "--grid", suffix=".png")
    x, y = sample(args.run, args.per_digit, digits, seed=args.seed or 0, bn=args.bn, keep=args.keep,
                  progress=not args.quiet, log=lambda line: print(line, file=sys.stderr))
    save_image_set(args.out, x, y)
    if args.grid:
        firsts = np.concatenate([x[y == d][:10] for d in np.unique(y)])
        save_grid_png(args.grid, firsts, nrow=10)
    print(f"{args.out}: {len(x)} images, {args.per_digit} per digit for digits {','.join(map(str, np.unique(y)))}")
    return 0


MOVED = {"fidelity": "python -m classify fidelity"}
"""Commands that moved to a package above `gan` (they need the classifier too)."""


def main(argv=None):
    check_moved(argv, "python -m gan", MOVED)
    args = build_parser().parse_args(argv)
    apply_backend_options(args)
    return {"train": cmd_train, "sample": cmd_sample}[args.command](args)
