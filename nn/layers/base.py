"""The layer interface shared by every layer (CS231n style).

    y  = layer.forward(x, training=True)   # caches what backward needs
    dx = layer.backward(dy)                # fills layer.grads[name] for every layer.params[name]
    layer.backward_params(dy)              # the same without dx (for a net's first layer)

`params` and `grads` are dicts of arrays with the same keys; `buffers` holds state that is
saved but not trained (BatchNorm's running statistics). Parameters are updated in place.
"""
import numpy as np

from nn import backend


def _pair(v):
    """An int or a pair of ints -> (int, int): kernel sizes, strides and paddings as (height, width)."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


class Layer:
    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def backward_params(self, dy):
        """Fill `grads` only, for a layer whose input needs no gradient (the first of a net); layers that
        can skip computing dx then (Conv2D) do so."""
        self.backward(dy)

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def output_shape(self, input_shape):
        """Shape of the output (without the batch axis) for an input of `input_shape`."""
        return input_shape

    def astype(self, dtype):
        """Cast every parameter and buffer (e.g. to float64 for a gradient check)."""
        for d in (self.params, self.buffers):
            for k, v in d.items():
                d[k] = v.astype(dtype)
        self.grads = {}
        return self

    def to_device(self):
        """Move parameters and buffers to the current backend's device."""
        for d in (self.params, self.buffers):
            for k, v in d.items():
                d[k] = backend.asarray(v)
        self.grads = {}
        return self

    def _check_ndim(self, x, ndim, what):
        if x.ndim != ndim:
            raise ValueError(f"{type(self).__name__}: expected {what} ({ndim}-D), got shape {tuple(x.shape)}")

    def __repr__(self):
        return f"{type(self).__name__}()"


def num_params(layer):
    return int(sum(np.prod(p.shape) for p in layer.params.values()))
