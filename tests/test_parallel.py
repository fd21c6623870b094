"""nn on several threads: the thread-count option, results that do not depend on it, the chunked
Sequential against the plain whole-batch pass, and the kernels written for speed on one core."""
import numpy as np
import pytest

from nn import Sequential, backend, data_parallel, gradcheck, layers as L, losses, optim, parallel
from nn.backend import to_numpy as host

pytestmark = pytest.mark.skipif(backend.name != "numpy", reason="threads are a property of the NumPy backend")


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    parallel.set_threads(None)


# --- the option ---------------------------------------------------------------------------------------

def test_set_threads_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("NN_THREADS", "3")
    assert parallel.get_threads() == 3
    parallel.set_threads(5)
    assert parallel.get_threads() == 5
    parallel.set_threads(None)
    monkeypatch.delenv("NN_THREADS")
    assert parallel.get_threads() == parallel.available_cores() >= 1


@pytest.mark.parametrize("bad", ["0", "-2", "1.5", "two", "nan", ""])
def test_bad_thread_counts_are_one_line_value_errors(monkeypatch, bad):
    if bad:
        with pytest.raises(ValueError, match="--threads") as e:
            parallel.set_threads(bad)
        assert "\n" not in str(e.value)
    monkeypatch.setenv("NN_THREADS", bad)
    if bad:                                   # only read when needed, and then named
        with pytest.raises(ValueError, match="NN_THREADS"):
            parallel.get_threads()
    else:                                     # empty: unset
        assert parallel.get_threads() == parallel.available_cores()


def test_map_keeps_order_and_pins_blas_inside_the_workers():
    parallel.set_threads(3)
    seen = parallel.map(lambda i: (i * i, parallel.blas_threads()), range(7))
    assert [v for v, _ in seen] == [i * i for i in range(7)]
    assert all(b in (1, None) for _, b in seen)       # one BLAS thread per worker (None: no OpenBLAS found)
    parallel.set_threads(1)
    assert parallel.map(lambda i: -i, [1, 2]) == [-1, -2]


def test_bench_thread_lists():
    from bench.threads import parse_thread_list
    assert parse_thread_list("1,2") == [1, 2]
    assert parse_thread_list("all")[0] == 1 and parse_thread_list("all")[-1] == parallel.available_cores()
    with pytest.raises(ValueError, match="--threads"):
        parse_thread_list("1,x")


# --- results independent of the thread count ------------------------------------------------------------

def _net(seed=0):
    backend.seed(seed)
    return Sequential(
        L.Conv2D(3, 16, 3, padding=1), L.BatchNorm2D(16), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(16, 16, 3, padding=1, method="winograd"), L.LeakyReLU(0.2), L.Upsample2D(2),
        L.Conv2D(16, 4, 3, stride=2, padding=1), L.Flatten(), L.Dense(4 * 4 * 4, 12), L.BatchNorm1D(12),
        L.Dropout(0.3), L.Tanh(), L.Dense(12, 10))


def _train(threads, steps=3, batch=13, dtype=np.float32):
    """A few Adam steps on fixed data; returns the losses and the final weights and buffers."""
    parallel.set_threads(threads)
    model = _net().astype(dtype)
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.standard_normal((batch, 3, 8, 8)).astype(dtype))
    y = backend.asarray(rng.integers(0, 10, batch))
    loss, opt = losses.SoftmaxCrossEntropy(), optim.Adam(model, 1e-2)
    values = []
    for _ in range(steps):
        values.append(float(loss.forward(model.forward(x), y)))
        model.backward(loss.backward())
        opt.step()
    return values, model.state_dict()


def test_same_seed_same_losses_and_weights_on_1_2_and_8_threads():
    runs = {t: _train(t) for t in (1, 2, 8)}
    losses_1, state_1 = runs[1]
    assert losses_1[-1] < losses_1[0]                   # it trains
    for t in (2, 8):
        losses_t, state_t = runs[t]
        assert losses_t == losses_1, t                  # bit for bit: the chunks and sums do not depend on threads
        for k in state_1:
            np.testing.assert_array_equal(state_t[k], state_1[k], err_msg=f"{k} on {t} threads")


def _plain_forward_backward(model, x, dy):
    """The reference: every layer on the whole batch, one after another (what CuPy runs)."""
    h = x
    for layer in model.layers:
        h = layer.forward(h, True)
    g = dy
    for layer in reversed(model.layers):
        g = layer.backward(g)
    return h, g, {name: host(g_).copy() for name, _, g_ in model.named_parameters()}


