"""Every command's bad inputs, run as a user would (subprocesses): exit status 2, one line on stderr
that names the problem, no traceback, within seconds, and nothing left behind.

Each case runs in the same scratch folder (module fixture `work`), which holds a few inputs: a
regular file `afile`, a tiny SVHN folder `svhn/` (official .mat layout), a valid image set
`good.npz` and a file of random bytes `random.npz`. The folder's whole listing, including the
caches (SVHN_CACHE_DIR, XDG_CACHE_HOME point into it), must be the same after a failed command.
Also here: `--help` and `--backend numpy` whatever NN_BACKEND holds, an untrained DCGAN run folder
taking new settings, and a download stopped by SIGTERM leaving no partial file.
"""
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 15          # "within a few seconds": a failed command must not start any real work
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0     # root may write into read-only folders


def write_svhn(folder, per_digit=2, seed=0):
    """train_32x32.mat and test_32x32.mat in SVHN's layout (10 stands for digit 0)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        y = np.repeat(np.arange(10), per_digit)
        x = rng.integers(0, 256, (32, 32, 3, len(y)), dtype=np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.where(y == 0, 10, y).reshape(-1, 1)})
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "afile").write_text("a regular file, not a folder\n")
    write_svhn(root / "svhn")
    x = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "good.npz", x=x, y=np.arange(20) % 10)
    (root / "random.npz").write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    from dataclasses import asdict

    from common.files import atomic_write_json
    from gan.dcgan.train import Config
    atomic_write_json(root / "dcgan_run" / "config.json", asdict(Config()))    # a run folder, nothing trained
    yield root
    (root / "ro").chmod(0o755)


def environment(work, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NN_BACKEND", "NN_THREADS", "SVHN_DIR")}
    env.update(PYTHONPATH=str(ROOT), SVHN_CACHE_DIR=str(work / "cache"), XDG_CACHE_HOME=str(work / "xdg"),
               PYTHONWARNINGS="ignore::DeprecationWarning")
    env.update(extra)
    return env


def command(args):
    """`run_all.py ...` runs the script; anything else is a module (`python -m svhn ...`)."""
    if args[0] == "run_all.py":
        return [sys.executable, str(ROOT / "run_all.py"), *args[1:]]
    return [sys.executable, "-m", *args]


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run(work, args, env=None, timeout=60):
    started = time.perf_counter()
    result = subprocess.run(command(args), cwd=work, env=env or environment(work), capture_output=True,
                            text=True, timeout=timeout)
    return result, time.perf_counter() - started


NOT_A_FOLDER = "afile is a file"
CASES = [
    # ---- svhn
    ("svhn info --data-dir nope", "does not exist"),
    ("svhn info --data-dir afile", "is not a folder"),
    ("svhn info --data-dir svhn --splits train,bogus", "unknown SVHN split"),
    ("svhn export --data-dir svhn --splits , --out x.npz", "no split given"),
    ("svhn preview --data-dir svhn --n 0 --out p.png", "--n"),
    ("svhn preview --data-dir svhn --split bogus --out p.png", "unknown SVHN split"),
    ("svhn preview --data-dir svhn --out afile/p.png", NOT_A_FOLDER),
    ("svhn export --data-dir svhn --out afile/x.npz", NOT_A_FOLDER),
    ("svhn export --data-dir svhn --out svhn", "is a folder"),
    ("svhn nosuchcommand", "invalid choice"),
    ("svhn export --data-dir svhn --out x.txt", "must end in .npz"),
    ("svhn preview --data-dir svhn --out p.jpg", "must end in .png"),
    # ---- procedural
    ("procedural --n 0 --out x.npz", "--n"),
    ("procedural --n many --out x.npz", "--n"),
    ("procedural --n 10 --seed -1 --out x.npz", "--seed"),
    ("procedural --n 10 --workers 0 --out x.npz", "--workers"),
    ("procedural --n 10 --out afile/x.npz", NOT_A_FOLDER),
    ("procedural --n 10 --out svhn", "is a folder"),
    ("procedural --n 10 --out x.npz --preview afile/p.png", NOT_A_FOLDER),
    ("procedural --n 10 --out x.npz --preview x.npz", "must end in .png"),
    ("procedural --n 10 --out x.npz --set nosuch=1", "unknown setting"),
    ("procedural --n 10 --out x.npz --set rotation_deg=lots", "not a number"),
    ("procedural --n 10 --out x.npz --backend tpu", "not a backend"),
    ("procedural --n 10 --out p.txt", "must end in .npz"),
    ("procedural --n 10 --out p", "must end in .npz"),
    ("procedural --n 10 --out x.npz --preview p.jpg", "must end in .png"),
    ("procedural --n 10 --fonts-dir nope --out x.npz", "fonts folder nope"),      # before the progress bar
    ("procedural --n 10 --fonts-dir svhn --out x.npz", "no usable"),
    # ---- classify
    ("classify train --train real --data-dir svhn --out o --lr -1", "--lr"),
    ("classify train --train real --data-dir svhn --out o --lr nan", "--lr"),
    ("classify train --train real --data-dir svhn --out o --lr inf", "--lr"),
    ("classify train --train real --data-dir svhn --out o --epochs 0", "--epochs"),
    ("classify train --train real --data-dir svhn --out o --batch-size 0", "--batch-size"),
    ("classify train --train real --data-dir svhn --out o --weight-decay -1", "--weight-decay"),
    ("classify train --train real --data-dir svhn --out o --val-fraction 1", "--val-fraction"),
    ("classify train --train real --data-dir svhn --out o --widths 8 0 8", "--widths"),
    ("classify train --train real --data-dir svhn --out afile", "not a folder"),
    ("classify train --train real --data-dir svhn --out afile/o", NOT_A_FOLDER),
    ("classify train --train nosuch.npz --data-dir svhn --out o", "no such image set file"),
    ("classify train --train notes.txt --data-dir svhn --out o", "not a set name"),
    ("classify train --train real:0 --data-dir svhn --out o", "positive number"),
    ("classify train --train random.npz --test good.npz --out o", "not a readable .npz image set"),
    ("classify train --train real --data-dir nope --out o", "does not exist"),
    ("classify train --train real --data-dir svhn --out o --backend tpu", "not a backend"),
    ("classify train --train real --data-dir svhn --out o --threads 0", "--threads"),
    ("classify eval --model nosuch.npz --test good.npz", "no such model file"),
    ("classify eval --model random.npz --test good.npz", "not a readable .npz model file"),
    ("classify eval --model random.npz --test good.npz --out afile", "not a folder"),
    ("classify predict --model nosuch.npz afile", "no such model file"),
    # ---- gan
    ("gan train --out r --iters 0", "--iters"),
    ("gan train --out r --lr nan", "--lr"),
    ("gan train --out r --lr-d 0", "--lr-d"),
    ("gan train --out r --batch-size 1", "--batch-size"),
    ("gan train --out r --ema-decay 1", "--ema-decay"),
    ("gan train --out r --stuck-iters -1", "--stuck-iters"),
    ("gan train --out r --digits 12", "bad digit list"),
    ("gan train --out r --data-dir nope", "does not exist"),
    ("gan train --out afile --data-dir svhn", "not a folder"),
    ("gan train --out r --data-dir svhn --seed -3", "--seed"),
    ("gan sample --run nope --out x.npz", "not a DCGAN run folder"),
    ("gan sample --run nope --out afile/x.npz", NOT_A_FOLDER),
    ("gan sample --run nope --out x.npz --per-digit 0", "--per-digit"),
    ("gan sample --run nope --out x.npz --grid afile/g.png", NOT_A_FOLDER),
    ("gan sample --run dcgan_run --out x.txt", "must end in .npz"),
    ("gan sample --run dcgan_run --out x.npz --grid g.pdf", "must end in .png"),
    ("classify fidelity --run nope", "not a DCGAN run folder"),
    ("classify fidelity --run nope --classifier-steps 0", "--classifier-steps"),
    ("classify fidelity --run dcgan_run --classifier random.npz", "not a readable .npz model file"),
    ("classify fidelity --run dcgan_run --classifier afile/c.npz", NOT_A_FOLDER),
    ("gan fidelity --run dcgan_run", "python -m classify fidelity"),          # moved above gan
    ("gan sample --run dcgan_run --out x.npz", "no trained digit"),
    # ---- gan.simgan
    ("gan.simgan train --real nope --procedural good.npz --out s", "no such folder"),
    ("gan.simgan train --real svhn --procedural nosuch.npz --out s", "not found"),
    ("gan.simgan train --real svhn --procedural random.npz --out s", "not a readable .npz image set"),
    ("gan.simgan train --real svhn --procedural good.npz --out s --width 2", "width >= 6"),
    ("gan.simgan train --real svhn --procedural good.npz --out s --lr-r 0", "--lr-r"),
    ("gan.simgan train --real svhn --procedural good.npz --out s --lambda-reg -1", "--lambda-reg"),
    ("gan.simgan train --real svhn --procedural good.npz --out s --steps nan", "--steps"),
    ("gan.simgan train --real svhn --procedural good.npz --out afile", "not a folder"),
    ("gan.simgan refine --run nope --input good.npz --out x.npz", "not a SimGAN run folder"),
    ("gan.simgan refine --run nope --input good.npz --out afile/x.npz", NOT_A_FOLDER),
    ("gan.simgan refine --run nope --input good.npz --out x.npz --batch-size 0", "--batch-size"),
    ("gan.simgan refine --run nope --input good.npz --out x.txt", "must end in .npz"),
    ("classify compare-simgan --run nope --procedural good.npz --data-dir svhn", "not a SimGAN run folder"),
    ("classify compare-simgan --run nope --procedural good.npz --data-dir svhn --repeats 0", "--repeats"),
    ("classify compare-simgan --run nope --procedural good.npz --data-dir svhn --sets raw", "--sets"),
    ("gan.simgan compare --run nope --procedural good.npz", "python -m classify compare-simgan"),   # moved
    # ---- bench
    ("bench --repeats 0", "--repeats"),
    ("bench --repeats -1", "--repeats"),
    ("bench --rounds 0", "--rounds"),
    ("bench --json afile/x.json", NOT_A_FOLDER),
    ("bench --json svhn", "is a folder"),
    ("bench --backend tpu", "not a backend"),
    ("bench --backend numpy,", "not a backend"),
    ("bench --conv-method fast", "--conv-method"),
    ("bench --e2e --threads 1,2", "--threads"),
    ("bench.e2e --threads 0", "--threads"),
    ("bench.e2e --backend numpy,tpu", "not a backend"),
    ("bench.refiner_change --input nope.npz --refined good.npz", "nope.npz"),
    ("bench.refiner_change --input good.npz --refined random.npz", "random.npz"),
    ("bench.refiner_change --input good.npz --refined good.npz --n 0", "--n"),
    # ---- run_all.py
    ("run_all.py --preset smoke --data-dir svhn --out out --set simgan_width=2", "simgan_width"),
    ("run_all.py --preset smoke --data-dir svhn --out out --redo nosuchstage", "--redo nosuchstage"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set clf_lr=nan", "clf_lr"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set clf_lr=-1", "clf_lr"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set simgan_lambda=inf", "simgan_lambda"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set procedural_n=0", "procedural_n"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set dcgan_batch=1", "dcgan_batch"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set nosuch=1", "unknown setting"),
    ("run_all.py --preset smoke --data-dir svhn --out out --set procedural_n", "FIELD=VALUE"),
    ("run_all.py --preset smoke --data-dir svhn --out out --jobs 0", "--jobs"),
    ("run_all.py --preset smoke --data-dir svhn --out out --seed -1", "--seed"),
    ("run_all.py --preset smoke --data-dir nope --out out", "does not exist"),
    ("run_all.py --preset smoke --data-dir svhn --out afile", "not a folder"),
    ("run_all.py --preset smoke --data-dir svhn --out afile/out", NOT_A_FOLDER),
    ("run_all.py --preset smoke --data-dir svhn --out out --backend tpu", "not a backend"),
    ("run_all.py --preset smoke --data-dir svhn --out out --threads many", "--threads"),
    ("run_all.py --preset bogus", "--preset"),
]
if not IS_ROOT:     # root may write into a read-only folder, so these are errors only for other users
    CASES += [("svhn export --data-dir svhn --out ro/x.npz", "cannot write into the folder"),
              ("procedural --n 10 --out ro/sub/x.npz", "cannot write into the folder"),
              ("classify train --train real --data-dir svhn --out ro/o", "cannot write into the folder"),
              ("run_all.py --preset smoke --data-dir svhn --out ro/out", "cannot write into the folder")]
ENV_CASES = [   # (NN_BACKEND / NN_THREADS, command, keyword)
    ({"NN_BACKEND": "nonsense"}, "classify train --train real --data-dir svhn --out o", "NN_BACKEND"),
    ({"NN_BACKEND": "nonsense"}, "gan train --out r --data-dir svhn", "NN_BACKEND"),
    ({"NN_BACKEND": "nonsense"}, "gan.simgan refine --run nope --input good.npz --out x.npz", "NN_BACKEND"),
    ({"NN_BACKEND": "nonsense"}, "bench", "NN_BACKEND"),
    ({"NN_BACKEND": "nonsense"}, "bench.e2e", "NN_BACKEND"),
    ({"NN_BACKEND": "nonsense"}, "bench --e2e", "NN_BACKEND"),
    ({"NN_TF32": "maybe"}, "bench.e2e", "NN_TF32"),
    ({"NN_BACKEND": "nonsense"}, "run_all.py --preset smoke --data-dir svhn --out out", "NN_BACKEND"),
    ({"NN_THREADS": "0"}, "classify train --train real --data-dir svhn --out o", "NN_THREADS"),
    ({"NN_THREADS": "lots"}, "run_all.py --preset smoke --data-dir svhn --out out", "NN_THREADS"),
    ({"NN_THREADS": "-2"}, "gan train --out r --data-dir svhn", "NN_THREADS"),
]


def check_failure(work, args, keyword, env=None):
    before = listing(work)
    result, seconds = run(work, args, env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (args, result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and result.stderr.strip() == lines[0], (args, result.stderr[-2000:])
    assert lines[0].startswith("error: ") and keyword in lines[0], (args, keyword, lines[0])
    assert "Traceback" not in result.stderr and "pickle" not in result.stderr, (args, result.stderr)
    assert seconds < SECONDS, (args, seconds)
    assert listing(work) == before, (args, sorted(set(listing(work)) ^ set(before)))
    return lines[0]


@pytest.mark.parametrize("line, keyword", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(work, line, keyword):
    check_failure(work, line.split(), keyword)


@pytest.mark.parametrize("variables, line, keyword", ENV_CASES, ids=[f"{v}-{c}" for v, c, _ in ENV_CASES])
def test_bad_environment_variable_is_one_line_when_it_is_needed(work, variables, line, keyword):
    check_failure(work, line.split(), keyword, environment(work, **variables))


@pytest.mark.parametrize("args", [["bench", "--threads", ""], ["bench", "--threads", " , "],
                                  ["bench.e2e", "--threads", ""]])
def test_an_empty_option_value_is_an_error_too(work, args):
    check_failure(work, args, "--threads")


def test_there_are_at_least_40_cases_over_every_command():
    assert len(CASES) + len(ENV_CASES) >= 40
    for name in ("svhn", "procedural", "classify", "gan", "gan.simgan", "bench", "run_all.py"):
        assert any(line.split()[0] == name for line, _ in CASES), name


def test_run_all_advice_names_only_its_own_options(work):
    line = check_failure(work, "run_all.py --preset smoke --data-dir svhn --out out --set simgan_width=2".split(),
                         "simgan_width")
    assert "--random-init" not in line and "--width" not in line


def test_missing_cupy_is_one_line(work):
    from nn import backend
    if backend.cupy_available():
        pytest.skip("CuPy and a GPU are present here")
    for variables, line in (({}, "classify train --train real --data-dir svhn --out o --backend cupy"),
                            ({"NN_BACKEND": "cupy"}, "gan sample --run nope --out x.npz"),
                            ({"NN_BACKEND": "cupy"}, "run_all.py --preset smoke --data-dir svhn --out out")):
        check_failure(work, line.split(), "CuPy", environment(work, **variables))


def test_an_error_line_starts_a_line_of_its_own_after_a_progress_bar(work):
    code = ("import sys\nfrom tqdm import tqdm\nfrom common.cli import run_cli\n"
            "def main(argv):\n    bar = tqdm(total=10, desc='work', file=sys.stderr)\n    bar.update(3)\n"
            "    raise ValueError('the disk is full')\nrun_cli(main)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=environment(work), capture_output=True)
    assert result.returncode == 2
    before, last = result.stderr.decode().rsplit("\r", 1)     # bytes: text mode would turn \r into \n
    assert last == "error: the disk is full\n" and "\n" not in before
    assert "work" in before and before.rsplit("\r", 1)[-1].strip() == ""      # the bar was drawn, then wiped


# ---------------------------------------------------------------------------------- what must work

HELP = ["svhn", "procedural", "classify", "classify train", "gan", "gan train", "gan.simgan", "bench", "run_all.py"]


@pytest.mark.parametrize("value", ["nonsense", "", "cupy"])
def test_help_works_whatever_nn_backend_holds(work, value):
    for line in HELP:
        result, _ = run(work, line.split() + ["--help"], environment(work, NN_BACKEND=value, NN_THREADS="bad"))
        assert result.returncode == 0 and "usage:" in result.stdout and result.stderr == "", (line, result.stderr)
        assert "NN_BACKEND" in result.stdout or line in ("svhn", "procedural", "gan", "gan.simgan", "classify"), line


def test_backend_numpy_works_with_a_bad_nn_backend(work, tmp_path):
    env = environment(work, NN_BACKEND="nonsense")
    out = tmp_path / "model"
    result, _ = run(work, ["classify", "train", "--train", "good.npz", "--test", "good.npz", "--epochs", "1",
                           "--widths", "4", "4", "8", "--no-tta", "--quiet", "--backend", "numpy", "--out", str(out)],
                    env)
    assert result.returncode == 0, result.stderr
    assert (out / "model.npz").is_file() and (out / "metrics.json").is_file()
    # commands that do not use the backend ignore the variable
    result, _ = run(work, ["run_all.py", "--preset", "smoke", "--list-settings"], env)
    assert result.returncode == 0 and "procedural_n" in result.stdout, result.stderr
    result, _ = run(work, ["procedural", "--n", "10", "--workers", "1", "--quiet", "--out", str(tmp_path / "p.npz")], env)
    assert result.returncode == 0 and (tmp_path / "p.npz").is_file(), result.stderr


def test_importing_every_package_never_fails(work):
    code = "import nn, svhn, procedural, classify, gan, gan.simgan, experiment, bench, common.cli; print('ok')"
    for value in ("nonsense", "", "cupy"):
        result = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                                env=environment(work, NN_BACKEND=value, NN_THREADS="0"))
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------------------------- run folders

def test_untrained_dcgan_run_folder_takes_new_settings(tmp_path):
    from dataclasses import asdict

    from common.files import atomic_write_json
    from gan.dcgan.train import Config, resolve_config
    run_dir = tmp_path / "run"
    atomic_write_json(run_dir / "config.json", asdict(Config(width=32)))     # a start that never trained
    assert resolve_config(run_dir, Config(width=4), explicit=("width",)).width == 4
    (run_dir / "digit_3").mkdir()
    (run_dir / "digit_3" / "checkpoint.npz").write_bytes(b"a saved iteration")
    with pytest.raises(ValueError, match="trained with width=32, not 4"):
        resolve_config(run_dir, Config(width=4), explicit=("width",))


def test_untrained_simgan_run_folder_takes_new_settings(tmp_path):
    from dataclasses import asdict

    from common.files import atomic_write_json
    from gan.simgan import SimGANConfig, SimGANError, resolve_config
    atomic_write_json(tmp_path / "config.json", asdict(SimGANConfig(width=64)))
    assert resolve_config(tmp_path, {"width": 8}).width == 8
    (tmp_path / "checkpoint.npz").write_bytes(b"a saved iteration")
    with pytest.raises(SimGANError, match="trained with width=64"):
        resolve_config(tmp_path, {"width": 8})


def test_check_output_path_names_the_users_path(tmp_path):
    from common.files import OutputPathError, check_output_path
    (tmp_path / "f").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper" / "x.npz") == tmp_path / "new" / "deeper" / "x.npz"
    assert check_output_path(tmp_path / "f") == tmp_path / "f"                 # an existing file is replaced
    for path, kind, words in ((tmp_path / "f" / "x.npz", "file", "is a file"), (tmp_path, "file", "is a folder"),
                              (tmp_path / "f", "dir", "not a folder"), ("", "file", "empty path")):
        with pytest.raises(OutputPathError, match=words) as info:
            check_output_path(path, kind, "--out")
        assert str(info.value).startswith("--out") and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]                 # checking wrote nothing


def test_check_output_path_wants_the_suffix_a_reader_accepts(tmp_path):
    from common.files import OutputPathError, check_output_path
    assert check_output_path(tmp_path / "x.npz", suffix=".npz") == tmp_path / "x.npz"
    for name, suffix in (("x.txt", ".npz"), ("x", ".npz"), ("x.NPZ", ".npz"), ("x.npz", ".png"), ("p.jpg", ".png")):
        with pytest.raises(OutputPathError, match=f"must end in {suffix}") as info:
            check_output_path(tmp_path / name, "file", "--out", suffix=suffix)
        assert str(info.value).startswith("--out") and "\n" not in str(info.value)
    assert check_output_path(tmp_path / "d", "dir", "--out", suffix=".npz") == tmp_path / "d"   # folders: no suffix


# ---------------------------------------------------------------------------------- downloads

class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Sends a little of a large file, then waits (a download to interrupt)."""
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10 << 20))
        self.end_headers()
        try:
            self.wfile.write(b"\0" * 65536)
            self.wfile.flush()
            time.sleep(20)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_sigterm_during_a_download_leaves_no_partial_file(tmp_path):
    from svhn.download import remove_stale_parts
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dest = tmp_path / "svhn"
    dest.mkdir()
    stale = dest / ".test_32x32.mat.999999999.abc.part"       # a part whose process is long gone
    stale.write_bytes(b"old")
    try:
        p = subprocess.Popen([sys.executable, "-m", "svhn", "download", "--splits", "test", "--data-dir", str(dest),
                              "--url", f"http://127.0.0.1:{server.server_address[1]}/"],
                             cwd=tmp_path, env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while not [q for q in dest.glob(".*.part") if q != stale] and time.time() < deadline:
            time.sleep(0.05)
        assert not stale.exists()                             # removed when the download started
        parts = list(dest.glob(".*.part"))
        assert parts, "the download never started"
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
        assert p.returncode != 0
        assert list(dest.iterdir()) == []                     # no partial file left
    finally:
        server.shutdown()
    own = dest / f".test_32x32.mat.{os.getpid()}.x.part"      # a part of a live download is kept
    own.write_bytes(b"mine")
    remove_stale_parts(dest, "test_32x32.mat")
    assert own.exists()
