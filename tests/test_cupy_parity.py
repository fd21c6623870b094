"""NumPy-vs-CuPy parity: the same layer, weights and inputs give the same outputs and gradients
on both backends. Skipped (with the reason) where CuPy or a GPU is missing."""
import numpy as np
import pytest

from nn import Sequential, backend, layers, losses, optim
from nn.layers.grouped import group_layers

pytestmark = [pytest.mark.cupy,
              pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine")]

CASES = [
    (lambda: layers.Conv2D(3, 8, 3, padding=1), (4, 3, 9, 8)),
    (lambda: layers.Conv2D(4, 6, 5, stride=2, padding=2), (3, 4, 11, 10)),
    (lambda: layers.ConvTranspose2D(4, 3, 4, stride=2, padding=1), (2, 4, 5, 6)),
    (lambda: layers.MaxPool2D(2), (2, 3, 8, 8)),
    (lambda: layers.MaxPool2D(3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda: layers.AvgPool2D(2), (2, 3, 8, 6)),
    (lambda: layers.Upsample2D(2), (2, 3, 4, 5)),
    (lambda: layers.BilinearUpsample2D(4), (2, 2, 3, 5)),
    (lambda: layers.Warp(), (2, 5, 6, 7)),            # 3 image channels and 2 displacement channels
    (lambda: layers.Dense(20, 7), (5, 20)),
    (lambda: layers.BatchNorm1D(20), (5, 20)),
    (lambda: layers.BatchNorm2D(3), (4, 3, 5, 5)),
    (lambda: layers.ReLU(), (2, 3, 4, 4)),
    (lambda: layers.LeakyReLU(0.2), (2, 3, 4, 4)),
    (lambda: layers.Sigmoid(), (2, 3, 4, 4)),
    (lambda: layers.Tanh(), (2, 3, 4, 4)),
    (lambda: layers.Flatten(), (2, 3, 4, 4)),
    (lambda: layers.Reshape((12, 4)), (2, 3, 4, 4)),
    # the grouped layers of `gan train --together` (two networks, two images each)
    (lambda: group_layers([layers.Conv2D(3, 4, 3, padding=1) for _ in range(2)]), (4, 3, 6, 6)),
    (lambda: group_layers([layers.ConvTranspose2D(3, 2, 4, stride=2, padding=1) for _ in range(2)]), (4, 3, 4, 4)),
    (lambda: group_layers([layers.Dense(6, 5) for _ in range(2)]), (4, 6)),
    (lambda: group_layers([layers.BatchNorm2D(3) for _ in range(2)]), (4, 3, 5, 5)),
]


def _run(make, x, dy, name):
    backend.set_backend(name)
    backend.seed(0)
    layer = make()
    y = layer.forward(backend.asarray(x))
    dx = layer.backward(backend.asarray(dy))
    out = [backend.to_numpy(y), backend.to_numpy(dx)] + [backend.to_numpy(layer.grads[k]) for k in sorted(layer.params)]
    backend.set_backend("numpy")
    return out


@pytest.mark.parametrize("make,shape", CASES, ids=lambda v: repr(v()) if callable(v) else str(v))
def test_layer_parity(make, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    backend.set_backend("numpy")
    backend.seed(0)
    y_shape = make().forward(x).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    cpu, gpu = _run(make, x, dy, "numpy"), _run(make, x, dy, "cupy")
    for a, b in zip(cpu, gpu):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5)


def _train(name, steps=5):
    backend.set_backend(name)
    backend.seed(0)
    model = Sequential(layers.Conv2D(3, 8, 3, padding=1), layers.BatchNorm2D(8), layers.ReLU(), layers.MaxPool2D(2),
                       layers.Flatten(), layers.Dense(8 * 8 * 8, 10))
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    y = backend.asarray(rng.integers(0, 10, 16))
    # SGD, not Adam: Adam's first steps move every weight by ±lr whatever the gradient's size, so
    # float32 rounding noise in a near-zero gradient would flip a step and hide real agreement.
    loss, opt = losses.SoftmaxCrossEntropy(), optim.SGD(model, lr=0.05, momentum=0.9)
    values = []
    for _ in range(steps):
        values.append(float(loss.forward(model.forward(x), y)))
        model.backward(loss.backward())
        opt.step()
    state = model.state_dict()
    backend.set_backend("numpy")
    return values, state


def test_training_parity():
    cpu_losses, cpu_state = _train("numpy")
    gpu_losses, gpu_state = _train("cupy")
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    for k in cpu_state:
        np.testing.assert_allclose(gpu_state[k], cpu_state[k], rtol=1e-3, atol=1e-5)


def test_dropout_runs_on_the_gpu():
    backend.set_backend("cupy")
    y = layers.Dropout(0.5).forward(backend.xp.ones((100, 100), dtype=np.float32))
    assert type(y).__module__.startswith("cupy") and abs(float((y == 0).mean()) - 0.5) < 0.05
    backend.set_backend("numpy")


def _optimizer_run(name, make_opt, steps=4):
    """Given gradients (the same on both backends), so only the update itself is compared: on CuPy the
    fused kernels of nn/optim_flat.py, on NumPy nn/optim.py's expressions."""
    import copy
    backend.set_backend(name)
    backend.seed(0)
    model = Sequential(layers.Dense(7, 5), layers.BatchNorm1D(5), layers.Dense(5, 3))
    average = copy.deepcopy(model)
    opt = make_opt(model)
    rng = np.random.default_rng(2)
    for s in range(steps):
        for layer in model.layers:
            layer.grads = {k: backend.asarray(rng.standard_normal(p.shape).astype(np.float32))
                           for k, p in layer.params.items()}
        opt.step()
        optim.ema_update(average, model, optim.ema_decay(s, 0.999))
    out = {**model.state_dict(), **{"avg." + k: v for k, v in average.state_dict().items()},
           **{"opt." + k: v for k, v in opt.state_dict().items()}}
    backend.set_backend("numpy")
    return out


@pytest.mark.parametrize("make_opt", [lambda m: optim.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3),
                                      lambda m: optim.SGD(m, lr=0.05, momentum=0.0, weight_decay=1e-3),
                                      lambda m: optim.Adam(m, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-3)],
                         ids=["sgd-momentum", "sgd", "adam"])
def test_fused_optimizer_and_weight_average_kernels_match_numpy(make_opt):
    from nn import optim_flat
    assert optim_flat.ENABLED
    cpu, gpu = _optimizer_run("numpy", make_opt), _optimizer_run("cupy", make_opt)
    assert cpu.keys() == gpu.keys()
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_every_fused_kernel_passes_its_check_on_the_gpu(monkeypatch):
    """nn/fused.py switches a kernel off (with a warning) when it fails to compile or disagrees with the
    plain code; on a real GPU every one must be on."""
    import warnings
    from nn import fused, optim_flat
    from nn.layers import conv, norm, pool
    plain = {"im2col": conv.im2col, "col2im": conv.col2im, "max_pool": pool.max_pool_windows,
             "max_pool_backward": pool.max_pool_scatter, "batchnorm_scale_shift": norm.scale_and_shift,
             "batchnorm_input_grad": norm.normalized_input_grad, "batchnorm_running": norm.running_statistics,
             "sgd": optim.SGD.update,
             "sgd_no_momentum": optim.SGD.update, "adam": optim.Adam.update, "average": optim_flat._average_plain}
    assert set(plain) == set(fused._SOURCES)
    monkeypatch.setattr(fused, "_state", {})
    backend.set_backend("cupy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert {name: fused.ready(name, f) for name, f in plain.items()} == {name: True for name in plain}
    finally:
        backend.set_backend("numpy")
