"""Winograd F(2×2, 3×3) convolution: the per-tile reference (nn/layers/winograd.py) and the fast layout
(nn/layers/winograd_fast.py), each against the other and against the im2col Conv2D: forward, backward
(dx, dW, db), central-difference gradient checks, dtypes, memory layout, bad input."""
import numpy as np
import pytest

from nn import backend, gradcheck, layers
from nn.layers import winograd
from nn.layers.winograd import reference_backward, reference_forward, winograd_supported
from nn.layers.winograd_fast import winograd_backward, winograd_forward

RTOL = 1e-10

SHAPES = [  # (N, C, O, H, W, padding)
    (1, 1, 1, 3, 3, 0),
    (3, 2, 5, 5, 7, 1),
    (1, 3, 4, 6, 6, 2),
    (3, 5, 2, 4, 9, 0),
    (1, 4, 3, 7, 8, 1),
    (3, 1, 2, 8, 5, 2),
    (2, 2, 3, 1, 1, 1),         # 1×1 image, one output pixel per side
    (2, 3, 2, 1, 4, (3, 0)),    # asymmetric padding, padding larger than the kernel's reach
    (1, 5, 5, 10, 3, (0, 1)),
]


@pytest.fixture(params=["per_image", "batched"])
def products(request):
    """Run a test with both ways of doing the 16 products (the fast functions' keyword `products`)."""
    return request.param


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def im2col_conv(C, O, padding, seed=0, bias=True):
    conv = layers.Conv2D(C, O, 3, padding=padding, bias=bias).astype(np.float64)
    if bias:
        conv.params["b"] = rand(O, seed=seed + 1)
    return conv


