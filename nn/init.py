"""Weight initialisation. Weights are drawn on the host from the seeded generator of
`nn.backend` and then moved to the current device, so NumPy and CuPy runs start equal.

- `he_normal`:     W ~ N(0, 2 / fan_in)                 (He et al. 2015; for ReLU nets)
- `glorot_uniform`: W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out))   (Glorot & Bengio 2010)
- `normal`:        W ~ N(mean, std²) (DCGAN's recipe, std = 0.02, is in gan/dcgan/nets.py)
"""
import numpy as np

from nn import backend


def _to_device(w, dtype):
    return backend.asarray(w.astype(dtype))


def he_normal(shape, fan_in, dtype=np.float32):
    return _to_device(backend.host_rng().normal(0.0, np.sqrt(2.0 / fan_in), size=shape), dtype)


def glorot_uniform(shape, fan_in, fan_out, dtype=np.float32):
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return _to_device(backend.host_rng().uniform(-a, a, size=shape), dtype)


def normal(shape, mean=0.0, std=0.02, dtype=np.float32):
    return _to_device(backend.host_rng().normal(mean, std, size=shape), dtype)
