"""GPU kernels that do in one launch what nn's plain array code does in several: speed machinery, CuPy only.

On a GPU every CuPy call is at least one kernel launch, and each launch costs the host 8-16 µs, often
more than the work. The plain code a student reads (im2col's loop over the kernel's taps, Adam's dozen
array operations) therefore leaves the GPU idle between tiny kernels. Each kernel here does the same
work as one plain function in a single launch:

    kernel                  stands for                                  launches: plain -> fused
    im2col                  nn.layers.conv.im2col                       kh·kw copies (+ zero fill, pad copy) -> 1
    col2im                  nn.layers.conv.col2im                       kh·kw strided adds + zero fill -> 1
    max_pool                nn.layers.pool.max_pool_windows             about 5 per window offset -> 1
    max_pool_backward       nn.layers.pool.max_pool_scatter             3 per window offset + zero fill -> 1
    batchnorm_scale_shift   nn.layers.norm.scale_and_shift              3 -> 1
    batchnorm_input_grad    nn.layers.norm.normalized_input_grad        5 -> 1
    batchnorm_running       nn.layers.norm.running_statistics           9 -> 1
    sgd, adam               nn.optim.SGD.update / Adam.update           up to 6 / 13 per parameter -> 1 per step
                                                                        (with nn/optim_flat.py's flat buffers)
    average                 nn.optim.ema_update                         3 per array -> 1 per step (the same)

Each kernel's CUDA body is written next to the Python line it stands for (in comments), and the NumPy
backend always runs the plain code. A kernel is used only after it has checked itself, once per process,
against its plain function on a small input (`ready`): a kernel that fails to compile or disagrees is
switched off with one warning and the plain code runs, so a broken kernel costs speed, never results.
tests/test_fused.py compiles the same bodies as C++ and compares them with the plain code on the CPU (and,
where CuPy imports, compiles them as CuPy generates them); tests/test_cupy_parity.py asserts on a GPU that
every kernel is on and agrees. NN_FUSED=0 switches them all off.
"""
import os
import types
import warnings

import numpy as np

from nn import backend

ENABLED = os.environ.get("NN_FUSED", "1").strip() != "0"

_state = {}       # kernel name -> True (checked, in use) or False (off: failed its check, or being checked)
_kernels = {}     # kernel name -> compiled cupy.ElementwiseKernel


def ready(name, plain, *arrays):
    """True where the fused kernel `name` should run instead of `plain`: on CuPy, for float32 `arrays` (the
    call's inputs; the kernels are checked in float32, and other dtypes are for gradient checks, not
    speed), after it has passed its one check against `plain` (the plain function itself, or, for the
    optimizers, the `update` method)."""
    if backend.name != "cupy" or not ENABLED or any(a.dtype != np.float32 for a in arrays):
        return False
    if name not in _state:
        _state[name] = False                      # while checking, the plain function runs its own code
        try:
            problem = _CHECKS[name](plain)
        except Exception as exc:                  # e.g. a compile error of the CUDA source
            problem = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if problem:
            warnings.warn(f"nn.fused: the {name} kernel is off ({problem}); the plain code runs instead",
                          RuntimeWarning, stacklevel=2)
        _state[name] = not problem
    return _state[name]


def status():
    """{kernel name: True (in use) / False (off)} for the kernels checked so far in this process."""
    return dict(_state)


def _kernel(name):
    if name not in _kernels:
        import cupy
        in_params, out_params, body = _SOURCES[name]
        _kernels[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"nn_fused_{name}")
    return _kernels[name]


# ----------------------------------------------------------------------------- CUDA sources
# `i` is the element's index (CuPy's name): its C-order index in the outputs' shape, which each body decodes
# into (n, c, h, w) or the like. Raw arrays are indexed by hand: the 4-D input of im2col by
# {n, c, h, w} through its own strides (a non-contiguous view needs no copy), col2im's columns as one
# flat, contiguous array.

def _unravel(names, sizes):
    """CUDA lines splitting the element index i into coordinates in C order: names from slowest to fastest
    ("n", "c", "h", "w") and the sizes of all but the slowest ("C", "H", "W")."""
    lines = ["ptrdiff_t r = i;"]
    for name, size in zip(reversed(names[1:]), reversed(sizes)):
        lines.append(f"const int {name} = r % {size}; r /= {size};")
    lines.append(f"const int {names[0]} = r;")
    return "\n        ".join(lines)


