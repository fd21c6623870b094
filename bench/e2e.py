"""Time every stage of the whole experiment (run_all.py) on each backend, CPU beside GPU.

    python -m bench.e2e                                 # smoke-sized, on $NN_BACKEND or NumPy
    python -m bench.e2e --backend numpy,cupy            # NumPy beside CuPy (where there is a GPU)
    python -m bench.e2e --scale 5 --backend numpy,cupy  # every count and iteration number of smoke x 5
    python -m bench.e2e --preset quick --data-dir DIR       # DIR: a folder with SVHN's .mat files
    python -m bench --e2e                               # the same, from the main benchmark

Each backend runs the pipeline from scratch in its own folder (nothing is skipped) and the stages'
wall times come from their manifests. Without --data-dir the "real" images are a generated stand-in
of the SVHN sample's size (783 training, 300 test images, drawn by the procedural synthesizer, so the
GANs see digits): costs do not depend on what the pixels show. A backend that is not available
(CuPy without a GPU) is reported and skipped. Writes e2e.md (a table), e2e.json and e2e.png (a bar
chart) to --out.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nn import backend                                              # noqa: E402
from common.figures import pyplot, save_figure                        # noqa: E402
from common.files import atomic_write_json, atomic_write_text   # noqa: E402
from common.cli import (ArgumentParser, add_backend_options, check_backend_list, number, run_cli,  # noqa: E402
                        tf32_setting, whole)
from common.files import check_output_path   # noqa: E402
from procedural import generate
from experiment.pipeline import run_experiment
from experiment.report import cpu_name
from experiment.settings import apply_overrides, preset, scaled

STAND_IN_SIZES = {"train": 783, "test": 300}


def write_stand_in(folder, seed=12345):
    """train_32x32.mat / test_32x32.mat in SVHN's layout, with procedural digits as the images."""
    import scipy.io

    for i, (split, n) in enumerate(STAND_IN_SIZES.items()):
        x, y = generate(n, seed=seed + i, workers=1)
        scipy.io.savemat(Path(folder) / f"{split}_32x32.mat",
                         {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)})
    return Path(folder)


def backend_available(name):
    """(available, reason)."""
    if name == "numpy":
        return True, ""
    try:
        ok = backend.cupy_available()
    except Exception as exc:                 # a broken CUDA install is "not available", with its reason
        return False, f"{type(exc).__name__}: {exc}"
    return (True, "") if ok else (False, "CuPy or a GPU is not available on this machine")


def time_backend(name, settings, data_dir, workdir, seed, quiet, threads=None, tf32=False):
    """Run the pipeline from scratch on one backend; {stage: seconds}, total seconds, notes."""

    def log(line):
        if not quiet:
            print(f"  {line}", flush=True)

    started = time.perf_counter()
    runner = run_experiment(settings, out=Path(workdir) / name, data_dir=str(data_dir), backend_name=name,
                            seed=seed, preset="bench", progress=False, log=log, threads=threads, tf32=tf32)
    total = time.perf_counter() - started
    stages = {stage: m["seconds"] for stage, m in runner.manifests.items()}
    stopped = {}                      # DCGANs that stopped early (diverged or stuck): their times are short
    for stage, m in runner.manifests.items():
        if not stage.startswith("dcgan_digit"):
            continue
        summary = m.get("summary", {})
        per_digit = ({f"{stage}/{d}": p.get("status") for d, p in summary["digits"].items()} if "digits" in summary
                     else {stage: summary.get("status")})  # the ten trained together (dcgan_digits), or one
        for name, status in per_digit.items():
            if status and status.get("state") != "done":
                stopped[name] = status.get("message", status.get("state"))
    return {"stages": stages, "total_s": round(total, 2), "dcgan_stopped": stopped}


DCGAN_TOTAL = "all DCGAN training"


def stage_rows(result, names):
    """The stages of every backend in `names`, in order of first appearance, then, where the backends
    train the DCGANs differently (ten stages dcgan_digit_K one by one, or one dcgan_digits for the ten
    together: run_all's default on CuPy), one row summing each backend's DCGAN stages, the comparable
    figure. {row: [seconds per backend, or None where it has no such stage]}."""
    runs = [result["backends"][b]["stages"] for b in names]
    order = list(dict.fromkeys(stage for r in runs for stage in r))
    rows = {stage: [r.get(stage) for r in runs] for stage in order}
    dcgan = [[s for s in r if s.startswith("dcgan_digit")] for r in runs]
    if len({tuple(d) for d in dcgan}) > 1:
        rows[DCGAN_TOTAL] = [sum(r[s] for s in d) for r, d in zip(runs, dcgan)]
    return rows


