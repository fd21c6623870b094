"""Batch normalisation (Ioffe & Szegedy 2015)."""
import numpy as np

from nn import backend
from nn.layers.base import Layer


class _BatchNorm(Layer):
    """Shared math of BatchNorm1D and BatchNorm2D; they differ only in the axes averaged over.

    Training forward (statistics of the batch, per channel c):
        mu = mean(x),  var = mean((x - mu)²),  x̂ = (x - mu) / sqrt(var + eps),  y = gamma · x̂ + beta
        running_mean ← (1 - momentum)·running_mean + momentum·mu
        running_var  ← (1 - momentum)·running_var  + momentum·var·m/(m - 1)     (m values per channel)
    Eval forward: the same with mu, var replaced by running_mean, running_var.
    Backward (training, m values per channel):
        dbeta = sum(dy),  dgamma = sum(dy · x̂),
        dx = gamma / sqrt(var + eps) · (dy - dbeta/m - x̂ · dgamma/m)
    Backward (eval): dx = gamma / sqrt(running_var + eps) · dy.
    """
    axes = None          # axes reduced over
    ndim = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        xp = backend.xp
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.params["gamma"] = xp.ones(num_features, dtype=np.float32)
        self.params["beta"] = xp.zeros(num_features, dtype=np.float32)
        self.buffers["running_mean"] = xp.zeros(num_features, dtype=np.float32)
        self.buffers["running_var"] = xp.ones(num_features, dtype=np.float32)

    def _bcast(self, v):
        """(C,) -> shape that broadcasts against the input: (1, C) or (1, C, 1, 1)."""
        return v.reshape((1, -1) + (1,) * (self.ndim - 2))

    def forward(self, x, training=True):
        if x.ndim != self.ndim or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input with {self.ndim} dimensions and {self.num_features} "
                             f"channels on axis 1, got shape {tuple(x.shape)}")
        gamma, beta = self._bcast(self.params["gamma"]), self._bcast(self.params["beta"])
        if training:
            m = x.size // x.shape[1]
            if m < 2:
                raise ValueError(f"{self!r}: training mode needs more than one value per channel, got shape {tuple(x.shape)}")
            mu = x.mean(axis=self.axes, keepdims=True)
            xc = x - mu
            var = (xc * xc).mean(axis=self.axes, keepdims=True)
            r = self.momentum
            self.buffers["running_mean"] = ((1 - r) * self.buffers["running_mean"] + r * mu.ravel()).astype(x.dtype)
            self.buffers["running_var"] = ((1 - r) * self.buffers["running_var"] + r * var.ravel() * (m / (m - 1))).astype(x.dtype)
        else:
            xc = x - self._bcast(self.buffers["running_mean"])
            var = self._bcast(self.buffers["running_var"])
        inv_std = 1.0 / backend.xp.sqrt(var + self.eps)
        x_hat = xc * inv_std
        self.cache = (x_hat, inv_std, training)
        return x_hat * gamma + beta

    def backward(self, dy):
        x_hat, inv_std, training = self.cache
        gamma = self._bcast(self.params["gamma"])
        dbeta = dy.sum(axis=self.axes)
        dgamma = (dy * x_hat).sum(axis=self.axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        if not training:
            return dy * (gamma * inv_std)
        m = dy.size // dy.shape[1]
        return (gamma * inv_std) * (dy - self._bcast(dbeta) / m - x_hat * self._bcast(dgamma) / m)

    def __repr__(self):
        return f"{type(self).__name__}({self.num_features})"


class BatchNorm1D(_BatchNorm):
    __doc__ = "Batch normalisation over (N, C) inputs: statistics per feature over the batch axis.\n" + _BatchNorm.__doc__
    axes = (0,)
    ndim = 2


class BatchNorm2D(_BatchNorm):
    __doc__ = "Batch normalisation over (N, C, H, W) inputs: statistics per channel over N, H and W.\n" + _BatchNorm.__doc__
    axes = (0, 2, 3)
    ndim = 4
