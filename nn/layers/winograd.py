"""3×3 convolution (stride 1, any padding) by Winograd's minimal filtering F(2×2, 3×3): the maths, and a
short per-tile reference that follows it line by line.

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". The result is the same
cross-correlation as `Conv2D` (im2col). `Conv2D(method="winograd")` runs the fast layout of the same
algorithm, nn/layers/winograd_fast.py (every tile at once); tests/test_winograd.py checks each against
the other and against im2col.

The math, for one 2×2 output tile
---------------------------------
A 2×2 output tile Y needs a 4×4 input tile d (rows 2k..2k+3, columns 2l..2l+3 of the padded input);
neighbouring tiles overlap by 2 rows / columns. With

         ⎡1  0 -1  0⎤             ⎡ 1    0    0 ⎤
    Bᵀ = ⎢0  1  1  0⎥         G = ⎢1/2  1/2  1/2⎥         Aᵀ = ⎡1  1  1  0⎤
         ⎢0 -1  1  0⎥             ⎢1/2 -1/2  1/2⎥              ⎣0  1 -1 -1⎦
         ⎣0  1  0 -1⎦             ⎣ 0    0    1 ⎦

    U = G g Gᵀ              4×4, the transform of each 3×3 kernel g (once per kernel, not per tile)
    V = Bᵀ d B              4×4, the input transform of each channel's tile (additions only)
    M = Σ_c U_c ⊙ V_c       4×4, element-wise products, summed over the input channels c
    Y = Aᵀ M A  (+ b)       2×2, the output transform (additions only)

is exactly the 3×3 cross-correlation Y[r, s] = Σ_c Σ_{i,j} g_c[i, j] · d_c[r + i, s + j] (+ b).

Why 16 multiplications instead of 36: computed directly, each of the 4 outputs of a tile needs 9
multiplications (36 per tile and channel). Here the only multiplications that involve both the data and
the kernel are the 16 of U ⊙ V; Bᵀ and Aᵀ hold only 0 and ±1 (additions), and U is computed once per
kernel and reused by every tile. 36 / 16 = 2.25× fewer multiplications, paid for with additions and
with more rounding (the transforms' sums), which float32 keeps well below 1e-4 relative (tested).

Backward is the adjoint (transpose) of each linear step, in reverse order:

    dM = A dY Aᵀ,    dU_c = Σ_tiles dM ⊙ V_c,    dV_c = dM ⊙ U_c,
    dg = Gᵀ dU G,    dd_c = B dV_c Bᵀ  (added onto the overlapping tiles),    db = Σ dY

The reference below does exactly this, one tile at a time, with plain loops (slow: it is for reading
and for testing the fast layout). It computes in float64 on NumPy arrays.
"""
import numpy as np

from nn.layers.base import _pair

# The F(2×2, 3×3) matrices (Lavin & Gray 2016, section 4.1).
BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1.0, 0.0, 0.0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0.0, 0.0, 1.0]])
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.float64)


def winograd_supported(kernel_size, stride, padding):
    """True where Winograd F(2×2, 3×3) computes the convolution: 3×3 kernels, stride 1, any padding ≥ 0."""
    try:
        (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    except (TypeError, ValueError, IndexError):
        return False
    return (kh, kw) == (3, 3) and (sh, sw) == (1, 1) and ph >= 0 and pw >= 0


def check_arguments(x, W, padding, who):
    """Raise ValueError (naming `who`) unless x is (N, C, H, W), W is (O, C, 3, 3) and the padded input
    holds a 3×3 kernel; return the padding as (ph, pw)."""
    if x.ndim != 4:
        raise ValueError(f"{who}: expected input (N, C, H, W) (4-D), got shape {tuple(x.shape)}")
    if W.ndim != 4 or tuple(W.shape[2:]) != (3, 3) or W.shape[1] != x.shape[1]:
        raise ValueError(f"{who}: expected weights (O, {x.shape[1]}, 3, 3), got shape {tuple(W.shape)}")
    ph, pw = _pair(padding)
    if ph < 0 or pw < 0:
        raise ValueError(f"{who}: padding must be >= 0, got {(ph, pw)}")
    if x.shape[2] + 2 * ph < 3 or x.shape[3] + 2 * pw < 3:
        raise ValueError(f"{who}: kernel 3x3 is larger than the padded input "
                         f"{x.shape[2] + 2 * ph}x{x.shape[3] + 2 * pw} (input shape {tuple(x.shape)})")
    return ph, pw


def _tiles(x_shape, padding):
    """The output size (OH, OW) and the 2×2 tiles (k, l) that cover it: tile (k, l) writes output rows
    2k, 2k+1 and columns 2l, 2l+1 (the last row / column of tiles is cropped when OH / OW is odd)."""
    (_, _, H, W), (ph, pw) = x_shape, padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    return OH, OW, [(k, l) for k in range((OH + 1) // 2) for l in range((OW + 1) // 2)]


def _pad(x, padding, OH, OW):
    """Zero padding, plus one more zero row / column where OH / OW is odd, so that every tile is 4×4."""
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph + OH % 2), (pw, pw + OW % 2)))


