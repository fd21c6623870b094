"""Tests of the gan package: network shapes, the paper's losses and their gradients, a training step,
checkpoint/resume, deterministic sampling, the divergence check, label fidelity and the CLI.

Everything runs on tiny networks (width 2-4) and a few random "images", so the file takes seconds.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn import backend, gradcheck_loss, losses
from nn.layers.activations import sigmoid
from gan.dcgan import nets as dcgan, sampling as gsample, train as gtrain
from gan.dcgan import DCGAN, build_discriminator, build_generator, generate
from gan.dcgan.train import Config, DivergedError, check_health, parse_digits, train_all
from classify.fidelity import label_fidelity

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=2, batch_size=8, checkpoint_every=2, stuck_iters=0, upsample="deconv", augment=False)


def fake_data(n_per_digit=6, digits=range(10), seed=0):
    """Random uint8 "images" with labels, n_per_digit of each digit."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(list(digits)), n_per_digit)
    x = rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8)
    return x, y


def params_of(model):
    return {name: backend.to_numpy(p).copy() for name, p, _ in model.named_parameters()}


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("upsample", ["nearest", "deconv"])
def test_generator_makes_32x32_rgb_in_tanh_range(upsample):
    backend.seed(0)
    G = build_generator(upsample, width=4)
    z = backend.asarray(np.random.default_rng(0).standard_normal((5, 100)).astype(np.float32))
    x = G.forward(z)
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32
    assert float(abs(x).max()) <= 1.0
    assert G.summary((100,)).splitlines()[-1].split()[-1] == f"{G.num_params():,}"
    kinds = [type(layer).__name__ for layer in G.layers]
    assert kinds[0] == "Dense" and kinds[-1] == "Tanh"
    if upsample == "nearest":   # the paper: 3 upsampling + 3 convolution layers
        assert kinds.count("Upsample2D") == 3 and kinds.count("Conv2D") == 3
    else:
        assert kinds.count("ConvTranspose2D") == 3 and "Upsample2D" not in kinds


def test_discriminator_outputs_one_logit_per_image():
    backend.seed(0)
    D = build_discriminator(width=4)
    x = backend.asarray(np.random.default_rng(0).uniform(-1, 1, (6, 3, 32, 32)).astype(np.float32))
    X = sigmoid(D.forward(x))                  # D returns logits; the losses apply the sigmoid
    assert X.shape == (6, 1) and X.dtype == np.float32
    assert float(X.min()) > 0 and float(X.max()) < 1
    kinds = [type(layer).__name__ for layer in D.layers]   # the paper: 3 conv + 3 pool + 1 dense
    assert kinds.count("Conv2D") == 3 and kinds.count("MaxPool2D") == 3 and kinds.count("Dense") == 1
    assert kinds.count("BatchNorm2D") == 2 and kinds.index("BatchNorm2D") > kinds.index("MaxPool2D")
    assert kinds[-1] == "Dense"                              # logits: no Sigmoid layer to cut off


def test_bad_architecture_arguments_are_value_errors():
    with pytest.raises(ValueError, match="upsample"):
        build_generator("bilinear")
    with pytest.raises(ValueError, match="loss"):
        dcgan.make_loss("wasserstein")


# ----------------------------------------------------------------------------- the paper's losses

def test_paper_losses_on_known_inputs():
    """D = mean|X1 - X| and G = 1 - D on generated images = mean(X), with their exact gradients."""
    loss = dcgan.PaperLoss()                   # takes D's logits z and applies X = sigmoid(z) itself
    X = np.array([[0.9], [0.2], [0.6], [0.1]])
    z = backend.asarray(np.log(X / (1 - X)))
    X1 = backend.asarray(np.array([[1.0], [1.0], [0.0], [0.0]]))         # two generated, two real
    D, dD = loss.discriminator(z, X1)
    assert D == pytest.approx((0.1 + 0.8 + 0.6 + 0.1) / 4)
    slope = X * (1 - X)                                                   # dX/dz
    np.testing.assert_allclose(backend.to_numpy(dD), np.array([[-1], [-1], [1], [1]]) / 4 * slope)   # -sign(X1 - X) / M
    G, dG = loss.generator(z[:2])
    assert G == pytest.approx(1 - (0.1 + 0.8) / 2) and G == pytest.approx((0.9 + 0.2) / 2)
    np.testing.assert_allclose(backend.to_numpy(dG), np.full((2, 1), 0.5) * slope[:2])   # push X ("synthetic") down


