"""Time one training epoch of the classify ConvNet over N images (default 73,257, SVHN's training split).

The images are random (any images cost the same); the loop is the real one (`classify.train.fit`):
augmentation, forward, backward, SGD step and the weight average, with the default recipe's batch
size and architecture, no validation and no test.

    python -m bench.bench_classify_epoch                     # one full epoch, NumPy
    python -m bench.bench_classify_epoch --steps 50          # only 50 steps, the epoch extrapolated
    python -m bench.bench_classify_epoch --backend cupy

Prints one JSON line: the measured wall time, images per second and (with --steps) the
extrapolated epoch time, with the settings and the number of BLAS threads.

On a busy 2-core machine set OPENBLAS_NUM_THREADS=1: measured here (shared, load 2.5), 60 steps ran
at 187 images/s with one BLAS thread and at 40 images/s with the default two.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nn import backend                                 # noqa: E402
from common.cli import run_cli                           # noqa: E402
from classify.model import ARCHS                     # noqa: E402
from classify.train import TrainConfig, fit, plan     # noqa: E402
from common.cli import backend_name


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.bench_classify_epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=73_257, help="images in the epoch (default %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="time only this many steps and extrapolate the epoch")
    p.add_argument("--arch", choices=ARCHS, default="bn")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="array library: numpy (CPU) or cupy (GPU) (default: $NN_BACKEND or numpy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.n < 1 or (args.steps is not None and args.steps < 1):
        raise ValueError("--n and --steps must be positive")
    args.backend = backend_name(args.backend)          # --backend, else NN_BACKEND (checked), else numpy
    backend.reuse_freed_memory()            # the allocator tweak the applications opt into
    backend.set_backend(args.backend)
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.n).astype(np.int64)
    cfg = TrainConfig(arch=args.arch, batch_size=args.batch_size, epochs=1, val_fraction=0.0, seed=args.seed)
    batch, steps_per_epoch, _, _ = plan(args.n, cfg)
    steps = min(args.steps or steps_per_epoch, steps_per_epoch)
    n_used = steps * batch
    backend.synchronize()
    start = time.perf_counter()
    fit(x[:n_used], y[:n_used], x[:0], y[:0], cfg, rng, progress=not args.quiet)
    backend.synchronize()
    wall = time.perf_counter() - start
    result = {"what": "classify: one training epoch", "backend": backend.name, "arch": args.arch,
              "batch_size": batch, "n_images_epoch": args.n, "steps_timed": steps, "steps_per_epoch": steps_per_epoch,
              "wall_s": round(wall, 2), "images_per_s": round(n_used / wall, 1),
              "epoch_s": round(wall * steps_per_epoch / steps, 1), "extrapolated": steps < steps_per_epoch,
              "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
              "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