_SOURCES = {
    "im2col": (
        "raw T x, int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 PH, int32 PW, int32 OH, int32 OW", "T cols",
        """
        // cols[c, ki, kj, n, oh, ow] = x[n, c, oh·sh + ki − ph, ow·sw + kj − pw], 0 in the padding
        """ + _unravel(("c", "ki", "kj", "n", "oh", "ow"), ("KH", "KW", "N", "OH", "OW")) + """
        const int h = oh * SH + ki - PH, w = ow * SW + kj - PW;
        if (h >= 0 && h < H && w >= 0 && w < W) {
            ptrdiff_t at[] = {n, c, h, w};
            cols = x[at];
        } else {
            cols = 0;
        }
        """),
    "col2im": (
        "raw T cols, int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 PH, int32 PW, int32 OH, int32 OW", "T dx",
        """
        // dx[n, c, h, w] = Σ over the taps (ki, kj) whose window covers (h, w) of cols[c, ki, kj, n, oh, ow],
        // oh = (h + ph − ki)/sh, ow = (w + pw − kj)/sw (whole numbers in range) — summed in the plain
        // loop's order (ki, then kj), so the result is the plain col2im's to the last bit
        """ + _unravel(("n", "c", "h", "w"), ("C", "H", "W")) + """
        T sum = 0;
        for (int ki = 0; ki < KH; ++ki) {
            const int hh = h + PH - ki;
            if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int ww = w + PW - kj;
                if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
                sum += cols[((((ptrdiff_t)c * KH + ki) * KW + kj) * N + n) * OH * OW
                            + (ptrdiff_t)(hh / SH) * OW + ww / SW];
            }
        }
        dx = sum;
        """),
    "max_pool": (
        "raw T x, int32 C, int32 OH, int32 OW, int32 KH, int32 KW, int32 SH, int32 SW", "T y, uint8 winner",
        """
        // y[n, c, oh, ow] = the largest x[n, c, oh·sh + k / kw, ow·sw + k % kw] over the window's offsets k,
        // winner = that k, the first on ties (the plain loop replaces only where v > y)
        """ + _unravel(("n", "c", "oh", "ow"), ("C", "OH", "OW")) + """
        ptrdiff_t at[] = {n, c, oh * SH, ow * SW};
        T best = x[at];
        int best_k = 0;
        for (int k = 1; k < KH * KW; ++k) {
            ptrdiff_t at_k[] = {n, c, oh * SH + k / KW, ow * SW + k % KW};
            const T v = x[at_k];
            if (v > best) { best = v; best_k = k; }
            else if (v != v) { best = v; break; }    // NaN: the plain maximum keeps it, and the winner so far
        }
        y = best;
        winner = best_k;
        """),
    "max_pool_backward": (
        "raw T dy, raw uint8 winner, int32 C, int32 H, int32 W, int32 OH, int32 OW, int32 KH, int32 KW, "
        "int32 SH, int32 SW", "T dx",
        """
        // dx[n, c, h, w] = Σ over the offsets k = ki·kw + kj (in the plain loop's order) of dy[n, c, oh, ow] for
        // the window (oh, ow) = ((h − ki)/sh, (w − kj)/sw) that holds (h, w) at offset k, if k is its winner
        """ + _unravel(("n", "c", "h", "w"), ("C", "H", "W")) + """
        T sum = 0;
        for (int ki = 0; ki < KH; ++ki) {
            const int hh = h - ki;
            if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int ww = w - kj;
                if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
                ptrdiff_t at[] = {n, c, hh / SH, ww / SW};
                if (winner[at] == ki * KW + kj) sum += dy[at];
            }
        }
        dx = sum;
        """),
    "batchnorm_scale_shift": (
        "T xc, T inv_std, T gamma, T beta", "T x_hat, T y",
        """
        x_hat = xc * inv_std;           // x_hat = xc * inv_std
        y = x_hat * gamma + beta;       // y = x_hat * gamma + beta
        """),
    "batchnorm_input_grad": (
        "T dy, T x_hat, T scale, T dbeta_over_m, T dgamma, T count", "T dx",
        """
        dx = scale * (dy - dbeta_over_m - x_hat * dgamma / count);   // ... - x_hat * dgamma / m  (m values per channel)
        """),
    "batchnorm_running": (
        "T running_mean, T running_var, T mu, T var, T r, T one_minus_r, T unbias", "T new_mean, T new_var",
        """
        new_mean = one_minus_r * running_mean + r * mu;             // (1 - r) * running_mean + r * mu
        new_var = one_minus_r * running_var + r * (var * unbias);   // unbiased = var * (m / (m - 1)); ...
        """),
    "sgd": (
        "T g, T lr, T momentum, T weight_decay", "T p, T v",
        """
        T grad = g + weight_decay * p;      // g = g + self.weight_decay * p
        v = momentum * v + grad;            // v *= self.momentum; v += g
        p = p - lr * v;                     // p -= self.lr * g   (g = v)
        """),
    "sgd_no_momentum": (
        "T g, T lr, T weight_decay", "T p",
        """
        p = p - lr * (g + weight_decay * p);   // g = g + self.weight_decay * p;  p -= self.lr * g
        """),
    "adam": (
        "T g, T step_size, T beta1, T beta2, T one_minus_beta1, T one_minus_beta2, T c2, T eps, T weight_decay",
        "T p, T m, T v",
        """
        T grad = g + weight_decay * p;                       // g = g + self.weight_decay * p
        m = beta1 * m + one_minus_beta1 * grad;              // m *= β1;  m += (1 - β1) * g
        v = beta2 * v + one_minus_beta2 * (grad * grad);     // v *= β2;  v += (1 - β2) * (g * g)
        p = p - step_size * m / (sqrt(v / c2) + eps);        // p -= (lr / c1) * m / (sqrt(v / c2) + eps)
        """),
    "average": (
        "T theta, T decay, T one_minus_decay", "T average",
        """
        average = decay * average + one_minus_decay * theta;  // θ_avg *= decay;  θ_avg += (1 - decay) * θ
        """),
}


