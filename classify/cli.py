"""Command line of the ConvNet: train, eval, predict, and the evaluations of the generators that need it,
fidelity and compare-simgan (run `python -m classify COMMAND --help`)."""
import json
import sys
from pathlib import Path

import numpy as np

from nn import backend
from common.cli import ArgumentParser, add_backend_options, apply_backend_options, number, whole
from common.files import atomic_write_json, check_output_path
from svhn.data import data_dir_for
from svhn.imageset import load_image_set
from gan import parse_digits
from gan.simgan import check_trained

from classify.data import ClassifyError, check_specs, resolve_sets
from classify.evaluate import evaluate, predict_proba, write_report
from classify.model import ARCHS, load_model, save_model
from classify.train import MIN_EPOCHS, MIN_STEPS, TrainConfig, train_classifier
from classify.augment import NONE
from classify.fidelity import fidelity
from classify.simgan_compare import COMPARE_FILE, SETS, compare

SETS_HELP = ("real (SVHN's train split; as --test, its test split), procedural (the synthesizer) or "
             "PATH.npz (an image set), each optionally capped to N random images as NAME:N")


def build_parser():
    parser = ArgumentParser(
        prog="python -m classify",
        description="The paper's ConvNet (6 conv, 3 pool, 1 dense): train it on any image set and test it on "
                    "real SVHN. The default flags are the recommended recipe.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on one or more image sets, test, write model.npz and metrics.json",
                       description="Train the ConvNet and test it; writes OUT/model.npz, OUT/metrics.json, "
                                   "OUT/confusion.png and OUT/misclassified.png.")
    t.add_argument("--train", nargs="+", required=True, metavar="SET",
                   help=f"training set(s), mixed together: {SETS_HELP}; e.g. --train real:300 dcgan.npz:20000")
    t.add_argument("--test", default="real", metavar="SET", help="test set: real (default) or PATH.npz[:N]")
    t.add_argument("--epochs", type=whole(1), default=None,
                   help=f"passes over the training set (default: max({MIN_EPOCHS}, enough for --min-steps steps))")
    t.add_argument("--min-steps", type=whole(1), default=MIN_STEPS,
                   help="fewest optimizer steps when --epochs is not given (default %(default)s)")
    t.add_argument("--arch", choices=ARCHS, default="bn",
                   help="bn: BatchNorm + dropout (default); paper: plain conv + ReLU, as the paper; "
                        "bn-std: bn on per-image standardised inputs (no brightness or contrast cues)")
    t.add_argument("--widths", type=whole(1), nargs=3, default=TrainConfig.widths, metavar=("C1", "C2", "C3"),
                   help="channels of the three convolution stages (default 32 64 128)")
    t.add_argument("--batch-size", type=whole(1), default=TrainConfig.batch_size, help="default %(default)s")
    t.add_argument("--lr", type=number(0, 1, True, True), default=None, help="peak learning rate, in (0, 1) (default 0.05 for bn, 0.02 for paper)")
    t.add_argument("--weight-decay", type=number(0), default=TrainConfig.weight_decay, help="default %(default)s")
    t.add_argument("--label-smoothing", type=number(0, 1, False, True), default=TrainConfig.label_smoothing, help="default %(default)s")
    t.add_argument("--ema-decay", type=number(0, 1, False, True), default=TrainConfig.ema_decay,
                   help="decay of the weight average that is kept (0: off; default %(default)s)")
    t.add_argument("--val-fraction", type=number(0, 1, False, True), default=TrainConfig.val_fraction,
                   help="fraction of the training images held out to pick the best checkpoint (default %(default)s)")
    t.add_argument("--batch-shares", type=number(0), nargs="+", default=None, metavar="S",
                   help="share of every batch drawn from each --train set, in order: e.g. --train real:100 dcgan.npz "
                        "--batch-shares 1 1 makes half of each batch real images (a small set is then seen many "
                        "times); default: every image once per epoch, so each set in proportion to its size")
    t.add_argument("--no-augment", action="store_true", help="train on the images as they are")
    t.add_argument("--no-tta", action="store_true", help="test on single views (no shifted copies)")
    t.add_argument("--out", required=True, type=Path, help="folder for model.npz, metrics.json and the PNGs")
    _common(t, seed=True)

    e = sub.add_parser("eval", help="test a saved model and print the metrics as JSON",
                       description="Test a saved model; prints the same JSON as train's metrics.json.")
    e.add_argument("--model", required=True, type=Path, help="a model.npz written by train")
    e.add_argument("--test", default="real", metavar="SET", help="test set: real (default) or PATH.npz[:N]")
    e.add_argument("--no-tta", action="store_true", help="single views (no shifted copies)")
    e.add_argument("--out", type=Path, default=None, help="also write metrics.json, confusion.png, misclassified.png here")
    _common(e, seed=True)

    p = sub.add_parser("predict", help="label your own image files",
                       description="Label image files of any size (resized to 32x32 RGB): one line per image, "
                                   "'PATH<TAB>digit<TAB>probability'.")
    p.add_argument("--model", required=True, type=Path, help="a model.npz written by train")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--no-tta", action="store_true", help="single views (no shifted copies)")
    add_backend_options(p)

    f = sub.add_parser("fidelity", help="label fidelity of a DCGAN run: the ConvNet trained on real images labels "
                                        "its samples",
                       description="How often a ConvNet trained on the real training images labels the images of "
                                   "digit k's generator as k. Writes RUN_DIR/fidelity.json.")
    f.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder written by python -m gan train")
    f.add_argument("--classifier", metavar="MODEL.npz",
                   help="classify model to use; trained on the real training images and saved here when missing "
                        "(default: RUN_DIR/fidelity_classifier.npz)")
    f.add_argument("--classifier-steps", type=whole(1), metavar="N",
                   help="when the classifier is trained here: at least N optimizer steps (default: classify's own)")
    f.add_argument("--per-digit", type=whole(1), default=500, help="generated images per digit (default: 500)")
    f.add_argument("--digits", default=None, help="digits to measure (default: every trained digit)")
    _common(f, seed=True)

    c = sub.add_parser("compare-simgan", help="the ConvNet trained on refined vs raw procedural images",
                       description="Train the ConvNet (default recipe) on the first N procedural images and on the "
                                   "same images refined by a SimGAN run; test both on SVHN's test split and on "
                                   "train+test. Writes RUN_DIR/compare.json.")
    c.add_argument("--run", required=True, metavar="RUN_DIR", help="a trained run folder of python -m gan.simgan")
    c.add_argument("--procedural", required=True, metavar="FILE.npz", help="procedural image set (with labels)")
    c.add_argument("--n", type=whole(1), default=None, help="use the first N procedural images (default: all)")
    c.add_argument("--repeats", type=whole(1), default=1, help="classifier seeds SEED, SEED+1, ... (default: 1)")
    c.add_argument("--classifier-steps", type=whole(1), default=None,
                   help="the ConvNet's min_steps (default: its recipe's); fewer steps save CPU time")
    c.add_argument("--sets", default="procedural,refined",
                   help="training sets to run: procedural, refined or both (default: procedural,refined)")
    c.add_argument("--fidelity", action="store_true",
                   help="also: how often a ConvNet trained on the real training images labels raw and refined "
                        "images with their procedural label")
    _common(c, seed=True)
    return parser


