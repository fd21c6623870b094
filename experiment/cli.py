"""Command line of run_all.py: `python run_all.py [--preset quick|paper|smoke] [--set FIELD=VALUE ...]`."""
import argparse
import sys

from common.cli import ArgumentParser, add_backend_options, check_backend_options, tf32_setting, whole
from common.files import check_output_path
from experiment.settings import apply_overrides, describe, preset
from experiment.pipeline import default_jobs, run_experiment
from svhn.data import data_dir_for

DESCRIPTION = """\
The paper's whole experiment in one command (M. Grbić, "Generating Training Images Using Generative
Adversarial Neural Networks"): real SVHN data -> a procedural training set -> ten DCGANs, one per
digit -> a DCGAN training set -> a SimGAN-refined procedural set -> the paper's ConvNet trained on
each set and tested on the real test set -> table.md, results.json and figures in --out; plus a
mixing curve: accuracy against the number of real training images, with and without synthetic ones.

Stages are resumable: each writes its outputs atomically to OUT/stages/NAME with a manifest of its
settings and of what it consumed. Running again skips finished stages whose settings are unchanged
and redoes changed ones and everything downstream; an interrupt loses at most the stage in
progress (the DCGAN and SimGAN stages resume from their checkpoints).

presets:
  quick   (default) the same pipeline at reduced sizes, <= 30 min on 2 CPU cores with the 783/300
          image SVHN sample (--data-dir DIR, a folder with it): 7,300 procedural images; the
          DCGAN of digit 5 trained to iteration 701 (Figures 7-8), the other nine to 200; 730
          DCGAN images per digit (digit 5's from its generator at iteration 200, as the
          others'); a small SimGAN (width 32, 2 blocks, 150 + 50 + 150 iterations); a narrower
          ConvNet (16-32-64 channels) trained 800 steps (batch 32, learning rate 0.01, light
          augmentation); at most 2,000 test images; mixing curve at 0, 100, 300, all.
  paper   the paper's sizes: 73,000 images per training set, the full test set, DCGANs at 2,000
          iterations per digit, a SimGAN of width 64 with 4 blocks, classify's full recipe (at
          least 20 epochs); mixing curve at 0, 100, 300, 1,000, 10,000, all. Meant for --backend cupy.
  smoke   seconds, for CI: tiny networks and a few steps; every stage and output exercised.
On the mixing curve half of every batch that mixes real and synthetic images is real images (mix_real_share).
Every size can be changed with --set (see --list-settings). Each table row is one ConvNet by default;
--set clf_seeds=3 --set dcgan_seeds=2 trains each row's ConvNet with 3 seeds and the DCGAN row on 2
independent sets of ten DCGANs, and the table shows each row's mean, its standard error and the
seeds behind it."""

EPILOG = """\
examples:
  python run_all.py --data-dir DIR                                # the quick preset on the .mat files in DIR
  python run_all.py --backend cupy --preset paper                 # the paper at full scale (GPU)
  python run_all.py --preset smoke --data-dir DIR --out smoke_results
  python run_all.py --set procedural_n=5000 --set mix_real=0,100,all
  python run_all.py --redo 'classify_*'                           # retrain every classifier
  python run_all.py --preset paper --list-settings

Errors (bad arguments, missing data) print one line and exit with status 2."""


def build_parser():
    p = ArgumentParser(prog="python run_all.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper", "smoke"), default="quick",
                   help="experiment sizes (default: quick)")
    add_backend_options(p)
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with train_32x32.mat and test_32x32.mat (default: $SVHN_DIR or the user cache, "
                        "downloading what is missing)")
    p.add_argument("--out", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=whole(0), default=0, help="random seed of every stage (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one setting of the preset, e.g. --set procedural_n=5000, --set clf_steps=all, "
                        "--set mix_real=0,100,all (repeatable; see --list-settings)")
    p.add_argument("--redo", action="append", default=[], metavar="STAGE",
                   help="redo this stage (a name or pattern such as 'classify_*') even when it is finished; the "
                        "stages that read it follow unless it makes the very same images again (repeatable)")
    p.add_argument("--jobs", type=whole(1), default=None,
                   help="stages run at once in worker processes, each with one BLAS thread (the ten DCGANs when "
                        "trained one by one, the SimGAN and most classifiers are independent) (default: one per CPU core with numpy, "
                        "1 with cupy; 1 runs everything in this process, in order, with progress bars)")
    p.add_argument("--list-settings", action="store_true",
                   help="print the preset's settings (after --set), what each means, and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the one-line stage summaries stay)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = apply_overrides(preset(args.preset), args.set)
    if args.list_settings:
        print("\n".join(describe(settings)))
        return 0
    # everything is checked before the first stage: backend, threads, data folder, output folder
    # (run_experiment checks the settings and --redo patterns against the packages and the plan)
    args.backend, threads = check_backend_options(args)
    tf32 = tf32_setting(args.tf32)
    if args.data_dir is not None:
        data_dir_for(args.data_dir)
    check_output_path(args.out, "dir", "--out")
    jobs = default_jobs(args.backend) if args.jobs is None else args.jobs

    def log(line):
        print(line, flush=True)

    log(f"run_all: preset {args.preset}, backend {args.backend}, data {args.data_dir or 'default'}, out {args.out}, "
        f"{jobs} job(s)")
    run_experiment(settings, out=args.out, data_dir=args.data_dir, backend_name=args.backend, seed=args.seed,
                   preset=args.preset, progress=not args.quiet and sys.stderr.isatty(), log=log, redo=args.redo,
                   jobs=jobs, threads=threads, tf32=tf32)
    return 0
