"""`python -m svhn`: inspect, fetch, verify, preview and export the SVHN data set."""
import argparse

import numpy as np

from common.cli import ArgumentParser, whole
from common.files import check_output_path
from svhn import data, download
from svhn.imageset import save_grid_png, save_image_set

DESCRIPTION = """\
The SVHN cropped digits (Netzer et al. 2011; non-commercial use only).

Files are looked for in --data-dir, else $SVHN_DIR, else ~/.cache/svhn-gan/svhn
($XDG_CACHE_HOME is honoured); a missing file is downloaded from
http://ufldl.stanford.edu/housenumbers/ and checked against its official md5.
Loaded arrays are cached as .npz in ~/.cache/svhn-gan/arrays ($SVHN_CACHE_DIR).
Errors print one line and exit with status 2."""

EPILOG = """\
examples:
  python -m svhn info --data-dir DIR          # DIR: a folder with the .mat files
  python -m svhn download --splits train,test
  python -m svhn verify --data-dir ~/data/svhn
  python -m svhn preview --split test --n 100 --out test.png
  python -m svhn export --data-dir DIR --splits train,test --out real.npz"""


def build_parser():
    """The argument parser: one sub-command per task, sharing --data-dir."""
    common = ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR",
                        help="folder with the .mat files (default: $SVHN_DIR, else ~/.cache/svhn-gan/svhn)")
    splits = ArgumentParser(add_help=False)
    splits.add_argument("--splits", default="train,test", metavar="LIST",
                        help="comma-separated splits among train, test, extra (default: train,test)")

    parser = ArgumentParser(prog="python -m svhn", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", parents=[common, splits], help="image counts per digit, shapes, file locations")
    p = sub.add_parser("download", parents=[common, splits], help="fetch missing files (md5-checked)")
    p.add_argument("--url", default=download.URL_BASE, metavar="URL",
                   help=f"where the files are (a mirror, or a file:// folder; default {download.URL_BASE})")
    p.add_argument("--verify", action="store_true", help="afterwards check every file's md5, as `verify` does")
    sub.add_parser("verify", parents=[common, splits],
                   help="compare files with the official md5 sums (exit 1 if one differs or is missing)")
    p = sub.add_parser("preview", parents=[common], help="write a PNG grid of the first images of a split")
    p.add_argument("--split", default="train", help="train, test or extra (default: train)")
    p.add_argument("--n", type=whole(1), default=100, help="how many images, at least 1 (default: 100)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    p = sub.add_parser("export", parents=[common, splits],
                       help="write the splits, concatenated, as one image set .npz (x uint8, y int64)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the image set to write")
    return parser


def cmd_info(args):
    """Print N, shape and per-digit counts for each split."""
    for split in data.parse_splits(args.splits):
        x, y = data.load(split, args.data_dir)
        counts = np.bincount(y, minlength=10)
        print(f"{split}: {len(x)} images, x {x.dtype} {tuple(x.shape)}, y {y.dtype}, "
              f"from {data.split_path(split, args.data_dir, download=False)}")
        print("  per digit 0..9: " + " ".join(str(c) for c in counts))
    return 0


def cmd_download(args):
    """Fetch the missing files; existing files are left alone."""
    splits = data.parse_splits(args.splits)
    for split in splits:
        path = data.split_path(split, args.data_dir, download=False)
        if path.is_file():
            print(f"{path}: present, not downloaded again")
        else:
            data.split_path(split, args.data_dir, url_base=args.url)
            print(f"{path}: downloaded, md5 OK")
    return cmd_verify(args) if args.verify else 0


def cmd_verify(args):
    """Print one line per split; exit status 1 if any file is missing or not official."""
    results = [data.verify(split, args.data_dir) for split in data.parse_splits(args.splits)]
    for _, message in results:
        print(message)
    return 0 if all(ok for ok, _ in results) else 1


def cmd_preview(args):
    """Save the first --n images of a split as a 10-wide grid."""
    data.split_file(args.split)
    check_output_path(args.out, "file", "--out", suffix=".png")
    x, _ = data.load(args.split, args.data_dir)
    shown = x[:args.n]
    save_grid_png(args.out, shown, nrow=10, title=f"SVHN {args.split}: first {len(shown)} of {len(x)}")
    print(f"wrote {args.out} ({len(shown)} images)")
    return 0


def cmd_export(args):
    """Concatenate the splits into one image set file."""
    splits = data.parse_splits(args.splits)
    check_output_path(args.out, "file", "--out", suffix=".npz")
    pairs = [data.load(split, args.data_dir) for split in splits]
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    save_image_set(args.out, x, y)
    print(f"wrote {args.out}: {len(x)} images ({args.splits}), per digit 0..9: "
          + " ".join(str(c) for c in np.bincount(y, minlength=10)))
    return 0


COMMANDS = {"info": cmd_info, "download": cmd_download, "verify": cmd_verify,
            "preview": cmd_preview, "export": cmd_export}


def main(argv=None):
    """Parse `argv` and run the chosen sub-command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
