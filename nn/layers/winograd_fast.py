"""The fast layout of Winograd F(2×2, 3×3), used by `Conv2D(method="winograd")`: every tile at once.

The maths, and a short per-tile reference that computes the same numbers with plain loops over tiles,
are in nn/layers/winograd.py: read that first. This module computes exactly the same (tested against
that reference in tests/test_winograd.py), arranged so that each transform is a few whole-array
additions and the sum over channels is 16 matrix products:

    M[ξ][o, t] = Σ_c U[ξ][o, c] · V[ξ][c, t]        16 products (O, C) @ (C, tiles), ξ = 4a + b
    y_tile[o, t] = Aᵀ M[·][o, t] A  (+ bias)

The bias is added to M[5] (ξ = (1, 1)): column 1 of Aᵀ is (1, 1), so b there reaches all four outputs.
Backward: dM = A dY Aᵀ, dU[ξ] = dM[ξ] @ V[ξ]ᵀ, dV[ξ] = U[ξ]ᵀ @ dM[ξ], dg = Gᵀ dU G, dd = B dV Bᵀ
(added back onto the overlapping tiles), db = Σ_tiles dM[5].

Layout: every tile at once, as flat strided slices
--------------------------------------------------
The padded input is split by row parity into two "row planes", Xr[q][c, n, k, w] = x_pad[n, c, 2k + q, w]
(k = 0..TH, w = 0..2·TW+1: one ghost tile column beyond the TW tiles of a row that are needed). Tile
(k, l) of channel c and image n reads rows k and k + 1 of both planes. Number the tiles
t = ((c·N + n)·TH + k)·(TW + 1) + l; then pixel (i, j) of tile t is

    row pass:     Xr[i % 2][c·N + n, (k + i // 2)·Wp + w]      (Wp = 2·(TW + 1), the plane's row length)
    column pass:  R[2t + j]      with R[(c·N + n)·TH·Wp + k·Wp + w] the row pass's result

so the row pass is, for each i, one 2-D slice of a plane (its rows i // 2 .. i // 2 + TH − 1 of every
channel and image), and component j of *all* tiles is the single 1-D slice R[j :: 2]. Each transform is
a few whole-array additions on such slices, in two passes: over the rows i, then over the columns j
(step-2 slices); Bᵀ d B = (Bᵀ d) B. The output is built the same way, in two row planes of y, copied
into y at the end. Ghost tiles (l = TW) read the next row's first pixels and compute garbage: the output
never reads them and backward gives them zero gradient (their inputs are finite: R's tail is zero), so
they change nothing; they cost (TW+1)/TW of
the work (+6 % at 32×32, +13 % at 16×16, +25 % at 8×8).

The products are M = U @ V with U (16, O, C) and V (16, C, N·TH·(TW+1)): 16 large products
("batched", what CuPy uses, and NumPy whenever BLAS runs on one thread — inside `nn`'s worker threads,
nn/parallel.py). When BLAS may use several threads on NumPy (a layer called on its own), they are done
per image instead (one `matmul` call with a batch axis of 16·N small products; for dU the N per-image
products are then summed): OpenBLAS runs products that small on one thread, which keeps them fast on
a machine whose cores are shared with other work — there every multi-threaded BLAS call waits for its
second thread to be scheduled, and 16 large products per step measured up to 10–40× slower.
The keyword `products` ("per_image" or "batched") forces one; "auto" (the default) chooses as above.
y is (O, N, OH, OW) memory returned as an NCHW view, as `Conv2D` does, so the next layer reads it
without a transpose; dx likewise.

When it pays (NumPy, batch 128, float32, 2 shared cores; see bench/bench_winograd.py): the transforms
are memory-bound passes, so Winograd wins where the products dominate — C, O ≥ 32 at 16×16 and 32×32
(1.2–1.6× forward+backward) — is about even at 8×8 (ghost tiles) and loses clearly when C is small
(3 → 32: 0.3–0.4× forward), where im2col's product is cheap anyway.

Everything uses `backend.xp`, so it runs unchanged on NumPy and CuPy, in the input's dtype.
"""
import copy
import threading

import numpy as np

from nn import backend, parallel
from nn.layers.base import Layer
from nn.layers.winograd import G, check_arguments, winograd_supported

