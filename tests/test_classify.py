"""Tests of the classify package: the paper's ConvNet, its training, evaluation, files and CLI.

Everything here is small and fast (a few optimizer steps on tiny batches); the one test that
needs the real SVHN sample skips without it. CuPy-only tests skip where there is no GPU.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classify import (ClassifyError, TrainConfig, build_model, evaluate, load_model, metrics_from_predictions,
                      parse_spec, predict_labels, predict_proba, resolve_sets, save_model, train_classifier)
from classify.augment import NONE, AugmentConfig, affine_sample, augment, shifted_copies
from classify.data import SetSpec
from classify.train import LOG_EVERY, PEAK_LR, did_not_learn, learning_rate, plan
from nn import backend, gradcheck_loss, layers, losses, optim
from svhn.imageset import ImageSetError, save_image_set, to_float

ROOT = Path(__file__).resolve().parents[1]
SMALL = (8, 8, 16)        # narrow stages keep the training tests fast; the default widths are tested for shape


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def squares(n, seed=0):
    """An easy task: digit k is a bright 8×8 square at the k-th of 10 fixed places on a noisy dark image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
    rows, cols = (y // 5) * 16 + 4, (y % 5) * 6
    r = np.arange(32)
    inside = ((r[None, :, None] >= rows[:, None, None]) & (r[None, :, None] < rows[:, None, None] + 8)
              & (r[None, None, :] >= cols[:, None, None]) & (r[None, None, :] < cols[:, None, None] + 8))
    x[inside] = 230
    return x, y.astype(np.int64)


def one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert message and "\n" not in message, message
    for f in fragments:
        assert f in message, (f, message)


# ---------------------------------------------------------------- the model

def expected_params(arch, widths=(32, 64, 128)):
    """Parameters counted by hand: 3×3 kernels, BN (γ, β) instead of conv biases in "bn", dense 2048 → 10."""
    chans = [3, widths[0], widths[0], widths[1], widths[1], widths[2], widths[2]]
    total = 0
    for c_in, c_out in zip(chans[:-1], chans[1:]):
        total += 9 * c_in * c_out + 2 * c_out if arch == "bn" else 9 * c_in * c_out + c_out
    return total + widths[2] * 16 * 10 + 10


@pytest.mark.parametrize("arch", ["bn", "paper"])
def test_model_shape_and_parameter_count(arch):
    model = build_model(arch, seed=0)
    kinds = [type(l).__name__ for l in model.layers]
    assert (kinds.count("Conv2D"), kinds.count("MaxPool2D"), kinds.count("Dense")) == (6, 3, 1)   # the paper's 6/3/1
    assert (kinds.count("BatchNorm2D") == 6) == (arch == "bn")
    assert model.num_params() == expected_params(arch)
    assert model.num_params() == (307_946 if arch == "bn" else 307_498)
    x = backend.asarray(to_float(images(4)))
    y = model.forward(x, training=False)
    assert y.shape == (4, 10) and y.dtype == np.float32
    assert "(128, 4, 4)" in model.summary((3, 32, 32))


def dense_input_top_curvature(model, x):
    """The top eigenvalue of E[x xᵀ] over a batch, x the dense layer's input (BatchNorm in training mode,
    no dropout): times the softmax curvature (1/10 at uniform guessing) it is the dense layer's sharpness."""
    h = backend.asarray(to_float(x))
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            break
        if not isinstance(layer, layers.Dropout):
            h = layer.forward(h, training=True)
    h = backend.to_numpy(h).astype(np.float64)
    return float(np.linalg.eigvalsh(h.T @ h / len(h))[-1])


def test_the_bn_nets_dense_layer_is_stable_at_the_recipes_learning_rate():
    """SGD with momentum β diverges along a direction of curvature λ once lr·λ > 2(1 + β). The dense
    layer's inputs (after ReLU and max-pool, all ≥ 0) give its curvature one large eigenvalue, |E x|²/10
    at uniform guessing. Unscaled, the recipe's peak lr is beyond the limit (the measured cause of the
    ln 10 plateau); with FEATURE_SCALE it is well inside."""
    from classify.model import FEATURE_SCALE
    x = images(256, seed=4)
    model = build_model("bn", seed=0)
    assert [type(l).__name__ for l in model.layers[-4:]] == ["Flatten", "Scale", "Dropout", "Dense"]
    lr, limit = PEAK_LR["bn"], 2 * (1 + TrainConfig().momentum)
    lam = dense_input_top_curvature(model, x) / 10
    assert lr * lam < limit / 2, lam
    unscaled = lam / FEATURE_SCALE ** 2
    assert lr * unscaled > limit, unscaled


def test_build_model_is_seeded_and_rejects_unknown_arch():
    a, b, c = build_model("bn", seed=1), build_model("bn", seed=1), build_model("bn", seed=2)
    wa, wb, wc = (backend.to_numpy(m.layers[0].params["W"]) for m in (a, b, c))
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)
    with pytest.raises(ValueError) as e:
        build_model("resnet")
    one_line(e, "resnet", "bn", "paper")


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    model = build_model("bn", seed=0)
    x = backend.asarray(to_float(images(16)))
    y = backend.asarray(np.arange(16) % 10)
    loss_fn = losses.SoftmaxCrossEntropy(label_smoothing=0.1)
    opt = optim.SGD(model, lr=0.02, momentum=0.9)

    def loss_now():
        backend.seed(5)                       # the same dropout mask for both measurements
        return loss_fn.forward(model.forward(x, training=True), y)

    before = loss_now()
    model.backward(loss_fn.backward())
    opt.step()
    assert loss_now() < before - 0.05




