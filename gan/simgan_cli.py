"""The command line of the SimGAN refiner: `python -m gan.simgan train|refine|compare --help`."""
import argparse
import json
from dataclasses import fields
from pathlib import Path

from common.cli import ArgumentParser, add_backend_options, apply_backend_options, number, whole
from common.files import check_output_path
from gan.simgan import SimGANConfig, SimGANError, refine, resolve_config, train_simgan

DESCRIPTION = """\
SimGAN (Shrivastava et al. 2017), the seed paper's next step: a refiner network R makes
procedural house-number crops look like real SVHN crops, trained with a per-patch adversarial
loss (the discriminator outputs X, its belief that each patch is refined/synthetic; X1 = 1 for
refined, 0 for real) plus λ·mean|R(x) - x|, which keeps the digit and so its label.

train    pretrain R on mean|R(x) - x|, pretrain D, then alternate Kg refiner updates with one
         discriminator update; resumes when --out already holds a run
refine   write an image set refined by a trained run's refiner (labels kept)
compare  train the ConvNet on N refined and on the same N raw procedural images; test both on
         real SVHN (the test split, and train+test) -> RUN_DIR/compare.json

Errors print one line and exit with status 2."""

EPILOG = """\
examples:
  python -m procedural --n 10000 --seed 1 --out proc.npz
  python -m gan.simgan train --real DIR --procedural proc.npz --out runs/simgan \\
      --lambda-reg 10 --kg 2 --steps 1000
  python -m gan.simgan refine --run runs/simgan --input proc.npz --out refined.npz
  python -m gan.simgan compare --run runs/simgan --procedural proc.npz --n 7000 \
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
                   help="folder with SVHN's train_32x32.mat (its labels are not used), or an image-set .npz")
    p.add_argument("--procedural", required=True, metavar="FILE.npz", help="procedural image set to learn to refine")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created, or resumed)")
    # None defaults: only the options given are compared with a resumed run's settings.
    rate = number(0, 1, True, True)
    for flag, key, kind, text in (
            ("--lambda-reg", "lambda_reg", number(0), "λ >= 0, weight of the self-regularisation mean|R(x) - x|"),
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
            ("--checkpoint-every", "checkpoint_every", whole(1), "iterations between checkpoints"),
            ("--seed", "seed", whole(0), "random seed (weights, batches)")):
        p.add_argument(flag, dest=key, type=kind, default=None, help=f"{text} (default: {getattr(d, key)})")
    p.add_argument("--random-init", dest="identity_init", action="store_const", const=False, default=None,
                   help="start the refiner from random weights instead of near the identity")

    p = sub.add_parser("refine", parents=[common], help="refine an image set with a trained run",
                       description="Refine every image of an image set with a run's refiner; labels are kept.")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a trained run folder")
    p.add_argument("--input", required=True, metavar="FILE.npz", help="image set to refine")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="refined image set to write")
    p.add_argument("--batch-size", type=whole(1), default=256, help="images per forward pass (default: 256)")
    p.add_argument("--seed", type=whole(0), default=0, help="accepted for the common interface; refining is deterministic")

    p = sub.add_parser("compare", parents=[common], help="classifier trained on refined vs raw procedural images",
                       description="Train classify's ConvNet (default recipe) on the first N procedural images and "
                                   "on the same images refined by the run; test both on SVHN's test split and on "
                                   "train+test. Writes RUN_DIR/compare.json.")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a trained run folder")
    p.add_argument("--procedural", required=True, metavar="FILE.npz", help="procedural image set (with labels)")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="folder with SVHN's train_32x32.mat and test_32x32.mat")
    p.add_argument("--n", type=whole(1), default=None, help="use the first N procedural images (default: all)")
    p.add_argument("--seed", type=whole(0), default=0, help="classifier seed of the first repeat (default: 0)")
    p.add_argument("--repeats", type=whole(1), default=1, help="classifier seeds SEED, SEED+1, ... (default: 1)")
    p.add_argument("--classifier-steps", type=whole(1), default=None,
                   help="classify's min_steps (default: its recipe's); fewer steps save CPU time")
    p.add_argument("--sets", default="procedural,refined",
                   help="training sets to run: procedural, refined or both (default: procedural,refined)")
    p.add_argument("--fidelity", action="store_true",
                   help="also: how often a ConvNet trained on the real training images labels raw and refined "
                        "images with their procedural label")
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
    """Real images from an SVHN folder (train split) or an image-set .npz; labels dropped."""
    from svhn.imageset import load_image_set
    path = check_real(source)
    if path.suffix == ".npz":
        return load_image_set(path)[0]
    import svhn
    return svhn.load("train", path)[0]


def check_input_file(path, option):
    """An input image set must exist (checked before the slower inputs are read)."""
    if not Path(path).is_file():
        raise SimGANError(f"{option} {path}: image set file not found (give an image-set .npz)")


def main(argv=None):
    from svhn.imageset import load_image_set, save_image_set
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
        real_x = load_real(args.real)
        train_simgan(real_x, proc_x, args.out, proc_y=proc_y, progress=not args.quiet, **settings)
    elif args.command == "compare":
        from gan.simgan_eval import compare
        sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
        if not sets or any(s not in ("procedural", "refined") for s in sets):
            raise SimGANError(f"--sets {args.sets}: give procedural, refined or procedural,refined")
        from svhn.data import data_dir_for
        from gan.simgan import load_config
        load_config(args.run)
        if not (Path(args.run) / "checkpoint.npz").is_file():
            raise SimGANError(f"--run {args.run}: no checkpoint.npz (train the run first)")
        data_dir_for(args.data_dir)
        check_output_path(Path(args.run) / "compare.json", "file", "--run")
        x, y = load_image_set(args.procedural)
        settings = {"min_steps": args.classifier_steps} if args.classifier_steps else {}
        report = compare(args.run, x, y, args.data_dir, n=args.n, sets=sets, progress=not args.quiet,
                         fidelity=args.fidelity,
                         seeds=range(args.seed, args.seed + args.repeats), **settings)
        print(json.dumps(report["mean"], indent=2))
    else:
        check_output_path(args.out, "file", "--out")
        x, y = load_image_set(args.input)
        refined = refine(args.run, x, batch_size=args.batch_size, progress=not args.quiet)
        save_image_set(args.out, refined, y)
        print(f"wrote {len(refined)} refined images to {args.out}")
    return 0