@pytest.mark.parametrize("which", ["discriminator", "generator"])
def test_paper_loss_gradients_match_central_differences(which):
    rng = np.random.default_rng(0)
    X = rng.uniform(0.05, 0.95, (7, 1))                     # away from the kinks at 0 and 1
    if which == "discriminator":
        X1 = backend.asarray(rng.integers(0, 2, (7, 1)).astype(np.float64))
        err = gradcheck_loss(losses.PaperDiscriminatorLoss(), X, X1)
    else:
        err = gradcheck_loss(losses.PaperGeneratorLoss(), X)
    assert err < 1e-6


def test_bce_loss_targets_follow_the_papers_convention():
    """BCE: D is taught X1 (1 generated, 0 real); G is taught "real" (0) — the non-saturating form."""
    loss = dcgan.BCELoss()
    z = np.array([[2.0], [-1.0]])
    target = backend.asarray(np.array([[1.0], [0.0]]))
    p = 1 / (1 + np.exp(-z))
    L, dz = loss.generator(backend.asarray(z))
    assert L == pytest.approx(-np.log(1 - p).mean())
    np.testing.assert_allclose(backend.to_numpy(dz), p / 2)
    L, dz = loss.discriminator(backend.asarray(z), target)
    assert L == pytest.approx(-(np.log(p[0, 0]) + np.log(1 - p[1, 0])) / 2)
    assert gradcheck_loss(losses.BCEWithLogits(), z, target) < 1e-6


@pytest.mark.parametrize("loss", ["paper", "bce"])
def test_generator_gradient_through_the_discriminator_matches_central_differences(loss):
    """The generator step backpropagates the loss through D into G: check dLoss/dW of G's dense layer."""
    backend.seed(1)
    G = build_generator("deconv", width=2).astype(np.float64)
    D = build_discriminator(width=2).astype(np.float64)
    gan = DCGAN(G, D, loss)
    z = backend.asarray(np.random.default_rng(1).standard_normal((4, 100)))

    def value():
        X, out = gan._d_forward(G.forward(z, True))
        return gan.loss.generator(out)[0]

    X, out = gan._d_forward(G.forward(z, True))
    G.backward(gan._d_backward(gan.loss.generator(out)[1]))
    W, dW = G.layers[0].params["W"], G.layers[0].grads["W"]
    for k in np.random.default_rng(2).choice(W.size, 6, replace=False):
        i = np.unravel_index(k, W.shape)
        old, h = float(W[i]), 1e-6
        W[i] = old + h
        plus = value()
        W[i] = old - h
        minus = value()
        W[i] = old
        assert (plus - minus) / (2 * h) == pytest.approx(float(dW[i]), rel=1e-4, abs=1e-9)


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("loss", ["paper", "bce"])
def test_one_step_changes_weights_and_lowers_the_discriminator_loss(loss):
    backend.seed(0)
    gan = DCGAN(build_generator("deconv", 4), build_discriminator(4), loss, lr=1e-3)
    rng = np.random.default_rng(0)
    real = backend.asarray(rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32))
    z = backend.asarray(rng.standard_normal((8, 100)).astype(np.float32))
    G0, D0 = params_of(gan.G), params_of(gan.D)
    fake = gan.G.forward(z)
    before, _, _ = gan.discriminator_step(real, fake, update=False)
    metrics = gan.train_step(real, z)
    assert metrics["loss_D"] == pytest.approx(before, rel=1e-5)   # reported loss is the pre-update one
    after, _, _ = gan.discriminator_step(real, fake, update=False)
    assert after < before
    for name, p in params_of(gan.G).items():
        assert not np.array_equal(p, G0[name]), name
    for name, p in params_of(gan.D).items():
        assert not np.array_equal(p, D0[name]), name
    assert set(metrics) == {"loss_D", "loss_G", "acc_real", "acc_fake", "X_real", "X_fake"}


