"""Nearest 2× upsampling followed by a 3×3 convolution, computed on the small image: the generator's
"deconvolution" without the upsampled copy and with a quarter of the multiplications.

`Upsample2D(2)` followed by `Conv2D(C, O, 3, padding=1, method="auto")` in a `Sequential` runs as this
pair on the NumPy backend (nn/data_parallel.py sets it up: the Upsample2D's replica passes its input
through, the Conv2D's replica is an `UpsampleConv`). The outputs and gradients are those of the two
plain layers, to float rounding (tests/test_upconv.py checks them against each other and in float64
against central differences). The layers' parameters, their names and saved models are unchanged.

The maths, along one axis first. With u[Y] = x[Y // 2] (Y = 0 .. 2H-1) the upsampled input and a
3-tap kernel w (zero padding 1), the output y[Y] = Σ_i w[i] · u[Y + i - 1]. Every low-resolution pixel
feeds two neighbouring outputs through the same tap, so multiply once on the small image,
Z_i[h] = w[i] · x[h], and add shifted copies. For the two phases Y = 2h and Y = 2h + 1:

    y[2h]     = Z_1[h] + Z_2[h] + Z_0[h - 1]        (the last term only for h >= 1)
    y[2h + 1] = Z_0[h] + Z_1[h] + Z_2[h + 1]        (the last term only for h + 1 < H)

In 2-D this runs along the rows, then along the columns. For images and channels,

    Z[i, j][o, n, h, w] = Σ_c W[o, c, i, j] · x[n, c, h, w]     one product (9·O, C) @ (C, N·H·W)

and y's four phases y[:, :, a::2, b::2] are the rule above applied to Z along h (phase a), then along
w (phase b). The bias is added to Z[1, 1] (the centre tap reaches every output exactly once).
Multiplications: 9·O·C per *small* pixel, against 9·O·C per *large* pixel for the plain pair (4×
fewer), and no 4×-sized copy of the input.

Backward is every step's adjoint, in reverse order:
    dZ = the adjoint of the phase sums applied to dy (columns, then rows),
    dW[o, c, i, j] = Σ_{n,h,w} dZ[i, j][o, n, h, w] · x[n, c, h, w]     (9·O, N·H·W) @ (N·H·W, C)
    dx = Σ_{i,j} W[:, :, i, j]ᵀ dZ[i, j]                              (C, 9·O) @ (9·O, N·H·W)
    db = Σ dy.

Everything uses `backend.xp`, in the input's dtype. x and dx are (C, N, H, W) memory seen as NCHW, the
layout the convolutions here read and write.
"""
from nn import backend
from nn.layers.base import Layer
from nn.layers.conv import Conv2D
from nn.layers.pool import Upsample2D


def fuses(up, conv):
    """True where the pair (up, conv) runs as an `UpsampleConv`: an Upsample2D by 2, then a Conv2D with a
    3×3 kernel, stride 1, padding 1 that asked for the fast path (method="auto"), on NumPy."""
    return (backend.name == "numpy" and type(up) is Upsample2D and up.scale == 2
            and type(conv) is Conv2D and conv.method == "auto" and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.padding == (1, 1))


# --- the phase sums along one axis ----------------------------------------------------------------

def _cut(axis, start, stop):
    """An index that slices `axis` (negative: counted from the end) as start:stop."""
    return (Ellipsis, slice(start, stop)) + (slice(None),) * (-1 - axis)


def _phase_sums(z, out, axis):
    """out[0] = z[1] + z[2] + z[0] one step later, out[1] = z[0] + z[1] + z[2] one step earlier (along axis)."""
    xp = backend.xp
    xp.add(z[1], z[2], out=out[0])
    out[0][_cut(axis, 1, None)] += z[0][_cut(axis, None, -1)]
    xp.add(z[0], z[1], out=out[1])
    out[1][_cut(axis, None, -1)] += z[2][_cut(axis, 1, None)]


def _phase_sums_adjoint(d, out, axis):
    """The adjoint of `_phase_sums`: from d[0], d[1] (the gradients of out[0], out[1]) the gradients of z."""
    xp = backend.xp
    xp.add(d[0], d[1], out=out[1])
    xp.copyto(out[0], d[1])
    out[0][_cut(axis, None, -1)] += d[0][_cut(axis, 1, None)]
    xp.copyto(out[2], d[0])
    out[2][_cut(axis, 1, None)] += d[1][_cut(axis, None, -1)]


# --- forward and backward ---------------------------------------------------------------------------

