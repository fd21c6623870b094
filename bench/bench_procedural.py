"""End-to-end speed of the procedural synthesizer, as the project's target defines it:
images divided by the wall time of the whole `python -m procedural` command (start-up,
rendering, writing the .npz and the preview included).

    python bench/bench_procedural.py                 # 20,000 images, target >= 2,000 images/s
    python bench/bench_procedural.py --n 5000 --workers 1

Prints the command, its wall time and CPU time (of it and its worker processes), and the
rate; exits 1 when the rate is below --target (0 disables the check). Other programs running
on the machine slow it down: compare numbers taken on a quiet machine.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))       # run as a script too

from common.cli import ArgumentParser, number, run_cli, whole   # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=whole(1), default=20000, help="images to make (default %(default)s)")
    p.add_argument("--workers", type=whole(1), default=None, help="passed to the command (default: its own default)")
    p.add_argument("--repeat", type=whole(1), default=1, help="runs; the best is reported (default %(default)s)")
    p.add_argument("--target", type=number(0, None, True), default=2000.0, help="images/s to reach (default %(default)s)")
    args = p.parse_args(argv)

    best = None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "procedural", "--n", str(args.n), "--out", os.path.join(tmp, "bench.npz"),
               "--seed", "0", "--preview", os.path.join(tmp, "bench.png"), "--quiet"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        print("command:", " ".join(cmd[1:]))
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"wall {wall:.2f} s, cpu {cpu:.2f} s (all processes), {args.n / wall:.0f} images/s")
            best = wall if best is None else min(best, wall)
    rate = args.n / best
    print(f"best: {rate:.0f} images/s on {os.cpu_count()} CPU(s)"
          + (f" (target {args.target:.0f}: {'met' if rate >= args.target else 'NOT met'})" if args.target else ""))
    return 0 if not args.target or rate >= args.target else 1


if __name__ == "__main__":
    run_cli(main)
