"""Pooling and upsampling, written as loops over the kh×kw window offsets.

Each offset (i, j) of the pooling window picks one strided slice of the input,
    x_pad[:, :, i : i + s·OH : s, j : j + s·OW : s]      (N, C, OH, OW),
so a pooling layer is a handful of whole-array operations — no loop over images or pixels,
and the same code runs on NumPy and CuPy.
"""
import numpy as np

from nn import backend, fused
from nn.layers.base import Layer, _pair
from nn.layers import pool_fast
from nn.layers.conv import conv_output_size


def _window_slice(i, j, stride, out_hw):
    (sh, sw), (OH, OW) = stride, out_hw
    return (slice(None), slice(None), slice(i, i + sh * OH, sh), slice(j, j + sw * OW, sw))


def _empty_cnhw(shape, dtype):
    """An uninitialised array of NCHW shape laid out (C, N, H, W) in memory (see _zeros_cnhw)."""
    N, C, H, W = shape
    return backend.xp.empty((C, N, H, W), dtype=dtype).transpose(1, 0, 2, 3)


def _zeros_cnhw(shape, dtype):
    """Zeros of NCHW shape whose memory is laid out (C, N, H, W), the layout convolutions read fastest."""
    N, C, H, W = shape
    return backend.xp.zeros((C, N, H, W), dtype=dtype).transpose(1, 0, 2, 3)


class _Pool2D(Layer):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (C, conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))

    def _padded(self, x, fill):
        self._check_ndim(x, 4, "input (N, C, H, W)")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        N, C, H, W = x.shape
        if kh > H + 2 * ph or kw > W + 2 * pw:
            raise ValueError(f"{self!r}: window {kh}x{kw} is larger than the padded input of shape {tuple(x.shape)}")
        if not (ph or pw):
            return x
        x_pad = backend.xp.full((C, N, H + 2 * ph, W + 2 * pw), fill, dtype=x.dtype).transpose(1, 0, 2, 3)
        x_pad[:, :, ph:ph + H, pw:pw + W] = x
        return x_pad

    def _unpad(self, dx_pad, x_shape):
        (ph, pw), (H, W) = self.padding, x_shape[2:]
        return dx_pad[:, :, ph:ph + H, pw:pw + W]

    def __repr__(self):
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2D(_Pool2D):
    """Max pooling.

    Forward:  y[n,c,p,q] = max_{i,j} x_pad[n, c, p·s + i, q·s + j];  the winning offset k = i·kw + j
              is remembered (the first one on ties).
    Backward: the gradient flows only to the winner:  dx[n, c, p·s + i*, q·s + j*] += dy[n,c,p,q].

    `method="loop"` (the default) runs the loop below for any window. `method="auto"` asks for the
    faster kernel of nn/layers/pool_fast.py where it applies (NumPy, 2×2 window, stride 2, no padding,
    even height and width) and the loop elsewhere; the results are the same.
    """

    def __init__(self, kernel_size, stride=None, padding=0, method="loop"):
        super().__init__(kernel_size, stride, padding)
        if method not in ("loop", "auto"):
            raise ValueError(f"MaxPool2D: method must be 'loop' or 'auto', got {method!r}")
        self.method = method

    def forward(self, x, training=True):
        xp = backend.xp
        if self.method == "auto" and pool_fast.applies(self, x):
            y, fast_cache = pool_fast.max_pool_2x2_forward(x)
            self.cache = ("2x2", fast_cache)
            return y
        x_pad = self._padded(x, -np.inf)
        y, winner = max_pool_windows(x_pad, self.kernel_size, self.stride, self.output_shape(x.shape[1:])[1:])
        self.cache = (x.shape, x_pad.shape, winner)
        return y

    def backward(self, dy):
        if self.cache[0] == "2x2":
            return pool_fast.max_pool_2x2_backward(dy, self.cache[1])
        x_shape, pad_shape, winner = self.cache
        return self._unpad(max_pool_scatter(dy, winner, pad_shape, self.kernel_size, self.stride), x_shape)