def test_chunked_passes_equal_the_whole_batch_passes_in_float64():
    net = [L.Standardize(), L.Conv2D(3, 16, 3, padding=1), L.BatchNorm2D(16), L.ReLU(), L.MaxPool2D(2),
           L.Conv2D(16, 16, 3, padding=1, method="winograd"), L.LeakyReLU(0.2), L.Upsample2D(2),
           L.Conv2D(16, 4, 3, stride=2, padding=1), L.Flatten(), L.Scale(0.5), L.Dense(64, 12), L.BatchNorm1D(12),
           L.Tanh()]
    backend.seed(0)
    model = Sequential(*net).astype(np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((11, 3, 8, 8))            # 11 rows in 8 chunks: sizes 1 and 2
    dy = rng.standard_normal((11, 12))
    parallel.set_threads(2)
    y = model.forward(x)
    assert model._run is not None                     # the chunked path was taken
    assert [kind for kind, _, _ in model._run.steps][:2] == ["per_sample", "batch_norm"]   # Standardize: per sample
    dx = model.backward(dy)
    grads = {name: host(g).copy() for name, _, g in model.named_parameters()}
    running = {k: v.copy() for k, v in model.state_dict().items() if "running" in k}
    for layer in model.layers:                        # undo the running-statistics update of the chunked pass
        if isinstance(layer, (L.BatchNorm1D, L.BatchNorm2D)):
            layer.buffers["running_mean"][:] = 0
            layer.buffers["running_var"][:] = 1
    y_ref, dx_ref, grads_ref = _plain_forward_backward(model, x, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    for k, v in model.state_dict().items():
        if "running" in k:
            np.testing.assert_allclose(running[k], v, rtol=1e-12, atol=1e-14, err_msg=k)


def test_eval_mode_and_unknown_layers_run_chunked_or_whole():
    class Scale(L.Layer):                            # a user's own layer: run on the whole batch
        def forward(self, x, training=True):
            self.n = len(x)
            return 2 * x

        def backward(self, dy):
            return 2 * dy
    scale = Scale()
    backend.seed(0)
    model = Sequential(L.Dense(5, 4), L.BatchNorm1D(4), scale, L.Dropout(0.5), L.Dense(4, 3))
    x = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    parallel.set_threads(2)
    model.forward(x)
    assert scale.n == 9
    y_eval = model.eval().forward(x)
    rows = np.concatenate([model.forward(x[i:i + 1]) for i in range(9)])   # eval: per sample
    np.testing.assert_allclose(y_eval, rows, rtol=1e-6, atol=1e-6)


def test_chunks_depend_only_on_the_batch_size():
    assert data_parallel.chunk_bounds(3) == [(0, 1), (1, 2), (2, 3)]
    bounds = data_parallel.chunk_bounds(130)
    assert len(bounds) == data_parallel.CHUNKS and bounds[0][0] == 0 and bounds[-1][1] == 130
    assert {b - a for a, b in bounds} <= {16, 17}
    assert not data_parallel.applies(np.zeros((1, 3)))


def test_batchnorm_in_chunks_needs_two_values_per_channel_in_the_batch():
    model = Sequential(L.BatchNorm1D(3))
    with pytest.raises(ValueError, match="more than one value"):
        model.forward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        model.forward(np.zeros((4, 2), np.float32))


# --- the kernels written for one core ---------------------------------------------------------------------

def test_maxpool_2x2_path_matches_the_general_loop_with_ties():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.integers(-2, 3, (3, 4, 6, 8)), 0).astype(np.float32)   # many ties (ReLU zeros)
    dy = rng.standard_normal((3, 4, 3, 4)).astype(np.float32)
    fast = L.MaxPool2D(2, method="auto")
    y_fast, dx_fast = fast.forward(x), None
    dx_fast = fast.backward(dy)
    assert fast.cache[0] == "2x2"
    slow = L.MaxPool2D(2)                                    # the default: the loop over the window's offsets
    y_slow = slow.forward(x)
    dx_slow = slow.backward(dy)
    np.testing.assert_array_equal(y_fast, y_slow)
    np.testing.assert_array_equal(dx_fast, dx_slow)         # the same winner (the first) on ties


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 2, 2, 2)])
def test_maxpool_2x2_path_gradients(shape):
    x = np.random.default_rng(0).permutation(int(np.prod(shape))).reshape(shape) * 0.1
    layer = L.MaxPool2D(2, method="auto")
    assert gradcheck(layer, x) < 1e-6 and layer.cache[0] == "2x2"


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_strided_copies_equal_repeat(scale):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    up = L.Upsample2D(scale)
    np.testing.assert_array_equal(up.forward(x), x.repeat(scale, axis=2).repeat(scale, axis=3))
    dy = np.random.default_rng(1).standard_normal((2, 3, 4 * scale, 5 * scale))
    np.testing.assert_allclose(up.backward(dy), dy.reshape(2, 3, 4, scale, 5, scale).sum(axis=(3, 5)), rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["im2col", "winograd"])
