"""No device -> host reads inside a training step (counted by nn.backend.host_reads), the batched
read of logged scalars, and the TF32 switch (option parsing and the precision the benchmark states)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import counts
from bench.__main__ import result_line
from common.cli import tf32_setting
from nn import backend


def test_to_host_is_counted():
    before = backend.host_reads()
    assert isinstance(backend.to_host(backend.asarray(np.ones(3))), np.ndarray)
    assert backend.to_numpy is backend.to_host and backend.host_reads() == before + 1


def test_scalar_log_reads_every_pending_value_in_one_copy():
    log = backend.ScalarLog()
    xp = backend.xp
    values = [xp.asarray(np.float32(0.1) * i).sum() for i in range(5)]
    for i, v in enumerate(values):
        log.add({"iteration": i, "phase": "a", "loss": v, "acc": (xp.arange(4) < i).mean()})
    before = backend.host_reads()
    rows = log.flush()
    assert backend.host_reads() == before + 1 and len(log) == 0
    assert [r["loss"] for r in rows] == [float(v) for v in values]          # exactly float(value)
    assert [r["acc"] for r in rows] == [min(i, 4) / 4 for i in range(5)]
    assert [(r["iteration"], r["phase"]) for r in rows] == [(i, "a") for i in range(5)]
    assert all(type(r["loss"]) is float for r in rows) and log.flush() == []


@pytest.mark.parametrize("make", [counts.convnet_step, counts.dcgan_step], ids=["classify", "dcgan"])
def test_a_training_step_makes_no_host_reads(make):
    step = make(batch=16)
    assert counts.host_reads_per_step(step, steps=2) == 0


def test_classify_reads_metrics_only_at_log_points(monkeypatch):
    """A whole short fit: reads = one per LOG_EVERY steps and per validation, never per step."""
    from classify import train
    monkeypatch.setattr(train, "LOG_EVERY", 5)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 96)
    cfg = train.TrainConfig(epochs=2, batch_size=8, widths=(4, 4, 4), val_fraction=0.0)
    before = backend.host_reads()
    model, history, _ = train.fit(x, y, x[:0], y[:0], cfg, rng, progress=False)
    steps = history[-1]["step"]
    assert steps == 24 and backend.host_reads() - before == steps // 5 + 2    # 4 full reads + 2 epoch ends


def test_classify_checks_labels_once_per_data_set():
    from classify import train
    from classify.data import ClassifyError
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), np.full(16, 10)
    with pytest.raises(ClassifyError, match="0..9"):
        train.fit(x, y, x[:0], y[:0], train.TrainConfig(epochs=1, batch_size=8, widths=(4, 4, 4)), rng, False)


@pytest.mark.parametrize("text, expected", [("", False), ("0", False), ("off", False), ("1", True), ("yes", True),
                                            (" TRUE ", True)])
def test_tf32_setting_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("NN_TF32", text)
    assert tf32_setting() is expected and tf32_setting(True) is True


def test_a_bad_nn_tf32_is_one_line_exit_2(monkeypatch):
    monkeypatch.setenv("NN_TF32", "maybe")
    with pytest.raises(ValueError, match="NN_TF32='maybe'"):
        tf32_setting()
    for cmd in (["bench", "--count"], ["classify", "train", "--train", "real", "--out", "unused"]):
        proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "NN_TF32" in proc.stderr, cmd
        assert proc.stdout == ""


def test_set_tf32_is_a_no_op_on_numpy_and_states_the_precision(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    backend.set_backend("numpy")
    try:
        backend.set_tf32(True)
        assert backend.tf32_enabled() and backend.precision() == "fp32"      # NumPy has no TF32
        import os
        assert os.environ.get("CUPY_TF32") == "1"                             # what CuPy reads
    finally:
        backend.set_tf32(False)
    assert not backend.tf32_enabled() and "CUPY_TF32" not in __import__("os").environ


def test_benchmark_lines_state_the_precision():
    row = {"nn_images_per_s": 100.0, "nn_ms_per_step": 1.0, "precision": "tf32",
           "torch_images_per_s": 200.0, "torch_precision": "tf32", "ratio": 0.5}
    line = result_line("net", row)
    assert line.count("[tf32]") == 2 and "0.50x" in line
    assert "[fp32]" in result_line("net", {"nn_images_per_s": 1.0, "nn_ms_per_step": 1.0, "precision": "fp32"})


def test_bench_tf32_flag_on_numpy_states_fp32(tmp_path):
    """--tf32 on the NumPy backend changes nothing and the output says fp32 (counts run: fast)."""
    proc = subprocess.run([sys.executable, "-m", "bench", "--count", "--tf32"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("host reads/step 0 ") == 2 and proc.stdout.count("[fp32]") == 2


def test_bench_advises_the_cpu_build_of_pytorch():
    import bench.__main__ as bench_main
    source = Path(bench_main.__file__).read_text()
    assert bench_main.TORCH_INSTALL == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert "torch==" not in source and source.count("TORCH_INSTALL") >= 3   # every advice uses it
