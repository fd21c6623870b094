"""bench/refiner_change.py: the split of a refiner's change into a colour part and a local part."""
import numpy as np
import pytest

from bench import refiner_change
from bench.refiner_change import affine_residual, change_report
from svhn.imageset import save_image_set


def images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(30, 226, (n, 32, 32, 3)).astype(np.uint8)


def as_uint8(v):
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def test_affine_residual_removes_exactly_a_gain_and_an_offset_per_group():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, 5, 2))
    a, b = rng.normal(size=(3, 1, 1, 2)), rng.normal(size=(3, 1, 1, 2))
    noise = rng.normal(size=x.shape)
    np.testing.assert_allclose(affine_residual(x, a * x + b, axes=(1, 2)), 0, atol=1e-12)
    e = affine_residual(x, a * x + b + noise, axes=(1, 2))
    assert 0 < (e ** 2).sum() < (noise ** 2).sum()        # least squares: never worse than the true residual
    np.testing.assert_allclose(affine_residual(np.ones((1, 4)), np.arange(4.0)[None], axes=(1,)),
                               [[-1.5, -0.5, 0.5, 1.5]])  # a flat input: only the offset is fitted


def test_a_colour_cast_is_all_colour_and_noise_is_all_local():
    x = images()
    cast = as_uint8(x * np.array([0.8, 0.9, 1.05]) + np.array([20.0, 5.0, -4.0]))
    rep = change_report(x, cast)
    assert rep["colour share"] > 0.99                     # what is left is rounding
    assert rep["brightness/contrast share"] < 0.7         # one gain for all channels cannot fit it
    assert rep["local RMS"] < 0.5 < rep["mean abs(r - x)"]
    same_gain = as_uint8(x * 0.9 + 12.0)
    assert change_report(x, same_gain)["brightness/contrast share"] > 0.99
    noisy = as_uint8(x + np.random.default_rng(3).normal(0, 8, x.shape))
    rep = change_report(x, noisy)
    assert rep["colour share"] < 0.02 and rep["local RMS"] == pytest.approx(8, rel=0.05)
    assert rep["k>16"] + rep["k=11-16"] > 0.5              # white noise: most rings lie out there


def test_bands_tell_a_smooth_change_from_fine_texture():
    x = images()
    yy, xx = np.mgrid[0:32, 0:32] / 32
    smooth = as_uint8(x + 20 * np.sin(2 * np.pi * (xx + yy))[None, :, :, None])        # k about 1.4
    fine = as_uint8(x + 20 * np.sin(2 * np.pi * 13 * xx)[None, :, :, None])           # k = 13
    rs, rf = change_report(x, smooth), change_report(x, fine)
    assert rs["k=1-4"] > 0.9 and rf["k=11-16"] > 0.9
    assert sum(v for k, v in rs.items() if k.startswith("k")) == pytest.approx(1)   # every ring but k = 0
    corner = as_uint8(x + 20 * np.cos(2 * np.pi * 14 * (xx + yy))[None, :, :, None])     # k = 14·√2 ≈ 19.8
    assert change_report(x, corner)["k>16"] > 0.9
    assert change_report(x, x)["mean abs(r - x)"] == 0 and change_report(x, x)["colour share"] == 0


def test_cli_prints_a_row_per_refined_set_and_rejects_other_images(tmp_path, capsys):
    x = images(20)
    labels = np.arange(20) % 10
    save_image_set(tmp_path / "in.npz", x, labels)
    save_image_set(tmp_path / "cast.npz", as_uint8(x * 0.9 + 10), labels)
    save_image_set(tmp_path / "short.npz", x[:10], labels[:10])
    assert refiner_change.main(["--input", str(tmp_path / "in.npz"), "--refined", str(tmp_path / "cast.npz"),
                                "--refined", str(tmp_path / "in.npz")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and all(len(row.split("|")) == 12 for row in rows)      # 10 columns, no stray "|"
    assert rows[0].split("|")[4].strip() == "colour share" and rows[1].split("|")[4].strip() == "100 %"
    assert rows[2].split("|")[2:4] == [" 0.00 ", " 0.00 "]                          # in.npz against itself
    with pytest.raises(SystemExit) as exit_info:
        refiner_change.run_cli(refiner_change.main, ["--input", str(tmp_path / "in.npz"),
                                                     "--refined", str(tmp_path / "short.npz")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not the same images" in err and "\n" not in err