def _common(p, seed):
    p.add_argument("--data-dir", default=None,
                   help="folder with SVHN's train_32x32.mat / test_32x32.mat (default: $SVHN_DIR or the user cache)")
    add_backend_options(p)
    if seed:
        p.add_argument("--seed", type=whole(0), default=0, help="seed of weights, validation split, shuffling, "
                                                           "augmentation and NAME:N caps (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_train(args):
    check_specs(args.train, "--train")
    check_specs([args.test], "--test")
    check_output_path(args.out, "dir", "--out")
    if args.batch_shares is not None and len(args.batch_shares) != len(args.train):
        raise ValueError(f"--batch-shares: {len(args.batch_shares)} shares for {len(args.train)} --train sets; give "
                         f"one share per set, in the same order")
    cfg = TrainConfig(arch=args.arch, widths=tuple(args.widths), epochs=args.epochs, min_steps=args.min_steps,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                      ema_decay=args.ema_decay, val_fraction=args.val_fraction, seed=args.seed,
                      tta=not args.no_tta, batch_shares=None if args.batch_shares is None else tuple(args.batch_shares),
                      **({"augment": NONE} if args.no_augment else {}))
    model, metrics = train_classifier(args.train, test=args.test, config=cfg, data_dir=args.data_dir,
                                      progress=not args.quiet, report_dir=args.out)
    save_model(model, args.out / "model.npz")
    atomic_write_json(args.out / "metrics.json", metrics)
    if "warning" in metrics:
        print(f"warning: {metrics['warning']}", file=sys.stderr)
    print(f"test accuracy {metrics['test_accuracy']:.4f} on {metrics['n_test']} images "
          f"({metrics['test_set']['name']}); trained on {metrics['n_train']} images in {metrics['train_time_s']} s; "
          f"wrote {args.out / 'model.npz'} and {args.out / 'metrics.json'}")
    return 0


def cmd_eval(args):
    check_specs([args.test], "--test")
    if args.out is not None:
        check_output_path(args.out, "dir", "--out")
    model = load_model(args.model)
    x, y, described = resolve_sets([args.test], "test", args.data_dir, seed=args.seed)
    result = evaluate(model, x, y, tta=not args.no_tta, source=described[0]["name"])
    predictions = result.pop("predictions")
    metrics = {"test_accuracy": result["accuracy"], "per_digit_accuracy": result["per_digit_accuracy"],
               "confusion_matrix": result["confusion_matrix"], "test_loss": result["loss"],
               "test_set": described[0], "n_test": result["n"], "model": str(args.model), "arch": model.arch,
               "tta": result["tta"], "backend": backend.name}
    if args.out is not None:
        write_report(args.out, x, y, predictions, result, described[0]["name"])
        atomic_write_json(args.out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def read_images(paths):
    """Image files of any size and mode -> uint8 (N, 32, 32, 3), resized with Pillow (bilinear)."""
    from PIL import Image, UnidentifiedImageError
    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.uint8))
        except FileNotFoundError:
            raise ClassifyError(f"{path}: no such image file") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ClassifyError(f"{path}: not a readable image ({str(exc).strip().splitlines()[0]})") from None
    return np.stack(images)


