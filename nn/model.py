"""`Sequential`: a list of layers run one after another."""
import os
from pathlib import Path

import numpy as np

from nn import backend, data_parallel
from nn.layers.base import num_params

ARCH_KEY = "__architecture__"


class Sequential:
    """Layers applied in order.  forward: y = f_L(...f_2(f_1(x)));  backward: the chain rule in reverse,
    dx = f_1'(... f_L'(dy)), each layer filling its own `grads`.

    `train()` / `eval()` set the mode that `forward` passes to every layer (BatchNorm, Dropout).
    On the NumPy backend both passes run over chunks of the batch on every core (nn/data_parallel.py);
    the result does not depend on the number of threads.
    """

    def __init__(self, *layers):
        self.layers = list(layers)
        self.training = True
        self._run = None        # what a chunked forward left for backward (nn/data_parallel.py)

    # --- running -------------------------------------------------------------------------
    def forward(self, x, training=None):
        training = self.training if training is None else training
        if data_parallel.applies(x):
            return data_parallel.forward(self, x, training)
        self._run = None
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    __call__ = forward

    def backward(self, dy, input_grad=True):
        """Backpropagate dy; returns dx, or None with input_grad=False (the input needs no gradient, as a
        batch of data: the first layer then computes only its parameters' gradients)."""
        if getattr(self, "_run", None) is not None:
            return data_parallel.backward(self, dy, input_grad)
        for i in range(len(self.layers) - 1, -1, -1):
            if i == 0 and not input_grad:
                self.layers[0].backward_params(dy)
                return None
            dy = self.layers[i].backward(dy)
        return dy

    def predict(self, x, batch_size=512):
        """Forward in eval mode, in batches (x on the current device); returns the outputs concatenated."""
        xp = backend.xp
        return xp.concatenate([self.forward(x[i:i + batch_size], training=False)
                               for i in range(0, len(x), batch_size)])

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def __getstate__(self):      # copies (copy.deepcopy) leave the last pass's caches behind
        return {**self.__dict__, "_run": None}

    # --- parameters ----------------------------------------------------------------------
    def named_parameters(self):
        """Yields (name, param, grad) for every parameter, e.g. ("3.W", W, dW); grad is None before backward."""
        for i, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                yield f"{i}.{key}", p, layer.grads.get(key)

    def parameters(self):
        """Yields (param, grad) pairs."""
        for _, p, g in self.named_parameters():
            yield p, g

    def num_params(self):
        return sum(num_params(layer) for layer in self.layers)

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def to_device(self):
        for layer in self.layers:
            layer.to_device()
        return self

    # --- description ---------------------------------------------------------------------
    def architecture(self):
        """One line per layer: its repr and the shapes of its parameters (checked when loading)."""
        return [repr(layer) + "".join(f" {k}{tuple(v.shape)}" for k, v in layer.params.items())
                for layer in self.layers]

    def summary(self, input_shape):
        """A table of each layer's output shape and parameter count for an input of `input_shape` (no batch axis)."""
        lines = [f"{'layer':<48}{'output shape':<20}{'params':>10}", "-" * 78]
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
            lines.append(f"{repr(layer):<48}{str(shape):<20}{num_params(layer):>10,}")
        lines += ["-" * 78, f"{'total':<68}{self.num_params():>10,}"]
        return "\n".join(lines)

    # --- saving --------------------------------------------------------------------------
    def state_dict(self):
        """Every parameter and buffer as host NumPy arrays, keyed "index.name"."""
        state = {}
        for i, layer in enumerate(self.layers):
            for d in (layer.params, layer.buffers):
                for key, v in d.items():
                    state[f"{i}.{key}"] = backend.to_numpy(v).copy()
        return state

    def load_state_dict(self, state, source="state"):
        """Put the arrays of `state` into the layers (each replaces the layer's array; every key and shape must match)."""
        expected = {}
        for i, layer in enumerate(self.layers):
            for d in (layer.params, layer.buffers):
                for key, v in d.items():
                    expected[f"{i}.{key}"] = (d, key, v)
        missing = sorted(set(expected) - set(state))
        extra = sorted(k for k in set(state) - set(expected) if not k.startswith("__"))
        if missing or extra:
            raise ValueError(f"{source}: does not match this model (missing {missing[:3]}, unexpected {extra[:3]})")
        for name, (d, key, v) in expected.items():
            a = np.asarray(state[name])
            if a.shape != tuple(v.shape):
                raise ValueError(f"{source}: {name} has shape {a.shape}, this model expects {tuple(v.shape)}")
            d[key] = backend.asarray(a.astype(v.dtype))
        return self

    def save(self, path):
        """Write every parameter and buffer, and the architecture, to an .npz (atomically: into a
        temporary file beside it, then renamed, so an interrupt never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **self.state_dict(), **{ARCH_KEY: np.array(self.architecture())})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, path):
        """Load weights saved by `save`; a file from a different architecture is a ValueError."""
        try:
            with np.load(path, allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise ValueError(f"{path}: no such model file") from None
        except Exception as exc:
            reason = "not an .npz archive" if "pickle" in str(exc) or not str(exc).strip() else str(exc).splitlines()[0]
            raise ValueError(f"{path}: not a readable .npz model file ({reason})") from None
        if ARCH_KEY in state and list(state[ARCH_KEY]) != self.architecture():
            raise ValueError(f"{path}: saved for a different architecture than this model")
        return self.load_state_dict(state, source=str(path))

    def __repr__(self):
        return "Sequential(\n" + "\n".join(f"  ({i}) {l!r}" for i, l in enumerate(self.layers)) + "\n)"
