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
  BatchNorm's own (`normalize`, `parameter_grads`, `input_grad`), only the sums are split. The chunk's
  sums are the last step of its run of layers before the BatchNorm and the normalisation the first of
  the run after it, so each BatchNorm costs one meeting per pass (`_BatchNormMeeting`).
- A Conv2D that may run Winograd gets `WinogradReplica`s (nn/layers/winograd_fast.py) that share one kernel
  transform per pass and sum their kernel gradients before its adjoint.
- An Upsample2D(2) followed by a 3×3 Conv2D with padding 1 that asked for method="auto" runs as one
  step on the small image (nn/layers/upconv_fast.py: the same outputs and gradients, 4× fewer
  multiplications, no upsampled copy): its replicas are a pass-through and an `UpsampleConv` sharing the
  Conv2D's parameters. The layers themselves, their parameters and saved models do not change.
- Dropout draws its random mask chunk by chunk in chunk order (in the calling thread), so the random
  stream does not depend on the threads either.
- After backward, each layer's gradient is the sum of its chunk gradients, in chunk order (all layers'
  sums in one meeting at the end of the pass).
- A layer this module does not know (a user's own class) runs on the whole batch, as before.

Chunking also helps on one core: a chunk's activations stay in the caches between layers
(measured: ConvNet step, batch 128, one thread: 776 ms whole, 576 ms in 8 chunks of 16).
"""
import copy

from nn import backend, parallel
from nn.layers import (AvgPool2D, Layer, BatchNorm1D, BatchNorm2D, BilinearUpsample2D, Conv2D, ConvTranspose2D, Dense,
                       Dropout, Flatten, LeakyReLU, MaxPool2D, ReLU, Reshape, Scale, Sigmoid, Standardize, Tanh,
                       Upsample2D, upconv_fast, winograd_fast)

CHUNKS = 8      # pieces per batch; the results depend on this number (within float32 rounding), not on threads

# layers whose every output row depends on its own input row only, and whose forward and backward change
# nothing shared (exact types: a subclass may keep state these do not)
PER_SAMPLE = (Conv2D, ConvTranspose2D, Dense, MaxPool2D, AvgPool2D, Upsample2D, BilinearUpsample2D, ReLU, LeakyReLU,
              Sigmoid, Tanh, Flatten, Reshape, Scale, Standardize)
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
        # steps: [(kind, layers, replicas[chunk][i])], replicas[·][i] standing for layers[i]; for a BatchNorm's
        # meeting ("batch_norm"), the third entry is its `_BatchNormMeeting`
        self.bounds, self.steps = bounds, steps


# --- BatchNorm around one meeting point --------------------------------------------------------------

class _BatchNormMeeting:
    """A training BatchNorm, split around one meeting point of the chunks.

    Forward: each chunk's `_Enter` sums its own statistics (count n_k, sum s_k, and M2_k = Σ (x - s_k/n_k)²,
    per channel) as the last step of the chunk's run of layers before the BatchNorm; at the meeting they are
    added up in chunk order into the batch's mean and variance,
        mu = Σ_k s_k / m,      var = Σ_k (M2_k + n_k · (s_k/n_k - mu)²) / m      (Chan et al.'s pairwise update)
    and each chunk's `_Leave` normalises it as the first step of the next run. Backward, the other way round:
    `_Leave` sums the chunk's dbeta and dgamma, the meeting adds them up, `_Enter` computes the chunk's input
    gradient. The math is BatchNorm's own (`normalize`, `parameter_grads`, `input_grad`); only the sums are
    split, so a BatchNorm costs the workers one meeting per pass instead of three (forward) and two (backward).
    """

    def __init__(self, layer, n):
        self.layer, self.replicas = layer, [replica(layer) for _ in range(n)]
        self.stats, self.grad_sums = [None] * n, [None] * n
        self.mu = self.var = self.dbeta = self.dgamma = self.shape = None
        self.m = 0

    def chunk_statistics(self, k, x):
        self.shape = tuple(x.shape[1:])
        n = x.size // x.shape[1]
        s = x.sum(axis=self.layer.axes, keepdims=True)
        d = x - s / n
        self.stats[k] = (n, s, (d * d).sum(axis=self.layer.axes, keepdims=True))

    def meet_forward(self, rows):
        layer = self.layer
        layer.check_input((rows,) + self.shape)
        self.m = layer.values_per_channel((rows,) + self.shape)
        self.mu = _sum_in_order([s for _, s, _ in self.stats]) / self.m
        spread = [m2 + n * (s / n - self.mu) ** 2 for n, s, m2 in self.stats]
        self.var = _sum_in_order(spread) / self.m
        layer.update_running(self.mu, self.var, self.m)

    def meet_backward(self):
        self.dbeta = _sum_in_order([b for b, _ in self.grad_sums])
        self.dgamma = _sum_in_order([g for _, g in self.grad_sums])
        self.layer.grads["gamma"], self.layer.grads["beta"] = self.dgamma, self.dbeta


class _Enter(Layer):
    """Chunk k's half of a BatchNorm before the meeting (see `_BatchNormMeeting`)."""

    def __init__(self, meeting, k):
        super().__init__()
        self.meeting, self.k = meeting, k

    def forward(self, x, training=True):
        self.meeting.chunk_statistics(self.k, x)
        return x

    def backward(self, dy):
        mt = self.meeting
        return mt.replicas[self.k].input_grad(dy, mt.dbeta, mt.dgamma, mt.m)


class _Leave(Layer):
    """Chunk k's half of a BatchNorm after the meeting (see `_BatchNormMeeting`)."""

    def __init__(self, meeting, k):
        super().__init__()
        self.meeting, self.k = meeting, k

    def forward(self, x, training=True):
        mt = self.meeting
        return mt.replicas[self.k].normalize(x - mt.mu, mt.var)

    def backward(self, dy):
        self.meeting.grad_sums[self.k] = self.meeting.replicas[self.k].parameter_grads(dy)
        return dy


# --- forward -----------------------------------------------------------------------------------------

def forward(model, x, training):
    """model's forward pass over the chunks of x; returns the output of the whole batch.

    The workers meet only where they must: consecutive per-sample layers, and the halves of the training
    BatchNorms next to them, run as one `parallel.map` (a "per_sample" step); a BatchNorm's meeting, a
    Dropout (in the calling thread, chunk by chunk) and a layer this module does not know (on the whole
    batch) are steps of their own."""
    xp = backend.xp
    model._run = None                    # the last pass's caches go first: less memory in use at once
    parallel.keep_freed_memory()         # the chunks' temporaries are reused, not handed back (nn/parallel.py)
    bounds = chunk_bounds(len(x))
    n = len(bounds)
    chunks = [x[a:b] for a, b in bounds]
    steps = []
    run_layers, run_replicas = [], [[] for _ in range(n)]    # the per-sample step being gathered

    def flush(chunks):
        """Run the gathered per-sample step on the workers; returns the chunks' outputs."""
        if not run_layers:
            return chunks
        replicas = [list(r) for r in run_replicas]
        steps.append(("per_sample", list(run_layers), replicas))
        run_layers.clear()
        for r in run_replicas:
            r.clear()

        def run(k):
            h = chunks[k]
            for layer in replicas[k]:
                h = layer.forward(h, training)
            return h
        return parallel.map(run, range(n))

    for kind, layers in _groups(model.layers, training):
        if kind == "per_sample":
            run_layers.extend(layers)
            for reps, new in zip(run_replicas, replicas_for_chunks(layers, n)):
                reps.extend(new)
        elif kind == "batch_norm":
            meeting = _BatchNormMeeting(layers[0], n)
            run_layers.append(layers[0])
            for k in range(n):
                run_replicas[k].append(_Enter(meeting, k))
            chunks = flush(chunks)
            meeting.meet_forward(len(x))
            steps.append(("batch_norm", layers, meeting))
            run_layers.append(layers[0])
            for k in range(n):
                run_replicas[k].append(_Leave(meeting, k))
        else:
            chunks = flush(chunks)
            if kind == "whole":
                y = layers[0].forward(xp.concatenate(chunks), training)
                chunks = [y[a:b] for a, b in bounds]
                steps.append((kind, layers, None))
            else:                        # "in_order": Dropout draws its masks chunk by chunk, in chunk order
                replicas = [[replica(layers[0])] for _ in range(n)]
                chunks = [replicas[k][0].forward(chunks[k], training) for k in range(n)]
                steps.append((kind, layers, replicas))
    chunks = flush(chunks)
    model._run = _Run(bounds, steps)
    return xp.concatenate(chunks)


# --- backward ----------------------------------------------------------------------------------------

def backward(model, dy, input_grad=True):
    """The backward pass of the last chunked forward; fills every layer's grads, returns dx of the batch
    (None with input_grad=False: the first layer then computes only its parameters' gradients)."""
    xp = backend.xp
    run = model._run
    bounds = run.bounds
    n = len(bounds)
    grads = [dy[a:b] for a, b in bounds]
    for s, (kind, layers, replicas) in reversed(list(enumerate(run.steps))):
        if kind == "whole":
            dx = layers[0].backward(xp.concatenate(grads))
            grads = [dx[a:b] for a, b in bounds] if dx is not None else None
        elif kind == "batch_norm":
            replicas.meet_backward()     # replicas: the step's _BatchNormMeeting
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
            grads = parallel.map(run_back, range(n)) if kind == "per_sample" else [run_back(k) for k in range(n)]

    # every layer's gradient: the sum of its chunks' gradients, in chunk order (one meeting for all)
    sums = [(layers, replicas, i, key) for kind, layers, replicas in run.steps if kind in ("per_sample", "in_order")
            for i in range(len(replicas[0])) for key in replicas[0][i].grads]

    def total(t):
        layers, replicas, i, key = t
        summed = _sum_in_order([replicas[k][i].grads[key] for k in range(n)])
        finish = getattr(replicas[0][i], "summed_grad", None)
        return finish(key, summed) if finish else (key, summed)
    for (layers, replicas, i, _), (key, value) in zip(sums, parallel.map(total, sums)):
        layers[i].grads[key] = value         # layers[i] is the layer replicas[·][i] stands for
    return xp.concatenate(grads) if input_grad else None