def test_d_every_skips_discriminator_updates():
    backend.seed(0)
    gan = DCGAN(build_generator("deconv", 2), build_discriminator(2), "bce", d_every=2)
    rng = np.random.default_rng(0)
    real = backend.asarray(rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32))
    gan.train_step(real, backend.asarray(rng.standard_normal((4, 100)).astype(np.float32)))   # iteration 1: D learns
    D1 = params_of(gan.D)
    gan.train_step(real, backend.asarray(rng.standard_normal((4, 100)).astype(np.float32)))   # iteration 2: D rests
    assert all(np.array_equal(p, D1[k]) for k, p in params_of(gan.D).items())
    assert gan.opt_D.t == 1 and gan.opt_G.t == 2
    assert DCGAN(gan.G, gan.D, "bce", lr=1e-3, lr_d=5e-5).opt_D.lr == 5e-5


def test_the_generator_average_follows_the_ema_formula_and_is_what_runs_sample_from(tmp_path):
    """After one step G_ema = β_1·G_0 + (1 - β_1)·G_1 with β_1 = min(β, 2/11); a run's checkpoint keeps
    G_ema and `load_generator` returns it, not G."""
    backend.seed(0)
    gan = DCGAN(build_generator("deconv", 2), build_discriminator(2), "bce", lr=1e-3, ema_decay=0.9)
    assert gan.sampler is gan.G_ema and gan.G_ema is not gan.G
    G0 = params_of(gan.G)
    rng = np.random.default_rng(0)
    real = backend.asarray(rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32))
    gan.train_step(real, backend.asarray(rng.standard_normal((4, 100)).astype(np.float32)))
    G1, avg = params_of(gan.G), params_of(gan.G_ema)
    beta = 2 / 11
    for name in G0:
        np.testing.assert_allclose(avg[name], beta * G0[name] + (1 - beta) * G1[name], rtol=1e-5, atol=1e-7)
        assert not np.array_equal(avg[name], G1[name]), name
    assert DCGAN(gan.G, gan.D, "bce").sampler is gan.G                     # ema_decay 0: no average
    with pytest.raises(ValueError, match="ema_decay"):
        DCGAN(gan.G, gan.D, "bce", ema_decay=1.0)

    x, y = fake_data(digits=[2])
    train_all(tmp_path / "run", Config(iters=3, ema_decay=0.9, **TINY), digits=[2], images=x, labels=y,
              progress=False)
    state = np.load(tmp_path / "run" / "digit_2" / "checkpoint.npz")
    G = gtrain.load_generator(tmp_path / "run", 2)
    for name, p in params_of(G).items():
        np.testing.assert_array_equal(p, state["G_ema/" + name])
        assert not np.array_equal(p, state["G/" + name]), name


def test_runs_saved_before_the_average_existed_still_load(tmp_path):
    """An old config.json has no ema_decay: the run reopens without an average and samples from G."""
    x, y = fake_data(digits=[4])
    train_all(tmp_path / "run", Config(iters=2, ema_decay=0.0, **TINY), digits=[4], images=x, labels=y,
              progress=False)
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    del saved["ema_decay"]
    path.write_text(json.dumps(saved))
    assert gtrain.load_config(tmp_path / "run").ema_decay == 0.0
    G = gtrain.load_generator(tmp_path / "run", 4)
    state = np.load(tmp_path / "run" / "digit_4" / "checkpoint.npz")
    assert not any(k.startswith("G_ema/") for k in state.files)
    for name, p in params_of(G).items():
        np.testing.assert_array_equal(p, state["G/" + name])
    gan = gtrain.build_gan(Config(ema_decay=0.5, **TINY), 4)
    with pytest.raises(ValueError, match="G_ema"):
        gtrain.load_checkpoint(tmp_path / "run" / "digit_4" / "checkpoint.npz", gan)


