"""Per-step counts: how often one training step of the real trainers waits for the device.

    python -m bench --count [--backend numpy,cupy] [--json FILE]

For one ConvNet train step (classify's batches + train_step + weight average, as `classify.train.fit`
runs it) and one DCGAN iteration (`gan.dcgan.train.train_digit`'s random draws + `DCGAN.train_step`)
it reports the device -> host reads counted by `nn.backend.host_reads()` (the aim is 0: the loops
read their metrics every LOG_EVERY steps, outside the step). Kernel launches per step cannot be
counted from inside CuPy; where `nsys` is installed, bench/device_check.sh counts them with it, here
they are printed as n/a.
"""
import copy

import numpy as np

from nn import backend, fused, losses, optim
from nn.optim import ema_decay, ema_update
from common.files import atomic_write_json
from svhn.imageset import to_float
from gan.dcgan.nets import Z_DIM
from gan.dcgan.train import Config, build_gan
from classify.model import build_model
from classify.train import TrainConfig, batches, train_step


def convnet_step(batch=64, seed=0):
    """A function doing one ConvNet train step of classify's recipe on random images (set up, warmed up)."""
    cfg = TrainConfig(seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (4 * batch, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 4 * batch)
    model = build_model(cfg.arch, seed, cfg.widths)
    average = copy.deepcopy(model)
    opt = optim.SGD(model, lr=0.05, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = losses.SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing, check_labels=False)
    state = {"it": iter(()), "step": 0}

    def step():
        try:
            xb, yb = next(state["it"])
        except StopIteration:
            state["it"] = batches(x, y, batch, rng, cfg)
            xb, yb = next(state["it"])
        out = train_step(model, loss_fn, opt, xb, yb)
        ema_update(average, model, ema_decay(state["step"], cfg.ema_decay))
        state["step"] += 1
        return out
    step()
    return step


def dcgan_step(batch=64, seed=0):
    """A function doing one DCGAN iteration as train_digit runs it (default settings, random 'real' images)."""
    rng = np.random.default_rng(seed)
    real = backend.asarray(to_float(rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8)))
    gan = build_gan(Config(batch_size=batch, seed=seed), 0)

    def step():
        idx = rng.choice(len(real), size=batch, replace=False)
        z = backend.asarray(rng.standard_normal((batch, Z_DIM)).astype(np.float32))
        return gan.train_step(real[backend.asarray(idx)], z, rng)
    step()
    return step


def host_reads_per_step(step, steps=3):
    """Device -> host reads (nn.backend.host_reads) per call of `step`, over `steps` calls."""
    before = backend.host_reads()
    for _ in range(steps):
        step()
    return (backend.host_reads() - before) / steps


def main(names, json_path=None):
    rows = []
    for name in names:
        backend.set_backend(name)
        for net, make in (("ConvNet train step (classify, batch 64)", convnet_step),
                          ("DCGAN iteration (gan.dcgan, batch 64)", dcgan_step)):
            reads = host_reads_per_step(make())
            rows.append({"backend": name, "precision": backend.precision(), "net": net,
                         "host_reads_per_step": reads, "kernel_launches_per_step": None})
            print(f"{name:<6} {net:<42} host reads/step {reads:g}   kernel launches/step n/a   [{backend.precision()}]")
        if name == "cupy":      # which fused kernels (nn/fused.py) passed their first-use check and run
            kernels = fused.status()
            rows.append({"backend": name, "fused_kernels": kernels})
            print(f"{name:<6} fused kernels in use: {', '.join(k for k, on in kernels.items() if on) or 'none'}; "
                  f"switched off: {', '.join(k for k, on in kernels.items() if not on) or 'none'}")
    if json_path:
        atomic_write_json(json_path, rows)
    return 0
