"""python bench/bench_winograd.py — im2col Conv2D vs Winograd F(2×2, 3×3), layer by layer.

Times forward and backward of the reference ConvNet's 3×3 layers (batch 128, float32) with the
im2col `Conv2D` and with `nn.layers.winograd_fast`, interleaved round by round so that machine noise hits
both, and prints the medians and the speed-ups (im2col time / Winograd time; > 1: Winograd is faster).
Inputs and upstream gradients are NCHW views of channel-major (C, N, H, W) memory, as the layers of
`nn` hand them to each other (the network's first layer gets plain NCHW images).

On a shared machine numbers vary from run to run: compare the ratios, not the milliseconds.
`--blas-threads 1` sets OPENBLAS_NUM_THREADS (and friends) before NumPy loads, to see how much of a
difference BLAS threading makes when the cores are busy with other work.
"""
import argparse
import os
import sys
import time

LAYERS = [  # (in_channels, out_channels, image size), the reference ConvNet's 3×3 convolutions
    (3, 32, 32), (32, 32, 32), (32, 64, 16), (64, 64, 16), (64, 128, 8), (128, 128, 8),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python bench/bench_winograd.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="array library: numpy (CPU) or cupy (GPU) (default: $NN_BACKEND or numpy)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken; default 5)")
    p.add_argument("--repeats", type=int, default=1, help="timed calls per method and round (default 1)")
    p.add_argument("--products", default="auto", choices=["auto", "per_image", "batched"],
                   help="how Winograd does its 16 products (default: auto = per_image on NumPy, batched on CuPy)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS before NumPy loads")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.blas_threads is not None:
        if "numpy" in sys.modules:
            raise SystemExit("--blas-threads must be set before NumPy is imported")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    # imported here, not at the top: --blas-threads must set the variables above before NumPy loads
    import numpy as np
    from nn import backend, layers
    from nn.layers import winograd_fast as winograd

    from common.cli import backend_name
    args.backend = backend_name(args.backend)          # --backend, else NN_BACKEND (checked), else numpy
    backend.reuse_freed_memory()            # the allocator tweak the applications opt into
    backend.set_backend(args.backend)
    xp = backend.xp

    def channel_major(a):
        """An NCHW view of (C, N, H, W) memory, as nn's layers pass activations on."""
        return xp.ascontiguousarray(backend.asarray(a).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    def timed(fn):
        backend.synchronize()
        t0 = time.perf_counter()
        out = fn()
        backend.synchronize()
        return time.perf_counter() - t0, out

    def loadavg():
        try:
            return "load average %.2f %.2f %.2f" % os.getloadavg()
        except OSError:
            return "load average unknown"

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"backend {args.backend}, batch {args.batch}, float32, Winograd products: {args.products}, "
          f"BLAS threads: {threads}, {os.cpu_count()} CPUs, {loadavg()}")
    head = (f"{'layer':<16}{'im2col fwd':>11}{'wino fwd':>10}{'speed-up':>9}   "
            f"{'im2col bwd':>11}{'wino bwd':>10}{'speed-up':>9}   {'fwd+bwd':>8}   {'y rel diff':>12}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    totals = np.zeros(4)
    for C, O, S in LAYERS:
        backend.seed(0)
        conv = layers.Conv2D(C, O, 3, padding=1)
        x = rng.standard_normal((args.batch, C, S, S)).astype(np.float32)
        x = backend.asarray(x) if C == 3 else channel_major(x)
        dy = channel_major(rng.standard_normal((args.batch, O, S, S)).astype(np.float32))
        W, b = conv.params["W"], conv.params["b"]

        y_ref = conv.forward(x)                                 # warm-up, and the correctness check
        y, cache = winograd.winograd_forward(x, W, b, 1, products=args.products)
        diff = float(xp.abs(y - y_ref).max() / xp.abs(y_ref).max())
        conv.backward(dy)
        winograd.winograd_backward(dy, cache, W, products=args.products)
        del y, y_ref, cache

        t = [[], [], [], []]                                    # im2col fwd, wino fwd, im2col bwd, wino bwd
        for _ in range(args.rounds):
            for _ in range(args.repeats):
                dt, _ = timed(lambda: conv.forward(x))
                t[0].append(dt)
                dt, _ = timed(lambda: conv.backward(dy))
                t[2].append(dt)
                dt, (_, cache) = timed(lambda: winograd.winograd_forward(x, W, b, 1, products=args.products))
                t[1].append(dt)
                dt, _ = timed(lambda: winograd.winograd_backward(dy, cache, W, products=args.products))
                t[3].append(dt)
                del cache
        m = np.array([np.median(v) * 1e3 for v in t])
        totals += m
        print(f"{f'{C}->{O} @{S}x{S}':<16}{m[0]:>9.1f}ms{m[1]:>8.1f}ms{m[0] / m[1]:>8.2f}x   "
              f"{m[2]:>9.1f}ms{m[3]:>8.1f}ms{m[2] / m[3]:>8.2f}x   {(m[0] + m[2]) / (m[1] + m[3]):>7.2f}x   {diff:>12.1e}",
              flush=True)
    m = totals
    print("-" * len(head))
    print(f"{'all six':<16}{m[0]:>9.1f}ms{m[1]:>8.1f}ms{m[0] / m[1]:>8.2f}x   "
          f"{m[2]:>9.1f}ms{m[3]:>8.1f}ms{m[2] / m[3]:>8.2f}x   {(m[0] + m[2]) / (m[1] + m[3]):>7.2f}x")
    print(f"(medians of {args.rounds} interleaved rounds; speed-up = im2col time / Winograd time; {loadavg()})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run as a script too
    from common.cli import run_cli
    run_cli(main)
