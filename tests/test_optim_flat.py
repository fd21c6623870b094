"""nn/optim_flat.py: the optimizers' step and the weight average over flat buffers give the same numbers
as nn/optim.py's parameter-by-parameter code (bit for bit on NumPy), follow loads and reassignments, and
really run each update once per step."""
import copy
import subprocess
import sys

import numpy as np
import pytest

from nn import Sequential, backend, layers, optim, optim_flat
from nn.backend import to_host as host

OPTIMIZERS = {
    "sgd-momentum-wd": lambda m: optim.SGD(m, lr=0.01, momentum=0.9, weight_decay=1e-3),
    "sgd-plain": lambda m: optim.SGD(m, lr=0.01, momentum=0.0),
    "sgd-wd": lambda m: optim.SGD(m, lr=0.01, momentum=0.0, weight_decay=1e-2),
    "adam": lambda m: optim.Adam(m, lr=3e-3, betas=(0.5, 0.999)),
    "adam-wd": lambda m: optim.Adam(m, lr=3e-3, weight_decay=1e-2),
}


def _net(seed=0):
    backend.seed(seed)
    return Sequential(layers.Conv2D(3, 4, 3, padding=1), layers.BatchNorm2D(4), layers.ReLU(), layers.MaxPool2D(2),
                      layers.Flatten(), layers.Dense(4 * 4 * 4, 5))


def _batch(seed):
    r = np.random.default_rng(seed)
    return backend.asarray(r.standard_normal((6, 3, 8, 8)).astype(np.float32)), \
        backend.asarray(r.standard_normal((6, 5)).astype(np.float32))


def _train(make_opt, flat, steps=4, monkeypatch=None):
    monkeypatch.setattr(optim_flat, "ENABLED", flat)
    model = _net()
    opt = make_opt(model)
    for s in range(steps):
        x, t = _batch(s)
        model.backward(model.forward(x, training=True) - t)
        opt.step()
    return model, opt


def _same(a, b):
    if backend.name == "numpy":
        np.testing.assert_array_equal(a, b)
    else:       # the fused CUDA kernel may contract a*b + c into one rounding
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_step_equals_the_per_parameter_step(name, monkeypatch):
    per_param, opt_p = _train(OPTIMIZERS[name], False, monkeypatch=monkeypatch)
    flat, opt_f = _train(OPTIMIZERS[name], True, monkeypatch=monkeypatch)
    a, b = per_param.state_dict(), flat.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        _same(b[k], a[k])
    sa, sb = opt_p.state_dict(), opt_f.state_dict()
    assert sa.keys() == sb.keys() and len(sa) == 2 + 6 * len(opt_p.state_suffixes)   # 6 parameters, t, lr
    for k in sa:
        _same(sb[k], sa[k])
    assert np.isfinite(a["0.W"]).all() and not np.array_equal(a["0.W"], _net().state_dict()["0.W"])   # it trained


