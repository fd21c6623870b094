"""Layers for G independent networks trained side by side as one (speed machinery, used to train the ten
per-digit DCGANs at once: one matrix product per layer for all ten, instead of ten small ones).

A *grouped batch* stacks the G networks' batches along the batch axis: (G·N, ...), rows g·N … (g+1)·N − 1
belonging to network g. Every parameter and buffer gains a leading group axis: network g's own weights are
`params[name][g]`, with exactly the shape the ungrouped layer has. Layers that act on each image alone
(ReLU, Upsample2D, MaxPool2D, Reshape, …) need no grouped form: they run on a grouped batch unchanged.

Each layer computes, for every group g, exactly what the ungrouped layer with weights [g] computes on the
batch of group g (the same sums; float32 rounding may differ in the last bits, as the products are batched):

    GroupedDense          y_g = x_g @ W_g + b_g                              W (G, in, out), b (G, out)
    GroupedConv2D         y_g = conv(x_g; W_g) + b_g  (im2col, one batched product)   W (G, O, C, kh, kw)
    GroupedConvTranspose2D  y_g = conv_transpose(x_g; W_g) + b_g                   W (G, in, out, kh, kw)
    GroupedBatchNorm2D    y_g = gamma_g · (x_g - mu_g) / sqrt(var_g + eps) + beta_g,
                          mu_g, var_g over group g's images only            gamma, beta (G, C)

`group_layers([layer_0, …, layer_{G-1}])` stacks G ungrouped layers of the same shape into one grouped layer.
"""
import copy

import numpy as np

from nn import backend
from nn.layers.base import Layer, _pair
from nn.layers.conv import Conv2D, ConvTranspose2D, conv_output_size, col2im, im2col
from nn.layers.dense import Dense
from nn.layers.norm import BatchNorm2D, _BatchNorm, running_statistics


def _groups_of(x, groups, what):
    """N, the batch size of each group, for a grouped batch x of G·N rows."""
    if x.shape[0] % groups:
        raise ValueError(f"{what}: a grouped batch needs a multiple of {groups} rows (one batch per group), "
                         f"got shape {tuple(x.shape)}")
    return x.shape[0] // groups


class GroupedDense(Layer):
    """G Dense layers at once, one per group:  y_g (N, out) = x_g (N, in) @ W_g (in, out) + b_g.

    Backward, per group:  dW_g = x_gᵀ @ dy_g,   db_g = sum_n dy_g[n],   dx_g = dy_g @ W_gᵀ
    (each a batched matrix product over the G groups).
    """

    def __init__(self, groups, in_features, out_features, bias=True):
        super().__init__()
        self.groups, self.in_features, self.out_features = int(groups), int(in_features), int(out_features)
        xp = backend.xp
        self.params["W"] = xp.zeros((groups, in_features, out_features), dtype=np.float32)
        if bias:
            self.params["b"] = xp.zeros((groups, out_features), dtype=np.float32)

    def output_shape(self, input_shape):
        return (self.out_features,)

    def forward(self, x, training=True):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input (G·N, {self.in_features}), got shape {tuple(x.shape)}")
        n = _groups_of(x, self.groups, repr(self))
        xg = x.reshape(self.groups, n, self.in_features)
        self.cache = xg
        y = xg @ self.params["W"]                                   # (G, N, out)
        if "b" in self.params:
            y += self.params["b"][:, None, :]
        return y.reshape(-1, self.out_features)

    def backward(self, dy):
        xg = self.cache
        dyg = dy.reshape(self.groups, -1, self.out_features)
        self.grads["W"] = xg.transpose(0, 2, 1) @ dyg
        if "b" in self.params:
            self.grads["b"] = dyg.sum(axis=1)
        return (dyg @ self.params["W"].transpose(0, 2, 1)).reshape(-1, self.in_features)

    def __repr__(self):
        return f"GroupedDense({self.groups}, {self.in_features}, {self.out_features})"


