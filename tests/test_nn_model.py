"""Losses, optimizers, Sequential (train/eval, summary, save/load), the gradient checker itself,
the backend switch, and a small ConvNet that must overfit one batch."""
import subprocess
import sys

import numpy as np
import pytest

from nn import Sequential, backend, gradcheck, gradcheck_loss, init, layers, losses, optim
from nn.backend import to_numpy as host

TOL = 1e-6


def dev(a):
    """A host array on the current backend's device (the suite also runs with NN_BACKEND=cupy)."""
    return backend.asarray(a)


def rng(seed=0):
    return np.random.default_rng(seed)


# --- losses -------------------------------------------------------------------------------

def test_softmax_cross_entropy_value_and_gradient():
    logits = rng().standard_normal((6, 4))
    labels = np.array([0, 3, 1, 2, 2, 0])
    loss = losses.SoftmaxCrossEntropy()
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(loss.forward(dev(logits), dev(labels))) == pytest.approx(-np.log(p[np.arange(6), labels]).mean(), rel=1e-12)
    assert gradcheck_loss(losses.SoftmaxCrossEntropy(), logits, dev(labels)) < TOL


def test_softmax_cross_entropy_with_label_smoothing_value_and_gradient():
    """Targets q = (1 - ε)·onehot(y) + ε/K: L = -mean_n sum_k q_nk log p_nk, dL/dz = (p - q) / N."""
    logits = rng(3).standard_normal((6, 10))
    labels = rng(4).integers(0, 10, 6)
    eps = 0.1
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    q = np.full((6, 10), eps / 10)
    q[np.arange(6), labels] += 1 - eps
    loss = losses.SoftmaxCrossEntropy(label_smoothing=eps)
    assert float(loss.forward(dev(logits), dev(labels))) == pytest.approx(-(q * np.log(p)).sum() / 6, rel=1e-12)
    np.testing.assert_allclose(host(loss.backward()), (p - q) / 6, rtol=1e-10)
    assert gradcheck_loss(losses.SoftmaxCrossEntropy(label_smoothing=eps), logits, dev(labels)) < TOL
    # ε = 0 is the ordinary cross-entropy
    plain = float(losses.SoftmaxCrossEntropy().forward(dev(logits), dev(labels)))
    assert float(losses.SoftmaxCrossEntropy(label_smoothing=0.0).forward(dev(logits), dev(labels))) == plain
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.SoftmaxCrossEntropy(label_smoothing=1.0)


def test_softmax_cross_entropy_is_stable():
    loss = losses.SoftmaxCrossEntropy()
    value = float(loss.forward(dev(np.array([[1000.0, 0.0], [0.0, -1000.0]], np.float32)), dev(np.array([0, 1]))))
    assert np.isfinite(value) and value == pytest.approx(500.0)
    assert np.all(np.isfinite(host(loss.backward())))


def test_bce_on_probabilities_and_logits_agree():
    z = rng(1).standard_normal((5, 3))
    t = (rng(2).uniform(size=(5, 3)) > 0.5).astype(float)
    p = 1 / (1 + np.exp(-z))
    a, b = losses.BCE(), losses.BCEWithLogits()
    assert float(a.forward(dev(p), dev(t))) == pytest.approx(float(b.forward(dev(z), dev(t))), rel=1e-9)
    # chain rule through the sigmoid: dL/dz = dL/dp * p(1-p)
    np.testing.assert_allclose(host(a.backward()) * p * (1 - p), host(b.backward()), rtol=1e-7)
    assert gradcheck_loss(losses.BCE(), p, dev(t)) < TOL
    assert gradcheck_loss(losses.BCEWithLogits(), z, dev(t)) < TOL


def test_bce_clips_and_logits_are_stable():
    assert np.isfinite(float(losses.BCE().forward(dev(np.array([0.0, 1.0])), dev(np.array([1.0, 0.0])))))
    b = losses.BCEWithLogits()
    assert float(b.forward(dev(np.array([500.0, -500.0])), dev(np.array([1.0, 0.0])))) == pytest.approx(0.0, abs=1e-12)