def test_parameters_and_state_become_aligned_views_of_one_buffer_and_update_runs_once(monkeypatch):
    monkeypatch.setattr(optim_flat, "ENABLED", True)
    calls = []
    real_update = optim.Adam.update
    monkeypatch.setattr(optim.Adam, "update", lambda self, *a: (calls.append(a[0].shape), real_update(self, *a))[1])
    model, opt = _train(OPTIMIZERS["adam"], True, steps=3, monkeypatch=monkeypatch)
    params = [p for p, _ in model.parameters()]
    flat = params[0].base
    assert all(p.base is flat for p in params) and flat.ndim == 1
    assert len({id(v.base) for v in opt.state.values()} - {id(flat)}) == 2            # m and v: one buffer each
    n = sum(p.size for p in params)
    assert n <= flat.size < n + 32 * len(params)
    if backend.name == "numpy":
        assert calls == [(flat.size,)] * 3      # one update over every number per step, not one per parameter
        offsets = [(p.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // 4 for p in params]
        assert all(o % optim_flat.FlatBuffer.ALIGN == 0 for o in offsets) and len(set(offsets)) == len(params)


def test_a_params_dict_bound_anew_is_noticed(monkeypatch):
    """A layer whose `params` dict is replaced by a new one (with copies of its arrays; the old dict still holds
    the views) must not be left behind: the step has to update what the layer reads now."""
    monkeypatch.setattr(optim_flat, "ENABLED", True)
    model, opt = _train(OPTIMIZERS["sgd-momentum-wd"], True, steps=2, monkeypatch=monkeypatch)
    layer = model.layers[0]
    layer.params = {k: v.copy() for k, v in layer.params.items()}
    W = host(layer.params["W"]).copy()
    x, t = _batch(5)
    model.backward(model.forward(x, training=True) - t)
    opt.step()
    assert not np.array_equal(host(layer.params["W"]), W)


def test_a_layer_used_twice_takes_the_per_parameter_path(monkeypatch):
    results = []
    for flat in (False, True):
        monkeypatch.setattr(optim_flat, "ENABLED", flat)
        backend.seed(0)
        dense = layers.Dense(4, 4)
        model = Sequential(dense, layers.Tanh(), dense)
        opt = optim.SGD(model, lr=0.05, momentum=0.9)
        for s in range(3):
            x = backend.asarray(np.random.default_rng(s).standard_normal((5, 4)).astype(np.float32))
            model.backward(model.forward(x) - x)
            opt.step()
        results.append(host(dense.params["W"]))
    np.testing.assert_array_equal(results[1], results[0])


def test_a_load_replaces_the_arrays_and_the_next_step_uses_the_loaded_values(monkeypatch):
    """Loading weights and optimizer state (or zeroing the state) replaces the arrays the flat buffers
    viewed; the next step must rebuild from the loaded values, exactly like the per-parameter path."""
    results = []
    for flat in (False, True):
        model, opt = _train(OPTIMIZERS["adam"], flat, steps=3, monkeypatch=monkeypatch)
        other, other_opt = _train(OPTIMIZERS["adam"], flat, steps=5, monkeypatch=monkeypatch)
        model.load_state_dict(other.state_dict())
        opt.load_state_dict(other_opt.state_dict())
        x, t = _batch(9)
        model.backward(model.forward(x, training=True) - t)
        opt.step()
        opt.zero_state()
        model.backward(model.forward(x, training=True) - t)
        opt.step()
        results.append((model.state_dict(), opt.state_dict()))
    (ma, sa), (mb, sb) = results
    for k in ma:
        _same(mb[k], ma[k])
    for k in sa:
        _same(sb[k], sa[k])


def test_flat_weight_average_equals_the_per_array_average(monkeypatch):
    """Including after a training pass of the average itself, which reassigns its BatchNorm statistics."""
    results = []
    for flat in (False, True):
        monkeypatch.setattr(optim_flat, "ENABLED", flat)
        model = _net()
        average = copy.deepcopy(model)
        for s in range(3):
            model.forward(_batch(s)[0], training=True)           # moves the running statistics
            for p, _ in model.parameters():
                p += 0.1 * (s + 1)
            optim.ema_update(average, model, optim.ema_decay(s, 0.999))
            average.forward(_batch(10 + s)[0], training=True)    # reassigns the average's own statistics
        results.append(average.state_dict())
    a, b = results
    assert any(k.endswith("running_var") for k in a)
    for k in a:
        _same(b[k], a[k])


def test_mixed_dtypes_take_the_per_parameter_path(monkeypatch):
    monkeypatch.setattr(optim_flat, "ENABLED", True)
    model = _net()
    model.layers[0].astype(np.float64)
    opt = optim.SGD(model, lr=0.1, momentum=0.9)
    x, t = _batch(0)
    model.backward(model.forward(x.astype(np.float64), training=True) - t)
    W0 = host(model.layers[0].params["W"]).copy()
    assert optim_flat.step(opt) is False
    opt.step()
    assert model.layers[0].params["W"].dtype == np.float64 and model.layers[0].params["W"].base is None
    assert not np.array_equal(host(model.layers[0].params["W"]), W0)


def test_a_missing_gradient_is_still_reported(monkeypatch):
    monkeypatch.setattr(optim_flat, "ENABLED", True)
    with pytest.raises(RuntimeError, match=r"parameter 0\.W has no gradient; call backward first"):
        optim.Adam(_net(), lr=0.1).step()


def test_nn_flat_optim_0_switches_it_off():
    code = "from nn import optim_flat; print(optim_flat.ENABLED)"
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"NN_FLAT_OPTIM": v},
                          check=True).stdout.strip() for v in ("0", "1")]
    assert out == ["False", "True"]
