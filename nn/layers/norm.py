"""Batch normalisation (Ioffe & Szegedy 2015)."""
import numpy as np

from nn import backend, fused
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
        self.check_input(x.shape)
        if not training:
            return self.normalize(x - self._bcast(self.buffers["running_mean"]),
                                  self._bcast(self.buffers["running_var"]), training=False)
        m = self.values_per_channel(x.shape)
        mu = x.mean(axis=self.axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=self.axes, keepdims=True)
        self.update_running(mu, var, m)
        return self.normalize(xc, var)

    def check_input(self, shape):
        if len(shape) != self.ndim or shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input with {self.ndim} dimensions and {self.num_features} "
                             f"channels on axis 1, got shape {tuple(shape)}")

    def values_per_channel(self, shape):
        """m, the number of values each channel's statistics average over (at least 2 in training)."""
        m = int(np.prod(shape)) // shape[1]
        if m < 2:
            raise ValueError(f"{self!r}: training mode needs more than one value per channel, got shape {tuple(shape)}")
        return m

    def update_running(self, mu, var, m):
        """running ← (1 - momentum)·running + momentum·batch statistic (the variance made unbiased)."""
        self.buffers["running_mean"], self.buffers["running_var"] = running_statistics(
            self.buffers["running_mean"], self.buffers["running_var"], mu.ravel(), var.ravel(), self.momentum, m)

    def normalize(self, xc, var, training=True):
        """y = gamma · x̂ + beta with x̂ = xc / sqrt(var + eps), for the centred input xc = x - mu."""
        inv_std = 1.0 / backend.xp.sqrt(var + self.eps)
        x_hat, y = scale_and_shift(xc, inv_std, self._bcast(self.params["gamma"]), self._bcast(self.params["beta"]))
        self.cache = (x_hat, inv_std, training)
        return y

    def backward(self, dy):
        dbeta, dgamma = self.parameter_grads(dy)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return self.input_grad(dy, dbeta, dgamma, dy.size // dy.shape[1])

    def parameter_grads(self, dy):
        """(dbeta, dgamma) = (sum(dy), sum(dy · x̂)) over the averaged axes."""
        x_hat = self.cache[0]
        return dy.sum(axis=self.axes), (dy * x_hat).sum(axis=self.axes)

    def input_grad(self, dy, dbeta, dgamma, m):
        """dx from dy and the batch's dbeta, dgamma (m values per channel), as in the class docstring."""
        x_hat, inv_std, training = self.cache
        scale = self._bcast(self.params["gamma"]) * inv_std
        if not training:
            return dy * scale
        return normalized_input_grad(dy, x_hat, scale, self._bcast(dbeta) / m, self._bcast(dgamma), m)

    def __repr__(self):
        return f"{type(self).__name__}({self.num_features})"


def running_statistics(running_mean, running_var, mu, var, r, m):
    """The new running averages (new arrays): running ← (1 - r)·running + r·batch statistic, the batch's
    variance made unbiased by m/(m - 1) (m values per channel)."""
    # on a GPU: one kernel (nn/fused.py)
    if fused.ready("batchnorm_running", running_statistics, running_mean, running_var, mu, var):
        return fused.batchnorm_running(running_mean, running_var, mu, var, r, m)
    dtype = mu.dtype
    unbiased = var * (m / (m - 1))
    return ((1 - r) * running_mean + r * mu).astype(dtype), ((1 - r) * running_var + r * unbiased).astype(dtype)


def scale_and_shift(xc, inv_std, gamma, beta):
    """(x̂, y) with x̂ = xc · inv_std and y = gamma · x̂ + beta (per-channel values broadcast)."""
    # on a GPU: one kernel (nn/fused.py)
    if fused.ready("batchnorm_scale_shift", scale_and_shift, xc, inv_std, gamma, beta):
        return fused.batchnorm_scale_shift(xc, inv_std, gamma, beta)
    x_hat = xc * inv_std
    return x_hat, x_hat * gamma + beta


def normalized_input_grad(dy, x_hat, scale, dbeta_over_m, dgamma, m):
    """dx = scale · (dy - dbeta/m - x̂ · dgamma/m), scale = gamma / sqrt(var + eps) (per channel, broadcast)."""
    # on a GPU: one kernel (nn/fused.py)
    if fused.ready("batchnorm_input_grad", normalized_input_grad, dy, x_hat, scale, dbeta_over_m, dgamma):
        return fused.batchnorm_input_grad(dy, x_hat, scale, dbeta_over_m, dgamma, m)
    return scale * (dy - dbeta_over_m - x_hat * dgamma / m)


class BatchNorm1D(_BatchNorm):
    __doc__ = "Batch normalisation over (N, C) inputs: statistics per feature over the batch axis.\n" + _BatchNorm.__doc__
    axes = (0,)
    ndim = 2


class BatchNorm2D(_BatchNorm):
    __doc__ = "Batch normalisation over (N, C, H, W) inputs: statistics per channel over N, H and W.\n" + _BatchNorm.__doc__
    axes = (0, 2, 3)
    ndim = 4


class Standardize(Layer):
    """Per-image standardisation (no parameters): each sample n is shifted and scaled to mean 0 and
    variance 1 over all its values (channels, height and width together; m values per sample):

        mu_n = mean(x_n),  var_n = mean((x_n - mu_n)²),  y_n = (x_n - mu_n) / sqrt(var_n + eps)
    Backward (s_n = sqrt(var_n + eps)):
        dx_n = (dy_n - mean(dy_n) - y_n · mean(dy_n · y_n)) / s_n

    With per_channel=True the same holds for each channel (n, c) of an (N, C, H, W) input on its own
    (the means over its H·W values): that also removes a colour cast and per-channel contrast.

    The same in training and evaluation: it removes each image's brightness and contrast, so a classifier
    cannot tell images apart by them. eps keeps nearly flat images from being blown up (its default, 1e-3
    on the [-1, 1] scale, is a standard deviation of about 4 grey levels)."""

    def __init__(self, eps=1e-3, per_channel=False):
        super().__init__()
        self.eps = float(eps)
        self.per_channel = bool(per_channel)
        self.y = self.s = None

    def _axes(self, ndim):
        if self.per_channel and ndim < 3:
            raise ValueError(f"Standardize(per_channel=True) needs (N, C, ...) inputs, got {ndim} axes")
        return tuple(range(2 if self.per_channel else 1, ndim))

    def forward(self, x, training=True):
        axes = self._axes(x.ndim)
        mu = x.mean(axis=axes, keepdims=True)
        centred = x - mu
        self.s = backend.xp.sqrt((centred * centred).mean(axis=axes, keepdims=True) + x.dtype.type(self.eps))
        self.y = centred / self.s
        return self.y

    def backward(self, dy):
        axes = self._axes(dy.ndim)
        y = self.y
        return (dy - dy.mean(axis=axes, keepdims=True) - y * (dy * y).mean(axis=axes, keepdims=True)) / self.s

    def __repr__(self):
        return f"Standardize(eps={self.eps:g}{', per_channel=True' if self.per_channel else ''})"