def test_generate_leaves_batchnorm_statistics_alone():
    backend.seed(0)
    G = build_generator("deconv", 2)
    before = {k: v.copy() for k, v in G.state_dict().items()}
    z = backend.asarray(np.random.default_rng(0).standard_normal((10, 100)).astype(np.float32))
    a = backend.to_numpy(generate(G, z, batch_size=5))
    assert a.shape == (10, 3, 32, 32)
    assert all(np.array_equal(v, before[k]) for k, v in G.state_dict().items())
    np.testing.assert_array_equal(a, backend.to_numpy(generate(G, z, batch_size=5)))
    assert not np.allclose(backend.to_numpy(generate(G, z, bn="running")), a)


# ----------------------------------------------------------------------------- runs, checkpoints, resume

def test_train_all_writes_logs_checkpoints_and_figures(tmp_path):
    x, y = fake_data(digits=[1, 5])
    results = train_all(tmp_path / "run", Config(iters=3, **TINY), digits=[1, 5], images=x, labels=y,
                        progress=False)
    assert {d: s["state"] for d, s in results.items()} == {1: "done", 5: "done"}
    folder = tmp_path / "run" / "digit_5"
    for name in ("checkpoint.npz", "log.csv", "status.json", "samples_0001.png", "samples_final.png", "losses.png"):
        assert (folder / name).is_file(), name
    rows = gtrain.read_log(folder / "log.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(0 <= r["acc_real"] <= 1 and np.isfinite(r["loss_D"]) for r in rows)
    assert (tmp_path / "run" / "losses.png").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["iters"] == 3


def test_resume_takes_the_same_next_step(tmp_path):
    """A run stopped at a checkpoint and resumed ends bitwise where an uninterrupted run ends."""
    x, y = fake_data(digits=[3])
    train_all(tmp_path / "whole", Config(iters=4, seed=7, **TINY), digits=[3], images=x, labels=y, progress=False)
    train_all(tmp_path / "split", Config(iters=2, seed=7, **TINY), digits=[3], images=x, labels=y, progress=False)
    state_2 = dict(np.load(tmp_path / "split" / "digit_3" / "checkpoint.npz"))
    assert int(state_2["iteration"]) == 2 and "rng_state" in state_2 and "opt_D/__t__" in state_2
    assert any(k.startswith("G/") and k.endswith("running_mean") for k in state_2)
    train_all(tmp_path / "split", Config(iters=4, seed=7, **TINY), digits=[3], images=x, labels=y,
              progress=False, explicit=("iters",))
    whole = np.load(tmp_path / "whole" / "digit_3" / "checkpoint.npz")
    split = np.load(tmp_path / "split" / "digit_3" / "checkpoint.npz")
    assert sorted(whole.files) == sorted(split.files)
    for k in whole.files:
        np.testing.assert_array_equal(whole[k], split[k], err_msg=k)
    assert len(gtrain.read_log(tmp_path / "split" / "digit_3" / "log.csv")) == 4


def test_the_generator_learning_rate_defaults_per_loss_and_an_explicit_one_wins(tmp_path):
    assert Config().lr == gtrain.GENERATOR_LR["paper"] == 1e-3
    assert Config(loss="bce").lr == gtrain.GENERATOR_LR["bce"] == 3e-3
    assert Config(loss="bce", lr=5e-4).lr == 5e-4
    assert gtrain.build_gan(Config(loss="bce", **TINY), 0).opt_G.lr == 3e-3
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        Config(loss="hinge").check()
    x, y = fake_data(digits=[0])           # the resolved rate is what the run folder keeps
    train_all(tmp_path / "run", Config(iters=1, loss="bce", **TINY), digits=[0], images=x, labels=y, progress=False)
    assert gtrain.load_config(tmp_path / "run").lr == 3e-3


def test_resume_refuses_a_changed_architecture(tmp_path):
    x, y = fake_data(digits=[0])
    train_all(tmp_path / "run", Config(iters=1, **TINY), digits=[0], images=x, labels=y, progress=False)
    with pytest.raises(ValueError, match="loss='paper'"):
        train_all(tmp_path / "run", Config(iters=1, loss="bce", **TINY), digits=[0], images=x, labels=y,
                  progress=False, explicit=("loss",))


def test_divergence_stops_one_digit_and_the_others_go_on(tmp_path, monkeypatch):
    """A forced NaN (digit 4's discriminator weights poisoned) stops digit 4 with one line; 2 and 6 finish."""
    original = gtrain.build_gan

    def poisoned(config, digit):
        gan = original(config, digit)
        if digit == 4:
            gan.D.layers[0].params["W"][...] = np.nan
        return gan

    monkeypatch.setattr(gtrain, "build_gan", poisoned)
    x, y = fake_data(digits=[2, 4, 6])
    lines = []
    results = train_all(tmp_path / "run", Config(iters=2, **TINY), digits=[2, 4, 6], images=x, labels=y,
                        progress=False, log=lines.append)
    assert {d: s["state"] for d, s in results.items()} == {2: "done", 4: "stopped", 6: "done"}
    assert len(lines) == 1 and lines[0].startswith("digit 4: stopped:") and "nan" in lines[0]
    assert "\n" not in lines[0]
    assert results[4]["iteration"] == 1
    # the health check runs before anything is drawn: no sample grid of the poisoned generator
    assert not gtrain.samples_path(tmp_path / "run", 4, 1).exists()
    assert gtrain.samples_path(tmp_path / "run", 2, 1).exists()


def test_stuck_discriminator_is_detected():
    rows = [{"iteration": i, "loss_D": 0.01, "loss_G": 0.99, "acc_real": 1.0, "acc_fake": 1.0} for i in range(1, 6)]
    check_health(rows[-1], rows, stuck_iters=6)                  # not yet long enough
    check_health(rows[-1], rows, stuck_iters=0)                  # switched off
    with pytest.raises(DivergedError, match="perfectly"):
        check_health(rows[-1], rows, stuck_iters=5)
    rows[2] = dict(rows[2], acc_fake=0.5)                        # one iteration in between breaks the run
    check_health(rows[-1], rows, stuck_iters=5)
    with pytest.raises(DivergedError, match="inf"):
        check_health(dict(rows[0], loss_G=float("inf")), rows, stuck_iters=0)


# ----------------------------------------------------------------------------- sampling and fidelity

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gan") / "run"
    x, y = fake_data(digits=[1, 5])
    backend.set_backend("numpy")
    train_all(run, Config(iters=2, **TINY), digits=[1, 5], images=x, labels=y, progress=False)
    return run


def test_sampling_is_deterministic_under_a_seed(tiny_run):
    x1, y1 = gsample.sample(tiny_run, per_digit=10, digits=[5, 1], seed=3)
    x2, y2 = gsample.sample(tiny_run, per_digit=10, digits=[5, 1], seed=3)
    x3, _ = gsample.sample(tiny_run, per_digit=10, digits=[5, 1], seed=4)
    assert x1.shape == (20, 32, 32, 3) and x1.dtype == np.uint8 and y1.dtype == np.int64
    assert list(y1) == [5] * 10 + [1] * 10
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_discriminator_selection_keeps_the_images_least_believed_synthetic(tiny_run, monkeypatch):
    """keep=0.5 draws twice the images (the same noise as keep=1 with twice per_digit) and keeps the
    half with the lowest belief X, in drawn order. X is replaced by the mean brightness here (of the
    images the selection is handed), so the expected choice can be computed exactly."""
    judged = []

    def brightness(D, images, batch_size=64):
        judged.append(backend.to_numpy(images))
        return images.reshape(len(images), -1).mean(axis=1)
    monkeypatch.setattr(gsample, "belief_synthetic", brightness)
    drawn, _ = gsample.sample(tiny_run, per_digit=20, digits=[5], seed=2)
    kept, y = gsample.sample(tiny_run, per_digit=10, digits=[5], seed=2, keep=0.5)
    assert len(judged) == 1 and judged[0].shape == (20, 3, 32, 32)     # only keep < 1 asks D, once per digit
    X = judged[0].reshape(20, -1).mean(axis=1)
    expected = np.sort(np.argsort(X, kind="stable")[:10])
    np.testing.assert_array_equal(kept, drawn[expected])
    assert list(y) == [5] * 10
    assert X[expected].max() <= np.delete(X, expected).min()


def test_belief_synthetic_is_the_discriminators_sigmoid_per_batch_and_leaves_it_unchanged():
    backend.set_backend("numpy")
    backend.seed(0)
    D = build_discriminator(width=2)
    x = np.random.default_rng(0).uniform(-1, 1, (10, 3, 32, 32)).astype(np.float32)
    before = [{name: value.copy() for name, value in layer.buffers.items()} for layer in D.layers]
    X = dcgan.belief_synthetic(D, x, batch_size=4)
    for layer, saved in zip(D.layers, before):       # BatchNorm's running statistics as they were
        for name, value in saved.items():
            np.testing.assert_array_equal(layer.buffers[name], value)
    expected = np.concatenate([sigmoid(D.forward(x[i:i + 4], training=True))[:, 0] for i in (0, 4, 8)])
    assert X.shape == (10,)
    np.testing.assert_allclose(X, expected, rtol=1e-6)


def test_sample_refuses_a_keep_fraction_outside_0_1(tiny_run):
    with pytest.raises(ValueError, match="keep must be a fraction"):
        gsample.sample(tiny_run, per_digit=2, keep=0)


def test_sampling_an_untrained_digit_is_one_clear_error(tiny_run):
    with pytest.raises(ValueError, match="digit 7 has no checkpoint"):
        gsample.sample(tiny_run, per_digit=2, digits=[7])


def test_label_fidelity_counts_per_digit():
    y = np.array([1, 1, 1, 1, 5, 5])
    labels = np.array([1, 1, 7, 1, 5, 3])
    result = label_fidelity(lambda x: labels, np.zeros((6, 32, 32, 3), np.uint8), y)
    assert result["per_digit"] == {1: 0.75, 5: 0.5}
    assert result["mean"] == pytest.approx(0.625)


# ----------------------------------------------------------------------------- command line

def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gan", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, fragment", [
    (["train", "--out", "RUN", "--digits", "12"], "bad digit list '12'"),
    (["train", "--out", "RUN", "--digits", "a-b"], "bad digit list"),
    (["train", "--out", "RUN", "--iters", "0"], "--iters: '0' is not a whole number >= 1"),
    (["sample", "--run", "NOWHERE", "--out", "x.npz"], "not a DCGAN run folder"),
    (["sample", "--run", "NOWHERE", "--out", "x.npz", "--keep", "0"], "--keep: '0' is not a finite number in (0, 1]"),
    (["train", "--out", "RUN", "--backend", "cupy"], "cupy"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, args, fragment):
    if "--backend" in args and backend.cupy_available():
        pytest.skip("CuPy works here, so --backend cupy is not an error")
    args = [str(tmp_path / a) if a in ("RUN", "NOWHERE") else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr


@pytest.mark.slow
def test_cli_train_then_resume_with_more_iterations(tmp_path, monkeypatch):
    """`train` on a tiny official-layout .mat; a second `train` on the same folder resumes (and refuses
    a different loss with one line, exit 2)."""
    import scipy.io
    x, y = fake_data(n_per_digit=4, digits=[2, 7])
    data = tmp_path / "svhn"
    data.mkdir()
    scipy.io.savemat(data / "train_32x32.mat", {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)),
                                                "y": y.astype(np.uint8).reshape(-1, 1)})
    monkeypatch.setenv("SVHN_CACHE_DIR", str(tmp_path / "cache"))
    run = str(tmp_path / "run")
    common = ["--digits", "2,7", "--width", "2", "--batch-size", "4", "--quiet", "--out", run]
    first = run_cli("train", "--data-dir", str(data), "--iters", "1", "--lr-d", "1e-4", *common)
    assert first.returncode == 0, first.stderr
    assert "digits 2,7 trained" in first.stdout
    again = run_cli("train", "--iters", "2", *common)
    assert again.returncode == 0, again.stderr
    assert len(gtrain.read_log(Path(run) / "digit_7" / "log.csv")) == 2
    assert json.loads((Path(run) / "config.json").read_text())["lr_d"] == 1e-4
    clash = run_cli("train", "--loss", "bce", *common)
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1 and "loss='paper'" in clash.stderr


def test_cli_sample_writes_an_image_set(tiny_run, tmp_path):
    out = tmp_path / "dcgan.npz"
    result = run_cli("sample", "--run", str(tiny_run), "--digits", "1,5", "--per-digit", "3", "--out", str(out),
                     "--seed", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    from svhn.imageset import load_image_set
    x, y = load_image_set(out)
    assert x.shape == (6, 32, 32, 3) and list(y) == [1, 1, 1, 5, 5, 5]


def test_parse_digits():
    assert parse_digits("0-9") == list(range(10))
    assert parse_digits("5,1") == [1, 5]
    assert parse_digits("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ValueError):
        parse_digits("")


@pytest.mark.cupy
def test_cupy_training_step_matches_numpy():
    if not backend.cupy_available():
        pytest.skip("CuPy or a GPU is not available here")
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    z = rng.standard_normal((8, 100)).astype(np.float32)
    results = {}
    for name in ("numpy", "cupy"):
        backend.set_backend(name)
        backend.seed(0)
        gan = DCGAN(build_generator("nearest", 4), build_discriminator(4), "paper")
        metrics = gan.train_step(backend.asarray(real), backend.asarray(z))
        results[name] = (metrics, params_of(gan.G))
    assert float(results["cupy"][0]["loss_D"]) == pytest.approx(float(results["numpy"][0]["loss_D"]), rel=1e-4)
    for k, p in results["numpy"][1].items():
        np.testing.assert_allclose(results["cupy"][1][k], p, rtol=1e-3, atol=1e-5, err_msg=k)


# ----------------------------------------------------------------------------- augmentation

def test_diffaugment_backward_is_the_transpose_of_forward():
    """DiffAugment is linear in x for fixed random draws: check dx against central differences."""
    from gan.dcgan.augment import DiffAugment
    aug = DiffAugment()
    x = backend.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 3, 32, 32)))
    g = backend.asarray(np.random.default_rng(1).standard_normal((3, 3, 32, 32)))
    y = aug.forward(x, np.random.default_rng(5))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 < float((y == 0).mean()) < 0.6                      # cutout and translation zero some pixels
    dx = backend.to_numpy(aug.backward(g))

    def value():
        return float((aug.forward(x, np.random.default_rng(5)) * g).sum())

    for k in np.random.default_rng(2).choice(x.size, 20, replace=False):
        i = np.unravel_index(k, x.shape)
        old = float(x[i])
        x[i] = old + 1e-4
        plus = value()
        x[i] = old - 1e-4
        minus = value()
        x[i] = old
        assert (plus - minus) / 2e-4 == pytest.approx(dx[i], abs=1e-7)
    assert aug.forward(x.astype(np.float32), np.random.default_rng(5)).dtype == np.float32