def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    total, peak = 100, 0.05
    lrs = [learning_rate(t, total, peak, warmup=0.1) for t in range(total)]
    assert lrs[0] == pytest.approx(peak / 10) and lrs[9] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))            # non-increasing after the warm-up
    assert lrs[-1] < 0.001 * peak and learning_rate(total, total, peak, 0.1) == pytest.approx(0)


def test_plan_gives_small_sets_enough_steps_and_large_sets_the_minimum_epochs():
    cfg = TrainConfig()
    batch, spe, epochs, total = plan(705, cfg)
    assert (batch, spe) == (64, 11) and total >= cfg.min_steps and epochs == 182
    batch, spe, epochs, total = plan(68_257, cfg)
    assert (spe, epochs) == (1066, 20)
    assert plan(10, cfg)[0] == 10                                       # a set smaller than a batch


# ---------------------------------------------------------------- augmentation

def test_augment_keeps_shape_dtype_range_and_is_seeded():
    x = backend.asarray(to_float(images(8)))
    a = augment(x, np.random.default_rng(3))
    b = augment(x, np.random.default_rng(3))
    c = augment(x, np.random.default_rng(4))
    assert a.shape == x.shape and a.dtype == np.float32
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert augment(x, np.random.default_rng(0), NONE) is x


def test_affine_identity_and_integer_shift_are_exact():
    x = backend.asarray(to_float(images(3)))
    eye = np.broadcast_to(np.eye(2), (3, 2, 2))
    assert np.allclose(affine_sample(x, eye, np.zeros((3, 2))), x, atol=1e-6)
    right = shifted_copies(x, [(2, 0)])[0]                # reads 2 pixels to the right: y[..., j] = x[..., j + 2]
    assert np.allclose(right[..., :30], x[..., 2:], atol=1e-6)
    assert np.allclose(right[..., 30:], x[..., 31:32], atol=1e-6)    # edge pixels repeat
    down = shifted_copies(x, [(0, -1)])[0]
    assert np.allclose(down[:, :, 1:], x[:, :, :31], atol=1e-6)


def test_colour_inversion_only_flips_polarity():
    cfg = AugmentConfig(rotate_deg=0, scale=0, shear=0, shift_px=0, contrast=0, brightness=0, saturation=0,
                        channel_shuffle_p=0, invert_p=1.0, cutout_p=0)
    x = backend.asarray(to_float(images(4)))
    assert np.allclose(augment(x, np.random.default_rng(0), cfg), -x, atol=1e-6)


# ---------------------------------------------------------------- evaluation

