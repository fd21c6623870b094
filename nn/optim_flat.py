"""The optimizers' step and the weight average over flat buffers: speed machinery, the same numbers.

nn/optim.py states each optimizer's math once, in its `update(p, g, *state)` method, for one parameter,
and `Optimizer.step` calls it parameter by parameter. Adam's update is about a dozen array operations, so
one DCGAN iteration (two Adams over about 24 parameters) makes some 300 small operations; on a GPU each
is a kernel launch costing the host 8-16 µs, far longer than the work itself. This module makes a step
a handful of operations:

- `FlatBuffer`: arrays of one dtype that live as views of one contiguous 1-D buffer. The model's
  parameters become such views (each `layer.params[key]` is replaced by its view, so the layers read and
  the optimizer writes the same memory), and so do the optimizer's state buffers (`opt.state[key]` stays
  one array per parameter, so `state_dict()` and saved checkpoints do not change).
- `step(opt)`: gathers the gradients into one flat buffer (one `concatenate`: a single kernel on CuPy),
  then runs the optimizer's update once over the flat buffers. On NumPy that is `opt.update` itself,
  the very expression nn/optim.py states; on CuPy it is one fused kernel of nn/fused.py, whose body is
  the same expression written in CUDA beside the Python it replaces (checked against it at first use;
  tests/test_cupy_parity.py compares the two on a GPU).
- `ema_update(average, model, decay)`: the weight average θ_avg ← decay·θ_avg + (1 − decay)·θ, with the
  average's parameters and buffers as one flat buffer and the model's gathered by one `concatenate`.

Elementwise float operations give the same result whatever the array's length, so on NumPy the flat step
equals the per-parameter step bit for bit (tests/test_nn_model.py checks it). Whenever a layout no longer
holds (a loaded state replaced the arrays, a parameter was added, BatchNorm's running statistics were
reassigned by a training pass of the average) the buffers are rebuilt from the current arrays before the
step. Mixed dtypes, or models that are not `Sequential`s, take the per-parameter path. NN_FLAT_OPTIM=0
switches this module off (the per-parameter path everywhere).
"""
import os
import weakref

from nn import backend, fused

ENABLED = os.environ.get("NN_FLAT_OPTIM", "1").strip() != "0"

_optimizers = weakref.WeakKeyDictionary()   # optimizer -> its _FlatStep (kept off the object: copies rebuild)
_averages = weakref.WeakKeyDictionary()     # average model -> its _FlatAverage


class FlatBuffer:
    """Arrays of one dtype as views of one 1-D buffer `flat`. Built from `slots`, pairs (mapping, key):
    each array is copied into the buffer and `mapping[key]` is replaced by its view, so in-place updates of
    `flat` reach every array and code reading `mapping[key]` sees them. `intact()`: every slot still holds
    its view (a load or a reassignment replaces it; then the buffer must be rebuilt)."""

    def __init__(self, slots):
        xp = backend.xp
        self.slots = list(slots)
        arrays = [mapping[key] for mapping, key in self.slots]
        self.flat = xp.concatenate([xp.ravel(a) for a in arrays])
        self.views, start = [], 0
        for (mapping, key), a in zip(self.slots, arrays):
            view = self.flat[start:start + a.size].reshape(a.shape)
            mapping[key] = view
            self.views.append(view)
            start += a.size

    def intact(self):
        return all(mapping.get(key) is view for (mapping, key), view in zip(self.slots, self.views))


def _one_dtype(arrays):
    return bool(arrays) and len({a.dtype for a in arrays}) == 1


def _named_params(opt):
    """[(key, layer, param key)] in `Optimizer._params` order; None where a model is not a Sequential."""
    out = []
    for m, model in enumerate(opt.models):
        if not hasattr(model, "layers"):
            return None
        for i, layer in enumerate(model.layers):
            out.extend((f"{m}/{i}.{key}", layer, key) for key in layer.params)
    return out