def test_paper_discriminator_loss_values_and_gradient():
    """D = |X1 - X|: X = belief 'synthetic', X1 = 1 for synthetic, 0 for real."""
    X = np.array([[0.9], [0.2], [0.7], [0.4]])
    X1 = np.array([[1.0], [1.0], [0.0], [0.0]])          # two synthetic, two real
    loss = losses.PaperDiscriminatorLoss()
    assert float(loss.forward(dev(X), dev(X1))) == pytest.approx((0.1 + 0.8 + 0.7 + 0.4) / 4)
    np.testing.assert_allclose(host(loss.backward()).ravel(), [-0.25, -0.25, 0.25, 0.25])
    assert gradcheck_loss(losses.PaperDiscriminatorLoss(), rng().uniform(0.05, 0.95, (6, 1)), dev(X1.repeat(2, 0)[:6])) < TOL


def test_paper_generator_loss_is_one_minus_d():
    X = rng(3).uniform(0.05, 0.95, (8, 1))
    G = losses.PaperGeneratorLoss().forward(dev(X))
    D = losses.PaperDiscriminatorLoss().forward(dev(X), dev(np.ones_like(X)))
    assert G == pytest.approx(1 - D) and G == pytest.approx(X.mean())
    assert gradcheck_loss(losses.PaperGeneratorLoss(), X) < TOL


@pytest.mark.parametrize("loss,args", [
    (losses.BCE(), (np.zeros((3, 1)), np.zeros((3,)))),
    (losses.BCEWithLogits(), (np.zeros((2, 2)), np.zeros((2, 3)))),
    (losses.PaperDiscriminatorLoss(), (np.zeros((4, 1)), np.zeros((5, 1)))),
    (losses.SoftmaxCrossEntropy(), (np.zeros((3, 10)), np.zeros(4, dtype=int))),
])
def test_loss_shape_mismatch_is_a_clear_error(loss, args):
    with pytest.raises(ValueError, match="shape"):
        loss.forward(*map(dev, args))


def test_cross_entropy_labels_out_of_range():
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        losses.SoftmaxCrossEntropy().forward(dev(np.zeros((2, 10))), dev(np.array([3, 10])))


# --- optimizers ---------------------------------------------------------------------------

def _quadratic_model():
    """A one-Dense 'model' whose loss 0.5·|x W - t|² we minimise."""
    backend.seed(0)
    return Sequential(layers.Dense(3, 2))


def _step(model, opt, x, t):
    y = model.forward(x)
    model.backward(y - t)
    opt.step()
    return float(0.5 * ((y - t) ** 2).sum())


@pytest.mark.parametrize("make", [lambda m: optim.SGD(m, lr=0.05, momentum=0.9),
                                  lambda m: optim.SGD(m, lr=0.05, momentum=0.0, weight_decay=1e-3),
                                  lambda m: optim.Adam(m, lr=0.05)])
def test_optimizers_minimise_a_quadratic(make):
    x = rng().standard_normal((8, 3)).astype(np.float32)
    t = rng(1).standard_normal((8, 2)).astype(np.float32)
    model = _quadratic_model()
    opt = make(model)
    first = _step(model, opt, dev(x), dev(t))
    for _ in range(200):
        last = _step(model, opt, dev(x), dev(t))
    A = np.c_[x, np.ones(8)]                                   # the exact least-squares optimum
    best = 0.5 * ((A @ np.linalg.lstsq(A, t, rcond=None)[0] - t) ** 2).sum()
    assert best < 0.8 * first
    assert last < best + 0.01 * (first - best)


def test_sgd_matches_the_formula():
    model = _quadratic_model()
    W0 = host(model.layers[0].params["W"]).copy()
    opt = optim.SGD(model, lr=0.1, momentum=0.5, weight_decay=0.01)
    g1 = np.full_like(W0, 2.0)
    model.layers[0].grads = {"W": dev(g1), "b": dev(np.zeros(2, np.float32))}
    opt.step()
    v1 = g1 + 0.01 * W0
    np.testing.assert_allclose(host(model.layers[0].params["W"]), W0 - 0.1 * v1, rtol=1e-6)


