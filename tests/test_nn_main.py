"""`python -m nn`: gradient-checks every layer and loss, prints a table, and its exit status says
whether all passed; it imports nothing but `nn` and NumPy."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

import nn.__main__ as nn_main
from nn import layers, losses

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_nn_checks_every_layer_and_loss_and_passes():
    done = subprocess.run([sys.executable, "-m", "nn"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.endswith(("pass", "FAIL"))]
    assert rows and all(line.endswith("pass") for line in rows)
    checked = " ".join(line.split("  ")[0] for line in rows)
    for name in layers.__all__:
        if name not in ("Layer", "im2col", "col2im"):
            assert name in checked, f"python -m nn does not check {name}"
    for name in ("SoftmaxCrossEntropy", "BCE", "BCEWithLogits", "PaperDiscriminatorLoss", "PaperGeneratorLoss"):
        assert hasattr(losses, name) and name in checked
    assert "winograd" in checked and "im2col" in checked
    assert "train" in checked and "eval" in checked
    assert f"{len(rows)} of {len(rows)} passed" in done.stdout


def test_every_loss_class_is_checked():
    names = {name for name, *_ in nn_main.loss_checks()}
    public = {n for n, v in vars(losses).items() if isinstance(v, type) and not n.startswith("_")}
    assert public <= {n.split()[0] for n in names}


def test_a_wrong_gradient_fails_with_exit_status_1(monkeypatch, capsys):
    monkeypatch.setattr(layers.Tanh, "backward", lambda self, dy: dy * (1 - self.y))   # missing a factor y
    assert nn_main.main([]) == 1
    out = capsys.readouterr().out
    tanh = next(line for line in out.splitlines() if line.startswith("Tanh"))
    assert tanh.endswith("FAIL") and float(tanh.split()[1]) > 1e-3
    total = len(nn_main.layer_checks()) + len(nn_main.loss_checks())
    assert f"{total - 1} of {total} passed" in out


def test_errors_are_measured_not_assumed():
    results = dict(nn_main.run_checks())
    assert all(np.isfinite(e) and 0 <= e < nn_main.TOL for e in results.values())


def test_bad_tolerance_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "nn", "--tol", "nan"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--tol" in done.stderr
    assert done.stdout == ""


def test_nn_main_imports_only_nn_and_numpy():
    tree = ast.parse((ROOT / "nn" / "__main__.py").read_text())
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top <= {"nn", "numpy", "argparse", "math", "sys"}, top
