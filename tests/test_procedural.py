"""Tests of the procedural house-number synthesizer (procedural/)."""
import dataclasses
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import procedural
from procedural import ProceduralSettings, generate
from procedural import draws, effects, fonts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    return generate(60, seed=3, workers=1)


def test_shapes_dtypes_and_labels(small):
    x, y = small
    assert x.shape == (60, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (60,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() <= 9


def test_labels_are_balanced():
    y = procedural.balanced_labels(1003, seed=0)
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003


def test_images_are_not_blank_or_constant(small):
    x, _ = small
    assert (x.reshape(len(x), -1).std(axis=1) > 2).all()


def test_same_seed_same_images(small):
    x, y = generate(60, seed=3, workers=1)
    assert np.array_equal(x, small[0]) and np.array_equal(y, small[1])


def test_different_seeds_differ(small):
    x, _ = generate(60, seed=4, workers=1)
    assert not np.array_equal(x, small[0])


def test_result_does_not_depend_on_workers_or_batching():
    labels = np.arange(520) % 10
    x1, _ = generate(520, seed=11, labels=labels, workers=1)
    x2, _ = generate(520, seed=11, labels=labels, workers=2)
    assert np.array_equal(x1, x2)
    # each image depends only on (seed, index, label): a shorter run is a prefix of a longer one
    x3, _ = generate(7, seed=11, labels=labels[:7], workers=1)
    assert np.array_equal(x3, x1[:7])


def test_given_labels_are_used():
    labels = np.full(12, 7)
    _, y = generate(12, seed=0, labels=labels, workers=1)
    assert (y == 7).all() and y.dtype == np.int64


def test_every_builtin_font_is_installed():
    refs, missing = fonts.builtin_fonts()
    assert not missing, f"pip install -r requirements.txt (missing font families: {missing})"
    assert len(refs) == sum(len(names) for _, _, names in fonts.BUILTIN_FAMILIES)


def test_every_builtin_font_draws_ten_distinct_digits():
    refs, _ = fonts.builtin_fonts()
    for ref in refs:
        g = fonts.glyphs(ref, 0)
        assert all(glyph.mask.size and glyph.mask.max() >= 128 for glyph in g), ref.name
        assert len({(glyph.mask.shape, glyph.mask.tobytes()) for glyph in g}) == 10, ref.name
        heights = [glyph.mask.shape[0] for glyph in g]
        assert max(heights) <= 1.3 * min(heights), ref.name


def test_font_check_rejects_symbol_and_old_style_fonts():
    folder = fonts._package_dir("matplotlib")
    for bad in ("cmsy10.ttf", "cmex10.ttf", "cmmi10.ttf", "STIXSizOneSymReg.ttf", "DejaVuSansDisplay.ttf"):
        assert not fonts.digits_usable(str(folder / bad)), bad
    assert fonts.digits_usable(str(folder / "DejaVuSans.ttf"))


def test_uneven_shading_is_reproducible_bounded_and_off_at_zero():
    """shading = 0 leaves the images exactly as they are without it; a positive strength changes
    them, the same way for the same seed, and keeps shape, dtype and the uint8 range; the
    illumination field is smooth and multiplies by exp(strength * field) (positive gain)."""
    labels = np.arange(40) % 10
    off = dataclasses.replace(ProceduralSettings(), shading=(0.0, 0.0))
    on = dataclasses.replace(ProceduralSettings(), shading=(0.3, 0.3))
    x0, _ = generate(40, seed=5, settings=off, labels=labels, workers=1)
    x1, _ = generate(40, seed=5, settings=on, labels=labels, workers=1)
    x2, _ = generate(40, seed=5, settings=on, labels=labels, workers=1)
    assert x1.shape == x0.shape and x1.dtype == np.uint8
    assert np.array_equal(x1, x2)
    assert not np.array_equal(x0, x1)
    d = draws.draw(5, range(3))
    assert d.shading.shape == (3, draws.SHADING, draws.SHADING)
    img = np.full((3, 3, 32, 32), 0.5, np.float32)
    plain = dataclasses.replace(off, gradient=0.0, brightness=(1, 1), colour_cast=0.0, haze=(0, 0))
    lit = effects.light(img.copy(), d, dataclasses.replace(plain, shading=(0.3, 0.3)))
    assert np.allclose(effects.light(img.copy(), d, plain), 0.5)
    assert (lit > 0).all() and not np.allclose(lit, 0.5)
    # smooth: neighbouring pixels differ far less than the field's overall spread
    assert np.abs(np.diff(lit, axis=3)).max() < 0.25 * (lit.max() - lit.min())


def test_each_digit_renders_visible_ink():
    """With distractors, plates and degradations off, the image of digit k holds ink."""
    plain = dataclasses.replace(ProceduralSettings(), neighbour_prob=0.0, distractors=(0, 0), plate_prob=0.0,
                                blur_sigma=(0, 0), noise_sigma=(0, 0), jpeg_prob=0.0, downscale_prob=0.0,
                                texture=(0, 0), haze=(0, 0), shadow_prob=0.0, gradient=0.0, colour_cast=0.0,
                                brightness=(1, 1), min_contrast=0.5)
    x, y = generate(10, seed=0, settings=plain, labels=np.arange(10), workers=1)
    lum = x.astype(float) @ effects.LUMA
    for k in range(10):
        spread = np.percentile(lum[k], 99) - np.percentile(lum[k], 1)
        assert spread > 0.4 * 255, f"digit {k} has too little ink contrast ({spread:.0f})"


def test_user_font_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))   # keep the user's cache clean
    shutil.copy(fonts._package_dir("matplotlib") / "DejaVuSerif.ttf", tmp_path / "mine.ttf")
    shutil.copy(fonts._package_dir("matplotlib") / "cmsy10.ttf", tmp_path / "symbols.ttf")
    (tmp_path / "junk.ttf").write_bytes(b"not a font")
    refs = fonts.folder_fonts(tmp_path)
    assert [(r.family, r.name) for r in refs] == [("DejaVu Serif", "mine.ttf")]
    s = dataclasses.replace(ProceduralSettings(), fonts=(str(tmp_path),))
    x, _ = generate(5, seed=0, settings=s, workers=1)
    assert x.shape == (5, 32, 32, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no usable"):
        generate(5, settings=dataclasses.replace(s, fonts=(str(empty),)), workers=1)


@pytest.mark.parametrize("field, value", [
    ("digit_height", (0.9, 0.5)), ("digit_height", (0.5,)), ("rotation_deg", -1), ("shear", "x"),
    ("neighbour_prob", 1.5), ("stroke_probs", (0.5, 0.2, 0.2)), ("jpeg_quality", (10.5, 90)),
    ("distractors", (0, 99)), ("blur_sigma", (-1, 1)), ("fonts", ()), ("aspect", (0, 1)),
    ("min_contrast", float("nan")), ("shading", (0.5, 0.1)), ("shading", (0, 3)),
])
def test_invalid_settings_raise_one_clear_line(field, value):
    s = dataclasses.replace(ProceduralSettings(), **{field: value})
    with pytest.raises(ValueError) as err:
        s.validate()
    msg = str(err.value)
    assert field in msg and "\n" not in msg


def test_unknown_family_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown font family"):
        generate(5, settings=dataclasses.replace(ProceduralSettings(), families=("Comic Sans",)))
    for kwargs in ({"n": 0}, {"n": 5, "seed": -1}, {"n": 5, "labels": np.arange(4)},
                   {"n": 3, "labels": np.array([1, 2, 10])}, {"n": 5, "workers": 0}):
        with pytest.raises(ValueError):
            generate(**kwargs)


def test_every_setting_is_documented():
    docs = ProceduralSettings.field_docs()
    missing = [f.name for f in dataclasses.fields(ProceduralSettings) if not docs.get(f.name)]
    assert not missing


def test_glyph_disk_cache_gives_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    s = dataclasses.replace(ProceduralSettings(), families=("Ubuntu Mono", "Caladea"))
    refs = fonts.resolve_fonts(s.fonts, s.families)
    kept = dict(fonts._GLYPHS)
    try:
        fonts._GLYPHS.clear()
        fonts.prepare(refs, use_disk=False)
        expected, _ = generate(30, seed=3, settings=s, workers=1)
        assert not fonts._cache_file(refs).exists()
        for _ in range(2):              # first rendered and saved, then read back from disk
            fonts._GLYPHS.clear()
            x, _ = generate(30, seed=3, settings=s, workers=1)
            assert np.array_equal(x, expected)
            assert fonts._cache_file(refs).is_file()
    finally:
        fonts._GLYPHS.update(kept)


def test_jpeg_strip_equals_one_image_at_a_time():
    """effects.jpeg compresses images of equal quality as one strip; with 4:4:4 sampling
    that must give exactly what compressing each image alone gives."""
    x, _ = generate(12, seed=5, workers=1)
    d = draws.draw(0, range(12))
    d.u[:, draws.COLUMN["jpeg"]] = 0.0                      # every image compressed ...
    d.u[:, draws.COLUMN["jpeg_quality"]] = 0.5               # ... at one quality
    s = ProceduralSettings()
    together = effects.jpeg(x, d, s)
    q = s.jpeg_quality[0] + int(0.5 * (s.jpeg_quality[1] - s.jpeg_quality[0] + 1))
    q -= q % effects.JPEG_STEP
    for i in range(12):
        buf = io.BytesIO()
        Image.fromarray(x[i]).save(buf, format="JPEG", quality=q, subsampling=0)
        alone = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert np.array_equal(together[i], alone)


def test_preview_rows_are_digits():
    x, y = generate(300, seed=1, workers=1)
    grid = procedural.preview_images(x, y)
    assert grid.shape == (100, 32, 32, 3)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "procedural", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_writes_image_set_and_preview(tmp_path):
    from svhn.imageset import load_image_set
    out, png = tmp_path / "p.npz", tmp_path / "p.png"
    r = run_cli("--n", "40", "--out", str(out), "--seed", "2", "--preview", str(png), "--workers", "2",
                "--backend", "cupy", "--quiet")
    assert r.returncode == 0, r.stderr
    x, y = load_image_set(out)
    assert x.shape == (40, 32, 32, 3) and y.shape == (40,)
    assert np.array_equal(x, generate(40, seed=2, workers=1)[0])
    assert Image.open(png).size[0] > 300


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("--n", "5", "--out", str(tmp_path / "x.npz"), "--set", "blur_sigma=3,1")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: ProceduralSettings.blur_sigma") and "Traceback" not in r.stderr
    r = run_cli("--n", "5", "--out", str(tmp_path / "x.npz"), "--set", "nonsense=1")
    assert r.returncode == 2 and "unknown setting" in r.stderr


def test_procedural_stats_measures_what_it_says():
    """bench/procedural_stats.py: blur lowers sharpness and high-frequency share, a dark bar over
    rows 8..23 of a light crop reads as dark-on-light with an ink height of half the crop."""
    from bench.procedural_stats import image_stats
    rng = np.random.default_rng(0)
    x = np.full((2, 32, 32, 3), 200, np.uint8)
    x[:, 8:24, 13:19] = 30
    x[1] = (x[1].astype(float) + rng.normal(0, 1, (32, 32, 3))).clip(0, 255).astype(np.uint8)
    blurred = x.astype(float)
    for axis in (1, 2):
        blurred = (np.roll(blurred, 1, axis) + 2 * blurred + np.roll(blurred, -1, axis)) / 4
    s, b = image_stats(x), image_stats(blurred.round().astype(np.uint8))
    assert (s["lap/contrast"] > b["lap/contrast"]).all() and (s["hf share"] > b["hf share"]).all()
    assert np.allclose(s["ink height"], 0.5) and (s["dark-on-light"] == 1).all()
    assert np.allclose(s["contrast"], 170 / 255, atol=0.02) and (s["chroma"] < 0.01).all()