def test_adam_first_step_moves_each_weight_by_lr():
    """With bias correction Adam's first step is lr · g/|g| (up to eps)."""
    model = _quadratic_model()
    W0 = host(model.layers[0].params["W"]).copy()
    g = rng().standard_normal(W0.shape).astype(np.float32)
    model.layers[0].grads = {"W": dev(g), "b": dev(np.ones(2, np.float32))}
    optim.Adam(model, lr=0.01).step()
    np.testing.assert_allclose(host(model.layers[0].params["W"]), W0 - 0.01 * np.sign(g), atol=1e-5)


def test_ema_update_averages_parameters_and_batchnorm_buffers():
    """θ_avg ← d·θ_avg + (1 - d)·θ for weights and running statistics; the decay ramps up from 0.1."""
    import copy
    backend.seed(0)
    model = Sequential(layers.Conv2D(3, 2, 3), layers.BatchNorm2D(2))
    average = copy.deepcopy(model)
    before = average.state_dict()
    model.forward(dev(rng().standard_normal((4, 3, 5, 5)).astype(np.float32)), training=True)  # moves the buffers
    for p, _ in model.parameters():
        p += 1.0
    now = model.state_dict()
    optim.ema_update(average, model, 0.75)
    after = average.state_dict()
    assert any(k.endswith("running_mean") for k in after) and any(k.endswith("W") for k in after)
    for k in after:
        np.testing.assert_allclose(after[k], 0.75 * before[k] + 0.25 * now[k], rtol=1e-6, atol=1e-7, err_msg=k)
        assert not np.allclose(after[k], before[k]), k
    assert optim.ema_decay(0, 0.999) == pytest.approx(0.1)
    assert optim.ema_decay(90, 0.999) == pytest.approx(0.91)
    assert optim.ema_decay(10 ** 6, 0.999) == 0.999


def test_optimizer_state_round_trip_gives_the_same_next_step():
    x = dev(rng().standard_normal((8, 3)).astype(np.float32))
    t = dev(rng(1).standard_normal((8, 2)).astype(np.float32))
    a = _quadratic_model()
    opt_a = optim.Adam(a, lr=0.01)
    for _ in range(3):
        _step(a, opt_a, x, t)
    b = _quadratic_model().load_state_dict(a.state_dict())
    opt_b = optim.Adam(b, lr=0.5).load_state_dict(opt_a.state_dict())
    _step(a, opt_a, x, t)
    _step(b, opt_b, x, t)
    np.testing.assert_array_equal(host(a.layers[0].params["W"]), host(b.layers[0].params["W"]))


def test_optimizer_without_gradients_says_so():
    with pytest.raises(RuntimeError, match="no gradient"):
        optim.SGD(_quadratic_model(), lr=0.1).step()


# --- Sequential ---------------------------------------------------------------------------

