"""Fully connected layer."""
import numpy as np

from nn import backend, init
from nn.layers.base import Layer


class Dense(Layer):
    """Fully connected (affine) layer, y = x @ W + b.

    Forward:   y (N, out) = x (N, in) @ W (in, out) + b
    Backward:  dW = xᵀ @ dy,   db = sum_n dy[n],   dx = dy @ Wᵀ

    W is (in_features, out_features) — note: the transpose of PyTorch's Linear.weight.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.params["W"] = init.he_normal((in_features, out_features), in_features)
        if bias:
            self.params["b"] = backend.xp.zeros(out_features, dtype=np.float32)

    def output_shape(self, input_shape):
        return (self.out_features,)

    def forward(self, x, training=True):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input (N, {self.in_features}), got shape {tuple(x.shape)}")
        self.cache = x
        y = x @ self.params["W"]
        if "b" in self.params:
            y += self.params["b"]
        return y

    def backward(self, dy):
        x = self.cache
        self.grads["W"] = x.T @ dy
        if "b" in self.params:
            self.grads["b"] = dy.sum(axis=0)
        return dy @ self.params["W"].T

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"