class GroupedConv2D(Layer):
    """G Conv2D layers at once (im2col: nn/layers/conv.py), one per group:

    Forward:   cols = im2col(x) for the whole grouped batch, (C·kh·kw, G, N·OH·OW) seen per group;
               Y_g (O, N·OH·OW) = W_g (O, C·kh·kw) @ cols_g + b_g       (one batched product)
    Backward:  dW_g = dY_g @ cols_gᵀ,   db_g = sum dY_g,   dcols_g = W_gᵀ @ dY_g,   dx = col2im(dcols)
    """

    def __init__(self, groups, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.groups, self.in_channels, self.out_channels = int(groups), int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        xp = backend.xp
        self.params["W"] = xp.zeros((groups, out_channels, in_channels) + self.kernel_size, dtype=np.float32)
        if bias:
            self.params["b"] = xp.zeros((groups, out_channels), dtype=np.float32)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (self.out_channels, conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))

    def forward(self, x, training=True):
        self._check_ndim(x, 4, f"input (G·N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got input of shape {tuple(x.shape)}")
        G, n = self.groups, _groups_of(x, self.groups, repr(self))
        cols = im2col(x, self.kernel_size, self.stride, self.padding)          # (C, kh, kw, G·N, OH, OW)
        OH, OW = cols.shape[4], cols.shape[5]
        cols_g = cols.reshape(-1, G, n * OH * OW).transpose(1, 0, 2)           # (G, C·kh·kw, N·OH·OW), a view
        W = self.params["W"].reshape(G, self.out_channels, -1)
        y = W @ cols_g                                                          # (G, O, N·OH·OW)
        if "b" in self.params:
            y += self.params["b"][:, :, None]
        self.cache = (x.shape, cols_g, (n, OH, OW))
        return y.reshape(G, self.out_channels, n, OH, OW).transpose(0, 2, 1, 3, 4).reshape(G * n, self.out_channels, OH, OW)

    def backward(self, dy):
        x_shape, cols_g, (n, OH, OW) = self.cache
        G, O = self.groups, self.out_channels
        dY = dy.reshape(G, n, O, OH * OW).transpose(0, 2, 1, 3).reshape(G, O, n * OH * OW)
        self.grads["W"] = (dY @ cols_g.transpose(0, 2, 1)).reshape(self.params["W"].shape)
        if "b" in self.params:
            self.grads["b"] = dY.sum(axis=2)
        W = self.params["W"].reshape(G, O, -1)
        dcols_g = W.transpose(0, 2, 1) @ dY                                     # (G, C·kh·kw, N·OH·OW)
        kh, kw = self.kernel_size
        dcols = backend.xp.ascontiguousarray(dcols_g.transpose(1, 0, 2)).reshape(
            self.in_channels, kh, kw, G * n, OH, OW)
        return col2im(dcols, x_shape, self.stride, self.padding)

    def __repr__(self):
        return (f"GroupedConv2D({self.groups}, {self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})")


class GroupedConvTranspose2D(Layer):
    """G ConvTranspose2D layers at once (nn/layers/conv.py), one per group:

    Forward:   cols_g (out·kh·kw, N·H·W) = W_gᵀ (out·kh·kw, in) @ X_g (in, N·H·W)   (one batched product),
               y = col2im(cols) for the whole grouped batch, + b_g
    Backward:  cols = im2col(dy),  dX_g = W_g @ cols_g,  dW_g = X_g @ cols_gᵀ,  db_g = sum dy_g
    """

    def __init__(self, groups, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True):
        super().__init__()
        self.groups, self.in_channels, self.out_channels = int(groups), int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.output_padding = _pair(output_padding)
        xp = backend.xp
        self.params["W"] = xp.zeros((groups, in_channels, out_channels) + self.kernel_size, dtype=np.float32)
        if bias:
            self.params["b"] = xp.zeros((groups, out_channels), dtype=np.float32)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw), (oph, opw) = self.kernel_size, self.stride, self.padding, self.output_padding
        return (self.out_channels, (H - 1) * sh - 2 * ph + kh + oph, (W - 1) * sw - 2 * pw + kw + opw)

    def forward(self, x, training=True):
        self._check_ndim(x, 4, f"input (G·N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got input of shape {tuple(x.shape)}")
        G, n = self.groups, _groups_of(x, self.groups, repr(self))
        _, H, W = x.shape[1:]
        _, OH, OW = self.output_shape(x.shape[1:])
        kh, kw = self.kernel_size
        X = x.reshape(G, n, self.in_channels, H * W).transpose(0, 2, 1, 3).reshape(G, self.in_channels, n * H * W)
        Wg = self.params["W"].reshape(G, self.in_channels, -1)                  # (G, in, out·kh·kw)
        cols = Wg.transpose(0, 2, 1) @ X                                        # (G, out·kh·kw, N·H·W)
        cols = backend.xp.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(self.out_channels, kh, kw, G * n, H, W)
        y = col2im(cols, (G * n, self.out_channels, OH, OW), self.stride, self.padding)
        if "b" in self.params:
            y = (y.reshape(G, n, self.out_channels, OH, OW) + self.params["b"][:, None, :, None, None]).reshape(y.shape)
        self.cache = (x.shape, X)
        return y

    def backward(self, dy):
        x_shape, X = self.cache
        G, n = self.groups, x_shape[0] // self.groups
        H, W = x_shape[2:]
        cols = im2col(dy, self.kernel_size, self.stride, self.padding)         # (out, kh, kw, G·N, H, W)
        cols_g = cols.reshape(-1, G, n * H * W).transpose(1, 0, 2)             # (G, out·kh·kw, N·H·W)
        Wg = self.params["W"].reshape(G, self.in_channels, -1)
        self.grads["W"] = (X @ cols_g.transpose(0, 2, 1)).reshape(self.params["W"].shape)
        if "b" in self.params:
            self.grads["b"] = dy.reshape((G, n) + dy.shape[1:]).sum(axis=(1, 3, 4))
        dX = Wg @ cols_g                                                        # (G, in, N·H·W)
        return dX.reshape(G, self.in_channels, n, H, W).transpose(0, 2, 1, 3, 4).reshape(x_shape)

    def __repr__(self):
        return (f"GroupedConvTranspose2D({self.groups}, {self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})")