# The input and output transforms below are written out as the additions that the matrices Bᵀ and Aᵀ of
# nn/layers/winograd.py stand for; the kernel transform uses G as a matrix.

BIAS_SLOT = 5          # ξ = (1, 1): Aᵀ[:, 1] = (1, 1), so M[5] + b adds b to all four outputs of a tile
PRODUCTS = ("auto", "per_image", "batched")    # the values of the keyword `products`


# --- the transforms, on lists of whole-array slices ----------------------------------------------

def _bt(d, out):
    """Input transform along one axis: out[a] = Σ_i Bᵀ[a, i] · d[i]."""
    xp = backend.xp
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])


def _bt_adjoint(g, e):
    """The adjoint of `_bt`: e[i] = Σ_a Bᵀ[a, i] · g[a], summed where the views overlap. The views e[i]
    overlap (neighbouring tiles share pixels), but e[0] and e[1] do not overlap each other: they are
    written (=), then e[2] and e[3] are added (+=) on their strided slices. Memory under e[2] or e[3]
    that e[0] and e[1] do not cover must start at zero."""
    xp = backend.xp
    xp.copyto(e[0], g[0])                          # Bᵀ[:, 0] = ( 1, 0,  0,  0)
    xp.subtract(g[1], g[2], out=e[1])
    e[1] += g[3]                                   # Bᵀ[:, 1] = ( 0, 1, -1,  1)
    t = g[1] + g[2]
    t -= g[0]
    e[2] += t                                      # Bᵀ[:, 2] = (-1, 1,  1,  0)
    e[3] -= g[3]                                   # Bᵀ[:, 3] = ( 0, 0,  0, -1)


def _at(m, out):
    """Output transform along one axis: out[r] = Σ_a Aᵀ[r, a] · m[a]."""
    xp = backend.xp
    xp.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    xp.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


def _at_adjoint(d, out):
    """The adjoint of `_at`: out[a] = Σ_r A[a, r] · d[r] with A = (Aᵀ)ᵀ = [[1, 0], [1, 1], [1, -1], [0, -1]].
    out[0] may be d[0] itself and out[3] may be d[1] itself (done in place)."""
    xp = backend.xp
    xp.add(d[0], d[1], out=out[1])
    xp.subtract(d[0], d[1], out=out[2])
    if out[0] is not d[0]:
        xp.copyto(out[0], d[0])
    xp.negative(d[1], out=out[3])


# (G g Gᵀ)[a, b] = Σ_ij G[a, i] G[b, j] g[i, j]: for every kernel at once, one product with G ⊗ G (16 × 9)
GG = np.kron(G, G)


def kernel_transform(W, dtype):
    """(O, C, 3, 3) -> U (16, O, C):  U[4a + b] = (G g Gᵀ)[a, b],  as (G ⊗ G) @ W reshaped (9, O·C)."""
    xp = backend.xp
    O, C = W.shape[:2]
    return (xp.asarray(GG, dtype=dtype) @ W.astype(dtype, copy=False).reshape(O * C, 9).T).reshape(16, O, C)


def kernel_transform_adjoint(dU, dtype):
    """The adjoint of `kernel_transform`: dg = Gᵀ dU G for every kernel, (16, O, C) -> (O, C, 3, 3) in dtype."""
    xp = backend.xp
    _, O, C = dU.shape
    return (dU.reshape(16, O * C).T @ xp.asarray(GG, dtype=dU.dtype)).reshape(O, C, 3, 3).astype(dtype, copy=False)


# --- the 16 products -----------------------------------------------------------------------------

def _per_image(products):
    """Whether the 16 products run per image ("auto": on NumPy while BLAS may use several threads)."""
    if products not in PRODUCTS:
        raise ValueError(f"winograd: products must be one of {', '.join(PRODUCTS)}, got {products!r}")
    return products == "per_image" or (products == "auto" and backend.name == "numpy"
                                       and parallel.blas_threads() != 1)


