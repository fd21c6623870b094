"""Convolution and transposed convolution as im2col + one matrix product.

im2col turns every receptive field into a column, so a convolution becomes one matrix product:

    cols[c, i, j, n, oh, ow] = x_pad[n, c, oh*s + i, ow*s + j]            (C, kh, kw, N, OH, OW)
    y[n, o, oh, ow]          = sum_{c,i,j} W[o, c, i, j] * cols[c, i, j, n, oh, ow] + b[o]

The column array is filled by a kh×kw loop of strided slices (one slice copies a whole
(C, N, OH, OW) block); col2im is the same loop with `+=`. The axes are ordered (C, kh, kw, N, OH, OW)
so that both matrix products read contiguous memory and the product's result (O, N, OH, OW) is
returned as an NCHW *view* — the next layer reads it without a transpose copy.
"""
import numpy as np

from nn import backend, fused, init
from nn.layers.base import Layer, _pair
from nn.layers.winograd import winograd_supported
from nn.layers.winograd_fast import winograd_backward, winograd_forward


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel_size, stride, padding):
    """(N, C, H, W) -> columns (C, kh, kw, N, OH, OW): cols[c,i,j,n,oh,ow] = x_pad[n,c,oh*sh+i,ow*sw+j]."""
    if fused.ready("im2col", im2col, x):         # on a GPU: the same in one kernel (nn/fused.py)
        return fused.im2col(x, kernel_size, stride, padding)
    xp = backend.xp
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    x_cnhw = x.transpose(1, 0, 2, 3)
    if ph or pw:
        x_pad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
        x_pad[:, :, ph:ph + H, pw:pw + W] = x_cnhw
    else:
        x_pad = x_cnhw
    cols = xp.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = x_pad[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw]
    return cols


def col2im(cols, x_shape, stride, padding):
    """The adjoint of im2col: every column entry is added back to the pixel it came from.
    (C, kh, kw, N, OH, OW) -> (N, C, H, W), returned as an NCHW view of (C, N, H, W) memory."""
    if fused.ready("col2im", col2im, cols):         # on a GPU: the same in one kernel (nn/fused.py)
        return fused.col2im(cols, x_shape, stride, padding)
    xp = backend.xp
    C, kh, kw, _, OH, OW = cols.shape
    N, _, H, W = x_shape
    (sh, sw), (ph, pw) = stride, padding
    dx_pad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw] += cols[:, i, j]
    return dx_pad[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)


def _channels_first_rows(x):
    """(N, C, H, W) -> (C, N*H*W): one row per channel (free when x is a view of CNHW memory)."""
    N, C, H, W = x.shape
    return x.transpose(1, 0, 2, 3).reshape(C, N * H * W)