def max_pool_windows(x_pad, kernel_size, stride, out_hw):
    """MaxPool2D's forward on the padded input: (y, winner), y the largest value of each window and winner
    (uint8) its offset k = i·kw + j, the first one on ties."""
    if fused.ready("max_pool", max_pool_windows, x_pad):     # on a GPU: the same in one kernel (nn/fused.py)
        return fused.max_pool(x_pad, kernel_size, stride, out_hw)
    xp = backend.xp
    kh, kw = kernel_size
    y = x_pad[_window_slice(0, 0, stride, out_hw)].copy(order="K")
    winner = xp.zeros(y.shape, dtype=np.uint8)
    for k in range(1, kh * kw):
        v = x_pad[_window_slice(k // kw, k % kw, stride, out_hw)]
        better = v > y
        winner += better * (np.uint8(k) - winner)   # winner = k where better (k > winner always);
        xp.maximum(y, v, out=y)                     # arithmetic measured ~30× faster than copyto(where=)
    return y, winner


def max_pool_scatter(dy, winner, pad_shape, kernel_size, stride):
    """MaxPool2D's backward on the padded input's shape: each dy[n,c,p,q] is added to its window's winner."""
    if fused.ready("max_pool_backward", max_pool_scatter, dy):   # on a GPU: the same in one kernel (nn/fused.py)
        return fused.max_pool_backward(dy, winner, pad_shape, kernel_size, stride)
    kh, kw = kernel_size
    dx_pad = _zeros_cnhw(pad_shape, dy.dtype)
    for k in range(kh * kw):
        dx_pad[_window_slice(k // kw, k % kw, stride, dy.shape[2:])] += dy * (winner == k)
    return dx_pad


class AvgPool2D(_Pool2D):
    """Average pooling (zero padding counts in the average, as PyTorch's default).

    Forward:  y[n,c,p,q] = 1/(kh·kw) · sum_{i,j} x_pad[n, c, p·s + i, q·s + j]
    Backward: dx[n, c, p·s + i, q·s + j] += dy[n,c,p,q] / (kh·kw)   for every offset (i, j).
    """

    def forward(self, x, training=True):
        x_pad = self._padded(x, 0)
        kh, kw = self.kernel_size
        out_hw = self.output_shape(x.shape[1:])[1:]
        y = x_pad[_window_slice(0, 0, self.stride, out_hw)].copy(order="K")
        for k in range(1, kh * kw):
            y += x_pad[_window_slice(k // kw, k % kw, self.stride, out_hw)]
        y *= 1.0 / (kh * kw)
        self.cache = (x.shape, x_pad.shape)
        return y

    def backward(self, dy):
        x_shape, pad_shape = self.cache
        kh, kw = self.kernel_size
        dx_pad = _zeros_cnhw(pad_shape, dy.dtype)
        share = dy * (1.0 / (kh * kw))
        for k in range(kh * kw):
            dx_pad[_window_slice(k // kw, k % kw, self.stride, dy.shape[2:])] += share
        return self._unpad(dx_pad, x_shape)


class Upsample2D(Layer):
    """Nearest-neighbour upsampling by an integer `scale`.

    Forward:  y[n, c, h·s + a, w·s + b] = x[n, c, h, w]      for 0 <= a, b < s
    Backward: dx[n, c, h, w] = sum_{a,b} dy[n, c, h·s + a, w·s + b]
    """

    def __init__(self, scale=2):
        super().__init__()
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError(f"Upsample2D: scale must be a positive integer, got {scale}")

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (C, H * self.scale, W * self.scale)

    def forward(self, x, training=True):
        self._check_ndim(x, 4, "input (N, C, H, W)")
        N, C, H, W = x.shape
        s = self.scale
        y = _empty_cnhw((N, C, H * s, W * s), x.dtype)
        for a in range(s):                 # one strided copy per offset (a, b)
            for b in range(s):
                y[:, :, a::s, b::s] = x
        return y

    def backward(self, dy):
        s = self.scale
        rows = dy[:, :, :, 0::s].copy()    # sum over b, then over a, as strided slices
        for b in range(1, s):
            rows += dy[:, :, :, b::s]
        dx = rows[:, :, 0::s].copy()
        for a in range(1, s):
            dx += rows[:, :, a::s]
        return dx

    def __repr__(self):
        return f"Upsample2D(scale={self.scale})"
