"""Tests of bench/synthetic_gap.py: each measurement on inputs whose answer is known, and the
command line (a run on tiny sets, a missing file as one line with exit status 2)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.synthetic_gap import answers, fingerprint_accuracy, nearest_same_digit, pairwise_rms, radial_spectrum, variety
from svhn.imageset import save_image_set

ROOT = Path(__file__).resolve().parents[1]


def grey_images(lum):
    """uint8 RGB images whose three channels hold the luma values `lum` (N, S, S) in 0..255."""
    return np.repeat(np.clip(np.rint(lum), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_white_noise_spectrum_is_flat_at_its_variance():
    rng = np.random.default_rng(0)
    x = grey_images(128 + 20 * rng.standard_normal((400, 32, 32)))
    k, p = radial_spectrum(x)
    assert list(k) == list(range(1, 17))
    expected = (20 / 255) ** 2                      # |FFT|^2 / pixels of white noise = its variance
    assert np.allclose(p, expected, rtol=0.1), p / expected


def test_blurred_noise_spectrum_falls_off():
    rng = np.random.default_rng(1)
    lum = 20 * rng.standard_normal((400, 32, 32))
    for axis in (1, 2):                              # [1 2 1]/4 twice per axis, periodic
        for _ in range(2):
            lum = (np.roll(lum, 1, axis) + 2 * lum + np.roll(lum, -1, axis)) / 4
    k, p = radial_spectrum(grey_images(128 + 4 * lum))
    assert (np.diff(p[:12]) < 0).all()               # falls monotonically over the lower rings
    assert p[-1] < p[0] / 100                        # and by two orders of magnitude at Nyquist


def test_nearest_distance_is_zero_for_a_copy_and_matches_brute_force():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    ref_y = np.arange(30) % 3
    x = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    y = np.arange(12) % 3
    x[5] = ref[7]
    y[5] = ref_y[7]
    dist, index = nearest_same_digit(x, y, ref, ref_y)
    assert dist[5] == 0 and index[5] == 7
    for i in range(len(x)):
        same = np.flatnonzero(ref_y == y[i])
        brute = [np.sqrt(np.mean((x[i] / 255.0 - ref[j] / 255.0) ** 2)) for j in same]
        assert np.isclose(dist[i], min(brute), atol=1e-9)
        assert index[i] == same[int(np.argmin(brute))] and ref_y[index[i]] == y[i]


def test_pairwise_rms_of_black_and_white_is_one():
    a = np.zeros((1, 12))
    assert np.allclose(pairwise_rms(a, np.ones((2, 12))), 1.0)


def test_variety_is_zero_for_identical_images_and_grows_with_spread():
    rng = np.random.default_rng(3)
    one = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    y = np.repeat(np.arange(10), 5)
    same = variety(np.repeat(one, 50, axis=0), y)
    assert np.allclose(same, 0, atol=1e-6)
    spread = variety(rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8), y)
    assert np.allclose(spread, np.sqrt(1 / 6), atol=0.02)   # uniform 0..1 values: E|a-b|^2 = 1/6
    assert np.isnan(variety(one, np.array([4]))[4])  # one image: no pair


def test_fingerprint_finds_labels_carried_by_brightness_and_not_random_ones():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(10), 40)
    noise = rng.normal(0, 3, (400, 32, 32))
    by_label = grey_images(40 + 18 * y[:, None, None] + noise)     # each digit its own exposure
    assert fingerprint_accuracy(by_label, y) > 0.95
    same = grey_images(128 + 30 * rng.standard_normal((400, 32, 32)))
    assert fingerprint_accuracy(same, y) < 0.2                       # chance is 0.1


def test_answers_read_accuracy_and_commonest_answer():
    C = np.zeros((10, 10), int)
    C[0, 0], C[0, 8] = 1, 3
    C[1, 1] = 5
    rows, said = answers({"confusion_matrix": C.tolist()})
    assert rows[0] == (0.25, 8, 3, 4) and rows[1] == (1.0, 1, 5, 5)
    assert said[8] == 3 and said.sum() == 9


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bench.synthetic_gap", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "NN_THREADS": "1"})


def test_cli_reports_and_writes_figures(tmp_path):
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(10), 4)
    for name in ("train", "test", "gen"):
        save_image_set(tmp_path / f"{name}.npz", rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y)
    C = np.eye(10, dtype=int) * 4
    (tmp_path / "m.json").write_text(json.dumps({"confusion_matrix": C.tolist(), "test_accuracy": 1.0}))
    r = run_cli("--train", "train.npz", "--test", "test.npz", "--set", "gen=gen.npz", "--metrics", "gen=m.json",
                "--figures", "figs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "share < p5 of real test" in r.stdout and "lap/contrast" in r.stdout and "Fingerprint" in r.stdout and "100 / 9 (4 of 4)" in r.stdout
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["gen_closest_pairs.png", "gen_nearest_real.png", "spectra_real_vs_synthetic.png"]


def test_cli_missing_file_is_one_line_exit_2(tmp_path):
    save_image_set(tmp_path / "a.npz", np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1]))
    for args in (["--train", "nope.npz", "--test", "a.npz"],
                 ["--train", "a.npz", "--test", "a.npz", "--set", "gen=missing.npz"],
                 ["--train", "a.npz", "--test", "a.npz", "--metrics", "x=missing.json"],
                 ["--train", "a.npz", "--test", "a.npz", "--set", "no-equals-sign"]):
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "figs").exists()
