"""Layers that only move numbers around (or drop or scale some of them)."""
import numpy as np

from nn import backend
from nn.layers.base import Layer


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W), in C-order (as PyTorch);  backward reshapes back."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=True):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Reshape(Layer):
    """(N, ...) -> (N, *shape); the batch axis is kept, `shape` excludes it (Reshape((256, 4, 4)))."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def output_shape(self, input_shape):
        return self.shape

    def forward(self, x, training=True):
        if int(np.prod(x.shape[1:])) != int(np.prod(self.shape)):
            raise ValueError(f"{self!r}: cannot reshape input of shape {tuple(x.shape)} to (N, {', '.join(map(str, self.shape))})")
        self.in_shape = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, dy):
        return dy.reshape(self.in_shape)

    def __repr__(self):
        return f"Reshape({self.shape})"


class Dropout(Layer):
    """Inverted dropout. Training: y = x · m / (1 - p) with m ~ Bernoulli(1 - p); eval: y = x.
    Backward: dx = dy · m / (1 - p)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x, training=True):
        if not training or self.p == 0:
            self.scale = None
            return x
        keep = backend.random_uniform(x.shape, x.dtype) >= self.p
        self.scale = keep * x.dtype.type(1 / (1 - self.p))
        return x * self.scale

    def backward(self, dy):
        return dy if self.scale is None else dy * self.scale

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Scale(Layer):
    """Multiplication by a fixed number c (no parameters):  y = c · x;  backward: dx = c · dy."""

    def __init__(self, c):
        super().__init__()
        self.c = float(c)

    def forward(self, x, training=True):
        return x * x.dtype.type(self.c)

    def backward(self, dy):
        return dy * dy.dtype.type(self.c)

    def __repr__(self):
        return f"Scale({self.c:g})"
