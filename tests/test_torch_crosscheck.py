"""Cross-check against PyTorch: every layer's forward and backward, every loss and both optimizers,
in float64 on random shapes (as numpy-ml does). `nn` and PyTorch share the weight layouts:
Conv2D's W is PyTorch's (out, in, kh, kw), ConvTranspose2D's (in, out, kh, kw); only Dense's W is
the transpose of `torch.nn.Linear.weight`.

PyTorch is optional (the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu);
without it this module is skipped with that reason.
"""
import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (optional; for the cross-check: "
                    "pip install torch --index-url https://download.pytorch.org/whl/cpu)")
F = torch.nn.functional

from nn import Sequential, backend, layers, losses, optim  # noqa: E402
from nn.backend import to_numpy as host  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12       # float64 on both sides: only summation order differs
SEEDS = range(3)                # each seed draws other shapes


@pytest.fixture(autouse=True)
def _numpy_only():
    """PyTorch runs on the CPU here, so `nn` does too."""
    if backend.name != "numpy":
        pytest.skip("the PyTorch cross-check runs on the NumPy backend")


def rng_for(seed, salt):
    return np.random.default_rng([seed, salt])


def close(ours, theirs, what):
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=what)


def crosscheck(layer, x, torch_forward, params=(), training=True, seed=0):
    """Run `layer` forward and backward on x (float64) and `torch_forward(x, *params)` with autograd on the
    same numbers; compare y, dx and every parameter's gradient.

    params: [(name in layer.params, to_torch(array) -> array, from_torch(grad) -> grad)]."""
    layer.astype(np.float64)
    rng = rng_for(seed, 99)
    y = layer.forward(x, training=training)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)

    xt = torch.tensor(x, requires_grad=True)
    pts = [torch.tensor(np.ascontiguousarray(to_torch(host(layer.params[name]))), requires_grad=True)
           for name, to_torch, _ in params]
    yt = torch_forward(xt, *pts)
    yt.backward(torch.tensor(dy))
    close(y, yt, "forward")
    close(dx, xt.grad, "input gradient")
    for (name, _, from_torch), pt in zip(params, pts):
        np.testing.assert_allclose(host(layer.grads[name]), from_torch(pt.grad.numpy()), rtol=RTOL, atol=ATOL,
                                   err_msg=f"gradient of {name}")
    return layer


SAME = lambda a: a  # noqa: E731
W_B = [("W", SAME, SAME), ("b", SAME, SAME)]