class _FlatStep:
    """One optimizer's flat buffers: parameters, gradients, and one buffer per state suffix."""

    def __init__(self, opt, named):
        xp = backend.xp
        self.names = [(id(layer), key) for _, layer, key in named]
        self.state_dict_ = opt.state
        self.params = FlatBuffer([(layer.params, key) for _, layer, key in named])
        self.state = []
        for suffix in opt.state_suffixes:
            for name, layer, key in named:
                if name + suffix not in opt.state:
                    opt.state[name + suffix] = xp.zeros_like(layer.params[key])
            self.state.append(FlatBuffer([(opt.state, name + suffix) for name, _, _ in named]))
        self.grad = xp.empty_like(self.params.flat)

    def fits(self, opt, named):
        return (opt.state is self.state_dict_ and [(id(layer), key) for _, layer, key in named] == self.names
                and self.params.intact() and all(s.intact() for s in self.state))


def step(opt):
    """Run `opt`'s update once over flat buffers of all its parameters. False (nothing done) where this
    module is off or does not apply; the caller then updates parameter by parameter."""
    if not ENABLED:
        return False
    named = _named_params(opt)
    if named is None or not _one_dtype([layer.params[key] for _, layer, key in named]):
        return False
    grads = []
    for name, layer, key in named:
        g = layer.grads.get(key)
        if g is None:
            raise RuntimeError(f"{type(opt).__name__}: parameter {name.partition('/')[2]} has no gradient; "
                               "call backward first")
        grads.append(backend.xp.ravel(g))
    flat = _optimizers.get(opt)
    if flat is None or not flat.fits(opt, named):
        flat = _optimizers[opt] = _FlatStep(opt, named)
    backend.xp.concatenate(grads, out=flat.grad)
    update = _fused_update(opt) or type(opt).update
    update(opt, flat.params.flat, flat.grad, *[s.flat for s in flat.state])
    return True


class _FlatAverage:
    def __init__(self, average):
        self.names = [(id(layer), key) for layer in average.layers for d in (layer.params, layer.buffers) for key in d]
        self.values = FlatBuffer([(d, key) for layer in average.layers for d in (layer.params, layer.buffers)
                                  for key in d])

    def fits(self, average):
        return (self.values.intact() and
                [(id(layer), key) for layer in average.layers for d in (layer.params, layer.buffers) for key in d]
                == self.names)


def ema_update(average, model, decay):
    """θ_avg ← decay·θ_avg + (1 − decay)·θ over every parameter and buffer at once (see nn.optim.ema_update,
    which states it array by array). False where this module is off or does not apply."""
    if not ENABLED or not (hasattr(average, "layers") and hasattr(model, "layers")):
        return False
    current = [d[key] for layer in model.layers for d in (layer.params, layer.buffers) for key in d]
    own = [d[key] for layer in average.layers for d in (layer.params, layer.buffers) for key in d]
    if not _one_dtype(current + own) or [a.shape for a in current] != [a.shape for a in own]:
        return False
    flat = _averages.get(average)
    if flat is None or not flat.fits(average):
        flat = _averages[average] = _FlatAverage(average)
    xp = backend.xp
    theta = xp.concatenate([xp.ravel(a) for a in current])
    average_update = fused.average if fused.ready("average", _average_plain) else _average_plain
    average_update(flat.values.flat, theta, decay)
    return True


def _average_plain(flat_average, theta, decay):
    """nn.optim.ema_update's expression over the flat buffers (what the NumPy backend runs)."""
    flat_average *= decay
    flat_average += (1 - decay) * theta


def _fused_update(opt):
    """The fused kernel (nn/fused.py) standing for `type(opt).update` on a GPU, or None: only for nn.optim's
    SGD and Adam themselves (a subclass may change the update), and only once the kernel passed its check."""
    if type(opt).__module__ != "nn.optim":
        return None
    name = {"SGD": "sgd" if getattr(opt, "state_suffixes", ()) else "sgd_no_momentum", "Adam": "adam"}.get(type(opt).__name__)
    if name is None or not fused.ready(name, type(opt).update):
        return None
    return fused.sgd if name.startswith("sgd") else fused.adam