def _products(U, V, N, per_image):
    """M[ξ] = U[ξ] @ V[ξ]: (16, O, C) @ (16, C, N·L) -> (16, O, N·L)."""
    xp = backend.xp
    if not per_image:
        return xp.matmul(U, V)
    (_, O, C), P = U.shape, V.shape[2]
    M = xp.empty((16, O, P), dtype=V.dtype)
    xp.matmul(U[:, None], V.reshape(16, C, N, P // N).transpose(0, 2, 1, 3),     # (16, N, C, L) views
              out=M.reshape(16, O, N, P // N).transpose(0, 2, 1, 3))
    return M


def _products_nt(dM, V, N, per_image):
    """dU[ξ] = dM[ξ] @ V[ξ]ᵀ: (16, O, N·L) @ (16, N·L, C) -> (16, O, C)."""
    xp = backend.xp
    if not per_image:
        return xp.matmul(dM, V.transpose(0, 2, 1))
    (_, O, P), C = dM.shape, V.shape[1]
    each = xp.matmul(dM.reshape(16, O, N, P // N).transpose(0, 2, 1, 3),
                     V.reshape(16, C, N, P // N).transpose(0, 2, 3, 1))        # (16, N, O, C)
    return each.sum(axis=1)


# --- geometry ------------------------------------------------------------------------------------

def _geometry(x_shape, padding):
    N, C, H, W = x_shape
    ph, pw = padding
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    TH, TW = (OH + 1) // 2, (OW + 1) // 2         # tiles needed; the last is cropped when OH/OW is odd
    Wp = 2 * (TW + 1)                             # row length of a row plane (ghost tile column included)
    P = N * TH * (TW + 1)                         # tiles per channel, ghost column included
    return OH, OW, TH, TW, Wp, P


def _row_phases(size, pad):
    """For each parity q of the padded row h + pad = 2k + q: (first row h0, its k0, number of rows)."""
    out = []
    for q in (0, 1):
        h0 = (q - pad) % 2
        out.append((h0, (h0 + pad) // 2, len(range(h0, size, 2))))
    return out


# --- forward and backward ------------------------------------------------------------------------

def winograd_forward(x, W, b, padding, products="auto", U=None):
    """y = conv3×3(x, W) + b, stride 1, zero padding `padding` (int or (ph, pw)).

    x: (N, C, H, W) float32/float64, any strides; W: (O, C, 3, 3) (PyTorch layout); b: (O,) or None.
    Returns (y, cache): y (N, O, OH, OW) in x's dtype, an NCHW view of (O, N, OH, OW) memory.
    products: how the 16 products run, "auto", "per_image" or "batched" (see the module's docstring).
    U: W's kernel transform `kernel_transform(W, x.dtype)` when the caller has it already (computed
    here otherwise); the cache keeps it for the backward pass.
    """
    xp = backend.xp
    ph, pw = check_arguments(x, W, padding, "winograd_forward")
    per_image = _per_image(products)
    N, C, H, Wd = x.shape
    O, dt = W.shape[0], x.dtype
    OH, OW, TH, TW, Wp, P = _geometry(x.shape, (ph, pw))
    F = C * P                                      # tiles in all channels

    # 1. The two row planes of the padded input, Xr[q][c·N + n, k·Wp + w] = x_pad[n, c, 2k + q, w].
    Xr = xp.zeros((2, C * N, (TH + 1) * Wp), dtype=dt)
    x_cnhw = x.transpose(1, 0, 2, 3)
    for q, (h0, k0, nh) in enumerate(_row_phases(H, ph)):
        Xr[q].reshape(C, N, TH + 1, Wp)[:, :, k0:k0 + nh, pw:pw + Wd] = x_cnhw[:, :, h0::2, :]

    # 2. Input transform V = (Bᵀ d) B: rows i (one plane, shifted by i // 2 rows), then columns j (step-2
    #    slices of the flat rows; two zeros of tail for the ghost column's last reads).
    R = xp.empty((4, 2 * F + 2), dtype=dt)        # R[a][2t + j] = Σ_i Bᵀ[a, i] d_ij(t)
    R[:, 2 * F:] = 0
    _bt([Xr[i % 2, :, (i // 2) * Wp:(i // 2 + TH) * Wp] for i in range(4)],
        [R[a, :2 * F].reshape(C * N, TH * Wp) for a in range(4)])
    V = xp.empty((4, 4, F), dtype=dt)             # V[a, b][t] = Σ_j Bᵀ[b, j] R[a][2t + j]
    _bt([R[:, j:j + 2 * F:2] for j in range(4)], V.transpose(1, 0, 2))
    V = V.reshape(16, C, P)

    # 3. Kernel transform and the 16 products M[ξ] = U[ξ] @ V[ξ]; bias into M[5].
    if U is None:
        U = kernel_transform(W, dt)
    M = _products(U, V, N, per_image)             # (16, O, P)
    if b is not None:
        M[BIAS_SLOT] += b.astype(dt, copy=False)[:, None]

    # 4. Output transform Aᵀ M A: rows a, then columns b into the two row planes of y, then into y.
    M = M.reshape(4, 4, O * P)
    T = xp.empty((2, 4, O * P), dtype=dt)         # T[r, b] = Σ_a Aᵀ[r, a] M[a, b]
    _at(M, T)
    Yr = xp.empty((2, 2 * O * P), dtype=dt)       # Yr[r][2t + s] = Σ_b Aᵀ[s, b] T[r, b][t]
    _at(T.transpose(1, 0, 2), [Yr[:, 0::2], Yr[:, 1::2]])
    y = xp.empty((O, N, OH, OW), dtype=dt)
    for r in (0, 1):
        nr = len(range(r, OH, 2))
        y[:, :, r::2, :] = Yr[r].reshape(O, N, TH, Wp)[:, :, :nr, :OW]
    cache = (tuple(x.shape), (ph, pw), V, U, b is not None)
    return y.transpose(1, 0, 2, 3), cache


def winograd_backward(dy, cache, W, input_grad=True, products="auto", kernel_grad="W"):
    """Gradients of `winograd_forward`: (dx, dW, db) for the upstream gradient dy (N, O, OH, OW), any strides.

    W must be the weights the forward pass used. dx is an NCHW view of (C, N, H, W) memory in the input's
    dtype (None with input_grad=False: steps 2's dV and 3-4 are skipped); db is None when the forward pass
    had no bias. products: as for `winograd_forward`. kernel_grad="U" returns dU (16, O, C), the gradient
    of the kernel transform, in dW's place (dW = `kernel_transform_adjoint(dU)`; see `WinogradConv`).
    """
    xp = backend.xp
    x_shape, (ph, pw), V, U, has_bias = cache
    N, C, H, Wd = x_shape
    O, dt = W.shape[0], V.dtype
    OH, OW, TH, TW, Wp, P = _geometry(x_shape, (ph, pw))
    F = C * P
    if tuple(dy.shape) != (N, O, OH, OW):
        raise ValueError(f"winograd_backward: expected dy of shape {(N, O, OH, OW)}, got {tuple(dy.shape)}")
    per_image = _per_image(products)

    # 1. Adjoint of the output transform, dM = A dY Aᵀ: dy into two row planes (ghost tiles stay zero),
    #    columns s (step-2 slices) into dM[0] and dM[3], then rows r.
    dYr = xp.zeros((2, 2 * O * P), dtype=dt)
    dy_cnhw = dy.transpose(1, 0, 2, 3)
    for r in (0, 1):
        nr = len(range(r, OH, 2))
        dYr[r].reshape(O, N, TH, Wp)[:, :, :nr, :OW] = dy_cnhw[:, :, r::2, :]
    dM = xp.empty((4, 4, O * P), dtype=dt)
    _at_adjoint([dYr[:, 0::2], dYr[:, 1::2]], dM[::3].transpose(1, 0, 2))   # E[r, b] -> dM[3r, b]
    e = [dM[0], dM[3]]
    _at_adjoint(e, [e[0], dM[1], dM[2], e[1]])                              # rows: dM[a] = Σ_r A[a, r] E[r]
    dM = dM.reshape(16, O, P)
    db = dM[BIAS_SLOT].sum(axis=1) if has_bias else None

    # 2. Adjoints of the 16 products and of the kernel transform.
    dU = _products_nt(dM, V, N, per_image)                                                 # (16, O, C)
    dW = dU if kernel_grad == "U" else kernel_transform_adjoint(dU, W.dtype)               # (O, C, 3, 3)
    if not input_grad:
        return None, dW, db
    dV = _products(U.transpose(0, 2, 1), dM, N, per_image).reshape(4, 4, F)   # (16, C, P)

    # 3. Adjoint of the input transform: columns j, then rows i (the forward's order reversed).
    #    j = 0, 1 (even and odd entries) and i = 0, 1 (one plane each) cover what they write once: only the
    #    tail beyond them and each plane's last row start at zero.
    dR = xp.empty((4, 2 * F + 2), dtype=dt)
    dR[:, 2 * F:] = 0
    _bt_adjoint([dV[:, b] for b in range(4)], [dR[:, j:j + 2 * F:2] for j in range(4)])
    dXr = xp.empty((2, C * N, (TH + 1) * Wp), dtype=dt)
    dXr[:, :, TH * Wp:] = 0
    _bt_adjoint([dR[a, :2 * F].reshape(C * N, TH * Wp) for a in range(4)],
                [dXr[i % 2, :, (i // 2) * Wp:(i // 2 + TH) * Wp] for i in range(4)])

    # 4. Row planes back to the image (the padding's gradient is dropped).
    dx = xp.empty((C, N, H, Wd), dtype=dt)
    for q, (h0, k0, nh) in enumerate(_row_phases(H, ph)):
        dx[:, :, h0::2, :] = dXr[q].reshape(C, N, TH + 1, Wp)[:, :, k0:k0 + nh, pw:pw + Wd]
    return dx.transpose(1, 0, 2, 3), dW, db


# --- the kernel transform once per pass: the replicas nn/data_parallel.py runs ----------------------

def may_run(conv):
    """True where `conv` (a Conv2D) may run Winograd on NumPy, so its chunks share one `KernelOnce`."""
    return (backend.name == "numpy" and conv.method in ("auto", "winograd")
            and winograd_supported(conv.kernel_size, conv.stride, conv.padding))


class KernelOnce:
    """U = `kernel_transform(W)` of one Conv2D for one pass: the first chunk that needs it computes it (under a
    lock, the chunks run on several threads), the others reuse it. A new one is made for every pass, so
    an optimizer step between passes is always seen."""

    def __init__(self, conv):
        self.conv, self.U, self._lock = conv, None, threading.Lock()

    def get(self, dtype):
        with self._lock:
            if self.U is None or self.U.dtype != dtype:
                self.U = kernel_transform(self.conv.params["W"], dtype)
            return self.U


class WinogradReplica(Layer):
    """One chunk's copy of a Conv2D that may run Winograd: the Conv2D's own forward and backward, with two
    savings. All chunks of a pass share one `KernelOnce` (U is computed once per pass, not once per chunk),
    and backward leaves dU (16, O, C) in grads["U"] instead of dW: nn/data_parallel.py sums the chunks' dU
    and `summed_grad` turns the sum into dW with one adjoint (the adjoint is linear, so this is the sum of
    the chunks' dW). It shares the Conv2D's parameters; where the Conv2D runs im2col (method "auto" on an
    input smaller than 8×8) it is a plain replica of it."""

    def __init__(self, conv, kernel):
        super().__init__()
        self.conv = copy.copy(conv)           # for the checks and the im2col path, with its own cache and grads
        self.conv.grads = {}
        self.params, self.kernel = conv.params, kernel

    def forward(self, x, training=True):
        conv = self.conv
        conv._check_input(x)
        if not conv._uses_winograd(x):
            self.cache = None
            return conv.forward(x, training)
        y, self.cache = winograd_forward(x, self.params["W"], self.params.get("b"), conv.padding,
                                         U=self.kernel.get(x.dtype))
        return y

    def backward(self, dy, input_grad=True):
        if self.cache is None:
            dx = self.conv.backward(dy, input_grad)
            self.grads = self.conv.grads
            return dx
        dx, self.grads["U"], db = winograd_backward(dy, self.cache, self.params["W"], input_grad, kernel_grad="U")
        if db is not None:
            self.grads["b"] = db
        return dx

    def backward_params(self, dy):
        self.backward(dy, input_grad=False)

    def summed_grad(self, key, total):
        """(parameter name, its gradient) from `total`, the chunks' grads[key] summed."""
        if key == "U":
            return "W", kernel_transform_adjoint(total, self.params["W"].dtype)
        return key, total

    def output_shape(self, input_shape):
        return self.conv.output_shape(input_shape)

    def __repr__(self):
        return f"WinogradReplica({self.conv!r})"
