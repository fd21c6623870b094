"""Numerical gradient checking, in float64, by central differences.

For a layer y = f(x; θ) and a random upstream gradient g (same shape as y), backpropagation
must compute the vector–Jacobian products  dx = gᵀ ∂y/∂x  and  dθ = gᵀ ∂y/∂θ.  Numerically,
with the scalar  s(x, θ) = sum(g · f(x; θ)),

    ∂s/∂x_k ≈ ( s(x + h·e_k) - s(x - h·e_k) ) / (2h)

for each checked element k. A random g (not all ones) keeps errors from cancelling.
The error reported is max|analytic - numeric| / max(|analytic| + |numeric|)  (≈1e-7 when right).

In a REPL:
    >>> from nn import layers, gradcheck
    >>> import numpy as np
    >>> gradcheck(layers.Conv2D(3, 4, 3, padding=1), np.random.randn(2, 3, 5, 5))
    3.1e-10
"""
import numpy as np

from nn import backend


def _relative_error(a, b):
    a, b = backend.to_numpy(a).ravel(), backend.to_numpy(b).ravel()
    denom = np.max(np.abs(a) + np.abs(b))
    return 0.0 if denom == 0 else float(np.max(np.abs(a - b)) / denom)


def _numeric_gradient(scalar_fn, array, indices, h):
    """Central differences of scalar_fn() with respect to array.flat[indices], changing array in place."""
    flat = array.reshape(-1)  # a view: array must be contiguous
    grad = np.zeros(len(indices))
    for n, k in enumerate(indices):
        old = float(flat[k])
        flat[k] = old + h
        plus = scalar_fn()
        flat[k] = old - h
        minus = scalar_fn()
        flat[k] = old
        grad[n] = (plus - minus) / (2 * h)
    return grad


def _pick(size, max_checks, rng):
    return np.arange(size) if size <= max_checks else rng.choice(size, max_checks, replace=False)


def gradcheck(layer, x, training=True, h=1e-6, max_checks=200, seed=0, verbose=False):
    """Check `layer.backward` (input gradient and every parameter gradient) against central differences.

    The layer's parameters are converted to float64 in place (it is a test tool); x is copied to float64.
    Dropout-style randomness is made repeatable by reseeding the backend before every forward pass.
    Returns the worst relative error over the input and all parameters; `verbose` prints each one.
    """
    xp = backend.xp
    rng = np.random.default_rng((seed, 7919))  # a stream of its own: never equal to a caller's default_rng(seed) input
    layer.astype(np.float64)
    x = xp.ascontiguousarray(backend.asarray(x, dtype=np.float64))

    def run(inp):
        backend.seed(seed)
        return layer.forward(inp, training)

    y = run(x)
    g = backend.asarray(rng.standard_normal(y.shape))
    dx = layer.backward(g)
    analytic = {"x": dx}
    analytic.update({k: v.copy() for k, v in layer.grads.items()})

    def scalar():
        return float((run(x) * g).sum())

    errors = {}
    targets = {"x": x}
    for k in layer.params:
        layer.params[k] = xp.ascontiguousarray(layer.params[k])
        targets[k] = layer.params[k]
    for name, array in targets.items():
        idx = _pick(array.size, max_checks, rng)
        numeric = _numeric_gradient(scalar, array, idx, h)
        errors[name] = _relative_error(backend.to_numpy(analytic[name]).ravel()[idx], numeric)
        if verbose:
            print(f"{type(layer).__name__:>16} d{name:<6} relative error {errors[name]:.2e}")
    return max(errors.values())


def gradcheck_loss(loss, inputs, *targets, h=1e-6, max_checks=200, seed=0):
    """Check `loss.backward()` against central differences of `loss.forward(inputs, *targets)`
    with respect to `inputs` (float64). Returns the relative error."""
    xp = backend.xp
    rng = np.random.default_rng((seed, 7919))
    x = xp.ascontiguousarray(backend.asarray(inputs, dtype=np.float64))
    loss.forward(x, *targets)
    analytic = backend.to_numpy(loss.backward()).ravel()
    idx = _pick(x.size, max_checks, rng)
    numeric = _numeric_gradient(lambda: loss.forward(x, *targets), x, idx, h)
    return _relative_error(analytic[idx], numeric)
