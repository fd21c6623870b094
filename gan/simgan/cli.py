"""The command line of the SimGAN refiner: `python -m gan.simgan train|refine --help`."""
import argparse
from dataclasses import fields
from pathlib import Path

import svhn
from common.cli import ArgumentParser, add_backend_options, apply_backend_options, check_moved, number, whole
from common.files import check_output_path
from svhn.imageset import load_image_set, save_image_set
from gan.simgan.train import SimGANConfig, SimGANError, refine, resolve_config, train_simgan

DESCRIPTION = """\
SimGAN (Shrivastava et al. 2017), the seed paper's next step: a refiner network R makes
procedural house-number crops look like real SVHN crops, trained with a per-patch adversarial
loss (the discriminator outputs X, its belief that each patch is refined/synthetic; X1 = 1 for
refined, 0 for real) plus λ·mean|R(x) - x|, which keeps the digit and so its label; optionally
(--label-weight μ) plus μ·CE(C(R(x)), y), C a small classifier trained first on the procedural
images and their labels, then frozen, which asks for the digit itself; optionally (--flow-weight κ)
a warp, a displacement field predicted by a second network, so the refiner can also move strokes.

train    pretrain R on mean|R(x) - x|, pretrain D, then alternate Kg refiner updates with one
         discriminator update; resumes when --out already holds a run
refine   write an image set refined by a trained run's refiner (labels kept)
(does refining help a classifier? python -m classify compare-simgan, which needs the classifier too)

Errors print one line and exit with status 2."""

EPILOG = """\
examples:
  python -m procedural --n 10000 --seed 1 --out proc.npz
  python -m gan.simgan train --real DIR --procedural proc.npz --out runs/simgan \\
      --lambda-reg 10 --kg 2 --steps 1000
  python -m gan.simgan refine --run runs/simgan --input proc.npz --out refined.npz
  python -m classify compare-simgan --run runs/simgan --procedural proc.npz --n 7000 \
      --data-dir DIR --repeats 3
(DIR: a folder with SVHN's train_32x32.mat and test_32x32.mat)"""


def build_parser():
    d = SimGANConfig()
    parser = ArgumentParser(prog="python -m gan.simgan", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = ArgumentParser(add_help=False)
    add_backend_options(common)
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", parents=[common], help="train (or resume) a refiner",
                       description="Train a SimGAN refiner; on an existing --out folder the run resumes with its "
                                   "saved settings (--steps may be raised to train further).")
    p.add_argument("--real", required=True, metavar="DATA_DIR",
                   help="folder with SVHN's train_32x32.mat, or an image-set .npz (its labels are used by "
                        "--d-conditional only)")
    p.add_argument("--procedural", required=True, metavar="FILE.npz", help="procedural image set to learn to refine")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created, or resumed)")
    # None defaults: only the options given are compared with a resumed run's settings.
    rate = number(0, 1, True, True)
    for flag, key, kind, text in (
            ("--lambda-reg", "lambda_reg", number(0), "λ >= 0, weight of the self-regularisation mean|R(x) - x|"),
            ("--lambda-final", "lambda_final", number(0),
             "λ at the last adversarial step: λ then goes geometrically from --lambda-reg to this over the "
             "adversarial steps (0: λ stays --lambda-reg)"),
            ("--kg", "kg", whole(1), "refiner updates per discriminator update"),
            ("--steps", "steps", whole(0), "adversarial iterations (each: Kg refiner updates + 1 D update)"),
            ("--pretrain-r", "pretrain_r", whole(0), "refiner updates on the L1 term alone, first"),
            ("--pretrain-d", "pretrain_d", whole(0), "discriminator updates after that, before the adversarial phase"),
            ("--buffer-size", "buffer_size", whole(0), "refined images kept in the history buffer"),
            ("--batch-size", "batch_size", whole(2), "images per batch (real and refined alike)"),
            ("--lr-pretrain-r", "lr_pretrain_r", rate, "refiner learning rate while pretraining on the L1 term"),
            ("--lr-r", "lr_r", rate, "refiner learning rate (Adam) in the adversarial phase"),
            ("--lr-d", "lr_d", rate, "discriminator learning rate (Adam)"),
            ("--beta1", "beta1", number(0, 1, False, True), "Adam's β1 for both"),
            ("--width", "width", whole(1), "refiner channels"),
            ("--blocks", "blocks", whole(0), "refiner ResNet blocks"),
            ("--d-width", "d_width", whole(1), "discriminator channels (first stage)"),
            ("--label-weight", "label_weight", number(0),
             "μ >= 0, weight of the label term CE(C(R(x)), y) of a digit keeper C trained on the procedural "
             "images first (0: off)"),
            ("--label-steps", "label_steps", whole(0), "updates of the digit keeper C before the refiner's (with μ > 0)"),
            ("--flow-weight", "flow_weight", number(0),
             "κ >= 0: add a warp, so the refiner can move strokes as well as recolour them (a flow net predicts "
             "a smooth displacement field), with κ·mean(displacement²) in pixels² as its penalty (0: off)"),
            ("--lr-flow", "lr_flow", number(0, 1, False, True),
             "the flow net's learning rate (Adam), with --flow-weight (0: the refiner's --lr-r)"),
            ("--checkpoint-every", "checkpoint_every", whole(1), "iterations between checkpoints"),
            ("--seed", "seed", whole(0), "random seed (weights, batches)")):
        p.add_argument(flag, dest=key, type=kind, default=None, help=f"{text} (default: {getattr(d, key)})")
    p.add_argument("--random-init", dest="identity_init", action="store_const", const=False, default=None,
                   help="start the refiner from random weights instead of near the identity")
    p.add_argument("--d-standardize", dest="d_standardize", action="store_const", const=True, default=None,
                   help="the discriminator sees every colour channel of every image standardised (mean 0, "
                        "variance 1), so the refiner gains nothing by changing brightness, contrast or colour "
                        "(default: off)")
    p.add_argument("--d-conditional", dest="d_conditional", action="store_const", const=True, default=None,
                   help="the discriminator has one map per digit and judges each image by its own digit's map "
                        "(real images with their labels, refined ones with the procedural labels) (default: off)")

    p = sub.add_parser("refine", parents=[common], help="refine an image set with a trained run",
                       description="Refine every image of an image set with a run's refiner; labels are kept.")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a trained run folder")
    p.add_argument("--input", required=True, metavar="FILE.npz", help="image set to refine")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="refined image set to write")
    p.add_argument("--batch-size", type=whole(1), default=256, help="images per forward pass (default: 256)")
    p.add_argument("--seed", type=whole(0), default=0, help="accepted for the common interface; refining is deterministic")

    return parser