class GroupedBatchNorm2D(_BatchNorm):
    """G BatchNorm2D layers at once: the grouped batch (G·N, C, H, W) is seen as (G, N, C, H, W) and each
    group is normalised with its own batch statistics (over its N images, H and W) and its own
    gamma_g, beta_g, running_mean_g, running_var_g (all (G, C)). The math is BatchNorm2D's:
    """
    __doc__ += _BatchNorm.__doc__
    axes = (1, 3, 4)
    ndim = 5

    def __init__(self, groups, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.groups = int(groups)
        xp = backend.xp
        for d in (self.params, self.buffers):
            for k, v in d.items():
                d[k] = xp.ascontiguousarray(xp.broadcast_to(v, (self.groups,) + v.shape))

    def _bcast(self, v):
        """(G, C) -> (G, 1, C, 1, 1), against the input seen as (G, N, C, H, W)."""
        return v.reshape(self.groups, 1, -1, 1, 1)

    def _split(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input (G·N, {self.num_features}, H, W), got shape {tuple(x.shape)}")
        n = _groups_of(x, self.groups, repr(self))
        return x.reshape((self.groups, n) + x.shape[1:])

    def forward(self, x, training=True):
        return super().forward(self._split(x), training).reshape(x.shape)

    def check_input(self, shape):
        pass                                   # _split checked the grouped batch

    def values_per_channel(self, shape):
        m = shape[1] * shape[3] * shape[4]     # one group's N·H·W
        if m < 2:
            raise ValueError(f"{self!r}: training mode needs more than one value per channel and group")
        return m

    def update_running(self, mu, var, m):
        shape = (self.groups, self.num_features)
        self.buffers["running_mean"], self.buffers["running_var"] = running_statistics(
            self.buffers["running_mean"], self.buffers["running_var"], mu.reshape(shape), var.reshape(shape),
            self.momentum, m)

    def backward(self, dy):
        dy5 = self._split(dy)
        dbeta, dgamma = self.parameter_grads(dy5)                   # (G, C) each
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        m = dy5.shape[1] * dy5.shape[3] * dy5.shape[4]
        return self.input_grad(dy5, dbeta, dgamma, m).reshape(dy.shape)

    def __repr__(self):
        return f"GroupedBatchNorm2D({self.groups}, {self.num_features})"


def group_layers(layers):
    """One grouped layer from G ungrouped layers of the same shape (their parameters and buffers stacked
    along a new first axis, copied); a layer without parameters or buffers is shared as it is (a copy).
    Supports Dense, Conv2D (run by im2col), ConvTranspose2D, BatchNorm2D and parameter-free layers."""
    first, xp = layers[0], backend.xp
    G = len(layers)
    if type(first) is Dense:
        grouped = GroupedDense(G, first.in_features, first.out_features, bias="b" in first.params)
    elif type(first) is Conv2D:
        grouped = GroupedConv2D(G, first.in_channels, first.out_channels, first.kernel_size, first.stride,
                                first.padding, bias="b" in first.params)
    elif type(first) is ConvTranspose2D:
        grouped = GroupedConvTranspose2D(G, first.in_channels, first.out_channels, first.kernel_size, first.stride,
                                         first.padding, first.output_padding, bias="b" in first.params)
    elif type(first) is BatchNorm2D:
        grouped = GroupedBatchNorm2D(G, first.num_features, first.eps, first.momentum)
    elif not first.params and not first.buffers:
        return copy.deepcopy(first)
    else:
        raise ValueError(f"group_layers: no grouped form of {first!r}")
    if any(type(layer) is not type(first) for layer in layers):
        raise ValueError(f"group_layers: layers of different kinds: {', '.join(map(repr, layers))}")
    for d, key in [(grouped.params, k) for k in grouped.params] + [(grouped.buffers, k) for k in grouped.buffers]:
        parts = [(layer.params if d is grouped.params else layer.buffers)[key] for layer in layers]
        if any(p.shape != parts[0].shape for p in parts):
            raise ValueError(f"group_layers: {key} differs in shape between the layers ({first!r})")
        d[key] = xp.stack([backend.asarray(p) for p in parts]).astype(parts[0].dtype)
    return grouped