def test_metrics_on_a_hand_made_case():
    y_true = np.array([0, 0, 1, 1, 1, 2, 3])
    y_pred = np.array([0, 1, 1, 1, 1, 0, 3])
    m = metrics_from_predictions(y_true, y_pred)
    C = np.zeros((10, 10), int)
    C[0, 0], C[0, 1], C[1, 1], C[2, 0], C[3, 3] = 1, 1, 3, 1, 1
    assert m["confusion_matrix"] == C.tolist()
    assert m["accuracy"] == pytest.approx(5 / 7) and m["n"] == 7
    assert m["per_digit_accuracy"][:4] == [0.5, 1.0, 0.0, 1.0]
    assert m["per_digit_accuracy"][4:] == [None] * 6                    # digits absent from the test set


class BrightnessModel:
    """A stand-in network: predicts digit = (pixel value of the top-left red pixel) mod 10."""
    arch = "stub"

    def forward(self, x, training=False):
        xp = backend.xp
        value = xp.rint((x[:, 0, 0, 0] + 1) * 127.5).astype(np.int64) % 10
        return (xp.arange(10)[None, :] == value[:, None]).astype(np.float32) * 10


@pytest.mark.parametrize("tta", [True, False])
def test_evaluate_counts_right_and_wrong_on_a_known_model(tta):
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3], dtype=np.int64)
    values = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15])              # the last one reads as 5, true 3
    x = np.broadcast_to(values[:, None, None, None], (12, 32, 32, 3)).astype(np.uint8)  # flat images: TTA can't change them
    m = evaluate(BrightnessModel(), x, y, tta=tta)
    assert m["accuracy"] == pytest.approx(11 / 12)
    assert m["confusion_matrix"][3][5] == 1 and m["confusion_matrix"][3][3] == 2
    assert m["per_digit_accuracy"][3] == pytest.approx(2 / 3)
    assert list(m["predictions"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 5]
    assert list(predict_labels(BrightnessModel(), x[:3], tta=tta)) == [0, 1, 2]


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("arch", ["bn", "paper", "bn-std"])
def test_a_tiny_run_learns_an_easy_task_well_above_chance(arch):
    x, y = squares(320, seed=0)
    x_test, y_test = squares(100, seed=1)
    model, metrics = train_classifier([(x, y)], test=(x_test, y_test), arch=arch, epochs=6, batch_size=32,
                                      augment=NONE, widths=SMALL, ema_decay=0.0, val_fraction=0.1, tta=False,
                                      seed=0, progress=False)
    assert metrics["test_accuracy"] >= 0.9, metrics["history"]              # chance is 0.1
    assert metrics["n_train"] == 288 and metrics["n_val"] == 32 and metrics["n_test"] == 100
    assert metrics["steps"] == 6 * 9 and metrics["epochs"] == 6
    for key in ("per_digit_accuracy", "confusion_matrix", "train_sets", "seed", "arch", "lr", "best_epoch"):
        assert key in metrics
    assert "warning" not in metrics
    json.dumps(metrics)                                                       # JSON-ready


def test_the_loss_curve_holds_the_mean_loss_of_every_log_every_steps():
    """metrics["loss_curve"]: one point per LOG_EVERY steps (a partial block at the end is left out),
    the mean of those steps' training losses, which falls as the net learns."""
    x, y = squares(320, seed=0)
    _, metrics = train_classifier([(x, y)], epochs=12, batch_size=32, augment=NONE, widths=SMALL, ema_decay=0.0,
                                  val_fraction=0.1, tta=False, seed=0, progress=False)
    curve = metrics["loss_curve"]
    assert [p["step"] for p in curve] == list(range(LOG_EVERY, 12 * 9 + 1, LOG_EVERY))
    assert all(0 <= p["train_accuracy"] <= 1 for p in curve)
    assert curve[0]["train_loss"] > curve[-1]["train_loss"] + 0.3 and curve[-1]["train_accuracy"] > 0.9, curve


def test_a_run_that_never_leaves_uniform_guessing_is_flagged():
    """With a learning rate too small to move the weights the training loss stays at or above ln 10
    (what guessing 1/10 per class costs), and the metrics say so in one line."""
    x, y = squares(128, seed=3)
    _, metrics = train_classifier([(x, y)], epochs=2, batch_size=32, augment=NONE, widths=SMALL, lr=1e-7,
                                  ema_decay=0.0, val_fraction=0.0, seed=0, progress=False)
    assert metrics["history"][-1]["train_loss"] >= 0.97 * np.log(10)
    assert "did not learn" in metrics["warning"] and "--seed" in metrics["warning"]
    assert "\n" not in metrics["warning"]
    assert did_not_learn([{"train_loss": 2.3025}]) and did_not_learn([{"train_loss": 0.8}]) is None
    assert did_not_learn([]) is None


def test_training_is_repeatable_with_the_same_seed():
    x, y = squares(64, seed=2)
    runs = [train_classifier([(x, y)], epochs=1, batch_size=32, seed=7, progress=False, val_fraction=0.0,
                             widths=SMALL)
            for _ in range(2)]
    w = [backend.to_numpy(m.layers[-1].params["W"]) for m, _ in runs]
    assert np.array_equal(w[0], w[1])


def test_batch_shares_fix_each_sets_part_of_every_batch():
    """--batch-shares: set i gives round(share_i · batch) images of every batch (largest remainders), each set
    walked in its own shuffled order, so the 6 images of a small set are seen equally often."""
    from classify.train import mixed_batches
    x = np.zeros((6 + 90, 32, 32, 3), np.uint8)
    x[:6] = np.arange(6)[:, None, None, None]            # the small set's images carry their index
    x[6:] = 200
    y = np.zeros(96, np.int64)
    sources = np.repeat([0, 1], [6, 90])
    cfg = TrainConfig(batch_shares=(1, 2), augment=NONE)
    seen = []
    batches = list(mixed_batches(x, y, sources, 16, np.random.default_rng(0), cfg))
    assert len(batches) == 96 // 16                                     # as many steps as one pass over all
    for xb, _ in batches:
        xb = backend.to_numpy(xb)
        small = xb[:, 0, 0, 0] < 0                                      # to_float maps 0..5 below zero
        assert small.sum() == 5                                          # 16/3 = 5.33 -> 5, 10.67 -> 11
        seen += list(np.round((xb[small, 0, 0, 0] + 1) * 127.5).astype(int))
    assert np.bincount(seen, minlength=6).tolist() == [5] * 6           # 30 draws, each image 5 times
    # training with shares runs and records them; a wrong number of shares is one line
    xs, ys = squares(64, seed=4)
    _, metrics = train_classifier([(xs[:8], ys[:8]), (xs[8:], ys[8:])], epochs=1, batch_size=16, widths=SMALL,
                                  batch_shares=(1, 1), val_fraction=0.0, seed=0, progress=False)
    assert list(metrics["batch_shares"]) == [1, 1] and metrics["steps"] == 4
    with pytest.raises(ClassifyError) as e:
        train_classifier([(xs, ys)], epochs=1, batch_shares=(1, 1), progress=False)
    one_line(e, "2 batch shares for 1 training sets")
    with pytest.raises(ClassifyError) as e:
        TrainConfig(batch_shares=(0, 0)).check()
    one_line(e, "not all 0")


def test_save_and_load_give_identical_predictions(tmp_path):
    x, y = squares(64, seed=3)
    model, _ = train_classifier([(x, y)], epochs=1, batch_size=32, seed=0, progress=False, val_fraction=0.0,
                                widths=SMALL)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert (loaded.arch, loaded.widths) == ("bn", SMALL)
    assert np.array_equal(predict_proba(model, x[:20]), predict_proba(loaded, x[:20]))
    # BatchNorm's running statistics travel too (they are no longer the initial 0 / 1)
    assert not np.allclose(backend.to_numpy(loaded.layers[1].buffers["running_mean"]), 0)


def test_bn_std_ignores_each_images_brightness_and_contrast(tmp_path):
    """"bn-std" is the bn net behind a per-image Standardize: an image and the same image with its
    contrast halved and its brightness shifted get (nearly) the same logits, where the bn net's differ;
    the arch name travels through save and load."""
    model = build_model("bn-std", seed=0, widths=SMALL)
    assert [type(l).__name__ for l in model.layers[:2]] == ["Standardize", "Conv2D"]
    assert model.num_params() == build_model("bn", seed=0, widths=SMALL).num_params()
    x = to_float(images(8, seed=5))
    washed = 0.5 * x - 0.2                                                     # less contrast, darker
    for arch, same in (("bn-std", True), ("bn", False)):
        net = build_model(arch, seed=0, widths=SMALL)
        a, b = (backend.to_numpy(net.forward(backend.asarray(v), training=False)) for v in (x, washed))
        assert np.allclose(a, b, atol=0.05 * np.abs(a).max()) == same, (arch, np.abs(a - b).max())
    save_model(model, tmp_path / "std.npz")
    loaded = load_model(tmp_path / "std.npz")
    assert loaded.arch == "bn-std" and type(loaded.layers[0]).__name__ == "Standardize"


# ---------------------------------------------------------------- sets: mixing, capping, bad input

def test_parse_spec():
    assert parse_spec("real") == SetSpec("real")
    assert parse_spec("real:300") == SetSpec("real", 300)
    assert parse_spec("runs/a:b/dcgan.npz:20000") == SetSpec("runs/a:b/dcgan.npz", 20000)
    assert parse_spec("c:/x.npz") == SetSpec("c:/x.npz")
    with pytest.raises(ClassifyError):
        parse_spec("real:0")


def test_mixing_and_capping_give_the_right_counts(tmp_path):
    xa, ya = images(30, 1), np.full(30, 3)
    xb, yb = images(20, 2), np.full(20, 7)
    save_image_set(tmp_path / "a.npz", xa, ya)
    save_image_set(tmp_path / "b.npz", xb, yb)
    x, y, described = resolve_sets([f"{tmp_path / 'a.npz'}:10", str(tmp_path / "b.npz")], seed=0)
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert (y == 3).sum() == 10 and (y == 7).sum() == 20
    assert [d["n"] for d in described] == [10, 20]
    assert described[0]["name"].endswith("a.npz:10")
    # the capped subset is random but seeded, and taken from the set's own images
    x2, _, _ = resolve_sets([f"{tmp_path / 'a.npz'}:10"], seed=0)
    assert np.array_equal(x2, x[:10])
    assert all(any(np.array_equal(img, a) for a in xa) for img in x[:10])
    # arrays mix with files
    x3, y3, _ = resolve_sets([(xb, yb), f"{tmp_path / 'a.npz'}:5"])
    assert len(x3) == 25
    with pytest.raises(ClassifyError) as e:
        resolve_sets([f"{tmp_path / 'b.npz'}:21"])
    one_line(e, "21", "20")


@pytest.mark.parametrize("x, y, fragment", [
    (np.zeros((4, 28, 28, 3), np.uint8), np.zeros(4, np.int64), "shape"),
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int64), "uint8"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 10, 2]), "0..9"),
    (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), "empty"),
])
def test_bad_image_sets_are_one_line_value_errors(x, y, fragment):
    with pytest.raises(ValueError) as e:
        train_classifier([(x, y)], epochs=1, progress=False, widths=SMALL)
    one_line(e, fragment)
    good = images(4), np.zeros(4, np.int64)
    with pytest.raises(ValueError) as e:                                       # a bad test set too
        train_classifier([good], test=(x, y), epochs=1, progress=False, widths=SMALL)
    one_line(e, fragment)