# ----------------------------------------------------------------------------------- convolutions

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["im2col", "winograd"])
def test_conv2d(seed, method):
    rng = rng_for(seed, 1)
    n, cin, cout = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 5)
    if method == "winograd":
        k, stride, pad = (3, 3), (1, 1), tuple(rng.integers(0, 3, size=2))
    else:
        k, stride, pad = tuple(rng.integers(1, 5, size=2)), tuple(rng.integers(1, 4, size=2)), tuple(rng.integers(0, 3, size=2))
    h, w = rng.integers(k[0] + 1, 10), rng.integers(k[1] + 1, 10)
    backend.seed(seed)
    layer = layers.Conv2D(cin, cout, k, stride=stride, padding=pad, method=method)
    layer.params["b"] = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((n, cin, h, w))
    crosscheck(layer, x, lambda xt, W, b: F.conv2d(xt, W, b, stride=stride, padding=pad), W_B, seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_without_bias(seed):
    rng = rng_for(seed, 2)
    layer = layers.Conv2D(3, 2, 3, padding=1, bias=False, method="im2col")
    x = rng.standard_normal((2, 3, 5, 6))
    crosscheck(layer, x, lambda xt, W: F.conv2d(xt, W, padding=1), [("W", SAME, SAME)], seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose2d(seed):
    rng = rng_for(seed, 3)
    n, cin, cout = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 5)
    k, stride = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    pad = int(rng.integers(0, k))
    out_pad = int(rng.integers(0, stride))
    h, w = rng.integers(2, 7), rng.integers(2, 7)
    layer = layers.ConvTranspose2D(cin, cout, k, stride=stride, padding=pad, output_padding=out_pad)
    layer.params["b"] = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((n, cin, h, w))
    if min(layer.output_shape(x.shape[1:])[1:]) <= 0:
        pytest.skip("this draw gives an empty output")
    crosscheck(layer, x, lambda xt, W, b: F.conv_transpose2d(xt, W, b, stride=stride, padding=pad,
                                                             output_padding=out_pad), W_B, seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_dense(seed):
    rng = rng_for(seed, 4)
    n, fin, fout = rng.integers(1, 6), rng.integers(1, 9), rng.integers(1, 9)
    layer = layers.Dense(fin, fout)
    layer.params["b"] = rng.standard_normal(fout).astype(np.float32)
    x = rng.standard_normal((n, fin))
    crosscheck(layer, x, lambda xt, W, b: F.linear(xt, W, b),
               [("W", lambda a: a.T, lambda g: g.T), ("b", SAME, SAME)], seed=seed)


# ----------------------------------------------------------------------------------- pooling, upsampling

def tie_free(rng, shape):
    """Distinct values (max pooling's gradient is undefined at ties)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.standard_normal(shape) * 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_max_pool2d(seed):
    rng = rng_for(seed, 5)
    k = int(rng.integers(1, 4))
    stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, k // 2 + 1))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(k, 9)), int(rng.integers(k, 9)))
    crosscheck(layers.MaxPool2D(k, stride=stride, padding=pad), tie_free(rng, shape),
               lambda xt: F.max_pool2d(xt, k, stride=stride, padding=pad), seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_avg_pool2d(seed):
    rng = rng_for(seed, 6)
    k = int(rng.integers(1, 4))
    stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, k // 2 + 1))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(k, 9)), int(rng.integers(k, 9)))
    crosscheck(layers.AvgPool2D(k, stride=stride, padding=pad), rng.standard_normal(shape),
               lambda xt: F.avg_pool2d(xt, k, stride=stride, padding=pad, count_include_pad=True), seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_upsample2d(seed):
    rng = rng_for(seed, 7)
    s = int(rng.integers(1, 4))
    x = rng.standard_normal((2, 3, int(rng.integers(1, 6)), int(rng.integers(1, 6))))
    crosscheck(layers.Upsample2D(s), x, lambda xt: F.interpolate(xt, scale_factor=s, mode="nearest"), seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_bilinear_upsample2d(seed):
    rng = rng_for(seed, 17)
    s = int(rng.integers(1, 5))
    x = rng.standard_normal((2, 3, int(rng.integers(1, 6)), int(rng.integers(1, 6))))
    crosscheck(layers.BilinearUpsample2D(s), x,
               lambda xt: F.interpolate(xt, scale_factor=s, mode="bilinear", align_corners=False), seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_warp(seed):
    """`Warp` is `grid_sample` (bilinear, border padding, align_corners=True) with the grid made of the pixel
    coordinates plus the displacements, scaled to [-1, 1]."""
    rng = rng_for(seed, 18)
    n, c, h, w = 2, int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(2, 7))
    disp = rng.normal(0, 1.5, (n, 2, h, w))
    disp = np.where(np.abs(disp - np.round(disp)) < 0.01, disp + 0.3, disp)
    x = np.concatenate([rng.standard_normal((n, c, h, w)), disp], axis=1)

    def torch_warp(xt):
        rows = torch.arange(h, dtype=xt.dtype)[:, None] + xt[:, -2]
        cols = torch.arange(w, dtype=xt.dtype)[None, :] + xt[:, -1]
        grid = torch.stack([cols / (w - 1) * 2 - 1, rows / (h - 1) * 2 - 1], dim=-1)
        return F.grid_sample(xt[:, :-2], grid, mode="bilinear", padding_mode="border", align_corners=True)

    crosscheck(layers.Warp(), x, torch_warp, seed=seed)


# ----------------------------------------------------------------------------------- batch normalisation

BN_PARAMS = [("gamma", SAME, SAME), ("beta", SAME, SAME)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm(seed, kind, training):
    rng = rng_for(seed, 8)
    c = int(rng.integers(1, 5))
    shape = (int(rng.integers(2, 6)), c) + ((int(rng.integers(1, 4)), int(rng.integers(1, 4))) if kind == "2d" else ())
    layer = (layers.BatchNorm1D if kind == "1d" else layers.BatchNorm2D)(c, eps=1e-5, momentum=0.1)
    layer.params["gamma"] = rng.uniform(0.5, 1.5, c)
    layer.params["beta"] = rng.standard_normal(c)
    mean0, var0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    layer.buffers["running_mean"], layer.buffers["running_var"] = mean0.copy(), var0.copy()
    x = rng.standard_normal(shape) * 2 + 1
    running_mean, running_var = torch.tensor(mean0), torch.tensor(var0)
    crosscheck(layer, x, lambda xt, g, b: F.batch_norm(xt, running_mean, running_var, g, b, training=training,
                                                       momentum=0.1, eps=1e-5), BN_PARAMS, training=training, seed=seed)
    # the running statistics move the same way (PyTorch also uses the unbiased batch variance)
    np.testing.assert_allclose(host(layer.buffers["running_mean"]), running_mean.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(host(layer.buffers["running_var"]), running_var.numpy(), rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------------- element-wise and shape

ELEMENTWISE = [
    ("ReLU", lambda: layers.ReLU(), F.relu),
    ("LeakyReLU 0.2", lambda: layers.LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)),
    ("LeakyReLU 0.01", lambda: layers.LeakyReLU(0.01), lambda t: F.leaky_relu(t, 0.01)),
    ("Sigmoid", lambda: layers.Sigmoid(), torch.sigmoid),
    ("Tanh", lambda: layers.Tanh(), torch.tanh),
    ("Flatten", lambda: layers.Flatten(), lambda t: torch.flatten(t, 1)),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name,make,torch_fn", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_and_flatten(seed, name, make, torch_fn):
    rng = rng_for(seed, 9)
    x = rng.standard_normal((int(rng.integers(1, 4)), 3, int(rng.integers(1, 5)), int(rng.integers(1, 5)))) * 3
    x[np.abs(x) < 1e-3] = 0.5            # ReLU's derivative at exactly 0 is a convention
    crosscheck(make(), x, torch_fn, seed=seed)


def test_sigmoid_far_from_zero_matches():
    x = np.array([[-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0]])
    crosscheck(layers.Sigmoid(), x, torch.sigmoid)


@pytest.mark.parametrize("seed", SEEDS)
def test_reshape(seed):
    rng = rng_for(seed, 10)
    x = rng.standard_normal((3, 4, 2, 3))
    crosscheck(layers.Reshape((6, 4)), x, lambda t: t.reshape(3, 6, 4), seed=seed)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_with_p_zero_is_identity_like_torch(training):
    x = rng_for(0, 11).standard_normal((4, 5))
    crosscheck(layers.Dropout(0.0), x, lambda t: F.dropout(t, 0.0, training=training), training=training)


@pytest.mark.parametrize("seed", SEEDS)
def test_dropout_with_a_shared_mask(seed):
    """PyTorch draws its own mask, so the mask nn drew is given to it: y = x·m/(1 - p), dx = dy·m/(1 - p)."""
    rng = rng_for(seed, 12)
    p = 0.4
    x = rng.uniform(0.5, 1.5, (6, 7))                     # non-zero, so y = 0 exactly where the mask is 0
    layer = layers.Dropout(p)
    backend.seed(seed)
    mask = host(layer.forward(x, training=True)) != 0
    assert 0 < mask.mean() < 1
    backend.seed(seed)                                    # the same mask again inside crosscheck
    crosscheck(layer, x, lambda t: t * torch.tensor(mask, dtype=torch.float64) / (1 - p), seed=seed)


# ----------------------------------------------------------------------------------- losses

def loss_crosscheck(loss, z, torch_loss, *targets):
    value = loss.forward(z, *targets)
    grad = loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    out = torch_loss(zt)
    out.backward()
    assert abs(value - out.item()) <= 1e-12 * max(1.0, abs(out.item()))
    close(grad, zt.grad, "loss gradient")


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_cross_entropy(seed):
    rng = rng_for(seed, 13)
    n, k = int(rng.integers(1, 9)), int(rng.integers(2, 11))
    z, y = rng.standard_normal((n, k)) * 4, rng.integers(0, k, n)
    loss_crosscheck(losses.SoftmaxCrossEntropy(), z, lambda t: F.cross_entropy(t, torch.tensor(y)), y)


@pytest.mark.parametrize("seed", SEEDS)
def test_bce_on_probabilities(seed):
    rng = rng_for(seed, 14)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 4)))
    p, t = rng.uniform(0.01, 0.99, shape), rng.integers(0, 2, shape).astype(np.float64)
    loss_crosscheck(losses.BCE(), p, lambda pt: F.binary_cross_entropy(pt, torch.tensor(t)), t)


@pytest.mark.parametrize("seed", SEEDS)
def test_bce_with_logits(seed):
    rng = rng_for(seed, 15)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 4)))
    z, t = rng.standard_normal(shape) * 5, rng.uniform(0, 1, shape)        # soft targets too
    loss_crosscheck(losses.BCEWithLogits(), z, lambda zt: F.binary_cross_entropy_with_logits(zt, torch.tensor(t)), t)


@pytest.mark.parametrize("seed", SEEDS)
def test_paper_discriminator_loss(seed):
    """D = |X1 - X| averaged: PyTorch's L1 loss."""
    rng = rng_for(seed, 16)
    shape = (int(rng.integers(1, 9)), 1)
    X, X1 = rng.uniform(0.01, 0.99, shape), rng.integers(0, 2, shape).astype(np.float64)
    loss_crosscheck(losses.PaperDiscriminatorLoss(), X, lambda Xt: F.l1_loss(Xt, torch.tensor(X1)), X1)


@pytest.mark.parametrize("seed", SEEDS)
def test_paper_generator_loss(seed):
    """G = 1 - D with D = mean|1 - X| on generated images."""
    rng = rng_for(seed, 17)
    X = rng.uniform(0.01, 0.99, (int(rng.integers(1, 9)), 1))
    loss_crosscheck(losses.PaperGeneratorLoss(), X, lambda Xt: 1 - (1 - Xt).abs().mean())


# ----------------------------------------------------------------------------------- optimizers

def run_optimizers(make_ours, make_theirs, seed, steps=5):
    """Both optimizers on identical parameters, minimising the same quadratic 0.5·|A p - c|²; the
    parameters must agree after every step."""
    rng = rng_for(seed, 18)
    fin, fout = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    model = Sequential(layers.Dense(fin, fout)).astype(np.float64)
    dense = model.layers[0]
    dense.params["W"], dense.params["b"] = rng.standard_normal((fin, fout)), rng.standard_normal(fout)
    targets = {k: rng.standard_normal(v.shape) for k, v in dense.params.items()}
    scale = {k: rng.uniform(0.5, 2, v.shape) for k, v in dense.params.items()}
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in dense.params.items()}
    ours, their_opt = make_ours(model), make_theirs(list(theirs.values()))
    for _ in range(steps):
        for k, p in dense.params.items():                       # gradient of 0.5·sum(scale·(p - target)²)
            dense.grads[k] = scale[k] * (p - targets[k])
        ours.step()
        their_opt.zero_grad()
        sum(0.5 * (torch.tensor(scale[k]) * (t - torch.tensor(targets[k])) ** 2).sum() for k, t in theirs.items()).backward()
        their_opt.step()
        for k, t in theirs.items():
            close(dense.params[k], t, f"parameter {k} after step {ours.t}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.9, 5e-4), (0.0, 0.0), (0.5, 0.1)])
def test_sgd_momentum(seed, momentum, weight_decay):
    lr = 0.05
    run_optimizers(lambda m: optim.SGD(m, lr=lr, momentum=momentum, weight_decay=weight_decay),
                   lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay), seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("betas,weight_decay", [((0.9, 0.999), 0.0), ((0.5, 0.999), 0.0), ((0.9, 0.99), 1e-2)])
def test_adam(seed, betas, weight_decay):
    lr = 0.01
    run_optimizers(lambda m: optim.Adam(m, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay),
                   lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay), seed)