def small_convnet(seed=0):
    backend.seed(seed)
    return Sequential(
        layers.Conv2D(3, 8, 3, padding=1), layers.BatchNorm2D(8), layers.ReLU(), layers.MaxPool2D(2),
        layers.Conv2D(8, 16, 3, padding=1), layers.ReLU(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dropout(0.1), layers.Dense(16 * 4 * 4, 10))


def test_small_convnet_overfits_one_batch():
    model = small_convnet()
    x = dev(rng().standard_normal((16, 3, 16, 16)).astype(np.float32))
    y = dev(rng(1).integers(0, 10, 16))
    loss, opt = losses.SoftmaxCrossEntropy(), optim.Adam(model, lr=3e-3)
    first = None
    for _ in range(60):
        value = loss.forward(model.forward(x), y)
        first = value if first is None else first
        model.backward(loss.backward())
        opt.step()
    assert value < first / 10
    assert float((model.predict(x).argmax(1) == y).mean()) == 1.0


def test_train_and_eval_modes_are_passed_down():
    model = small_convnet()
    x = dev(rng().standard_normal((4, 3, 16, 16)).astype(np.float32))
    model.eval()
    np.testing.assert_array_equal(host(model.forward(x)), host(model.forward(x)))    # no dropout, running stats
    model.train()
    assert not np.array_equal(host(model.forward(x)), host(model.forward(x)))        # dropout draws new masks
    assert np.array_equal(host(model.forward(x, training=False)), host(model.predict(x)))


def test_summary_lists_shapes_and_parameter_counts():
    model = small_convnet()
    text = model.summary((3, 16, 16))
    assert "(8, 16, 16)" in text and "(16, 4, 4)" in text and "(10,)" in text
    expected = (3 * 8 * 9 + 8) + 16 + (8 * 16 * 9 + 16) + (256 * 10 + 10)
    assert model.num_params() == expected and f"{expected:,}" in text


def test_named_parameters_cover_every_parameter():
    model = small_convnet()
    x = dev(rng().standard_normal((2, 3, 16, 16)).astype(np.float32))
    model.backward(backend.xp.ones_like(model.forward(x)))
    names = [n for n, _, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "1.gamma", "1.beta", "4.W", "4.b", "9.W", "9.b"]
    assert all(g is not None and g.shape == p.shape for p, g in model.parameters())


def test_save_load_round_trip(tmp_path):
    model = small_convnet(seed=1)
    x = dev(rng().standard_normal((4, 3, 16, 16)).astype(np.float32))
    model.forward(x, training=True)                      # moves the BatchNorm running statistics
    path = tmp_path / "m.npz"
    model.save(path)
    other = small_convnet(seed=2).load(path)
    np.testing.assert_array_equal(host(model.predict(x)), host(other.predict(x)))
    np.testing.assert_array_equal(host(other.layers[1].buffers["running_mean"]), host(model.layers[1].buffers["running_mean"]))
    with np.load(path, allow_pickle=False) as f:      # loadable without pickle
        assert "1.running_var" in f.files


def test_load_rejects_other_architectures_and_bad_files(tmp_path):
    path = tmp_path / "m.npz"
    small_convnet().save(path)
    backend.seed(0)
    other = Sequential(layers.Conv2D(3, 4, 3), layers.Flatten(), layers.Dense(4 * 14 * 14, 10))
    with pytest.raises(ValueError, match="m.npz"):
        other.load(path)
    with pytest.raises(ValueError, match="no such model file"):
        small_convnet().load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        small_convnet().load(tmp_path / "junk.npz")


# --- the gradient checker must catch a wrong gradient ------------------------------------------

class _WrongReLU(layers.ReLU):
    def backward(self, dy):
        return dy * self.mask * 1.01     # 1 % off


class _WrongDense(layers.Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["b"] = self.grads["b"] * 0.5
        return dx


def test_gradcheck_detects_wrong_gradients():
    x = rng().standard_normal((4, 5))
    assert gradcheck(layers.ReLU(), x) < TOL
    assert gradcheck(_WrongReLU(), x) > 1e-3
    assert gradcheck(_WrongDense(5, 3), x) > 1e-2


def test_gradcheck_samples_large_arrays():
    err = gradcheck(layers.Conv2D(8, 8, 3, padding=1), rng().standard_normal((2, 8, 12, 12)), max_checks=50)
    assert err < TOL


# --- backend --------------------------------------------------------------------------------

@pytest.mark.skipif(backend.name != "numpy", reason="checks the NumPy backend's helpers")
def test_backend_switching_and_helpers():
    assert backend.name == "numpy" and backend.xp is np
    a = backend.asarray([1, 2, 3], dtype=np.float32)
    assert isinstance(backend.to_numpy(a), np.ndarray) and a.dtype == np.float32
    with pytest.raises(ValueError, match="unknown backend"):
        backend.set_backend("tpu")


@pytest.mark.skipif(backend.cupy_available(), reason="CuPy and a GPU are present: the missing-CuPy message cannot be tested")
def test_asking_for_cupy_without_it_is_one_clear_line():
    with pytest.raises(backend.BackendError) as info:
        backend.set_backend("cupy")
    msg = str(info.value)
    assert "cupy" in msg.lower() and "pip install cupy-cuda1" in msg and "\n" not in msg
    assert backend.name == "numpy"


@pytest.mark.parametrize("value, default", [("cupy", "cupy"), ("nonsense", "nonsense"), ("", "numpy"),
                                            ("numpy", "numpy")])
def test_importing_nn_never_fails_whatever_nn_backend_holds(value, default):
    # importing starts on NumPy; NN_BACKEND is only read (and checked) where a command uses it
    code = "import nn, nn.backend as b; print(b.name, b.default_backend_name())"
    r = subprocess.run([sys.executable, "-c", code], env={"NN_BACKEND": value, "PATH": ""},
                       capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.split() == ["numpy", default]
