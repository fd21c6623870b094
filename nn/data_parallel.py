"""Data-parallel training on the NumPy backend: a `Sequential` on every core, over chunks of the batch.

`Sequential.forward` / `backward` hand their work to this module on the NumPy backend; the layers
themselves know nothing of it. The scheme:

- The batch is cut into `CHUNKS` pieces of (nearly) equal size, rows [N·k/K, N·(k+1)/K). The cut depends
  only on the batch size, never on the thread count, so every sum below is taken in the same order
  and the results are the same, bit for bit, on 1, 2 or 64 threads.
- Each layer gets one shallow copy per chunk (`replica`): it shares the layer's `params` and `buffers`
  but keeps its own forward cache and `grads`. The worker threads (nn.parallel.map, one BLAS thread
  each) run a whole run of consecutive per-sample layers on their chunk without waiting for each other.
- BatchNorm in training mode needs the statistics of the whole batch, so it is a meeting point: each
  chunk's partial sums, added up in chunk order, give the batch's mean and variance (and, backward,
  its dbeta and dgamma); then each chunk is normalised (or differentiated) on its own. The math is
  BatchNorm's own (`normalize`, `parameter_grads`, `input_grad`), only the sums are split.
- An Upsample2D(2) followed by a 3×3 Conv2D with padding 1 that asked for method="auto" runs as one
  step on the small image (nn/layers/upconv_fast.py: the same outputs and gradients, 4× fewer
  multiplications, no upsampled copy): its replicas are a pass-through and an `UpsampleConv` sharing the
  Conv2D's parameters. The layers themselves, their parameters and saved models do not change.
- Dropout draws its random mask chunk by chunk in chunk order (in the calling thread), so the random
  stream does not depend on the threads either.
- After backward, each layer's gradient is the sum of its chunk gradients, in chunk order.
- A layer this module does not know (a user's own class) runs on the whole batch, as before.

Chunking also helps on one core: a chunk's activations stay in the caches between layers
(measured: ConvNet step, batch 128, one thread: 776 ms whole, 576 ms in 8 chunks of 16).
"""
import copy

from nn import backend, parallel
from nn.layers import (AvgPool2D, BatchNorm1D, BatchNorm2D, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                       LeakyReLU, MaxPool2D, ReLU, Reshape, Sigmoid, Tanh, Upsample2D, upconv_fast, winograd_fast)

CHUNKS = 8      # pieces per batch; the results depend on this number (within float32 rounding), not on threads

# layers whose every output row depends on its own input row only, and whose forward and backward change
# nothing shared (exact types: a subclass may keep state these do not)
PER_SAMPLE = (Conv2D, ConvTranspose2D, Dense, MaxPool2D, AvgPool2D, Upsample2D, ReLU, LeakyReLU, Sigmoid, Tanh,
              Flatten, Reshape)
BATCH_NORM = (BatchNorm1D, BatchNorm2D)


def applies(x):
    """True where `Sequential` runs through this module: the NumPy backend and a batch of at least 2."""
    return backend.name == "numpy" and getattr(x, "ndim", 0) >= 1 and len(x) >= 2


def chunk_bounds(n):
    """[(start, stop)] of the chunks of a batch of n: min(CHUNKS, n) pieces whose sizes differ by at most 1."""
    k = min(CHUNKS, n)
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


def replica(layer):
    """A copy of `layer` for one chunk: the same params and buffers (dicts shared), its own grads.
    A layer made of other layers (or with other state) is chunked only if it has a `replica()` method
    of its own, which builds such a copy (with this function for its parts); it then counts as per-sample."""
    if callable(getattr(layer, "replica", None)):
        return layer.replica()
    r = copy.copy(layer)
    r.grads = {}
    return r


def replicas_for_chunks(layers, n):
    """replicas[chunk][layer] for a run of per-sample layers and n chunks: one replica per layer and chunk;
    a pair that `upconv_fast.fuses` becomes (a pass-through, the fused UpsampleConv); a Conv2D that may run
    Winograd becomes `WinogradReplica`s sharing one kernel transform for the pass."""
    out = [[] for _ in range(n)]
    for i, layer in enumerate(layers):
        if i > 0 and upconv_fast.fuses(layers[i - 1], layer):
            for reps in out:
                reps[-1] = upconv_fast.PassThrough()
                reps.append(upconv_fast.UpsampleConv(layer))
        elif type(layer) is Conv2D and winograd_fast.may_run(layer):
            kernel = winograd_fast.KernelOnce(layer)
            for reps in out:
                reps.append(winograd_fast.WinogradReplica(layer, kernel))
        else:
            for reps in out:
                reps.append(replica(layer))
    return out


def _kind(layer, training):
    t = type(layer)
    if (t in PER_SAMPLE or callable(getattr(layer, "replica", None)) or (t in BATCH_NORM and not training)
            or (t is Dropout and not training)):
        return "per_sample"
    if t in BATCH_NORM:
        return "batch_norm"
    if t is Dropout:
        return "in_order"
    return "whole"


