"""A faster max-pool for the most common case, beside the readable one in nn/layers/pool.py.

`MaxPool2D(2, method="auto")` runs these two functions on the NumPy backend when the window is 2×2
with stride 2, no padding, and the height and width are even (every pooling layer of the ConvNet and
the DCGAN discriminator). The result and the gradient are exactly those of `MaxPool2D`'s loop over
the window's offsets, ties included (tests/test_parallel.py checks one against the other).

The math. With a, b, c, d the four offsets (0,0), (0,1), (1,0), (1,1) of each window,

    y = max(max(a, b), max(c, d))

and the winner (the first offset on ties, as the loop keeps it) is remembered as three comparisons:
b > a (the right one wins the top row), d > c (... the bottom row), and max(c, d) > max(a, b) (the
bottom row wins). Backward writes each of dx's four offsets exactly once:

    dd = dy · lower · right_bottom,   dc = dy · lower − dd,
    db = dy · (1 − lower) · right_top,   da = dy · (1 − lower) − db

— no zero-filled array and no `+=` over overlapping slices, which is what makes it faster.
"""
from nn import backend


def applies(layer, x):
    """True where the 2×2 path computes `layer`'s max-pool of x: NumPy, a 2×2 window with stride 2,
    no padding, and an even, non-empty height and width."""
    return (backend.name == "numpy" and layer.kernel_size == (2, 2) and layer.stride == (2, 2)
            and layer.padding == (0, 0) and x.ndim == 4
            and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.shape[2] > 0 and x.shape[3] > 0)


def max_pool_2x2_forward(x):
    """y = the 2×2 max-pool of x (N, C, H, W); returns (y, cache for the backward pass)."""
    xp = backend.xp
    a, b, c, d = (x[:, :, i::2, j::2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    right_top, right_bottom = b > a, d > c          # the winner within each row of the window
    top, bottom = xp.maximum(a, b), xp.maximum(c, d)
    lower = bottom > top                            # ... and which row wins (the top one on ties)
    return xp.maximum(top, bottom, out=top), (x.shape, right_top, right_bottom, lower)


def max_pool_2x2_backward(dy, cache):
    """dL/dx from dL/dy: each window's gradient goes to its winner only."""
    xp = backend.xp
    (N, C, H, W), right_top, right_bottom, lower = cache
    dx = xp.empty((C, N, H, W), dtype=dy.dtype).transpose(1, 0, 2, 3)   # NCHW, laid out as convolutions read it
    da, db, dc, dd = (dx[:, :, i::2, j::2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    bottom = dy * lower                             # dy where the bottom row won, else 0
    xp.multiply(bottom, right_bottom, out=dd)
    xp.subtract(bottom, dd, out=dc)
    top = xp.subtract(dy, bottom, out=bottom)       # dy where the top row won
    xp.multiply(top, right_top, out=db)
    xp.subtract(top, db, out=da)
    return dx
