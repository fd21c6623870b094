"""Optimizers. Each updates parameters in place from the gradients the last backward pass left
in `layer.grads`; its state (momentum buffers, Adam moments, step count) is keyed by the parameter's
name ("3.W"), so `state_dict()` is a plain dict of arrays that saves to .npz.

An optimizer takes one model or several (`Adam([refiner, head])`).

Each optimizer's math is its `update` method, written for one parameter. `step` applies it to every
parameter; nn/optim_flat.py (speed machinery, the same numbers) first gathers all parameters, gradients
and state into one flat buffer each, so that `update` runs once per step instead of once per parameter:
on a GPU that is a handful of kernel launches instead of hundreds.
"""
import numpy as np

from nn import backend, optim_flat


class Optimizer:
    def __init__(self, models, lr):
        self.models = list(models) if isinstance(models, (list, tuple)) else [models]
        self.lr = float(lr)
        self.state = {}
        self.t = 0

    state_suffixes = ()   # the per-parameter state buffers `update` takes, as suffixes of the key ("3.W.m")

    def _params(self):
        for m, model in enumerate(self.models):
            for name, p, g in model.named_parameters():
                if g is None:
                    raise RuntimeError(f"{type(self).__name__}: parameter {name} has no gradient; call backward first")
                yield f"{m}/{name}", p, g

    def _buffer(self, key, p):
        if key not in self.state:
            self.state[key] = backend.xp.zeros_like(p)
        return self.state[key]

    def step(self):
        """One update of every parameter from its gradient."""
        self.t += 1
        if optim_flat.step(self):     # all parameters at once, as flat buffers (same results)
            return
        for key, p, g in self._params():
            self.update(p, g, *[self._buffer(key + suffix, p) for suffix in self.state_suffixes])

    def update(self, p, g, *state):
        raise NotImplementedError

    def zero_state(self):
        self.state, self.t = {}, 0

    def state_dict(self):
        d = {k: backend.to_numpy(v).copy() for k, v in self.state.items()}   # copies: no aliasing
        d["__t__"] = np.array(self.t)
        d["__lr__"] = np.array(self.lr)
        return d

    def load_state_dict(self, d):
        d = dict(d)
        self.t = int(d.pop("__t__"))
        self.lr = float(d.pop("__lr__", self.lr))
        self.state = {k: backend.xp.array(v) for k, v in d.items()}          # copies onto the device
        return self


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and weight decay (PyTorch's formulation):

        g ← g + weight_decay · p
        v ← momentum · v + g
        p ← p - lr · v
    """

    def __init__(self, models, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(models, lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.state_suffixes = ("",) if self.momentum else ()    # the velocity v, keyed like its parameter

    def update(self, p, g, v=None):
        """p and v in place; g is left as it is."""
        if self.weight_decay:
            g = g + self.weight_decay * p
        if v is not None:
            v *= self.momentum
            v += g
            g = v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and optional (L2) weight decay:

        g ← g + weight_decay · p
        m ← β1·m + (1 - β1)·g,      v ← β2·v + (1 - β2)·g²
        m̂ = m / (1 - β1^t),         v̂ = v / (1 - β2^t)
        p ← p - lr · m̂ / (sqrt(v̂) + eps)
    """

    state_suffixes = (".m", ".v")

    def __init__(self, models, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(models, lr)
        self.beta1, self.beta2 = map(float, betas)
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def update(self, p, g, m, v):
        """p, m and v in place (self.t, the step count, already counts this step); g is left as it is."""
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        if self.weight_decay:
            g = g + self.weight_decay * p
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        p -= (self.lr / c1) * m / (backend.xp.sqrt(v / c2) + self.eps)


# ----------------------------------------------------------------------------- weight averaging

def ema_decay(t, decay):
    """The decay to use at step t (t = 0, 1, ...): min(decay, (1 + t) / (10 + t)). The ramp lets the
    average forget the initial weights early on, when they are far from the trained ones."""
    return min(float(decay), (1 + t) / (10 + t))


def ema_update(average, model, decay):
    """Exponential moving average of the weights, in place, for two models of the same architecture:
        θ_avg ← decay·θ_avg + (1 - decay)·θ
    for every parameter and every BatchNorm buffer (running mean and variance)."""
    if optim_flat.ema_update(average, model, decay):     # all of them at once, as flat buffers (same results)
        return
    for avg_layer, layer in zip(average.layers, model.layers):
        for avg_dict, dict_ in ((avg_layer.params, layer.params), (avg_layer.buffers, layer.buffers)):
            for key, value in dict_.items():
                avg_dict[key] *= decay
                avg_dict[key] += (1 - decay) * value