def cmd_predict(args):
    model = load_model(args.model)
    p = predict_proba(model, read_images(args.images), tta=not args.no_tta)
    for path, probs in zip(args.images, p):
        print(f"{path}\t{int(probs.argmax())}\t{probs.max():.3f}")
    return 0


def cmd_fidelity(args):
    digits = parse_digits(args.digits) if args.digits else None
    if args.data_dir is not None:
        data_dir_for(args.data_dir)
    result = fidelity(args.run, args.data_dir, args.classifier, args.per_digit, digits, seed=args.seed,
                      progress=not args.quiet, log=lambda line: print(line, file=sys.stderr),
                      classifier_steps=args.classifier_steps)
    for d, f in result["per_digit"].items():
        print(f"digit {d}: {f:.3f}")
    print(f"mean label fidelity: {result['mean']:.3f} ({result['per_digit_images']} images per digit)")
    return 0


def cmd_compare_simgan(args):
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    if not sets or any(s not in SETS for s in sets):
        raise ClassifyError(f"--sets {args.sets}: give procedural, refined or procedural,refined")
    check_trained(args.run, "--run")
    if args.data_dir is None:
        raise ClassifyError("compare-simgan needs --data-dir DIR (a folder with SVHN's train_32x32.mat and "
                            "test_32x32.mat)")
    data_dir_for(args.data_dir)
    check_output_path(Path(args.run) / COMPARE_FILE, "file", "--run")
    x, y = load_image_set(args.procedural)
    settings = {"min_steps": args.classifier_steps} if args.classifier_steps else {}
    report = compare(args.run, x, y, args.data_dir, n=args.n, sets=sets, progress=not args.quiet,
                     fidelity=args.fidelity, seeds=range(args.seed, args.seed + args.repeats), **settings)
    print(json.dumps(report["mean"], indent=2))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "fidelity": cmd_fidelity,
            "compare-simgan": cmd_compare_simgan}


def main(argv=None):
    args = build_parser().parse_args(argv)
    apply_backend_options(args)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