# ----------------------------------------------------------------------------- the calls

def _out_size(size, kernel, stride, padding=0):
    """nn.layers.conv.conv_output_size (not imported: that module imports this one)."""
    return (size + 2 * padding - kernel) // stride + 1


def _geometry(x_shape, kernel_size, stride, padding, out_hw):
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    N, C, H, W = x_shape
    return [np.int32(v) for v in (N, C, H, W, kh, kw, sh, sw, ph, pw, *out_hw)]


def im2col(x, kernel_size, stride, padding):
    """nn.layers.conv.im2col in one kernel: (N, C, H, W) -> cols (C, kh, kw, N, OH, OW)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    N, C, H, W = x.shape
    OH, OW = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    cols = backend.xp.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    _kernel("im2col")(x, *_geometry(x.shape, kernel_size, stride, padding, (OH, OW)), cols)
    return cols


def col2im(cols, x_shape, stride, padding):
    """nn.layers.conv.col2im in one kernel: cols (C, kh, kw, N, OH, OW) -> dx (N, C, H, W)."""
    xp = backend.xp
    C, kh, kw, _, OH, OW = cols.shape
    dx = xp.empty(tuple(x_shape), dtype=cols.dtype)
    _kernel("col2im")(xp.ascontiguousarray(cols).reshape(-1), *_geometry(x_shape, (kh, kw), stride, padding, (OH, OW)), dx)
    return dx


def max_pool(x_pad, kernel_size, stride, out_hw):
    """nn.layers.pool.max_pool_windows in one kernel: (y, winner) for the padded input (N, C, H, W)."""
    xp = backend.xp
    N, C = x_pad.shape[:2]
    (kh, kw), (sh, sw), (OH, OW) = kernel_size, stride, out_hw
    y = xp.empty((N, C, OH, OW), dtype=x_pad.dtype)
    winner = xp.empty((N, C, OH, OW), dtype=np.uint8)
    _kernel("max_pool")(x_pad, *[np.int32(v) for v in (C, OH, OW, kh, kw, sh, sw)], y, winner)
    return y, winner


def max_pool_backward(dy, winner, pad_shape, kernel_size, stride):
    """nn.layers.pool.max_pool_scatter in one kernel: dx of the padded input's shape."""
    N, C, H, W = pad_shape
    (kh, kw), (sh, sw) = kernel_size, stride
    dx = backend.xp.empty(tuple(pad_shape), dtype=dy.dtype)
    _kernel("max_pool_backward")(dy, winner, *[np.int32(v) for v in (C, H, W, *dy.shape[2:], kh, kw, sh, sw)], dx)
    return dx