def markdown(result):
    names = [b for b in result["backends"] if result["backends"][b].get("stages")]
    lines = [f"# run_all stage times: preset {result['preset']} x {result['scale']}, data: {result['data']}", "",
             f"Machine: {result['machine']}; BLAS threads: {result['blas_threads']}.", ""]
    for b, r in result["backends"].items():
        if not r.get("stages"):
            lines.append(f"- {b}: skipped ({r['skipped']})")
    if len(lines) > 4:
        lines.append("")
    if not names:
        return "\n".join(lines + ["No backend ran."]) + "\n"
    header = "| stage | " + " | ".join(f"{b} (s)" for b in names) + (" | speed-up |" if len(names) == 2 else " |")
    lines += [header, "|---|" + "---:|" * (len(names) + (len(names) == 2))]
    rows = stage_rows(result, names)
    rows["total"] = [result["backends"][b]["total_s"] for b in names]
    for stage, t in rows.items():
        row = f"| {stage} | " + " | ".join("—" if v is None else f"{v:.2f}" for v in t)
        if len(names) == 2:
            row += f" | {t[0] / t[1]:.1f}x" if None not in t and t[1] > 0 else " | —"
        lines.append(row + " |")
    return "\n".join(lines) + "\n"


def bar_chart(result, path):
    plt = pyplot()
    names = [b for b in result["backends"] if result["backends"][b].get("stages")]
    if not names:
        return
    rows = stage_rows(result, names)
    stages = list(rows)
    y = np.arange(len(stages))
    h = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(stages) + 1.5))
    for i, b in enumerate(names):
        ax.barh(y + i * h, [rows[s][i] or 0 for s in stages], h,
                label=f"{b} ({result['backends'][b]['total_s']:.1f} s in all)")
    ax.set_yticks(y + h * (len(names) - 1) / 2, stages, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(f"run_all stages, preset {result['preset']} x {result['scale']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv=None):
    p = ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_backend_options(p, backend_list=True)     # a comma list: an unavailable backend is skipped
    p.add_argument("--preset", choices=("smoke", "quick", "paper"), default="smoke",
                   help="the sizes to start from (default: smoke)")
    p.add_argument("--scale", type=number(0, None, True), default=1.0,
                   help="multiply every count and iteration number of the preset (default: 1)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one setting, as in run_all.py (repeatable)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="SVHN .mat files to use (default: a generated stand-in of the sample's size)")
    p.add_argument("--out", default="results/bench_e2e", metavar="DIR", help="where e2e.md/.json/.png go "
                   "(default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the JSON here")
    p.add_argument("--seed", type=whole(0), default=0, help="seed of every stage (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no per-stage lines while it runs")
    args = p.parse_args(argv)
    settings = apply_overrides(scaled(preset(args.preset), args.scale), args.set)
    names, threads = check_backend_list(args)
    tf32 = tf32_setting(args.tf32)
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise ValueError(f"--data-dir {args.data_dir}: not a folder")
    check_output_path(args.out, "dir", "--out")
    if args.json:
        check_output_path(args.json, "file", "--json")
    result = {"preset": args.preset, "scale": args.scale, "settings": settings.as_dict(),
              "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
              "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
              "load_average_before": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
              "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        saved_cache = os.environ.get("SVHN_CACHE_DIR")
        os.environ["SVHN_CACHE_DIR"] = str(Path(tmp) / "cache")     # keep the user's SVHN cache clean
        try:
            data_dir = Path(args.data_dir) if args.data_dir else write_stand_in(Path(tmp))
            result["data"] = str(data_dir) if args.data_dir else \
                f"generated stand-in ({STAND_IN_SIZES['train']} training, {STAND_IN_SIZES['test']} test images)"
            for name in names:
                ok, why = backend_available(name)
                if not ok:
                    print(f"{name}: skipped ({why})")
                    result["backends"][name] = {"skipped": why}
                    continue
                print(f"{name}: running preset {args.preset} x {args.scale}")
                result["backends"][name] = time_backend(name, settings, data_dir, tmp, args.seed, args.quiet,
                                                       threads, tf32)
        finally:
            if saved_cache is None:
                os.environ.pop("SVHN_CACHE_DIR", None)
            else:
                os.environ["SVHN_CACHE_DIR"] = saved_cache
            backend.set_backend("numpy")
    out = Path(args.out)
    text = markdown(result)
    atomic_write_text(out / "e2e.md", text)
    atomic_write_json(out / "e2e.json", result)
    bar_chart(result, out / "e2e.png")
    if args.json:
        atomic_write_json(args.json, result)
    print(text + f"wrote {out / 'e2e.md'}, {out / 'e2e.json'}, {out / 'e2e.png'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
