"""The optimizers' step and the weight average over flat buffers: speed machinery, the same numbers.

nn/optim.py states each optimizer's math once, in its `update(p, g, *state)` method, for one parameter,
and `Optimizer.step` calls it parameter by parameter. Adam's update is about a dozen array operations, so
one DCGAN iteration (two Adams over 22 parameters) makes some 290 small operations; on a GPU each
is a kernel launch costing the host 8-16 µs, far longer than the work itself. This module makes a step
a handful of operations:

- `FlatBuffer`: arrays of one dtype that live as views of one contiguous 1-D buffer. The model's
  parameters become such views (each `layer.params[key]` is replaced by its view, so the layers read and
  the optimizer writes the same memory), and so do the optimizer's state buffers (`opt.state[key]` stays
  one array per parameter, so `state_dict()` and saved checkpoints do not change).
- `step(opt)`: gathers the gradients into one flat buffer (one `concatenate`: on CuPy a single kernel for
  more than 8 arrays of under 2 MiB on average, plus three small host-to-device copies of its pointers),
  then runs the optimizer's update once over the flat buffers. On NumPy that is `opt.update` itself,
  the very expression nn/optim.py states; on CuPy it is one fused kernel of nn/fused.py, whose body is
  the same expression written in CUDA beside the Python it replaces (checked against it at first use;
  tests/test_cupy_parity.py compares the two on a GPU).
- `ema_update(average, model, decay)`: the weight average θ_avg ← decay·θ_avg + (1 − decay)·θ, with the
  average's parameters and buffers as one flat buffer and the model's gathered by one `concatenate`.

Elementwise float operations give the same result whatever the array's length, so on NumPy the flat step
equals the per-parameter step bit for bit (tests/test_optim_flat.py checks it). Whenever a layout no longer
holds (a loaded state replaced the arrays, a parameter was added, BatchNorm's running statistics were
reassigned by a training pass of the average) the buffers are rebuilt from the current arrays before the
step. Mixed dtypes, a layer twice, or models without a `layers` list take the per-parameter path. NN_FLAT_OPTIM=0
switches this module off (the per-parameter path everywhere).
"""
import os
import weakref

from nn import backend, fused

ENABLED = os.environ.get("NN_FLAT_OPTIM", "1").strip() != "0"

_optimizers = weakref.WeakKeyDictionary()   # optimizer -> its _FlatStep (kept off the object: copies rebuild)
_averages = weakref.WeakKeyDictionary()     # average model -> (FlatBuffer of its values, scratch for the model's)