def assert_close(a, b, rtol=RTOL):
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    assert a.shape == b.shape
    scale = max(np.abs(b).max(), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, f"max relative difference {np.abs(a - b).max() / scale:.2e}"


class WinogradConv(layers.Layer):
    """A tiny layer around a forward and a backward function (fast or reference), for nn.gradcheck."""

    def __init__(self, W, b, padding, forward=winograd_forward, backward=winograd_backward, **kwargs):
        super().__init__()
        self.params["W"] = W
        if b is not None:
            self.params["b"] = b
        self.padding = padding
        self.functions, self.kwargs = (forward, backward), kwargs

    def forward(self, x, training=True):
        y, self.cache = self.functions[0](x, self.params["W"], self.params.get("b"), self.padding, **self.kwargs)
        return y

    def backward(self, dy):
        dx, dW, db = self.functions[1](dy, self.cache, self.params["W"], **self.kwargs)
        self.grads["W"] = dW
        if db is not None:
            self.grads["b"] = db
        return dx


def test_the_matrices_compute_a_3x3_correlation():
    """Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)]A equals the 2×2 valid cross-correlation of a 4×4 tile d with g."""
    d, g = rand(4, 4, seed=1), rand(3, 3, seed=2)
    U = winograd.G @ g @ winograd.G.T
    V = winograd.BT @ d @ winograd.BT.T
    Y = winograd.AT @ (U * V) @ winograd.AT.T
    expected = np.array([[np.sum(g * d[r:r + 3, s:s + 3]) for s in range(2)] for r in range(2)])
    np.testing.assert_allclose(Y, expected, rtol=1e-12, atol=1e-12)


# --- the per-tile reference against im2col, and the fast layout against the reference ------------

@pytest.mark.parametrize("N,C,O,H,W,p", SHAPES)
def test_reference_matches_im2col(N, C, O, H, W, p):
    conv = im2col_conv(C, O, p)
    x = rand(N, C, H, W, seed=3)
    y_ref = conv.forward(x)
    dy = rand(*y_ref.shape, seed=4)
    dx_ref = conv.backward(dy)
    y, cache = reference_forward(x, conv.params["W"], conv.params["b"], p)
    dx, dW, db = reference_backward(dy, cache, conv.params["W"])
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_close(dW, conv.grads["W"])
    assert_close(db, conv.grads["b"])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("N,C,O,H,W,p", SHAPES)
def test_fast_layout_matches_reference(N, C, O, H, W, p, bias, products):
    """Forward and backward of winograd_fast equal the per-tile reference (float64), ghost tiles,
    odd sizes and asymmetric padding included."""
    x, Wt = rand(N, C, H, W, seed=15), rand(O, C, 3, 3, seed=16)
    b = rand(O, seed=17) if bias else None
    y_ref, cache_ref = reference_forward(x, Wt, b, p)
    y, cache = winograd_forward(x, Wt, b, p, products=products)
    assert_close(y, y_ref)
    dy = rand(*y_ref.shape, seed=18)
    got, ref = winograd_backward(dy, cache, Wt, products=products), reference_backward(dy, cache_ref, Wt)
    for g, r in zip(got[:2], ref[:2]):
        assert_close(g, r)
    if bias:
        assert_close(got[2], ref[2])
    else:
        assert got[2] is None and ref[2] is None


@pytest.mark.parametrize("N,C,O,H,W,p", [(2, 3, 4, 5, 5, 1), (1, 2, 3, 6, 7, 0), (1, 1, 2, 3, 8, (0, 2))])
def test_reference_gradcheck(N, C, O, H, W, p):
    layer = WinogradConv(rand(O, C, 3, 3, seed=7), rand(O, seed=8), p, reference_forward, reference_backward)
    assert gradcheck(layer, rand(N, C, H, W, seed=9)) < 1e-6


def test_reference_rejects_bad_input_and_the_fast_path_a_bad_products_value():
    with pytest.raises(ValueError, match="reference_forward: expected weights"):
        reference_forward(rand(1, 2, 5, 5), rand(3, 2, 5, 5), None, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        reference_forward(rand(1, 2, 2, 5), rand(3, 2, 3, 3), None, 0)
    with pytest.raises(ValueError, match="products"):
        winograd_forward(rand(1, 2, 5, 5), rand(3, 2, 3, 3), None, 1, products="fast")


# --- the fast layout against im2col ----------------------------------------------------------------

@pytest.mark.parametrize("N,C,O,H,W,p", SHAPES)
def test_forward_matches_im2col(N, C, O, H, W, p, products):
    conv = im2col_conv(C, O, p)
    x = rand(N, C, H, W, seed=3)
    y, _ = winograd_forward(x, conv.params["W"], conv.params["b"], p, products=products)
    assert_close(y, conv.forward(x))


@pytest.mark.parametrize("N,C,O,H,W,p", SHAPES)
def test_backward_matches_im2col(N, C, O, H, W, p, products):
    conv = im2col_conv(C, O, p)
    x = rand(N, C, H, W, seed=3)
    y_ref = conv.forward(x)
    dy = rand(*y_ref.shape, seed=4)
    dx_ref = conv.backward(dy)
    _, cache = winograd_forward(x, conv.params["W"], conv.params["b"], p, products=products)
    dx, dW, db = winograd_backward(dy, cache, conv.params["W"], products=products)
    assert_close(dx, dx_ref)
    assert_close(dW, conv.grads["W"])
    assert_close(db, conv.grads["b"])


def test_without_bias():
    conv = im2col_conv(3, 4, 1, bias=False)
    x = rand(2, 3, 5, 6, seed=5)
    y_ref = conv.forward(x)
    dy = rand(*y_ref.shape, seed=6)
    dx_ref = conv.backward(dy)
    y, cache = winograd_forward(x, conv.params["W"], None, 1)
    dx, dW, db = winograd_backward(dy, cache, conv.params["W"])
    assert db is None
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_close(dW, conv.grads["W"])


@pytest.mark.parametrize("N,C,O,H,W,p", [(2, 3, 4, 5, 5, 1), (1, 2, 3, 6, 7, 0), (3, 2, 2, 4, 3, 2), (1, 1, 2, 3, 8, (0, 2))])
def test_gradcheck(N, C, O, H, W, p, products):
    layer = WinogradConv(rand(O, C, 3, 3, seed=7), rand(O, seed=8), p, products=products)
    assert gradcheck(layer, rand(N, C, H, W, seed=9)) < 1e-6


def test_noncontiguous_input_and_upstream_gradient():
    """x and dy may be any strided views (here: NHWC memory and a crop of a bigger array)."""
    conv = im2col_conv(3, 4, 1)
    x_nhwc = rand(2, 7, 9, 3, seed=10)
    x = x_nhwc.transpose(0, 3, 1, 2)[:, :, 1:, ::2]            # (2, 3, 6, 5), neither C nor F order
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    y_ref = conv.forward(x)
    big = rand(2, 5, 8, 7, seed=11)
    dy = big[:, 1:, 1:, 1:][:, :, :y_ref.shape[2], :y_ref.shape[3]]
    dx_ref = conv.backward(dy)
    y, cache = winograd_forward(x, conv.params["W"], conv.params["b"], 1)
    dx, dW, db = winograd_backward(dy, cache, conv.params["W"])
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_close(dW, conv.grads["W"])
    assert_close(db, conv.grads["b"])


@pytest.mark.parametrize("H,W", [(6, 6), (5, 7)])
def test_output_and_input_gradient_are_views_of_channel_major_memory(H, W):
    """Like Conv2D: y is an NCHW view of (O, N, OH, OW) memory, dx of (C, N, H, W) memory."""
    x = rand(2, 3, H, W).astype(np.float32)
    Wt = rand(4, 3, 3, 3).astype(np.float32)
    y, cache = winograd_forward(x, Wt, None, 1)
    assert y.shape == (2, 4, H, W)
    assert y.transpose(1, 0, 2, 3).flags.c_contiguous
    dx, _, _ = winograd_backward(np.ones_like(y), cache, Wt)
    assert dx.shape == x.shape
    assert dx.transpose(1, 0, 2, 3).flags.c_contiguous


def test_float32_stays_float32_and_is_accurate():
    rng = np.random.default_rng(12)
    N, C, O, H, W = 4, 32, 16, 12, 11
    x = np.maximum(rng.standard_normal((N, C, H, W)), 0)             # ReLU-like activations
    Wt = rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (9 * C))    # He-scaled
    b = rng.standard_normal(O) * 0.1
    y64, c64 = winograd_forward(x, Wt, b, 1)
    dy = rng.standard_normal(y64.shape)
    g64 = winograd_backward(dy, c64, Wt)
    y32, c32 = winograd_forward(x.astype(np.float32), Wt.astype(np.float32), b.astype(np.float32), 1)
    g32 = winograd_backward(dy.astype(np.float32), c32, Wt.astype(np.float32))
    for got, ref in zip((y32,) + tuple(g32), (y64,) + tuple(g64)):
        assert got.dtype == np.float32
        assert_close(got, ref, rtol=1e-4)


def test_float64_stays_float64():
    y, cache = winograd_forward(rand(1, 2, 4, 4), rand(3, 2, 3, 3), rand(3), 1)
    dx, dW, db = winograd_backward(np.ones(y.shape), cache, rand(3, 2, 3, 3))
    assert y.dtype == dx.dtype == dW.dtype == db.dtype == np.float64


@pytest.mark.parametrize("k,s,p,ok", [
    (3, 1, 0, True), (3, 1, 1, True), (3, 1, 2, True), ((3, 3), (1, 1), (1, 0), True), (3, 1, 5, True),
    (3, 2, 1, False), (3, (1, 2), 1, False), (5, 1, 2, False), (1, 1, 0, False), ((3, 2), 1, 1, False),
    (2, 1, 0, False), (3, 1, -1, False),
])
def test_supported_configurations(k, s, p, ok):
    assert winograd_supported(k, s, p) is ok


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="weights"):
        winograd_forward(rand(1, 2, 5, 5), rand(3, 2, 5, 5), None, 1)
    with pytest.raises(ValueError, match="weights"):
        winograd_forward(rand(1, 2, 5, 5), rand(3, 4, 3, 3), None, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        winograd_forward(rand(1, 2, 2, 5), rand(3, 2, 3, 3), None, 0)
    with pytest.raises(ValueError, match="4-D"):
        winograd_forward(rand(2, 5, 5), rand(3, 2, 3, 3), None, 1)
    y, cache = winograd_forward(rand(1, 2, 5, 5), rand(3, 2, 3, 3), None, 1)
    with pytest.raises(ValueError, match="dy"):
        winograd_backward(np.ones((1, 3, 4, 4)), cache, rand(3, 2, 3, 3))


@pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available")
def test_cupy_matches_numpy():
    conv = im2col_conv(3, 5, 1)
    x, W, b = rand(2, 3, 7, 6, seed=13), conv.params["W"], conv.params["b"]
    y_ref, cache = winograd_forward(x, W, b, 1)
    dy = rand(*y_ref.shape, seed=14)
    ref = winograd_backward(dy, cache, W)
    backend.set_backend("cupy")
    xp = backend.xp
    y, cache = winograd_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), 1)
    got = winograd_backward(xp.asarray(dy), cache, xp.asarray(W))
    assert_close(y, y_ref)
    for g, r in zip(got, ref):
        assert_close(g, r)