def batchnorm_scale_shift(xc, inv_std, gamma, beta):
    """nn.layers.norm.scale_and_shift in one kernel: (x̂, y)."""
    xp = backend.xp
    x_hat, y = xp.empty(xc.shape, dtype=xc.dtype), xp.empty(xc.shape, dtype=xc.dtype)
    _kernel("batchnorm_scale_shift")(xc, inv_std, gamma, beta, x_hat, y)
    return x_hat, y


def batchnorm_input_grad(dy, x_hat, scale, dbeta_over_m, dgamma, m):
    """nn.layers.norm.normalized_input_grad in one kernel: dx."""
    dx = backend.xp.empty(dy.shape, dtype=dy.dtype)
    _kernel("batchnorm_input_grad")(dy, x_hat, scale, dbeta_over_m, dgamma, dy.dtype.type(m), dx)
    return dx


def batchnorm_running(running_mean, running_var, mu, var, r, m):
    """nn.layers.norm.running_statistics in one kernel: the new (running_mean, running_var)."""
    xp = backend.xp
    s = mu.dtype.type
    new_mean, new_var = xp.empty(mu.shape, dtype=mu.dtype), xp.empty(mu.shape, dtype=mu.dtype)
    _kernel("batchnorm_running")(running_mean, running_var, mu, var, s(r), s(1 - r), s(m / (m - 1)), new_mean, new_var)
    return new_mean, new_var


def sgd(opt, p, g, v=None):
    """nn.optim.SGD.update over flat buffers, in one kernel."""
    s = p.dtype.type
    if v is None:
        _kernel("sgd_no_momentum")(g, s(opt.lr), s(opt.weight_decay), p)
    else:
        _kernel("sgd")(g, s(opt.lr), s(opt.momentum), s(opt.weight_decay), p, v)


def adam(opt, p, g, m, v):
    """nn.optim.Adam.update over flat buffers, in one kernel."""
    s = p.dtype.type
    c1, c2 = 1 - opt.beta1 ** opt.t, 1 - opt.beta2 ** opt.t
    _kernel("adam")(g, s(opt.lr / c1), s(opt.beta1), s(opt.beta2), s(1 - opt.beta1), s(1 - opt.beta2),
                    s(c2), s(opt.eps), s(opt.weight_decay), p, m, v)


def average(flat_average, theta, decay):
    """θ_avg ← decay·θ_avg + (1 − decay)·θ over one flat buffer, in one kernel."""
    s = flat_average.dtype.type
    _kernel("average")(theta, s(decay), s(1 - decay), flat_average)


# ----------------------------------------------------------------------------- the checks
# Each returns None when the kernel agrees with the plain code on a small, awkward input (padding,
# strides, a non-contiguous view), else what went wrong.

def _compare(fused_out, plain_out, rtol):
    for a, b in zip(fused_out, plain_out):
        a, b = backend.to_host(a), backend.to_host(b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=rtol * 1e-2):
            return f"disagrees with the plain code (max difference {np.max(np.abs(a - b)) if a.shape == b.shape else a.shape})"
    return None


def _random(shape, seed=0):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _check_im2col(plain):
    x = _random((3, 2, 9, 7)).transpose(1, 0, 2, 3)                 # a non-contiguous (N, C, H, W) view
    cases = [((3, 3), (1, 1), (1, 1)), ((4, 3), (2, 1), (1, 0)), ((3, 3), (2, 2), (0, 2))]
    for k, s, p in cases:
        problem = _compare([im2col(x, k, s, p)], [plain(x, k, s, p)], 0)
        if problem:
            return problem
    return None


def _check_col2im(plain):
    for (kh, kw), s, p, (N, C, H, W) in [((3, 3), (1, 1), (1, 1), (2, 3, 6, 5)), ((4, 4), (2, 2), (1, 1), (2, 3, 8, 6)),
                                         ((3, 2), (2, 1), (0, 1), (1, 2, 7, 5))]:
        OH, OW = _out_size(H, kh, s[0], p[0]), _out_size(W, kw, s[1], p[1])
        cols = _random((C, kh, kw, N, OH, OW), seed=1)
        problem = _compare([col2im(cols, (N, C, H, W), s, p)], [plain(cols, (N, C, H, W), s, p)], 1e-6)
        if problem:
            return problem
    return None


