"""Nearest 2x upsampling + 3x3 convolution on the small image (nn/layers/upconv_fast.py): against the two
plain layers (forward, dx, dW, db), central-difference gradient checks in float64, float32 accuracy, when a
Sequential fuses the pair, and that the fused Sequential equals the plain whole-batch pass."""
import numpy as np
import pytest

from nn import Sequential, backend, gradcheck, layers as L, parallel
from nn.backend import to_numpy as host
from nn.layers import upconv_fast
from nn.layers.upconv_fast import UpsampleConv, upsample_conv_backward, upsample_conv_forward

pytestmark = pytest.mark.skipif(backend.name != "numpy", reason="the fused pair runs on the NumPy backend")

SHAPES = [  # (N, C, O, H, W)
    (2, 3, 4, 3, 5),
    (1, 1, 1, 1, 1),            # one pixel: every shifted term falls off the edge
    (3, 5, 2, 4, 4),
    (2, 2, 3, 1, 6),
    (1, 4, 6, 7, 2),
]


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    parallel.set_threads(None)


def _plain_pair(C, O, bias, seed=0):
    """Upsample2D(2) and an im2col Conv2D in float64 (the reference), with a random bias."""
    backend.seed(seed)
    conv = L.Conv2D(C, O, 3, padding=1, bias=bias, method="im2col").astype(np.float64)
    if bias:
        conv.params["b"] = np.random.default_rng(seed + 1).standard_normal(O)
    return L.Upsample2D(2), conv


def _close(a, b, rtol=1e-12):
    a, b = host(a), host(b)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("N, C, O, H, W", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_upsample_then_conv(N, C, O, H, W, bias):
    rng = np.random.default_rng(1)
    up, conv = _plain_pair(C, O, bias)
    x = rng.standard_normal((N, C, H, W))
    y_ref = conv.forward(up.forward(x))
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = up.backward(conv.backward(dy))
    y, cache = upsample_conv_forward(x, conv.params["W"], conv.params.get("b"))
    dx, dW, db = upsample_conv_backward(dy, cache, conv.params["W"])
    _close(y, y_ref)
    _close(dx, dx_ref)
    _close(dW, conv.grads["W"])
    if bias:
        _close(db, conv.grads["b"])
    else:
        assert db is None
    assert upsample_conv_backward(dy, cache, conv.params["W"], input_grad=False)[0] is None


@pytest.mark.parametrize("N, C, O, H, W", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(N, C, O, H, W, bias):
    x = np.random.default_rng(2).standard_normal((N, C, H, W))
    assert gradcheck(UpsampleConv(L.Conv2D(C, O, 3, padding=1, bias=bias, method="auto")), x) < 1e-6


def test_any_strides_in_and_channel_major_memory_out():
    rng = np.random.default_rng(3)
    up, conv = _plain_pair(3, 4, True)
    x = np.ascontiguousarray(rng.standard_normal((3, 2, 5, 4))).transpose(1, 0, 2, 3)   # (C, N, H, W) memory
    y, cache = upsample_conv_forward(x, conv.params["W"], conv.params["b"])
    _close(y, conv.forward(up.forward(x)))
    assert y.transpose(1, 0, 2, 3).flags.c_contiguous                               # (O, N, 2H, 2W) memory
    dy = rng.standard_normal((2, 4, 10, 8))[:, :, ::-1]                              # a reversed view
    dx, _, _ = upsample_conv_backward(dy, cache, conv.params["W"])
    _close(dx, up.backward(conv.backward(dy)))
    assert dx.transpose(1, 0, 2, 3).flags.c_contiguous
    with pytest.raises(ValueError, match="expected dy of shape"):
        upsample_conv_backward(dy[:, :, :8], cache, conv.params["W"])


def test_float32_stays_float32_and_is_accurate():
    rng = np.random.default_rng(4)
    up, conv = _plain_pair(16, 8, True)
    x = rng.standard_normal((4, 16, 8, 8))
    y64 = conv.forward(up.forward(x))
    W32, b32 = conv.params["W"].astype(np.float32), conv.params["b"].astype(np.float32)
    y, cache = upsample_conv_forward(x.astype(np.float32), W32, b32)
    dx, dW, db = upsample_conv_backward(np.ones(y.shape, np.float32), cache, W32)
    assert y.dtype == dx.dtype == dW.dtype == db.dtype == np.float32
    assert dW.flags.c_contiguous and dW.shape == W32.shape
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4 * np.abs(y64).max())


@pytest.mark.parametrize("up, conv, fused", [
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, padding=1, method="auto"), True),
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, padding=1, bias=False, method="auto"), True),
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, padding=1), False),                      # the default: plain im2col
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, padding=1, method="winograd"), False),   # asked for one algorithm
    (L.Upsample2D(3), L.Conv2D(4, 3, 3, padding=1, method="auto"), False),
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, stride=2, padding=1, method="auto"), False),
    (L.Upsample2D(2), L.Conv2D(4, 3, 3, padding=0, method="auto"), False),
    (L.Upsample2D(2), L.Conv2D(4, 3, 5, padding=1, method="auto"), False),
    (L.ReLU(), L.Conv2D(4, 3, 3, padding=1, method="auto"), False),
])
def test_which_pairs_fuse(up, conv, fused):
    assert upconv_fast.fuses(up, conv) == fused