def test_training_with_augmentation_resumes_exactly(tmp_path):
    x, y = fake_data(digits=[8])
    cfg = dict(TINY, augment=True, upsample="nearest", loss="bce")   # the default recipe
    train_all(tmp_path / "whole", Config(iters=4, **cfg), digits=[8], images=x, labels=y, progress=False)
    train_all(tmp_path / "split", Config(iters=2, **cfg), digits=[8], images=x, labels=y, progress=False)
    train_all(tmp_path / "split", Config(iters=4, **cfg), digits=[8], images=x, labels=y, progress=False,
              explicit=("iters",))
    whole = np.load(tmp_path / "whole" / "digit_8" / "checkpoint.npz")
    split = np.load(tmp_path / "split" / "digit_8" / "checkpoint.npz")
    for k in whole.files:
        np.testing.assert_array_equal(whole[k], split[k], err_msg=k)


def test_dcgan_init():
    from nn import Sequential, layers
    backend.seed(0)
    model = dcgan.dcgan_init(Sequential(layers.Conv2D(3, 64, 4), layers.BatchNorm2D(64), layers.Dense(64, 512)))
    W = backend.to_numpy(model.layers[2].params["W"])
    assert abs(float(W.std()) - 0.02) < 0.002 and W.dtype == np.float32
    assert abs(float(backend.to_numpy(model.layers[1].params["gamma"]).mean()) - 1) < 0.01
    assert np.all(backend.to_numpy(model.layers[0].params["b"]) == 0)