def _rows_to_nchw(rows, N, H, W):
    """(C, N*H*W) -> NCHW view."""
    return rows.reshape(-1, N, H, W).transpose(1, 0, 2, 3)


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in PyTorch), im2col + one matrix product.

    Forward:   y[n,o,p,q] = b[o] + sum_{c,i,j} W[o,c,i,j] · x_pad[n, c, p·s + i, q·s + j]
               as a product: Y (O, N·OH·OW) = W (O, C·kh·kw) @ cols (C·kh·kw, N·OH·OW)
    Backward:  dW = dY @ colsᵀ,   db[o] = sum_{n,p,q} dy[n,o,p,q],
               dcols = Wᵀ @ dY,   dx = col2im(dcols)   (the transposed convolution of dy)

    W has PyTorch's layout (out_channels, in_channels, kh, kw); He-normal initialisation.

    `method` picks the algorithm: "im2col" (above, any configuration), "winograd" (F(2×2, 3×3),
    maths in nn/layers/winograd.py, fast layout in nn/layers/winograd_fast.py: 3×3, stride 1 only; same
    result with 2.25× fewer multiplications), or "auto":
    Winograd on the NumPy backend for 3×3 stride-1 layers with at least 16 input channels and inputs of
    at least 8×8 (where it measured faster), im2col everywhere else. The default is the im2col above;
    the applications (the ConvNet, the GANs, the benchmark) ask for "auto". An "auto" 3×3 layer with
    padding 1 right after an Upsample2D(2) in a Sequential runs, on NumPy, together with it on the small
    image (nn/layers/upconv_fast.py: the same result with 4× fewer multiplications).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, method="im2col"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        if method not in ("auto", "im2col", "winograd"):
            raise ValueError(f"Conv2D: method must be 'auto', 'im2col' or 'winograd', got {method!r}")
        if method == "winograd" and not winograd_supported(self.kernel_size, self.stride, self.padding):
            raise ValueError(f"Conv2D: method 'winograd' needs a 3x3 kernel and stride 1, "
                             f"got kernel {self.kernel_size} and stride {self.stride}")
        self.method = method
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.params["W"] = init.he_normal((out_channels, in_channels, kh, kw), fan_in)
        if bias:
            self.params["b"] = backend.xp.zeros(out_channels, dtype=np.float32)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (self.out_channels, conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))

    def _check_input(self, x):
        self._check_ndim(x, 4, f"input (N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got input of shape {tuple(x.shape)}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if kh > x.shape[2] + 2 * ph or kw > x.shape[3] + 2 * pw:
            raise ValueError(f"{self!r}: kernel {kh}x{kw} is larger than the padded input "
                             f"{x.shape[2] + 2 * ph}x{x.shape[3] + 2 * pw} (input shape {tuple(x.shape)})")

    def _uses_winograd(self, x):
        if self.method != "auto":
            return self.method == "winograd"
        return (backend.name == "numpy" and winograd_supported(self.kernel_size, self.stride, self.padding)
                and self.in_channels >= 16 and min(x.shape[2], x.shape[3]) >= 8)

    def forward(self, x, training=True):
        self._check_input(x)
        if self._uses_winograd(x):
            y, cache = winograd_forward(x, self.params["W"], self.params.get("b"), self.padding)
            self.cache = ("winograd", cache)
            return y
        N, _, H, W = x.shape
        cols = im2col(x, self.kernel_size, self.stride, self.padding)
        OH, OW = cols.shape[4], cols.shape[5]
        W2 = self.params["W"].reshape(self.out_channels, -1)
        y = W2 @ cols.reshape(W2.shape[1], -1)               # (O, N*OH*OW)
        if "b" in self.params:
            y += self.params["b"][:, None]
        self.cache = ("im2col", (x.shape, cols))
        return _rows_to_nchw(y, N, OH, OW)

    def backward(self, dy, input_grad=True):
        method, cache = self.cache
        if method == "winograd":
            dx, self.grads["W"], db = winograd_backward(dy, cache, self.params["W"], input_grad)
            if db is not None:
                self.grads["b"] = db
            return dx
        x_shape, cols = cache
        dY = _channels_first_rows(dy)                         # (O, N*OH*OW)
        cols2 = cols.reshape(-1, dY.shape[1])                 # (C*kh*kw, N*OH*OW)
        W2 = self.params["W"].reshape(self.out_channels, -1)
        # dW = dY @ colsᵀ, computed as (cols @ dYᵀ)ᵀ — the same sums, but OpenBLAS runs this orientation
        # (the larger C·kh·kw as the result's rows) 2-4× faster here for these long, thin products.
        self.grads["W"] = (cols2 @ dY.T).T.reshape(self.params["W"].shape)
        if "b" in self.params:
            self.grads["b"] = dY.sum(axis=1)
        if not input_grad:
            return None
        dcols = (W2.T @ dY).reshape(cols.shape)
        return col2im(dcols, x_shape, self.stride, self.padding)

    def backward_params(self, dy):
        """Only dW and db (the first layer of a net, whose input needs no gradient)."""
        self.backward(dy, input_grad=False)

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")


class ConvTranspose2D(Layer):
    """Transposed ("fractionally strided") convolution: the backward pass of Conv2D used as a forward.

    Forward:   each input pixel scatters a kernel-sized patch into the output:
               cols (out·kh·kw, N·H·W) = Wᵀ (out·kh·kw, in) @ X (in, N·H·W),  y = col2im(cols) + b
               y[n,o,p,q] = b[o] + sum_{c,i,j : p = h·s + i - pad, q = w·s + j - pad} W[c,o,i,j] · x[n,c,h,w]
    Output size: OH = (H - 1)·s - 2·pad + kh + output_padding.
    Backward:  cols = im2col(dy)  (a plain convolution of dy),
               dx = W @ cols,  dW = X @ colsᵀ,  db[o] = sum_{n,p,q} dy[n,o,p,q]

    W has PyTorch's layout (in_channels, out_channels, kh, kw).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.output_padding = _pair(output_padding)
        if not all(0 <= op < s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2D: output_padding {self.output_padding} must be smaller than stride {self.stride}")
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw // (self.stride[0] * self.stride[1])  # inputs reaching one output pixel
        self.params["W"] = init.he_normal((in_channels, out_channels, kh, kw), max(fan_in, 1))
        if bias:
            self.params["b"] = backend.xp.zeros(out_channels, dtype=np.float32)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw), (oph, opw) = self.kernel_size, self.stride, self.padding, self.output_padding
        return (self.out_channels, (H - 1) * sh - 2 * ph + kh + oph, (W - 1) * sw - 2 * pw + kw + opw)

    def forward(self, x, training=True):
        self._check_ndim(x, 4, f"input (N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got input of shape {tuple(x.shape)}")
        N, _, H, W = x.shape
        _, OH, OW = self.output_shape(x.shape[1:])
        if OH <= 0 or OW <= 0:
            raise ValueError(f"{self!r}: output would be empty for input of shape {tuple(x.shape)}")
        kh, kw = self.kernel_size
        X = _channels_first_rows(x)                                      # (in, N*H*W)
        W2 = self.params["W"].reshape(self.in_channels, -1)              # (in, out*kh*kw)
        cols = (W2.T @ X).reshape(self.out_channels, kh, kw, N, H, W)
        y = col2im(cols, (N, self.out_channels, OH, OW), self.stride, self.padding)
        if "b" in self.params:
            y = y + self.params["b"][None, :, None, None]
        self.cache = (x.shape, X)
        return y

    def backward(self, dy):
        x_shape, X = self.cache
        N, _, H, W = x_shape
        cols = im2col(dy, self.kernel_size, self.stride, self.padding)  # (out, kh, kw, N, H, W)
        cols2 = cols.reshape(-1, N * H * W)
        W2 = self.params["W"].reshape(self.in_channels, -1)
        self.grads["W"] = (X @ cols2.T).reshape(self.params["W"].shape)
        if "b" in self.params:
            self.grads["b"] = dy.sum(axis=(0, 2, 3))
        return _rows_to_nchw(W2 @ cols2, N, H, W)

    def __repr__(self):
        return (f"ConvTranspose2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")