def reference_forward(x, W, b, padding):
    """y = conv3×3(x, W) + b by F(2×2, 3×3), one tile at a time. x (N, C, H, W), W (O, C, 3, 3), b (O,)
    or None. Returns (y, cache): y (N, O, OH, OW) float64."""
    ph, pw = check_arguments(x, W, padding, "reference_forward")
    x, W = np.asarray(x, dtype=np.float64), np.asarray(W, dtype=np.float64)
    OH, OW, tiles = _tiles(x.shape, (ph, pw))
    xpad = _pad(x, (ph, pw), OH, OW)
    U = G @ W @ G.T                                          # (O, C, 4, 4): G g Gᵀ for every kernel
    y = np.zeros((x.shape[0], W.shape[0], OH + OH % 2, OW + OW % 2))
    for n in range(x.shape[0]):
        for k, l in tiles:
            d = xpad[n, :, 2 * k:2 * k + 4, 2 * l:2 * l + 4]  # (C, 4, 4): this tile in every channel
            V = BT @ d @ BT.T                                 # (C, 4, 4)
            M = (U * V).sum(axis=1)                           # (O, 4, 4): Σ_c U ⊙ V
            y[n, :, 2 * k:2 * k + 2, 2 * l:2 * l + 2] = AT @ M @ AT.T
    y = y[:, :, :OH, :OW]
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)[:, None, None]
    return y, (xpad, (ph, pw), x.shape, b is not None)


def reference_backward(dy, cache, W):
    """Gradients (dx, dW, db) of `reference_forward` for dy (N, O, OH, OW), by the transposed transforms,
    one tile at a time. db is None when the forward pass had no bias."""
    xpad, (ph, pw), x_shape, has_bias = cache
    W = np.asarray(W, dtype=np.float64)
    OH, OW, tiles = _tiles(x_shape, (ph, pw))
    dy = np.asarray(dy, dtype=np.float64)
    dy_tiled = np.pad(dy, ((0, 0), (0, 0), (0, OH % 2), (0, OW % 2)))   # the cropped outputs get dY = 0
    U = G @ W @ G.T
    dU, dxpad = np.zeros_like(U), np.zeros_like(xpad)
    for n in range(x_shape[0]):
        for k, l in tiles:
            V = BT @ xpad[n, :, 2 * k:2 * k + 4, 2 * l:2 * l + 4] @ BT.T          # (C, 4, 4), as forward
            dM = AT.T @ dy_tiled[n, :, 2 * k:2 * k + 2, 2 * l:2 * l + 2] @ AT     # (O, 4, 4): A dY Aᵀ
            dU += dM[:, None] * V                                                  # (O, C, 4, 4)
            dV = (dM[:, None] * U).sum(axis=0)                                     # (C, 4, 4)
            dxpad[n, :, 2 * k:2 * k + 4, 2 * l:2 * l + 4] += BT.T @ dV @ BT        # B dV Bᵀ
    dW = G.T @ dU @ G                                        # (O, C, 3, 3)
    dx = dxpad[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]]
    return dx, dW, (dy.sum(axis=(0, 2, 3)) if has_bias else None)
