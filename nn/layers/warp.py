"""Moving pixels instead of changing them: bilinear upsampling, and warping an image by a displacement field.

A refiner built only from 3×3 convolutions can recolour a digit, but to make it thinner, slanted or taller it
would have to repaint every stroke. A warp moves the strokes themselves: each output pixel (i, j) reads the
input at a nearby point (i + Δi, j + Δj), interpolated bilinearly between the four pixels around it. The
displacement field (Δi, Δj) is itself an image, predicted by a network; a smooth field is made by predicting it
on a coarse grid and upsampling it bilinearly (`BilinearUpsample2D`). Both layers are linear in the image. The
warp is differentiable in the displacements too, except where a point lies exactly on a pixel row or column:
there the bilinear weights' derivative jumps, and backward takes the one-sided derivative towards larger
coordinates (towards smaller ones on the last row or column), so a field that starts at zero, with every point
on a pixel, still gets a gradient.
"""
import numpy as np

from nn import backend
from nn.layers.base import Layer


def interpolation_matrix(n_in, scale):
    """U (n_in·scale, n_in): y = U @ x upsamples a 1-D signal x linearly, with the pixel centres of the output at
    (o + 0.5)/scale - 0.5 in input pixels (each output pixel reads the input where its centre lies), clamped to
    the first and last input pixel at the edges (PyTorch's `interpolate(..., mode="bilinear",
    align_corners=False)`). Each row holds at most two non-zero weights, summing to 1."""
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
    Backward:  dx[n, c] = U_Hᵀ · g[n, c] · U_W       (g = dL/dy)
    """

    def __init__(self, scale=2):
        super().__init__()
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError(f"BilinearUpsample2D: scale must be a positive integer, got {scale}")
        self._matrices = {}      # (H, W, dtype) -> (U_H, U_W) on the device, made once per input size

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (C, H * self.scale, W * self.scale)

    def forward(self, x, training=True):
        self._check_ndim(x, 4, "input (N, C, H, W)")
        key = (x.shape[2], x.shape[3], x.dtype.str)
        if key not in self._matrices:
            self._matrices[key] = (backend.asarray(interpolation_matrix(x.shape[2], self.scale), dtype=x.dtype),
                                   backend.asarray(interpolation_matrix(x.shape[3], self.scale), dtype=x.dtype))
        self.U_H, self.U_W = self._matrices[key]
        return self.U_H @ x @ self.U_W.T

    def backward(self, g):
        return self.U_H.T @ g @ self.U_W

    def __repr__(self):
        return f"BilinearUpsample2D(scale={self.scale})"


class Warp(Layer):
    """Resample an image at displaced points, bilinearly. The input holds the image and the displacement field
    together, (N, C + 2, H, W): channels 0..C-1 the image t, the last two the displacements (Δi, Δj) in pixels
    (rows, columns). Output (N, C, H, W); needs H, W >= 2.

    Forward, for every image n and pixel (i, j):
        p = clip(i + Δi[n, i, j], 0, H - 1),   q = clip(j + Δj[n, i, j], 0, W - 1)     (the edge pixels repeat)
        i0 = min(floor p, H - 2),  a = p - i0;   j0 = min(floor q, W - 2),  b = q - j0
            (the min keeps i0 + 1 inside the image: on the last row p = H - 1 gives i0 = H - 2 and a = 1)
        y[n, c, i, j] = (1-a)(1-b)·t[n, c, i0, j0] + (1-a)·b·t[n, c, i0, j0+1]
                        + a(1-b)·t[n, c, i0+1, j0] + a·b·t[n, c, i0+1, j0+1]
    Backward, with g = dL/dy:
        dt[n, c, corner] += g[n, c, i, j] · (that corner's weight)          (summed over every (i, j) reading it)
        dΔi[n, i, j] = sum_c g[n, c, i, j] · [(1-b)(t[i0+1, j0] - t[i0, j0]) + b(t[i0+1, j0+1] - t[i0, j0+1])]
        dΔj[n, i, j] = sum_c g[n, c, i, j] · [(1-a)(t[i0, j0+1] - t[i0, j0]) + a(t[i0+1, j0+1] - t[i0+1, j0])]
        dΔi = 0 where p was clipped, dΔj = 0 where q was (moving such a point further changes nothing)
    With zero displacements y = t exactly.
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
        t, C = x[:, :-2], C2 - 2
        rows = xp.arange(H, dtype=x.dtype)[:, None]
        cols = xp.arange(W, dtype=x.dtype)[None, :]
        p_free, q_free = rows + x[:, -2], cols + x[:, -1]                 # (N, H, W): the points asked for
        p, q = xp.clip(p_free, 0, H - 1), xp.clip(q_free, 0, W - 1)
        self.inside_p, self.inside_q = p == p_free, q == q_free
        i0 = xp.minimum(xp.floor(p), H - 2)                               # still floats, so a and b keep x's dtype
        j0 = xp.minimum(xp.floor(q), W - 2)
        a, b = (p - i0)[:, None], (q - j0)[:, None]                       # (N, 1, H, W): the same for every channel
        # t[n, c, i0, j0] is element ((n·C + c)·H + i0)·W + j0 of t flattened; the other corners are +1, +W, +W+1
        first = (xp.arange(N * C) * (H * W)).reshape(N, C, 1, 1) + (i0 * W + j0).astype(np.int64)[:, None]
        self.corners = [first, first + 1, first + W, first + W + 1]       # t00, t01, t10, t11
        self.a, self.b, self.t_shape = a, b, t.shape
        flat = t.reshape(-1)
        self.t00, self.t01, self.t10, self.t11 = (flat[k] for k in self.corners)
        return ((1 - a) * ((1 - b) * self.t00 + b * self.t01)
                + a * ((1 - b) * self.t10 + b * self.t11))

    def backward(self, g):
        xp = backend.xp
        a, b = self.a, self.b
        weights = [(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b]
        dt = xp.zeros(int(np.prod(self.t_shape)), dtype=g.dtype)
        # a scatter-add, since several outputs may read the same input pixel: all four corners in one call
        backend.scatter_add(dt, xp.concatenate([k.reshape(-1) for k in self.corners]),
                            xp.concatenate([(g * w).reshape(-1) for w in weights]))
        d_p = (g * ((1 - b) * (self.t10 - self.t00) + b * (self.t11 - self.t01))).sum(axis=1)
        d_q = (g * ((1 - a) * (self.t01 - self.t00) + a * (self.t11 - self.t10))).sum(axis=1)
        d_disp = xp.stack([d_p * self.inside_p, d_q * self.inside_q], axis=1)
        return xp.concatenate([dt.reshape(self.t_shape), d_disp], axis=1)

    def __repr__(self):
        return "Warp()"