def check_real(source):
    """--real must be an SVHN folder holding train_32x32.mat, or an image-set .npz (checked, not read)."""
    path = Path(source)
    if path.suffix == ".npz":
        check_input_file(path, "--real")
    elif not path.is_dir():
        raise SimGANError(f"{source}: no such folder (expected a folder with train_32x32.mat, or an image-set .npz)")
    elif not (path / "train_32x32.mat").is_file():
        raise SimGANError(f"{source}: no train_32x32.mat in this folder")
    return path


def load_real(source):
    """(images, labels) from an SVHN folder (train split) or an image-set .npz."""
    path = check_real(source)
    if path.suffix == ".npz":
        return load_image_set(path)
    return svhn.load("train", path)


def check_input_file(path, option):
    """An input image set must exist (checked before the slower inputs are read)."""
    if not Path(path).is_file():
        raise SimGANError(f"{option} {path}: image set file not found (give an image-set .npz)")


MOVED = {"compare": "python -m classify compare-simgan"}
"""Commands that moved to a package above `gan` (they need the classifier too)."""


def main(argv=None):
    check_moved(argv, "python -m gan.simgan", MOVED)
    args = build_parser().parse_args(argv)
    apply_backend_options(args)
    if args.command == "train":
        settings = {f.name: getattr(args, f.name) for f in fields(SimGANConfig)
                    if getattr(args, f.name, None) is not None}
        check_output_path(args.out, "dir", "--out")
        resolve_config(args.out, settings)             # settings checked before any data is read
        check_real(args.real)
        check_input_file(args.procedural, "--procedural")
        proc_x, proc_y = load_image_set(args.procedural)     # the quick one first: SVHN's .mat is cached when read
        real_x, real_y = load_real(args.real)
        train_simgan(real_x, proc_x, args.out, proc_y=proc_y, real_y=real_y, progress=not args.quiet, **settings)
    else:
        check_output_path(args.out, "file", "--out", suffix=".npz")
        x, y = load_image_set(args.input)
        refined = refine(args.run, x, batch_size=args.batch_size, progress=not args.quiet)
        save_image_set(args.out, refined, y)
        print(f"wrote {len(refined)} refined images to {args.out}")
    return 0