def _groups(layers, training):
    """Consecutive per-sample layers joined into one group (the workers do not meet between them)."""
    groups = []
    for layer in layers:
        kind = _kind(layer, training)
        if kind == "per_sample" and groups and groups[-1][0] == "per_sample":
            groups[-1][1].append(layer)
        else:
            groups.append((kind, [layer]))
    return groups


def _sum_in_order(parts):
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


class _Run:
    """What one chunked forward pass leaves for its backward pass."""

    def __init__(self, bounds, steps):
        self.bounds, self.steps = bounds, steps     # steps: [(kind, layers, replicas[chunk][layer])]


# --- forward -----------------------------------------------------------------------------------------

def forward(model, x, training):
    """model's forward pass over the chunks of x; returns the output of the whole batch."""
    xp = backend.xp
    model._run = None                    # the last pass's caches go first: less memory in use at once
    bounds = chunk_bounds(len(x))
    chunks = [x[a:b] for a, b in bounds]
    steps = []
    for kind, layers in _groups(model.layers, training):
        if kind == "whole":
            replicas = None
            y = layers[0].forward(xp.concatenate(chunks), training)
            chunks = [y[a:b] for a, b in bounds]
        elif kind == "batch_norm":
            replicas, chunks = _batch_norm_forward(layers[0], chunks)
            replicas = [[r] for r in replicas]
        else:
            replicas = replicas_for_chunks(layers, len(chunks))

            def run(k, kind=kind, replicas=replicas, chunks=chunks):
                h = chunks[k]
                for layer in replicas[k]:
                    h = layer.forward(h, training)
                return h
            if kind == "in_order":
                chunks = [run(k) for k in range(len(chunks))]
            else:
                chunks = parallel.map(run, range(len(chunks)))
        steps.append((kind, layers, replicas))
    model._run = _Run(bounds, steps)
    return xp.concatenate(chunks)


def _batch_norm_forward(layer, chunks):
    """BatchNorm (training) on chunks with the whole batch's mean and variance."""
    axes = layer.axes
    shape = (sum(len(c) for c in chunks),) + tuple(chunks[0].shape[1:])
    layer.check_input(shape)
    m = layer.values_per_channel(shape)
    mu = _sum_in_order(parallel.map(lambda c: c.sum(axis=axes, keepdims=True), chunks)) / m

    def centre(c):
        xc = c - mu
        return xc, (xc * xc).sum(axis=axes, keepdims=True)
    centred = parallel.map(centre, chunks)
    var = _sum_in_order([sq for _, sq in centred]) / m
    layer.update_running(mu, var, m)
    replicas = [replica(layer) for _ in chunks]
    out = parallel.map(lambda k: replicas[k].normalize(centred[k][0], var), range(len(chunks)))
    return replicas, out


# --- backward ----------------------------------------------------------------------------------------

def backward(model, dy, input_grad=True):
    """The backward pass of the last chunked forward; fills every layer's grads, returns dx of the batch
    (None with input_grad=False: the first layer then computes only its parameters' gradients)."""
    xp = backend.xp
    run = model._run
    bounds = run.bounds
    grads = [dy[a:b] for a, b in bounds]
    for s, (kind, layers, replicas) in reversed(list(enumerate(run.steps))):
        if kind == "whole":
            dx = layers[0].backward(xp.concatenate(grads))
            grads = [dx[a:b] for a, b in bounds] if dx is not None else None
        elif kind == "batch_norm":
            grads = _batch_norm_backward(layers[0], [r[0] for r in replicas], grads)
        else:
            first = s == 0 and not input_grad

            def run_back(k, replicas=replicas, grads=grads, first=first):
                g = grads[k]
                for i in range(len(replicas[k]) - 1, -1, -1):
                    if i == 0 and first:
                        replicas[k][0].backward_params(g)
                        return None
                    g = replicas[k][i].backward(g)
                return g
            n = len(grads)
            grads = parallel.map(run_back, range(n))
            sums = [(i, key) for i, layer in enumerate(layers) for key in replicas[0][i].grads]

            def total(t, replicas=replicas, n=n):
                i, key = t
                summed = _sum_in_order([replicas[k][i].grads[key] for k in range(n)])
                finish = getattr(replicas[0][i], "summed_grad", None)
                return finish(key, summed) if finish else (key, summed)
            for (i, _), (key, value) in zip(sums, parallel.map(total, sums)):
                layers[i].grads[key] = value
    return xp.concatenate(grads) if input_grad else None


def _batch_norm_backward(layer, replicas, grads):
    m = sum(g.size // g.shape[1] for g in grads)
    sums = parallel.map(lambda k: replicas[k].parameter_grads(grads[k]), range(len(grads)))
    dbeta = _sum_in_order([s[0] for s in sums])
    dgamma = _sum_in_order([s[1] for s in sums])
    layer.grads["gamma"], layer.grads["beta"] = dgamma, dbeta
    return parallel.map(lambda k: replicas[k].input_grad(grads[k], dbeta, dgamma, m), range(len(grads)))
