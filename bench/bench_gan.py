"""Seconds per DCGAN training iteration (one discriminator + one generator update) at batch 64.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_gan.py            # NumPy, one core
    python bench/bench_gan.py --backend cupy --upsample nearest --width 64

Runs `--warmup` untimed iterations, then `--iters` timed ones on random images, and prints the
median and mean seconds per iteration for each upsample mode asked for (and the projected time of
10 digits x 900 iterations, `gan train`'s default). Add `--json FILE` to write the numbers.

`--together G` also times G DCGANs trained as one (gan/dcgan/grouped.py, `gan train --together`; nearest
upsampling) against G times one DCGAN's iteration, measured in the same run:

    python bench/bench_gan.py --backend cupy --upsample nearest --augment --batch-size 128 --together 10
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nn import backend                                    # noqa: E402
from common.files import atomic_write_json           # noqa: E402
from common.cli import run_cli                            # noqa: E402
from gan.dcgan import DCGAN, Z_DIM, build_discriminator, build_generator   # noqa: E402
from gan.dcgan.grouped import GroupedDCGAN                # noqa: E402
from common.cli import backend_name


def time_iterations(upsample, width, loss, batch_size, iters, warmup, augment=False, seed=0):
    """Per-iteration wall times (s) of DCGAN.train_step on random data."""
    backend.seed(seed)
    gan = DCGAN(build_generator(upsample, width), build_discriminator(width), loss, augment=augment)
    rng = np.random.default_rng(seed)
    real = backend.asarray(rng.uniform(-1, 1, (batch_size, 3, 32, 32)).astype(np.float32))
    times = []
    for i in range(warmup + iters):
        z = backend.asarray(rng.standard_normal((batch_size, Z_DIM)).astype(np.float32))
        backend.synchronize()
        t0 = time.perf_counter()
        gan.train_step(real, z, rng)
        backend.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def time_grouped(groups, width, loss, batch_size, iters, warmup, augment=False, seed=0):
    """Per-iteration wall times (s) of GroupedDCGAN.train_step: `groups` DCGANs trained as one."""
    gans = []
    for g in range(groups):
        backend.seed(seed + g)
        gans.append(DCGAN(build_generator("nearest", width), build_discriminator(width), loss, augment=augment))
    group = GroupedDCGAN(gans)
    rngs = [np.random.default_rng([seed, g]) for g in range(groups)]
    real = backend.asarray(rngs[0].uniform(-1, 1, (groups * batch_size, 3, 32, 32)).astype(np.float32))
    times = []
    for i in range(warmup + iters):
        z = backend.asarray(np.concatenate([r.standard_normal((batch_size, Z_DIM)) for r in rngs]).astype(np.float32))
        backend.synchronize()
        t0 = time.perf_counter()
        group.train_step(real, z, rngs)
        backend.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="array library: numpy (CPU) or cupy (GPU) (default: $NN_BACKEND or numpy)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--upsample", choices=("nearest", "deconv", "both"), default="both",
                   help="generator stages to time (default: both)")
    p.add_argument("--width", type=int, default=32, help="network width (default: 32, the training default)")
    p.add_argument("--loss", choices=("paper", "bce"), default="paper", help="loss (default: paper)")
    p.add_argument("--augment", action="store_true", help="with DiffAugment")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default: 2)")
    p.add_argument("--together", type=int, default=0, metavar="G",
                   help="also time G nearest-upsampling DCGANs trained as one against G x one (default: off)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.iters < 1 or args.batch_size < 2:
        raise ValueError("--iters must be >= 1 and --batch-size >= 2")
    args.backend = backend_name(args.backend)          # --backend, else NN_BACKEND (checked), else numpy
    backend.reuse_freed_memory()            # the allocator tweak the applications opt into
    backend.set_backend(args.backend)
    modes = ("nearest", "deconv") if args.upsample == "both" else (args.upsample,)
    results = []
    for mode in modes:
        times = time_iterations(mode, args.width, args.loss, args.batch_size, args.iters, args.warmup,
                                args.augment, args.seed)
        row = {"backend": args.backend, "upsample": mode, "width": args.width, "loss": args.loss,
               "augment": args.augment, "batch_size": args.batch_size, "iters": args.iters,
               "median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times)}
        results.append(row)
        print(f"{args.backend:<6} upsample={mode:<8} width={args.width:<3} batch={args.batch_size}: "
              f"median {row['median_s']:.3f} s/iter (mean {row['mean_s']:.3f}, min {row['min_s']:.3f}; "
              f"{args.iters} iters) -> 10 digits x 900 iters = {9000 * row['median_s'] / 60:.0f} min", flush=True)
    if args.together:
        one = next((r["median_s"] for r in results if r["upsample"] == "nearest"), None)
        if one is None:
            one = statistics.median(time_iterations("nearest", args.width, args.loss, args.batch_size, args.iters,
                                                    args.warmup, args.augment, args.seed))
        times = time_grouped(args.together, args.width, args.loss, args.batch_size, args.iters, args.warmup,
                             args.augment, args.seed)
        row = {"backend": args.backend, "upsample": "nearest", "together": args.together, "width": args.width,
               "loss": args.loss, "augment": args.augment, "batch_size": args.batch_size, "iters": args.iters,
               "median_s": statistics.median(times), "one_by_one_s": args.together * one}
        results.append(row)
        print(f"{args.backend:<6} {args.together} DCGANs together: median {row['median_s']:.3f} s/iter against "
              f"{args.together} x one = {row['one_by_one_s']:.3f} s ({row['one_by_one_s'] / row['median_s']:.2f}x; "
              f"{args.iters} iters)", flush=True)
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    run_cli(main)
