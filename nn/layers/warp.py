"""Moving pixels instead of changing them: bilinear upsampling, and warping an image by a displacement field.

A refiner built only from 3×3 convolutions can recolour a digit, but to make it thinner, slanted or taller it
would have to repaint every stroke. A warp moves the strokes themselves: each output pixel reads the input at
a nearby point, (i + dy, j + dx), interpolated bilinearly between the four pixels around it. The displacement
field (dy, dx) is itself an image, predicted by a network; a smooth field is made by predicting it on a coarse
grid and upsampling it bilinearly (`BilinearUpsample2D`). Both layers are linear in the image, and the warp is
differentiable in the displacements too (almost everywhere: not where a sample point crosses a pixel row or
column, where the bilinear weights' derivative jumps).
"""
import numpy as np

from nn import backend
from nn.layers.base import Layer


def interpolation_matrix(n_in, scale):
    """U (n_in·scale, n_in): y = U @ x upsamples a 1-D signal x linearly, with the pixel centres of the output at
    (o + 0.5)/scale - 0.5 in input pixels (each output pixel reads the input where its centre lies), clamped to
    the first and last input pixel at the edges (as PyTorch's `interpolate(..., mode="bilinear")`)."""
    n_out = n_in * scale
    U = np.zeros((n_out, n_in))
    p = np.clip((np.arange(n_out) + 0.5) / scale - 0.5, 0, n_in - 1)
    lo = np.minimum(np.floor(p).astype(int), max(n_in - 2, 0))
    frac = p - lo
    U[np.arange(n_out), lo] += 1 - frac
    U[np.arange(n_out), np.minimum(lo + 1, n_in - 1)] += frac
    return U


class BilinearUpsample2D(Layer):
    """Bilinear upsampling by an integer `scale`: along each axis, linear interpolation between the two
    nearest input pixels (see `interpolation_matrix` for where the output pixels lie).

    Forward:   y[n, c] = U_H · x[n, c] · U_Wᵀ        U_H (H·s, H), U_W (W·s, W): the 1-D interpolation matrices
    Backward:  dx[n, c] = U_Hᵀ · dy[n, c] · U_W
    """

    def __init__(self, scale=2):
        super().__init__()
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError(f"BilinearUpsample2D: scale must be a positive integer, got {scale}")

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (C, H * self.scale, W * self.scale)

    def _matrices(self, H, W, dtype):
        return (backend.asarray(interpolation_matrix(H, self.scale), dtype=dtype),
                backend.asarray(interpolation_matrix(W, self.scale), dtype=dtype))

    def forward(self, x, training=True):
        self._check_ndim(x, 4, "input (N, C, H, W)")
        self.U_H, self.U_W = self._matrices(x.shape[2], x.shape[3], x.dtype)
        return self.U_H @ x @ self.U_W.T

    def backward(self, dy):
        return self.U_H.T @ dy @ self.U_W

    def __repr__(self):
        return f"BilinearUpsample2D(scale={self.scale})"


class Warp(Layer):
    """Resample an image at displaced points, bilinearly. The input holds the image and the displacement field
    together, (N, C + 2, H, W): channels 0..C-1 the image t, the last two the displacements (dy, dx) in pixels.

    Forward:   p = clip(i + dy[n, i, j], 0, H - 1),  q = clip(j + dx[n, i, j], 0, W - 1)   (the edge repeats)
               i0 = min(floor p, H - 2),  a = p - i0;   j0 = min(floor q, W - 2),  b = q - j0
               y[n, c, i, j] = (1-a)(1-b)·t[i0, j0] + (1-a)·b·t[i0, j0+1] + a(1-b)·t[i0+1, j0] + a·b·t[i0+1, j0+1]
    Backward:  dt[n, c, corner] += dy[n, c, i, j] · (that corner's weight)       (summed over every (i, j) reading it)
               d(dy)[n, i, j] = sum_c dy[n, c, i, j] · [(1-b)(t[i0+1, j0] - t[i0, j0]) + b(t[i0+1, j0+1] - t[i0, j0+1])]
               d(dx)[n, i, j] = sum_c dy[n, c, i, j] · [(1-a)(t[i0, j0+1] - t[i0, j0]) + a(t[i0+1, j0+1] - t[i0+1, j0])]
               (both 0 where the point was clipped to the edge: moving it further changes nothing)
    With zero displacements y = t exactly. Output (N, C, H, W); needs H, W >= 2.
    """

    def output_shape(self, input_shape):
        C2, H, W = input_shape
        return (C2 - 2, H, W)

    def forward(self, x, training=True):
        self._check_ndim(x, 4, "input (N, C + 2, H, W)")
        xp = backend.xp
        N, C2, H, W = x.shape
        if C2 < 3 or H < 2 or W < 2:
            raise ValueError(f"Warp: need an image of >= 1 channel and 2 displacement channels, H, W >= 2; "
                             f"got input of shape {tuple(x.shape)}")
        t, disp = x[:, :-2], x[:, -2:]
        rows = xp.arange(H, dtype=x.dtype)[:, None]
        cols = xp.arange(W, dtype=x.dtype)[None, :]
        p_free, q_free = rows + disp[:, 0], cols + disp[:, 1]              # (N, H, W)
        p, q = xp.clip(p_free, 0, H - 1), xp.clip(q_free, 0, W - 1)
        self.inside_p, self.inside_q = p == p_free, q == q_free
        i0 = xp.minimum(xp.floor(p), H - 2).astype(np.int64)
        j0 = xp.minimum(xp.floor(q), W - 2).astype(np.int64)
        a, b = (p - i0)[:, None], (q - j0)[:, None]                       # (N, 1, H, W): the same for every channel
        # flat indices of the four corners in t viewed as (N·C, H·W), one row per (image, channel)
        base = (xp.arange(N * (C2 - 2), dtype=np.int64) * (H * W)).reshape(N, C2 - 2, 1, 1)
        corner = (i0 * W + j0)[:, None]
        self.idx = [base + corner, base + corner + 1, base + corner + W, base + corner + W + 1]  # 00, 01, 10, 11
        self.a, self.b, self.t_shape = a, b, t.shape
        flat = t.reshape(-1)
        self.t00, self.t01, self.t10, self.t11 = (flat[k] for k in self.idx)
        return ((1 - a) * ((1 - b) * self.t00 + b * self.t01)
                + a * ((1 - b) * self.t10 + b * self.t11))

    def backward(self, dy):
        xp = backend.xp
        a, b = self.a, self.b
        weights = [(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b]
        size = int(np.prod(self.t_shape))
        dt = xp.zeros(size, dtype=dy.dtype)
        for k, w in zip(self.idx, weights):            # a scatter-add: several outputs may read the same pixel
            dt += xp.bincount(k.reshape(-1), weights=(dy * w).reshape(-1), minlength=size).astype(dy.dtype)
        d_p = (dy * ((1 - b) * (self.t10 - self.t00) + b * (self.t11 - self.t01))).sum(axis=1)
        d_q = (dy * ((1 - a) * (self.t01 - self.t00) + a * (self.t11 - self.t10))).sum(axis=1)
        d_disp = xp.stack([d_p * self.inside_p, d_q * self.inside_q], axis=1)
        return xp.concatenate([dt.reshape(self.t_shape), d_disp.astype(dy.dtype)], axis=1)

    def __repr__(self):
        return "Warp()"