@pytest.mark.parametrize("threads", [1, 2])
def test_a_sequential_fuses_the_pair_and_equals_the_plain_whole_batch_pass(threads):
    backend.seed(0)
    model = Sequential(L.Dense(6, 4 * 9), L.Reshape((4, 3, 3)), L.Upsample2D(2),
                       L.Conv2D(4, 5, 3, padding=1, bias=False, method="auto"), L.BatchNorm2D(5), L.ReLU(),
                       L.Upsample2D(2), L.Conv2D(5, 2, 3, padding=1, method="auto"), L.Tanh()).astype(np.float64)
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((11, 6)), rng.standard_normal((11, 2, 12, 12))
    parallel.set_threads(threads)
    y = model.forward(x)
    kinds = [type(r).__name__ for kind, _, reps in model._run.steps if kind == "per_sample" for r in reps[0]]
    assert kinds.count("PassThrough") == 2 and kinds.count("UpsampleConv") == 2
    dx = model.backward(dy)
    grads = {name: host(g).copy() for name, _, g in model.named_parameters()}
    model.layers[4].buffers.update(running_mean=np.zeros(5), running_var=np.ones(5))
    h = x                                                  # the reference: every plain layer on the whole batch
    for layer in model.layers:
        h = layer.forward(h, True)
    g = dy
    for layer in reversed(model.layers):
        g = layer.backward(g)
    _close(y, h, rtol=1e-11)
    _close(dx, g, rtol=1e-10)
    for name, _, g_ref in model.named_parameters():
        _close(grads[name], g_ref, rtol=1e-10)
    assert [k for k in model.state_dict()] == [k for k in Sequential(*model.layers).state_dict()]


def test_the_dcgan_generator_keeps_its_layers_and_runs_fused():
    from gan.dcgan.nets import build_generator
    G = build_generator(width=4)
    names = [type(layer).__name__ for layer in G.layers]
    assert names.count("Upsample2D") == 3 and names.count("Conv2D") == 3     # saved generators still load
    G.forward(np.zeros((4, 100), np.float32))
    assert sum(type(r).__name__ == "UpsampleConv" for kind, _, reps in G._run.steps if kind == "per_sample" for r in reps[0]) == 3


def test_the_fused_generator_trains_the_same_on_1_2_and_8_threads():
    from gan.dcgan.nets import build_generator
    from nn import optim

    def train(threads):
        parallel.set_threads(threads)
        backend.seed(0)
        G = build_generator(width=4)
        opt = optim.Adam(G, 1e-2)
        z = np.random.default_rng(6).standard_normal((13, 100)).astype(np.float32)
        losses = []
        for _ in range(3):
            y = G.forward(z)
            losses.append(float((y * y).mean()))
            G.backward(2 * y / y.size)
            opt.step()
        return losses, G.state_dict()
    losses_1, state_1 = train(1)
    assert losses_1[-1] < losses_1[0]
    for threads in (2, 8):
        losses_t, state_t = train(threads)
        assert losses_t == losses_1, threads                 # bit for bit
        for k in state_1:
            np.testing.assert_array_equal(state_t[k], state_1[k], err_msg=f"{k} on {threads} threads")
