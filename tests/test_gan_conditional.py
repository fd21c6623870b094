"""Tests of the class-conditional DCGAN (gan/dcgan/conditional.py, `gan train --conditional`): how the digit
enters G and D, float64 gradients through the label inputs, a training step, run folders and resuming,
sampling (deterministic, interleaved batches, discriminator selection) and the command line's errors.

Tiny networks (width 2-4) and random "images": seconds."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn import backend
from nn.gradcheck import _numeric_gradient
from gan.dcgan import sampling as gsample
from gan.dcgan.conditional import (ConditionalDCGAN, build_conditional_discriminator, build_conditional_generator,
                                   generator_input, one_hot, with_label_planes)
from gan.dcgan.nets import generate
from gan.dcgan.train import CONDITIONAL, Config, checkpoint_path, load_gan, read_log, train_all

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=2, batch_size=8, checkpoint_every=2, stuck_iters=0, conditional=True, loss="bce")


@pytest.fixture(autouse=True)
def numpy_backend():
    backend.set_backend("numpy")


def fake_data(n_per_digit=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_digit)
    return rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8), y


def float64_gan(loss, augment=False):
    backend.seed(1)
    G = build_conditional_generator("deconv", width=2).astype(np.float64)
    D = build_conditional_discriminator(width=2).astype(np.float64)
    return ConditionalDCGAN(G, D, loss, augment=augment)


# ----------------------------------------------------------------------------- how the digit enters

def test_the_digit_enters_g_as_one_hot_values_and_d_as_constant_planes():
    y = np.array([3, 0, 9])
    np.testing.assert_array_equal(one_hot(y), np.eye(10, dtype=np.float32)[y])
    z = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(generator_input(z, y), np.concatenate([z, np.eye(10)[y]], axis=1))
    images = np.random.default_rng(0).uniform(-1, 1, (3, 3, 4, 5)).astype(np.float32)
    x = with_label_planes(images, y)
    assert x.shape == (3, 13, 4, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :3], images)
    for n, digit in enumerate(y):
        assert (x[n, 3 + digit] == 1).all() and x[n, 3:].sum() == 4 * 5
    assert build_conditional_generator("nearest", 2).layers[0].params["W"].shape[0] == 110
    assert build_conditional_discriminator(2).layers[0].params["W"].shape[1] == 13


def test_the_generator_draws_a_different_image_for_each_digit_from_the_same_noise():
    backend.seed(0)
    G = build_conditional_generator("nearest", 4)
    z = np.repeat(np.random.default_rng(0).standard_normal((1, 100)).astype(np.float32), 10, axis=0)
    images = generate(G, generator_input(z, np.arange(10)), batch_size=10)
    gaps = [np.abs(images[i] - images[j]).max() for i in range(10) for j in range(i)]
    assert min(gaps) > 1e-4


# ----------------------------------------------------------------------------- float64 gradients

def central_difference(value, array, index, h=1e-6):
    """d value() / d array[index] by central differences (nn.gradcheck's own)."""
    return _numeric_gradient(value, array, [np.ravel_multi_index(index, array.shape)], h)[0]


@pytest.mark.parametrize("loss", ["paper", "bce"])
def test_discriminator_gradients_of_the_label_planes_weights_match_central_differences(loss):
    """D's loss on real images with their label planes: dLoss/dW of the first convolution, on the weights
    that read the label planes and on those that read the colours."""
    gan = float64_gan(loss)
    rng = np.random.default_rng(2)
    x = with_label_planes(rng.uniform(-1, 1, (6, 3, 32, 32)), rng.integers(0, 10, 6))
    X1 = np.zeros((6, 1))

    def value():
        return gan.loss.discriminator(gan._d_forward(x)[1], X1)[0]

    _, out = gan._d_forward(x)
    assert gan._d_backward(gan.loss.discriminator(out, X1)[1], input_grad=False) is None
    W, dW = gan.D.layers[0].params["W"], gan.D.layers[0].grads["W"]
    for index in [(0, 3, 1, 1), (1, 7, 0, 2), (0, 12, 2, 0), (1, 0, 1, 1), (0, 2, 0, 0)]:
        assert central_difference(value, W, index) == pytest.approx(float(dW[index]), rel=1e-4, abs=1e-10)


@pytest.mark.parametrize("loss, augment", [("paper", False), ("bce", False), ("bce", True)])
def test_generator_gradients_through_the_conditional_discriminator_match_central_differences(loss, augment):
    """G's loss backpropagated through D (and DiffAugment, with the same transforms drawn every time) into G:
    dLoss/dW of G's first layer, on the rows fed by the noise and by the one-hot digit."""
    gan = float64_gan(loss, augment)
    y = np.array([0, 3, 3, 9])
    g_in = generator_input(np.random.default_rng(1).standard_normal((4, 100)), y)

    def forward():
        gan.rng = np.random.default_rng(5)
        return gan._d_forward(with_label_planes(gan.G.forward(g_in, True), y))[1]

    def value():
        return gan.loss.generator(forward())[0]

    gan.G.backward(gan._d_backward(gan.loss.generator(forward())[1]))
    W, dW = gan.G.layers[0].params["W"], gan.G.layers[0].grads["W"]
    rows = [(100, 0), (103, 5), (109, 17), (0, 3), (57, 30)]       # one-hot rows 100-109, then noise rows
    for index in rows:
        assert central_difference(value, W, index) == pytest.approx(float(dW[index]), rel=1e-4, abs=1e-10)
    assert np.abs(dW[[100, 103, 109]]).sum() > 0 and np.abs(dW[[101, 102, 104]]).max() == 0   # digits not in y


# ----------------------------------------------------------------------------- training

def test_one_step_updates_both_nets_and_lowers_the_discriminator_loss():
    backend.seed(0)
    gan = ConditionalDCGAN(build_conditional_generator("nearest", 4), build_conditional_discriminator(4), "bce",
                           lr=1e-3, augment=True)
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    z = rng.standard_normal((8, 100)).astype(np.float32)
    W_G, W_D = gan.G.layers[0].params["W"].copy(), gan.D.layers[0].params["W"].copy()
    with pytest.raises(ValueError, match="labels"):
        gan.train_step(real, z, np.random.default_rng(1))
    gan.rng = np.random.default_rng(1)
    fake = gan.G.forward(generator_input(z, y))
    gan.rng = np.random.default_rng(9)
    before = gan.discriminator_step(with_label_planes(real, y), with_label_planes(fake, y), update=False)[0]
    metrics = gan.train_step(real, z, np.random.default_rng(1), labels=y)
    gan.rng = np.random.default_rng(9)
    after = gan.discriminator_step(with_label_planes(real, y), with_label_planes(fake, y), update=False)[0]
    assert after < before
    assert not np.array_equal(W_G, gan.G.layers[0].params["W"]) and not np.array_equal(W_D, gan.D.layers[0].params["W"])
    assert set(metrics) == {"loss_D", "loss_G", "acc_real", "acc_fake", "X_real", "X_fake"}


def test_a_conditional_run_trains_one_gan_in_digit_all_and_resumes_to_the_same_step(tmp_path):
    x, y = fake_data()
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    status = train_all(whole, Config(iters=4, **TINY), images=x, labels=y, progress=False)
    assert status == {CONDITIONAL: {"state": "done", "iteration": 4, "message": ""}}
    folder = whole / "digit_all"
    for name in ("checkpoint.npz", "log.csv", "status.json", "samples_0001.png", "samples_final.png", "losses.png"):
        assert (folder / name).is_file(), name
    assert not list(whole.glob("digit_[0-9]"))
    train_all(halves, Config(iters=2, **TINY), images=x, labels=y, progress=False)
    train_all(halves, Config(iters=4, **TINY), images=x, labels=y, progress=False, explicit=("iters",))
    a, b = load_gan(whole, CONDITIONAL).state_dict(), load_gan(halves, CONDITIONAL).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [r["loss_D"] for r in read_log(folder / "log.csv")] == \
           [r["loss_D"] for r in read_log(halves / "digit_all" / "log.csv")]


def test_a_conditional_run_needs_all_ten_digits_and_refuses_to_become_per_digit(tmp_path):
    x, y = fake_data()
    with pytest.raises(ValueError, match="all ten digits"):
        train_all(tmp_path / "some", Config(iters=1, **TINY), digits=[1, 5], images=x, labels=y, progress=False)
    assert not (tmp_path / "some").exists()
    run = tmp_path / "run"
    train_all(run, Config(iters=1, **TINY), images=x, labels=y, progress=False)
    per_digit = Config(iters=2, **{**TINY, "conditional": False})
    with pytest.raises(ValueError, match="conditional=True"):
        train_all(run, per_digit, images=x, labels=y, progress=False, explicit=("iters", "conditional"))


# ----------------------------------------------------------------------------- sampling

@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cgan") / "run"
    x, y = fake_data()
    backend.set_backend("numpy")
    train_all(run, Config(iters=2, **TINY), images=x, labels=y, progress=False)
    return run


def test_sampling_is_deterministic_labelled_by_the_conditioning_digit_and_interleaved(conditional_run):
    x1, y1 = gsample.sample(conditional_run, per_digit=7, digits=[5, 1], seed=3)
    x2, _ = gsample.sample(conditional_run, per_digit=7, digits=[5, 1], seed=3)
    x3, _ = gsample.sample(conditional_run, per_digit=7, digits=[5, 1], seed=4)
    assert x1.shape == (14, 32, 32, 3) and x1.dtype == np.uint8 and list(y1) == [5] * 7 + [1] * 7
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    assert gsample.trained_digits(conditional_run) == list(range(10))
    # the images are those of one generator pass over the digits interleaved 5, 1, 5, 1, ... in batches of 64
    gan = load_gan(conditional_run, CONDITIONAL)
    rng = np.random.default_rng(np.random.SeedSequence([3, gsample.CONDITIONAL_STREAM, 1]))
    labels = np.resize([5, 1], 64)
    z = rng.standard_normal((64, 100)).astype(np.float32)
    from svhn.imageset import to_uint8
    expected = to_uint8(generate(gan.sampler, generator_input(z, labels), batch_size=64))
    np.testing.assert_array_equal(x1[:7], expected[:14:2])
    np.testing.assert_array_equal(x1[7:], expected[1:14:2])


def test_conditional_discriminator_selection_judges_each_image_with_its_digit(conditional_run, monkeypatch):
    """keep=0.5 draws the images keep=1 draws with twice per_digit and keeps, per digit, the half its
    discriminator finds least synthetic; D is handed the images with their own digit's label planes."""
    judged = []

    def brightness(D, x, batch_size=64):
        judged.append(backend.to_numpy(x))
        return x[:, :3].reshape(len(x), -1).mean(axis=1)
    monkeypatch.setattr(gsample, "belief_synthetic", brightness)
    drawn, _ = gsample.sample(conditional_run, per_digit=8, digits=[2, 6], seed=1)
    kept, y = gsample.sample(conditional_run, per_digit=4, digits=[2, 6], seed=1, keep=0.5)
    assert [j.shape for j in judged] == [(8, 13, 32, 32)] * 2 and list(y) == [2] * 4 + [6] * 4
    for digit, seen, mine, chosen in zip([2, 6], judged, [drawn[:8], drawn[8:]], [kept[:4], kept[4:]]):
        assert (seen[:, 3 + digit] == 1).all() and seen[:, 3:].sum() == 8 * 32 * 32
        X = seen[:, :3].reshape(8, -1).mean(axis=1)
        np.testing.assert_array_equal(chosen, mine[np.sort(np.argsort(X, kind="stable")[:4])])


def test_fewer_images_than_a_batch_still_sample(conditional_run):
    x, y = gsample.sample(conditional_run, per_digit=1, seed=0)
    assert x.shape == (10, 32, 32, 3) and list(y) == list(range(10))


# ----------------------------------------------------------------------------- command line

@pytest.mark.parametrize("extra, fragment", [
    (["--together"], "nothing to train --together"),
    (["--digits", "1,5"], "all ten digits"),
])
def test_cli_refuses_what_a_conditional_run_cannot_do(tmp_path, extra, fragment):
    import scipy.io
    x, y = fake_data(n_per_digit=1)
    data = tmp_path / "svhn"
    data.mkdir()
    scipy.io.savemat(data / "train_32x32.mat", {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)),
                                                "y": np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)})
    done = subprocess.run([sys.executable, "-m", "gan", "train", "--conditional", "--data-dir", str(data),
                           "--out", str(tmp_path / "run"), "--quiet", *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"SVHN_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert not checkpoint_path(tmp_path / "run", CONDITIONAL).exists() and not (tmp_path / "run").exists()
