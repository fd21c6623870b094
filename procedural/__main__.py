"""Command line: `python -m procedural --n 73000 --out procedural.npz --seed 0 --preview procedural.png`.

Writes an image set (.npz with x uint8 (N, 32, 32, 3) and y int64 (N,), the project's format)
and optionally a Figure-6-like preview grid. Run with --help for every option.
"""
import argparse
import dataclasses
import sys
import time
import warnings

from tqdm import tqdm

from common.cli import ArgumentParser, backend_name, run_cli, whole
from common.files import check_output_path
from procedural import ProceduralSettings
from procedural.settings import FIELD_NAMES
from procedural import generate, preview_images
from svhn.imageset import save_grid_png, save_image_set
from procedural.fonts import describe, resolve_fonts

DESCRIPTION = """\
Synthesize labelled 32x32 house-number crops with the paper's "simple method": one centred
digit (the label) in a random font, often with parts of neighbouring digits at the left and
right edges, random size, position, rotation, shear, perspective and stroke width, digit, plate
and wall colours with a minimum contrast (both polarities), texture, lighting, random
distractors, blur, resolution loss, noise and JPEG artefacts. Labels are balanced over 0..9.

The same --seed and settings give the same images for any --workers (each image draws its
random numbers from its own seed), and on any machine with the same font packages and Pillow
build (a different FreeType or libjpeg inside Pillow can move a glyph's edge by a pixel). Every random range is a field of
procedural.ProceduralSettings: list them with --list-settings, change them with --set."""

EPILOG = """\
examples:
  python -m procedural --n 73000 --out procedural.npz --seed 0 --preview procedural.png
  python -m procedural --n 1000 --out small.npz --set rotation_deg=20 --set blur_sigma=0,2
  python -m procedural --n 1000 --out mine.npz --fonts-dir ~/fonts --no-builtin-fonts
  python -m procedural --list-fonts"""


def parse_value(field, text):
    """A --set value for `field`, typed like the field's default: numbers, comma-separated
    pairs/tuples of numbers, or (for fonts/families) comma-separated strings."""
    default = getattr(ProceduralSettings(), field)

    def num(t):
        t = t.strip()
        try:
            return int(t)
        except ValueError:
            try:
                return float(t)
            except ValueError:
                raise ValueError(f"--set {field}={text}: {t!r} is not a number") from None

    if isinstance(default, tuple):
        parts = [p for p in text.split(",") if p.strip()] if text.strip() else []
        if field in ("fonts", "families"):
            return tuple(p.strip() for p in parts)
        return tuple(num(p) for p in parts)
    return num(text)


def build_settings(args):
    changes = {}
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set {item}: expected FIELD=VALUE (see --list-settings)")
        field, value = item.split("=", 1)
        field = field.strip()
        if field not in FIELD_NAMES:
            raise ValueError(f"--set {item}: unknown setting {field!r} (see --list-settings)")
        changes[field] = parse_value(field, value)
    settings = dataclasses.replace(ProceduralSettings(), **changes)
    fonts = list(settings.fonts) if "fonts" in changes else ([] if args.no_builtin_fonts else ["builtin"])
    if args.system_fonts:
        fonts.append("system")
    fonts += list(args.fonts_dir or [])
    if not fonts:
        raise ValueError("no fonts chosen: --no-builtin-fonts needs --fonts-dir or --system-fonts")
    return dataclasses.replace(settings, fonts=tuple(fonts)).validate()


def list_settings():
    docs = ProceduralSettings.field_docs()
    for f in dataclasses.fields(ProceduralSettings):
        print(f"{f.name} = {getattr(ProceduralSettings(), f.name)!r}")
        print(f"    {docs.get(f.name, '')}")


def main(argv=None):
    p = ArgumentParser(prog="python -m procedural", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=whole(1), default=73000,
                   help="number of images (default 73000: the paper's 7,300 per digit)")
    p.add_argument("--out", default="procedural.npz", help="image set to write (.npz; default %(default)s)")
    p.add_argument("--seed", type=whole(0), default=0, help="base random seed, >= 0 (default %(default)s)")
    p.add_argument("--preview", metavar="PNG",
                   help="also write a preview grid like the paper's Figure 6: row k shows 10 images of digit k")
    p.add_argument("--workers", type=whole(1), default=None,
                   help="worker processes (default: one per CPU core; 1 = no extra processes); "
                        "the images do not depend on it")
    p.add_argument("--fonts-dir", action="append", metavar="DIR",
                   help="add the .ttf/.otf fonts under DIR (repeatable); fonts without usable digits are skipped")
    p.add_argument("--no-builtin-fonts", action="store_true",
                   help="leave out the built-in font list (then use only --fonts-dir / --system-fonts)")
    p.add_argument("--system-fonts", action="store_true",
                   help="add the machine's system fonts (these differ between machines, so the images do too)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change one ProceduralSettings field, e.g. --set rotation_deg=15 or "
                        "--set blur_sigma=0,2 (repeatable; see --list-settings)")
    p.add_argument("--list-settings", action="store_true", help="print every setting, its default and meaning, and exit")
    p.add_argument("--list-fonts", action="store_true", help="print the font families that would be used, and exit")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="numpy or cupy: accepted for the project's common interface and ignored (rendering "
                        "runs on the CPU; NN_BACKEND is not read)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    if args.list_settings:
        list_settings()
        return 0
    settings = build_settings(args)
    if args.list_fonts:
        refs = resolve_fonts(settings.fonts, settings.families)
        print("\n".join(describe(refs)))
        print(f"{len(refs)} fonts")
        return 0
    if args.backend is not None:
        backend_name(args.backend)
    check_output_path(args.out, "file", "--out", suffix=".npz")
    if args.preview:                     # a .png name, so never the same file as --out
        check_output_path(args.preview, "file", "--preview", suffix=".png")
    with warnings.catch_warnings():      # every font is found before any work (generate warns of missing ones)
        warnings.simplefilter("ignore")
        resolve_fonts(settings.fonts, settings.families)

    start = time.time()
    if args.quiet:
        x, y = generate(args.n, seed=args.seed, settings=settings, workers=args.workers)
    else:
        with tqdm(total=args.n, unit="img", desc="procedural", file=sys.stderr) as bar:
            x, y = generate(args.n, seed=args.seed, settings=settings, workers=args.workers,
                            progress=bar.update)
    save_image_set(args.out, x, y)
    if args.preview:
        save_grid_png(args.preview, preview_images(x, y), nrow=10, scale=3,
                      title=f"procedural samples, seed {args.seed}")
    took = time.time() - start
    print(f"wrote {args.n} images to {args.out}"
          + (f" and a preview to {args.preview}" if args.preview else "")
          + f" in {took:.1f} s ({args.n / took:.0f} images/s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
