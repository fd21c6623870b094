"""Gradient checks (float64, central differences against a random upstream gradient) for every
layer in many configurations, plus shapes, dtypes and bad-input errors."""
import numpy as np
import pytest

from nn import backend, gradcheck, layers
from nn.backend import to_numpy as host

TOL = 1e-6   # float64 central differences give ~1e-9 when right; a wrong gradient gives ~1e-1


def dev(a):
    """A host array on the current backend's device (the suite also runs with NN_BACKEND=cupy)."""
    return backend.asarray(a)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def tie_free(*shape, seed=0):
    """Inputs whose values are all distinct and far apart (max-pool gradients are undefined at ties)."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1


CONV_CASES = [  # (in, out, kernel, stride, padding, input shape N,C,H,W)
    (3, 4, 3, 1, 1, (2, 3, 5, 5)),
    (2, 3, 1, 1, 0, (1, 2, 4, 3)),
    (2, 3, 5, 1, 2, (2, 2, 6, 7)),
    (3, 2, 3, 2, 0, (2, 3, 7, 6)),
    (1, 2, 4, 3, 1, (3, 1, 9, 8)),
    (2, 2, (3, 2), (2, 1), (1, 0), (2, 2, 6, 5)),
    (2, 5, 2, 2, 2, (1, 2, 3, 4)),
]


@pytest.mark.parametrize("cin,cout,k,s,p,shape", CONV_CASES)
def test_conv2d_gradients(cin, cout, k, s, p, shape):
    layer = layers.Conv2D(cin, cout, k, stride=s, padding=p)
    assert gradcheck(layer, rand(*shape)) < TOL


@pytest.mark.parametrize("padding,shape", [(1, (2, 3, 5, 5)), (0, (1, 2, 6, 7)), (2, (3, 4, 7, 4))])
def test_conv2d_winograd_method_gradients_and_agreement(padding, shape):
    """Conv2D(method="winograd") is checked numerically and against the im2col method."""
    C = shape[1]
    assert gradcheck(layers.Conv2D(C, 3, 3, padding=padding, method="winograd"), rand(*shape)) < TOL
    backend.seed(3)
    a = layers.Conv2D(C, 3, 3, padding=padding, method="im2col").astype(np.float64)
    backend.seed(3)
    b = layers.Conv2D(C, 3, 3, padding=padding, method="winograd").astype(np.float64)
    x, dy = dev(rand(*shape)), None
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_allclose(host(yb), host(ya), rtol=1e-10, atol=1e-12)
    dy = dev(rand(*ya.shape, seed=4))
    np.testing.assert_allclose(host(b.backward(dy)), host(a.backward(dy)), rtol=1e-10, atol=1e-12)
    for k in ("W", "b"):
        np.testing.assert_allclose(host(b.grads[k]), host(a.grads[k]), rtol=1e-10, atol=1e-12)


def test_conv2d_auto_method_choice():
    big = dev(np.zeros((1, 16, 16, 16), np.float32))
    plain = layers.Conv2D(16, 4, 3, padding=1)              # the default is the im2col the docstring teaches
    plain.forward(big)
    assert plain.method == "im2col" and plain.cache[0] == "im2col"
    conv = layers.Conv2D(16, 4, 3, padding=1, method="auto")
    conv.forward(big)
    assert conv.cache[0] == ("winograd" if backend.name == "numpy" else "im2col")
    layers.Conv2D(3, 4, 3, padding=1, method="auto").forward(dev(np.zeros((1, 3, 16, 16), np.float32)))
    strided = layers.Conv2D(16, 4, 3, stride=2, padding=1, method="auto")
    strided.forward(big)
    assert strided.cache[0] == "im2col"
    with pytest.raises(ValueError, match="winograd"):
        layers.Conv2D(3, 4, 5, method="winograd")
    with pytest.raises(ValueError, match="method"):
        layers.Conv2D(3, 4, 3, method="fft")


@pytest.mark.parametrize("cin,cout,k,s,p,shape", CONV_CASES)
def test_conv_transpose2d_gradients(cin, cout, k, s, p, shape):
    layer = layers.ConvTranspose2D(cin, cout, k, stride=s, padding=0 if np.any(np.array(p) >= np.array(k)) else p)
    assert gradcheck(layer, rand(*shape)) < TOL


def test_conv_transpose_output_padding_gradients():
    layer = layers.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1)
    y = layer.forward(dev(rand(2, 2, 4, 5).astype(np.float32)))
    assert y.shape == (2, 3, 8, 10)
    assert gradcheck(layer, rand(2, 2, 4, 5)) < TOL


def test_conv2d_matches_direct_definition():
    """Compare with the textbook sum y[n,o,p,q] = b[o] + sum_{c,i,j} W[o,c,i,j] x_pad[n,c,p*s+i,q*s+j]."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    conv = layers.Conv2D(3, 4, 3, stride=2, padding=1).astype(np.float64)
    conv.params["b"] = dev(rng.standard_normal(4))
    W, b = host(conv.params["W"]), host(conv.params["b"])
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    OH, OW = (7 + 2 - 3) // 2 + 1, (6 + 2 - 3) // 2 + 1
    expected = np.zeros((2, 4, OH, OW))
    for p in range(OH):
        for q in range(OW):
            patch = xpad[:, :, 2 * p:2 * p + 3, 2 * q:2 * q + 3]
            expected[:, :, p, q] = np.einsum("ncij,ocij->no", patch, W) + b
    np.testing.assert_allclose(host(conv.forward(dev(x))), expected, rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_adjoint_of_conv():
    """<conv(x), y> == <x, convT(y)> with the same weights (W viewed as (in,out) for convT)."""
    rng = np.random.default_rng(2)
    conv = layers.Conv2D(3, 5, 3, stride=2, padding=1).astype(np.float64)
    convT = layers.ConvTranspose2D(5, 3, 3, stride=2, padding=1, bias=False).astype(np.float64)
    conv.params["b"][...] = 0
    convT.params["W"] = conv.params["W"]
    x = rng.standard_normal((2, 3, 7, 7))
    y = rng.standard_normal((2, 5, 4, 4))
    lhs = np.sum(host(conv.forward(dev(x))) * y)
    rhs = np.sum(x * host(convT.forward(dev(y))))
    assert abs(lhs - rhs) < 1e-9 * max(1, abs(lhs))


POOL_CASES = [  # (kernel, stride, padding, shape)
    (2, None, 0, (2, 3, 6, 6)),
    (2, None, 0, (1, 2, 5, 7)),
    (3, 2, 1, (2, 2, 7, 6)),
    (3, 1, 0, (2, 1, 5, 5)),
    ((2, 3), (1, 2), (1, 1), (1, 2, 4, 7)),
]


@pytest.mark.parametrize("k,s,p,shape", POOL_CASES)
def test_maxpool_gradients(k, s, p, shape):
    assert gradcheck(layers.MaxPool2D(k, stride=s, padding=p), tie_free(*shape)) < TOL


@pytest.mark.parametrize("k,s,p,shape", POOL_CASES)
def test_avgpool_gradients(k, s, p, shape):
    assert gradcheck(layers.AvgPool2D(k, stride=s, padding=p), rand(*shape)) < TOL


def test_maxpool_values_and_routing():
    x = np.array([[[[1, 5, 2, 0], [3, 4, 8, 7], [0, 0, 1, 2], [9, 1, 3, 6]]]], dtype=np.float32)
    pool = layers.MaxPool2D(2)
    np.testing.assert_array_equal(host(pool.forward(dev(x))), [[[[5, 8], [9, 6]]]])
    dx = host(pool.backward(dev(np.array([[[[1, 2], [3, 4]]]], dtype=np.float32))))
    expected = np.zeros((1, 1, 4, 4), np.float32)
    expected[0, 0, 0, 1], expected[0, 0, 1, 2], expected[0, 0, 3, 0], expected[0, 0, 3, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("scale,shape", [(2, (2, 3, 3, 4)), (3, (1, 2, 2, 3)), (1, (1, 1, 2, 2))])
def test_upsample_gradients_and_values(scale, shape):
    x = rand(*shape)
    layer = layers.Upsample2D(scale)
    y = host(layer.forward(dev(x)))
    assert y.shape == shape[:2] + (shape[2] * scale, shape[3] * scale)
    np.testing.assert_array_equal(y[:, :, ::scale, ::scale], x)
    assert gradcheck(layers.Upsample2D(scale), x) < TOL


@pytest.mark.parametrize("scale,shape", [(4, (2, 2, 2, 2)), (2, (1, 3, 3, 5)), (3, (2, 1, 1, 4)), (1, (1, 2, 3, 3))])
def test_bilinear_upsample_values_and_gradients(scale, shape):
    x = rand(*shape)
    y = host(layers.BilinearUpsample2D(scale).forward(dev(x)))
    assert y.shape == shape[:2] + (shape[2] * scale, shape[3] * scale)
    if scale == 1:
        np.testing.assert_allclose(y, x, atol=1e-12)
    const = host(layers.BilinearUpsample2D(scale).forward(dev(np.full(shape, 2.5))))
    np.testing.assert_allclose(const, 2.5, atol=1e-12)              # the weights of each output pixel sum to 1
    assert y.min() >= x.min() - 1e-12 and y.max() <= x.max() + 1e-12   # interpolation never overshoots
    assert gradcheck(layers.BilinearUpsample2D(scale), x) < TOL


def test_bilinear_upsample_interpolates_a_ramp_linearly():
    """Along an axis of a linear ramp v = col, output pixel o lies at (o + 0.5)/s - 0.5 input pixels, clamped to
    the first and last input pixel (PyTorch's bilinear `interpolate`, align_corners=False)."""
    x = np.tile(np.arange(4.0), (1, 1, 3, 1))                      # (1, 1, 3, 4), value = column
    y = host(layers.BilinearUpsample2D(2).forward(dev(x)))
    expected = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(y[0, 0], np.tile(expected, (6, 1)), atol=1e-12)


def warp_input(t, disp):
    return np.concatenate([t, disp], axis=1)


def test_warp_with_no_displacement_is_the_identity_and_whole_pixels_shift():
    t = rand(2, 3, 5, 6)
    zero = np.zeros((2, 2, 5, 6))
    np.testing.assert_array_equal(host(layers.Warp().forward(dev(warp_input(t, zero)))), t)
    right = zero.copy()
    right[:, 1] = 2                                                  # every pixel reads 2 columns to its right
    y = host(layers.Warp().forward(dev(warp_input(t, right))))
    np.testing.assert_allclose(y[..., :-2], t[..., 2:], atol=1e-12)
    np.testing.assert_allclose(y[..., -2:], t[..., -1:].repeat(2, axis=-1), atol=1e-12)   # the edge repeats
    up = zero.copy()
    up[:, 0] = -1                                                    # every pixel reads one row up
    y = host(layers.Warp().forward(dev(warp_input(t, up))))
    np.testing.assert_allclose(y[:, :, 1:], t[:, :, :-1], atol=1e-12)
    np.testing.assert_allclose(y[:, :, 0], t[:, :, 0], atol=1e-12)


def test_warp_interpolates_between_the_four_pixels_around_the_point():
    t = rand(1, 2, 4, 4, seed=3)
    disp = np.zeros((1, 2, 4, 4))
    disp[0, 0, 1, 1], disp[0, 1, 1, 1] = 0.25, 0.5                   # pixel (1, 1) reads the point (1.25, 1.5)
    y = host(layers.Warp().forward(dev(warp_input(t, disp))))
    a, b = 0.25, 0.5
    v = t[0, :, 1:3, 1:3]
    expected = (1 - a) * (1 - b) * v[:, 0, 0] + (1 - a) * b * v[:, 0, 1] + a * (1 - b) * v[:, 1, 0] + a * b * v[:, 1, 1]
    np.testing.assert_allclose(y[0, :, 1, 1], expected, atol=1e-12)
    np.testing.assert_allclose(np.delete(y.reshape(2, 16), 5, axis=1), np.delete(t.reshape(2, 16), 5, axis=1))


@pytest.mark.parametrize("shape,spread,seed", [((2, 3, 5, 6), 1.5, 0), ((1, 1, 4, 3), 3.0, 1), ((3, 2, 2, 2), 0.7, 2)])
def test_warp_gradients(shape, spread, seed):
    """Both the image's and the displacements' gradients, including points clipped at the edge."""
    rng = np.random.default_rng(seed)
    n, _, h, w = shape
    disp = rng.normal(0, spread, (n, 2, h, w))
    disp = np.where(np.abs(disp - np.round(disp)) < 0.01, disp + 0.3, disp)   # away from whole pixels (kinks)
    assert gradcheck(layers.Warp(), warp_input(rng.standard_normal(shape), disp)) < TOL


def test_a_point_clipped_at_the_edge_gets_no_displacement_gradient():
    t = rand(1, 1, 3, 3)
    disp = np.zeros((1, 2, 3, 3))
    disp[0, 1, 0, 0] = -2.5                                          # far left of the image: clipped to column 0
    disp[0, 1, 1, 1] = 0.4
    layer = layers.Warp()
    layer.forward(dev(warp_input(t, disp)))
    d = host(layer.backward(dev(np.ones((1, 1, 3, 3)))))
    assert d[0, 2, 0, 0] == 0 and d[0, 2, 1, 1] != 0


def test_warp_refuses_an_input_without_displacements():
    with pytest.raises(ValueError, match="displacement"):
        layers.Warp().forward(dev(rand(1, 2, 4, 4)))


@pytest.mark.parametrize("n", [1, 4])
def test_dense_gradients(n):
    assert gradcheck(layers.Dense(5, 3), rand(n, 5)) < TOL


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_gradients(training):
    bn = layers.BatchNorm2D(3)
    bn.params["gamma"] = dev(np.random.default_rng(3).uniform(0.5, 1.5, 3).astype(np.float32))
    bn.buffers["running_mean"] = dev(np.array([0.1, -0.2, 0.3], np.float32))
    bn.buffers["running_var"] = dev(np.array([0.5, 1.5, 2.0], np.float32))
    assert gradcheck(bn, rand(4, 3, 3, 2) * 2 + 1, training=training) < TOL


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_gradients(training):
    assert gradcheck(layers.BatchNorm1D(5), rand(6, 5), training=training) < TOL


def test_batchnorm_normalises_and_tracks_running_statistics():
    x = (rand(64, 3, 4, 4, seed=5) * np.array([1, 2, 3])[None, :, None, None] + 5).astype(np.float32)
    bn = layers.BatchNorm2D(3, momentum=1.0)
    y = host(bn.forward(dev(x), training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(host(bn.buffers["running_mean"]), x.mean(axis=(0, 2, 3)), rtol=1e-5)
    m = x.size // 3
    np.testing.assert_allclose(host(bn.buffers["running_var"]), x.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-4)
    y_eval = host(bn.forward(dev(x), training=False))          # eval uses the running statistics
    np.testing.assert_allclose(y_eval, y, atol=1e-2)
    shifted = dev(x[:2] + 1)
    assert not np.allclose(host(bn.forward(shifted, training=False)), host(bn.forward(shifted, training=True)))


@pytest.mark.parametrize("layer", [layers.ReLU(), layers.LeakyReLU(0.2), layers.LeakyReLU(0.01), layers.Sigmoid(),
                                   layers.Tanh(), layers.Flatten(), layers.Reshape((6, 2)), layers.Dropout(0.3),
                                   layers.Scale(0.25)],
                         ids=repr)
def test_elementwise_and_shape_gradients(layer):
    x = rand(4, 3, 2, 2)
    x[np.abs(x) < 1e-3] = 0.5   # keep away from ReLU's kink
    assert gradcheck(layer, x) < TOL


@pytest.mark.parametrize("training", [True, False])
def test_standardize_gradient_and_statistics(training):
    """Per image: mean 0 and variance var/(var + eps) over all its values, whatever its brightness and
    contrast; the same in training and evaluation; a float64 gradient check."""
    x = rand(5, 3, 4, 4) * 3 + 2
    layer = layers.Standardize(eps=1e-3)
    assert gradcheck(layer, x, training=training) < TOL
    y = host(layer.forward(dev(x), training=training))
    var = x.reshape(5, -1).var(axis=1)
    np.testing.assert_allclose(y.reshape(5, -1).mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(y.reshape(5, -1).var(axis=1), var / (var + 1e-3), rtol=1e-6)
    brighter = host(layer.forward(dev(x * 0.5 - 1), training=training))   # contrast halved, darker
    np.testing.assert_allclose(brighter, y * np.sqrt((var + 1e-3) / (var + 4e-3))[:, None, None, None], rtol=1e-6)
    flat = host(layer.forward(dev(np.full((1, 3, 4, 4), 0.7)), training=training))
    assert np.abs(flat).max() < 1e-12                          # a flat image stays flat, not blown up


@pytest.mark.parametrize("training", [True, False])
def test_standardize_per_channel_gradient_and_statistics(training):
    """per_channel=True: every channel of every image gets mean 0 and variance var/(var + eps) over its
    H·W values, so a per-channel gain and offset (a colour cast, a channel's contrast) leave no trace
    beyond eps's; a float64 gradient check."""
    x = rand(4, 3, 5, 5) * 3 + 2
    layer = layers.Standardize(eps=1e-3, per_channel=True)
    assert gradcheck(layer, x, training=training) < TOL
    y = host(layer.forward(dev(x), training=training))
    var = x.reshape(4, 3, -1).var(axis=2)
    np.testing.assert_allclose(y.reshape(4, 3, -1).mean(axis=2), 0, atol=1e-6)
    np.testing.assert_allclose(y.reshape(4, 3, -1).var(axis=2), var / (var + 1e-3), rtol=1e-6)
    gain, offset = np.array([0.5, 2.0, 1.0]), np.array([-1.0, 0.3, 0.0])    # per channel
    cast = host(layer.forward(dev(x * gain[:, None, None] + offset[:, None, None]), training=training))
    scale = gain[None, :] * np.sqrt((var + 1e-3) / (var * gain[None, :] ** 2 + 1e-3))
    np.testing.assert_allclose(cast, y * scale[:, :, None, None], rtol=1e-6)
    whole = host(layers.Standardize(eps=1e-3).forward(dev(x), training=training))
    assert np.abs(whole - y).max() > 0.1                     # not the same as over the whole image
    with pytest.raises(ValueError, match="per_channel"):
        layer.forward(dev(rand(4, 6)))


def test_sigmoid_is_stable_for_large_inputs():
    y = host(layers.Sigmoid().forward(dev(np.array([-1000.0, 0.0, 1000.0], np.float32))))
    np.testing.assert_allclose(y, [0, 0.5, 1])
    assert np.all(np.isfinite(y))


def test_dropout_train_and_eval():
    backend.seed(0)
    x = dev(np.ones((200, 50), np.float32))
    d = layers.Dropout(0.25)
    y = host(d.forward(x, training=True))
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    assert d.forward(x, training=False) is x


ALL_LAYERS = [
    (lambda: layers.Conv2D(3, 4, 3, padding=1), (2, 3, 8, 8)),
    (lambda: layers.ConvTranspose2D(3, 4, 4, stride=2, padding=1), (2, 3, 4, 4)),
    (lambda: layers.MaxPool2D(2), (2, 3, 8, 8)),
    (lambda: layers.AvgPool2D(2), (2, 3, 8, 8)),
    (lambda: layers.Upsample2D(2), (2, 3, 4, 4)),
    (lambda: layers.Dense(12, 5), (2, 12)),
    (lambda: layers.BatchNorm1D(12), (4, 12)),
    (lambda: layers.BatchNorm2D(3), (2, 3, 4, 4)),
    (lambda: layers.ReLU(), (2, 3, 4, 4)),
    (lambda: layers.LeakyReLU(), (2, 3, 4, 4)),
    (lambda: layers.Sigmoid(), (2, 3, 4, 4)),
    (lambda: layers.Tanh(), (2, 3, 4, 4)),
    (lambda: layers.Flatten(), (2, 3, 4, 4)),
    (lambda: layers.Reshape((48,)), (2, 3, 4, 4)),
    (lambda: layers.Dropout(0.5), (2, 3, 4, 4)),
    (lambda: layers.Scale(0.25), (2, 3, 4, 4)),
    (lambda: layers.Standardize(), (2, 3, 4, 4)),
    (lambda: layers.Standardize(per_channel=True), (2, 3, 4, 4)),
    (lambda: layers.BilinearUpsample2D(4), (2, 3, 2, 3)),
    (lambda: layers.Warp(), (2, 5, 4, 4)),
]


def test_every_layer_is_in_the_float32_check():
    names = {type(make()).__name__ for make, _ in ALL_LAYERS}
    assert {n for n in layers.__all__ if isinstance(getattr(layers, n), type)} - {"Layer"} <= names


@pytest.mark.parametrize("make,shape", ALL_LAYERS, ids=lambda v: repr(v()) if callable(v) else str(v))
def test_float32_stays_float32_and_shapes_agree(make, shape):
    layer = make()
    x = dev(rand(*shape).astype(np.float32))
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    assert y.shape[1:] == tuple(layer.output_shape(shape[1:]))
    dx = layer.backward(backend.xp.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for k, p in layer.params.items():
        assert p.dtype == np.float32
        assert layer.grads[k].dtype == np.float32 and layer.grads[k].shape == p.shape


def test_weight_layouts_follow_the_design():
    assert layers.Conv2D(3, 8, 5).params["W"].shape == (8, 3, 5, 5)
    assert layers.ConvTranspose2D(3, 8, 4).params["W"].shape == (3, 8, 4, 4)
    assert layers.Dense(7, 2).params["W"].shape == (7, 2)
    assert set(layers.BatchNorm2D(4).params) == {"gamma", "beta"}
    assert set(layers.BatchNorm2D(4).buffers) == {"running_mean", "running_var"}


def test_same_seed_same_weights():
    backend.seed(7)
    a = host(layers.Conv2D(3, 4, 3).params["W"])
    backend.seed(7)
    b = host(layers.Conv2D(3, 4, 3).params["W"])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,x_shape,fragment", [
    (lambda: layers.Conv2D(3, 4, 3), (2, 5, 8, 8), "3 input channels"),
    (lambda: layers.Conv2D(3, 4, 3), (3, 8, 8), "4-D"),
    (lambda: layers.Conv2D(3, 4, 5), (1, 3, 3, 3), "larger than the padded input"),
    (lambda: layers.ConvTranspose2D(3, 4, 3), (1, 2, 4, 4), "3 input channels"),
    (lambda: layers.MaxPool2D(4), (1, 1, 3, 3), "larger than the padded input"),
    (lambda: layers.MaxPool2D(2), (1, 3, 3), "4-D"),
    (lambda: layers.Dense(5, 2), (3, 4), "(N, 5)"),
    (lambda: layers.BatchNorm2D(3), (2, 4, 2, 2), "3 channels"),
    (lambda: layers.BatchNorm1D(3), (1, 3), "more than one value"),
    (lambda: layers.Reshape((5, 5)), (2, 3, 4), "cannot reshape"),
])
def test_bad_input_names_layer_and_shapes(make, x_shape, fragment):
    layer = make()
    with pytest.raises(ValueError) as info:
        layer.forward(backend.xp.zeros(x_shape, np.float32))
    msg = str(info.value)
    assert fragment in msg and type(layer).__name__ in msg and str(tuple(x_shape)) in msg
    assert "\n" not in msg


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        layers.Dropout(1.0)
    with pytest.raises(ValueError):
        layers.ConvTranspose2D(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError):
        layers.Upsample2D(0)


def test_scatter_add_adds_every_value_of_a_repeated_index(monkeypatch):
    from types import SimpleNamespace
    expected = np.array([1.0, 7.0, 0.0, 4.0])
    target = dev(np.array([1.0, 0.0, 0.0, 0.0]))
    backend.scatter_add(target, dev(np.array([1, 3, 1, 1])), dev(np.array([2.0, 4.0, 3.0, 2.0])))
    np.testing.assert_array_equal(host(target), expected)
    if backend.name == "numpy":                          # the path of a CuPy without ufunc.at: bincount
        monkeypatch.setattr(backend, "xp", SimpleNamespace(add=SimpleNamespace(), bincount=np.bincount))
        target = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
        backend.scatter_add(target, np.array([1, 3, 1, 1]), np.array([2.0, 4.0, 3.0, 2.0], dtype=np.float32))
        np.testing.assert_array_equal(target, expected)
        assert target.dtype == np.float32