def test_first_layer_skips_the_input_gradient_with_the_same_parameter_gradients(threads, method):
    parallel.set_threads(threads)
    backend.seed(0)
    model = Sequential(L.Conv2D(3, 5, 3, padding=1, method=method), L.ReLU(), L.Flatten(), L.Dense(5 * 36, 2))
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((4, 3, 6, 6)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    model.forward(x)
    assert model.backward(dy) is not None
    full = {name: host(g).copy() for name, _, g in model.named_parameters()}
    model.forward(x)
    assert model.backward(dy, input_grad=False) is None
    for name, _, g in model.named_parameters():
        np.testing.assert_array_equal(host(g), full[name], err_msg=name)
    conv = model.layers[0]                               # the layer on its own, unchunked
    conv.forward(x)
    conv.backward_params(np.ones((4, 5, 6, 6), np.float32))
    dW = conv.grads["W"].copy()
    conv.forward(x)
    conv.backward(np.ones((4, 5, 6, 6), np.float32))
    np.testing.assert_array_equal(conv.grads["W"], dW)


def test_map_inside_a_worker_runs_in_place():
    parallel.set_threads(2)
    assert parallel.map(lambda i: parallel.map(lambda j: 10 * i + j, range(3)), range(4)) == \
        [[10 * i + j for j in range(3)] for i in range(4)]


def test_a_composite_layer_with_its_own_replica_runs_chunked_and_equals_the_whole_batch():
    from gan.simgan.nets import ResBlock
    backend.seed(0)
    model = Sequential(L.Conv2D(3, 6, 3, padding=1), ResBlock(6), L.ReLU(), L.Conv2D(6, 3, 1)).astype(np.float64)
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((10, 3, 6, 6)), rng.standard_normal((10, 3, 6, 6))
    parallel.set_threads(2)
    y = model.forward(x)
    assert model._run.steps[0][0] == "per_sample" and len(model._run.steps) == 1   # no whole-batch step
    dx = model.backward(dy)
    grads = {name: host(g).copy() for name, _, g in model.named_parameters()}
    assert any(name.startswith("1.conv1") for name in grads)
    y_ref, dx_ref, grads_ref = _plain_forward_backward(model, x, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_set_threads_returns_the_previous_setting_and_threads_setting_reads_it():
    from nn import parallel
    saved = parallel.threads_setting()
    try:
        parallel.set_threads(None)
        assert parallel.set_threads(1) is None and parallel.threads_setting() == 1
        assert parallel.set_threads(None) == 1 and parallel.threads_setting() is None
    finally:
        parallel.set_threads(saved)


# --- Winograd's kernel transform once per pass ------------------------------------------------------------

class _Chunked(L.Layer):
    """A one-layer Sequential (run in chunks, on threads) seen as a layer, for nn.gradcheck: it shares the
    layer's parameters and reads its gradients after the chunked backward pass."""

    def __init__(self, layer):
        super().__init__()
        self.net, self.params = Sequential(layer), layer.params

    def forward(self, x, training=True):
        return self.net.forward(x, training)

    def backward(self, dy):
        dx = self.net.backward(dy)
        self.grads = self.net.layers[0].grads
        return dx


def _count_calls(monkeypatch, module, name):
    """Wrap module.name so that every call appends to the returned list (then runs the original)."""
    calls, original = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.mark.parametrize("method, H", [("auto", 8), ("winograd", 5), ("auto", 6)])   # the last runs im2col
def test_winograd_replicas_gradcheck_through_the_chunked_pass(method, H):
    parallel.set_threads(2)
    backend.seed(0)
    conv = L.Conv2D(16, 3, 3, padding=1, method=method)
    conv.params["b"] = backend.asarray(np.random.default_rng(5).standard_normal(3))
    x = np.random.default_rng(4).standard_normal((3, 16, H, H))        # 3 chunks of one image
    assert gradcheck(_Chunked(conv), x) < 1e-7


def test_chunks_share_one_kernel_transform_per_pass_and_sum_du_into_dw(monkeypatch):
    from nn.layers import winograd_fast
    calls = _count_calls(monkeypatch, winograd_fast, "kernel_transform")
    backend.seed(0)
    net = [L.Conv2D(16, 16, 3, padding=1, method="auto"), L.ReLU(), L.MaxPool2D(2, method="auto"),
           L.Conv2D(16, 8, 3, padding=1, method="auto"), L.Flatten(), L.Dense(8 * 16, 5)]  # 8×8 Winograd, 4×4 im2col
    model = Sequential(*net).astype(np.float64)
    rng = np.random.default_rng(6)
    x, dy = rng.standard_normal((11, 16, 8, 8)), rng.standard_normal((11, 5))
    parallel.set_threads(2)
    y = model.forward(x)
    (kind, _, replicas), = model._run.steps
    assert kind == "per_sample" and len(replicas) == 8
    assert all(type(r[0]) is winograd_fast.WinogradReplica and r[0].kernel is replicas[0][0].kernel for r in replicas)
    assert len(calls) == 1                                   # once per pass, not once per chunk
    dx = model.backward(dy)
    assert len(calls) == 1                                   # backward reuses it
    assert "U" in replicas[0][0].grads and "W" not in replicas[0][0].grads
    assert replicas[0][3].cache is None                      # the 4×4 layer ran im2col
    grads = {name: host(g).copy() for name, _, g in model.named_parameters()}
    y_ref, dx_ref, grads_ref = _plain_forward_backward(model, x, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    assert set(grads) == set(grads_ref)
    for name in grads_ref:
        assert grads[name].shape == grads_ref[name].shape
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    before = len(calls)
    model.forward(x)
    assert len(calls) == before + 1                          # a new pass: a new transform (W may have changed)


# --- BatchNorm: one meeting per pass -------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape", [(L.BatchNorm2D(4), (5, 4, 3, 3)), (L.BatchNorm1D(6), (7, 6))])
def test_batchnorm_gradcheck_through_the_chunked_pass(layer, shape):
    parallel.set_threads(2)
    layer.params["gamma"] = backend.asarray(np.random.default_rng(8).uniform(0.5, 1.5, shape[1]))
    layer.params["beta"] = backend.asarray(np.random.default_rng(9).standard_normal(shape[1]))
    x = np.random.default_rng(7).standard_normal(shape) * 3 + 1
    assert gradcheck(_Chunked(layer), x) < 1e-7


def test_each_batchnorm_is_one_meeting_per_pass(monkeypatch):
    calls = _count_calls(monkeypatch, parallel, "map")
    backend.seed(0)
    model = Sequential(L.Conv2D(3, 4, 3, padding=1), L.BatchNorm2D(4), L.ReLU(), L.Conv2D(4, 4, 3, padding=1),
                       L.BatchNorm2D(4), L.ReLU(), L.Flatten(), L.Dense(4 * 16, 3))
    parallel.set_threads(2)
    x = np.random.default_rng(0).standard_normal((10, 3, 4, 4)).astype(np.float32)
    model.forward(x)
    assert len(calls) == 3                  # conv + statistics | normalise, relu, conv + statistics | normalise ...
    model.backward(np.ones((10, 3), np.float32))
    assert len(calls) == 3 + 3 + 1          # the same three runs backward, and one for the gradients' sums


def test_chunked_batchnorm_statistics_stay_accurate_far_from_zero():
    """The chunks' variances are combined around each chunk's own mean (no E[x²] - E[x]² cancellation)."""
    rng = np.random.default_rng(0)
    x = (1000 + rng.standard_normal((16, 3, 5, 5))).astype(np.float32)
    parallel.set_threads(2)
    model = Sequential(L.BatchNorm2D(3))
    y = model.forward(x)
    x64 = x.astype(np.float64)
    mu, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x64 - mu) / np.sqrt(var + 1e-5), rtol=0, atol=2e-3)
    np.testing.assert_allclose(model.layers[0].buffers["running_var"], 0.9 + 0.1 * var.ravel() * 400 / 399, rtol=1e-3)


def test_keep_freed_memory_is_set_once_and_leaves_a_users_malloc_settings_alone(monkeypatch):
    import ctypes
    calls = []

    class Mallopt:
        def __call__(self, param, value):
            calls.append((param, value))
            return 1

    class Libc:
        mallopt = Mallopt()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    for name in parallel._USER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(parallel, "_malloc_kept", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert parallel.keep_freed_memory() is False and calls == []     # the user's own settings win
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(parallel, "_malloc_kept", None)
    assert parallel.keep_freed_memory() is True
    assert sorted(calls) == sorted(parallel.MALLOC_SETTINGS.values())
    assert parallel.keep_freed_memory() is True and len(calls) == 2   # once