def _check_max_pool(plain):
    for (N, C, H, W), k, st in [((2, 3, 8, 6), (2, 2), (2, 2)), ((2, 2, 7, 7), (3, 3), (2, 2)), ((1, 2, 6, 5), (3, 2), (1, 1))]:
        x = _random((C, N, H, W), seed=3).transpose(1, 0, 2, 3)
        x[:, :, 1, 1] = x[:, :, 1, 2]                                   # ties: the first offset must win
        out_hw = (_out_size(H, k[0], st[0]), _out_size(W, k[1], st[1]))
        problem = _compare(max_pool(x, k, st, out_hw), plain(x, k, st, out_hw), 0)
        if problem:
            return problem
    return None


def _check_max_pool_backward(plain):
    for (N, C, H, W), (kh, kw), (sh, sw) in [((2, 3, 8, 6), (2, 2), (2, 2)), ((2, 2, 7, 7), (3, 3), (2, 2)),
                                             ((1, 2, 6, 5), (3, 2), (1, 1))]:
        OH, OW = _out_size(H, kh, sh), _out_size(W, kw, sw)
        dy = _random((N, C, OH, OW), seed=4)
        winner = backend.asarray(np.random.default_rng(5).integers(0, kh * kw, (N, C, OH, OW)).astype(np.uint8))
        problem = _compare([max_pool_backward(dy, winner, (N, C, H, W), (kh, kw), (sh, sw))],
                           [plain(dy, winner, (N, C, H, W), (kh, kw), (sh, sw))], 0)
        if problem:
            return problem
    return None


def _check_batchnorm(fused_fn, make_args):
    def check(plain):
        args = make_args()
        out_f, out_p = fused_fn(*args), plain(*args)
        out_f, out_p = (out_f, out_p) if isinstance(out_f, tuple) else ((out_f,), (out_p,))
        return _compare(out_f, out_p, 1e-6)
    return check


def _bn_args_scale_shift():
    c = (1, 3, 1, 1)
    return _random((4, 3, 5, 5), 6), abs(_random(c, 7)) + 0.5, _random(c, 8), _random(c, 9)


def _bn_args_input_grad():
    c = (1, 3, 1, 1)
    return _random((4, 3, 5, 5), 6), _random((4, 3, 5, 5), 7), _random(c, 8), _random(c, 9), _random(c, 10), 100


def _bn_args_running():
    return _random(6, 1), abs(_random(6, 2)), _random(6, 3), abs(_random(6, 4)), 0.1, 50


def _check_update(fused_update, settings, n_state):
    def check(plain):
        opt = types.SimpleNamespace(**settings)
        runs = []
        for fn in (fused_update, plain):
            arrays = [_random(1000, seed) for seed in range(2)] + [abs(_random(1000, 5 + k)) for k in range(n_state)]
            fn(opt, *arrays)
            runs.append([arrays[0]] + arrays[2:])
        return _compare(runs[0], runs[1], 1e-5)
    return check


def _check_average(plain):
    runs = []
    for fn in (average, plain):
        avg, theta = _random(1000, 0), _random(1000, 1)
        fn(avg, theta, 0.9)
        runs.append([avg])
    return _compare(runs[0], runs[1], 1e-6)


_CHECKS = {
    "im2col": _check_im2col,
    "col2im": _check_col2im,
    "max_pool": _check_max_pool,
    "max_pool_backward": _check_max_pool_backward,
    "batchnorm_scale_shift": _check_batchnorm(batchnorm_scale_shift, _bn_args_scale_shift),
    "batchnorm_input_grad": _check_batchnorm(batchnorm_input_grad, _bn_args_input_grad),
    "batchnorm_running": _check_batchnorm(batchnorm_running, _bn_args_running),
    "sgd": _check_update(sgd, dict(lr=0.05, momentum=0.9, weight_decay=1e-3, t=3), 1),
    "sgd_no_momentum": _check_update(sgd, dict(lr=0.05, momentum=0.0, weight_decay=1e-3, t=3), 0),
    "adam": _check_update(adam, dict(lr=1e-2, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=1e-3, t=3), 2),
    "average": _check_average,
}