class FlatBuffer:
    """Arrays of one dtype as views of one 1-D buffer `flat`. Built from `slots`, pairs (mapping, key):
    each array is copied into the buffer and `mapping[key]` is replaced by its view, so in-place updates of
    `flat` reach every array and code reading `mapping[key]` sees them. Each view starts on a multiple of
    ALIGN elements (128 bytes in float32), as each parameter would on its own, so the matrix products
    that read them see aligned memory; the gaps hold zeros.
    `holds(slots)`: the same slots, every one still holding its view (a load, a reassignment or a new dict
    replaces them; the buffer must then be rebuilt). `gather(arrays, out)` writes arrays of the slots'
    shapes into a buffer of the same layout, in one `concatenate`."""
    ALIGN = 32

    def __init__(self, slots):
        xp = backend.xp
        self.slots = list(slots)
        arrays = [mapping[key] for mapping, key in self.slots]
        starts, end = [], 0
        for a in arrays:
            starts.append(end)
            end = -(-(end + a.size) // self.ALIGN) * self.ALIGN
        self.flat = xp.zeros(end, dtype=arrays[0].dtype)
        self.views, self._gaps = [], []
        for (mapping, key), a, start in zip(self.slots, arrays, starts):
            view = self.flat[start:start + a.size].reshape(a.shape)
            view[...] = a
            mapping[key] = view
            self.views.append(view)
        for a, start, next_start in zip(arrays, starts, starts[1:] + [end]):
            gap = next_start - start - a.size
            self._gaps.append(xp.zeros(gap, dtype=self.flat.dtype) if gap else None)

    def holds(self, slots):
        return (len(slots) == len(self.slots)
                and all(m is mine and k == my_k for (m, k), (mine, my_k) in zip(slots, self.slots))
                and all(m.get(k) is view for (m, k), view in zip(self.slots, self.views)))

    def gather(self, arrays, out):
        pieces = []
        for a, gap in zip(arrays, self._gaps):
            pieces.append(backend.xp.ravel(a))
            if gap is not None:
                pieces.append(gap)
        backend.xp.concatenate(pieces, out=out)


def _usable(slots, arrays):
    """True where one flat buffer can hold these arrays: some, of one float dtype, and no (mapping, key) or
    array twice (a layer used twice in a model would otherwise have one view and two updates)."""
    return (bool(arrays) and len({a.dtype for a in arrays}) == 1 and arrays[0].dtype.kind == "f"
            and len({(id(m), k) for m, k in slots}) == len(slots) and len({id(a) for a in arrays}) == len(arrays))


def _named_params(opt):
    """[(name, layer, key)] in `Optimizer._params` order (name as its state keys use it, "0/3.W");
    None where a model has no `layers` list."""
    out = []
    for m, model in enumerate(opt.models):
        if not hasattr(model, "layers"):
            return None
        for i, layer in enumerate(model.layers):
            out.extend((f"{m}/{i}.{key}", layer, key) for key in layer.params)
    return out


class _FlatStep:
    """One optimizer's flat buffers: parameters, gradients, and one buffer per state suffix."""

    def __init__(self, opt, named, slots):
        xp = backend.xp
        self.params = FlatBuffer(slots)
        self.state = []
        for suffix in opt.state_suffixes:
            for name, layer, key in named:
                if name + suffix not in opt.state:
                    opt.state[name + suffix] = xp.zeros_like(layer.params[key])
            self.state.append(FlatBuffer([(opt.state, name + suffix) for name, _, _ in named]))
        self.grad = xp.zeros_like(self.params.flat)

    def fits(self, opt, named, slots):
        return (self.params.holds(slots)
                and all(s.holds([(opt.state, name + suffix) for name, _, _ in named])
                        for s, suffix in zip(self.state, opt.state_suffixes)))


def step(opt):
    """Run `opt`'s update once over flat buffers of all its parameters. False (nothing done) where this
    module is off or does not apply; the caller then updates parameter by parameter."""
    if not ENABLED:
        return False
    named = _named_params(opt)
    if named is None:
        return False
    grads = []
    for name, layer, key in named:
        g = layer.grads.get(key)
        if g is None:
            raise RuntimeError(f"{type(opt).__name__}: parameter {name.partition('/')[2]} has no gradient; "
                               "call backward first")
        grads.append(g)
    state = [opt.state[name + suffix] for name, _, _ in named for suffix in opt.state_suffixes
             if name + suffix in opt.state]
    slots = [(layer.params, key) for _, layer, key in named]
    if not _usable(slots, [mapping[key] for mapping, key in slots] + grads + state):
        return False
    flat = _optimizers.get(opt)
    if flat is None or not flat.fits(opt, named, slots):
        flat = _optimizers[opt] = _FlatStep(opt, named, slots)
    flat.params.gather(grads, out=flat.grad)
    update = _fused_update(opt, flat) or type(opt).update
    update(opt, flat.params.flat, flat.grad, *[s.flat for s in flat.state])
    return True


def _value_slots(model):
    return [(d, key) for layer in model.layers for d in (layer.params, layer.buffers) for key in d]


def ema_update(average, model, decay):
    """θ_avg ← decay·θ_avg + (1 − decay)·θ over every parameter and buffer at once (see nn.optim.ema_update,
    which states it array by array). False where this module is off or does not apply."""
    if not ENABLED or not (hasattr(average, "layers") and hasattr(model, "layers")):
        return False
    slots = _value_slots(average)
    current = [d[key] for d, key in _value_slots(model)]
    own = [d[key] for d, key in slots]
    if not _usable(slots, own + current) or [a.shape for a in current] != [a.shape for a in own]:
        return False
    flat, theta = _averages.get(average, (None, None))
    if flat is None or not flat.holds(slots):
        flat = FlatBuffer(slots)
        theta = backend.xp.empty_like(flat.flat)     # the model's values, gathered here every step
        _averages[average] = flat, theta
    flat.gather(current, out=theta)
    average_update = fused.average if fused.ready("average", _average_plain, flat.flat, theta) else _average_plain
    average_update(flat.flat, theta, decay)
    return True


def _average_plain(flat_average, theta, decay):
    """nn.optim.ema_update's expression over the flat buffers (what the NumPy backend runs)."""
    flat_average *= decay
    flat_average += (1 - decay) * theta


def _fused_update(opt, flat):
    """The fused kernel (nn/fused.py) standing for `type(opt).update` on a GPU, or None: only for nn.optim's
    SGD and Adam themselves (a subclass may change the update), and only once the kernel passed its check."""
    if type(opt).__module__ != "nn.optim":
        return None
    name = {"SGD": "sgd" if opt.state_suffixes else "sgd_no_momentum", "Adam": "adam"}.get(type(opt).__name__)
    if name is None or not fused.ready(name, type(opt).update, flat.params.flat):
        return None
    return fused.sgd if name.startswith("sgd") else fused.adam