def test_unknown_set_name_and_missing_procedural(tmp_path, monkeypatch):
    with pytest.raises(ClassifyError) as e:
        resolve_sets(["dcgan"])
    one_line(e, "dcgan", "real", "procedural")
    with pytest.raises(ImageSetError):
        resolve_sets([str(tmp_path / "missing.npz")])
    import procedural
    if getattr(procedural, "generate", None) is None:
        with pytest.raises(RuntimeError) as e:
            resolve_sets(["procedural:10"])
        one_line(e, "not built yet")
    # a synthesizer that exists is called with the count and the seed
    monkeypatch.setattr(procedural, "generate",
                        lambda n, seed=0, **kw: (images(n, seed), np.arange(n) % 10), raising=False)
    x, y, described = resolve_sets(["procedural:12"], seed=4)
    assert len(x) == 12 and np.array_equal(x, images(12, 4)) and described == [{"name": "procedural:12", "n": 12}]


def test_model_files_from_other_networks_are_refused(tmp_path):
    save_model(build_model("paper", seed=0), tmp_path / "paper.npz")
    with np.load(tmp_path / "paper.npz") as f:
        arrays = dict(f)
    arrays["__classify_arch__"] = np.array("bn")                              # claims to be the other variant
    np.savez(tmp_path / "liar.npz", **arrays)
    with pytest.raises(ValueError) as e:
        load_model(tmp_path / "liar.npz")
    one_line(e, "different architecture")
    from nn import Sequential
    Sequential(layers.Dense(4, 2)).save(tmp_path / "other.npz")               # some other package's network
    with pytest.raises(ValueError) as e:
        load_model(tmp_path / "other.npz")
    one_line(e, "not a classify ConvNet")
    with pytest.raises(ValueError) as e:
        load_model(tmp_path / "nothing.npz")
    one_line(e, "no such model file")
    assert load_model(tmp_path / "paper.npz").arch == "paper"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "classify", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 32, 32, 3), np.float64), y=np.zeros(3, np.int64))
    r = run_cli("train", "--train", tmp_path / "bad.npz", "--out", tmp_path / "out", "--epochs", "1")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ") and "uint8" in r.stderr
    assert not (tmp_path / "out" / "model.npz").exists()
    r = run_cli("train", "--train", "real:10", "procedural:10", "--batch-shares", "1", "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "one share per set" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the real sample (skips without it)

def test_smoke_training_on_the_real_sample_and_cli_round_trip(sample_dir, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--train", "real:64", "--test", "real:40", "--epochs", "1", "--data-dir", sample_dir,
                "--out", out, "--seed", "1", "--widths", *SMALL, "--quiet")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "per_digit_accuracy", "confusion_matrix", "train_sets", "seed", "epochs"):
        assert key in metrics
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["n_test"] == 40
    assert metrics["train_sets"] == [{"name": "real:64", "n": 64}] and metrics["seed"] == 1
    assert np.array(metrics["confusion_matrix"]).sum() == 40 and metrics["widths"] == list(SMALL)
    assert (out / "confusion.png").stat().st_size > 0 and (out / "model.npz").exists()
    assert (out / "misclassified.png").exists()                               # a 1-epoch model errs somewhere
    # eval on the same 40 test images (the cap is drawn with the same seed) prints the same numbers
    r = run_cli("eval", "--model", out / "model.npz", "--test", "real:40", "--data-dir", sample_dir, "--seed", "1")
    assert r.returncode == 0, r.stderr
    evaluated = json.loads(r.stdout)
    assert evaluated["arch"] == "bn" and evaluated["n_test"] == 40
    for key in ("test_accuracy", "per_digit_accuracy", "confusion_matrix"):
        assert evaluated[key] == metrics[key]
    x, y, _ = resolve_sets(["real:40"], "test", sample_dir, seed=1)
    assert evaluated["test_accuracy"] == pytest.approx(evaluate(load_model(out / "model.npz"), x, y)["accuracy"])
    from PIL import Image
    Image.fromarray(x[0]).resize((50, 70)).save(tmp_path / "digit.png")
    r = run_cli("predict", "--model", out / "model.npz", tmp_path / "digit.png")
    assert r.returncode == 0, r.stderr
    path, digit, prob = r.stdout.strip().split("\t")
    assert path.endswith("digit.png") and 0 <= int(digit) <= 9 and 0 < float(prob) <= 1


# ---------------------------------------------------------------- CuPy (skips without a GPU)

@pytest.mark.cupy
@pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine")
def test_cupy_training_matches_numpy_augmentation_and_runs():
    x = to_float(images(8))
    backend.set_backend("numpy")
    a = augment(backend.asarray(x), np.random.default_rng(1))
    backend.set_backend("cupy")
    b = backend.to_numpy(augment(backend.asarray(x), np.random.default_rng(1)))
    assert np.allclose(a, b, atol=1e-5)
    xs, ys = squares(64, seed=0)
    model, metrics = train_classifier([(xs, ys)], test=(xs[:16], ys[:16]), epochs=1, batch_size=32, progress=False,
                                      widths=SMALL)
    assert metrics["backend"] == "cupy" and 0 <= metrics["test_accuracy"] <= 1