def upsample_conv_forward(x, W, b):
    """y = conv3×3(upsample2(x), W, padding 1) + b. x: (N, C, H, W), any strides; W: (O, C, 3, 3); b: (O,) or
    None. Returns (y, cache): y (N, O, 2H, 2W) in x's dtype, an NCHW view of (O, N, 2H, 2W) memory."""
    xp = backend.xp
    N, C, H, Wd = x.shape
    O, dt = W.shape[0], x.dtype
    X = x.transpose(1, 0, 2, 3).reshape(C, N * H * Wd)                       # free for (C, N, H, W) memory
    W9 = W.astype(dt, copy=False).transpose(2, 3, 0, 1).reshape(9 * O, C)    # rows (i, j, o)
    Z = (W9 @ X).reshape(3, 3, O, N, H, Wd)
    if b is not None:
        Z[1, 1] += b.astype(dt, copy=False)[:, None, None, None]
    rows = xp.empty((2, 3, O, N, H, Wd), dtype=dt)                           # rows[a][j]: phase a along h
    _phase_sums(Z, rows, axis=-2)
    y = xp.empty((O, N, 2 * H, 2 * Wd), dtype=dt)
    for a in (0, 1):
        _phase_sums(rows[a], [y[:, :, a::2, 0::2], y[:, :, a::2, 1::2]], axis=-1)
    return y.transpose(1, 0, 2, 3), (X, tuple(x.shape), b is not None)


def upsample_conv_backward(dy, cache, W, input_grad=True):
    """Gradients of `upsample_conv_forward` for dy (N, O, 2H, 2W), any strides: (dx, dW, db); dx is None with
    input_grad=False, db None when the forward pass had no bias. W: the weights the forward pass used."""
    xp = backend.xp
    X, (N, C, H, Wd), has_bias = cache
    O, dt = W.shape[0], X.dtype
    if tuple(dy.shape) != (N, O, 2 * H, 2 * Wd):
        raise ValueError(f"upsample_conv_backward: expected dy of shape {(N, O, 2 * H, 2 * Wd)}, got {tuple(dy.shape)}")
    d = dy.transpose(1, 0, 2, 3)                                             # (O, N, 2H, 2W) view
    d_rows = xp.empty((2, 3, O, N, H, Wd), dtype=dt)
    for a in (0, 1):
        _phase_sums_adjoint([d[:, :, a::2, 0::2], d[:, :, a::2, 1::2]], d_rows[a], axis=-1)
    dZ = xp.empty((3, 3, O, N, H, Wd), dtype=dt)
    _phase_sums_adjoint(d_rows, dZ, axis=-2)
    dZ = dZ.reshape(9 * O, N * H * Wd)
    db = dZ[4 * O:5 * O].sum(axis=1) if has_bias else None                   # Z[1, 1]'s rows: Σ dy
    dW = xp.ascontiguousarray((dZ @ X.T).reshape(3, 3, O, C).transpose(2, 3, 0, 1), dtype=W.dtype)  # (O, C, 3, 3)
    if not input_grad:
        return None, dW, db
    W9 = W.astype(dt, copy=False).transpose(2, 3, 0, 1).reshape(9 * O, C)
    dx = (W9.T @ dZ).reshape(C, N, H, Wd)
    return dx.transpose(1, 0, 2, 3), dW, db


# --- the pair as the replicas nn/data_parallel.py runs ---------------------------------------------

class PassThrough(Layer):
    """Stands in for the Upsample2D of a fused pair: the next replica (an `UpsampleConv`) upsamples."""

    def forward(self, x, training=True):
        return x

    def backward(self, dy):
        return dy


class UpsampleConv(Layer):
    """Upsample2D(2) then `conv` (a Conv2D, 3×3, stride 1, padding 1), computed as above. It shares `conv`'s
    parameters (the same dict) and keeps its own gradients, as a replica of `conv` does."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.params = conv.params

    def forward(self, x, training=True):
        self._check_ndim(x, 4, f"input (N, {self.conv.in_channels}, H, W)")
        if x.shape[1] != self.conv.in_channels:
            raise ValueError(f"{self!r}: expected {self.conv.in_channels} input channels, got input of shape {tuple(x.shape)}")
        y, self.cache = upsample_conv_forward(x, self.params["W"], self.params.get("b"))
        return y

    def backward(self, dy, input_grad=True):
        dx, self.grads["W"], db = upsample_conv_backward(dy, self.cache, self.params["W"], input_grad)
        if db is not None:
            self.grads["b"] = db
        return dx

    def backward_params(self, dy):
        self.backward(dy, input_grad=False)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (self.conv.out_channels, 2 * H, 2 * W)

    def __repr__(self):
        return f"UpsampleConv(Upsample2D(scale=2), {self.conv!r})"
