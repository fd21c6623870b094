"""The ten per-digit DCGANs trained as one (speed machinery; `gan train --together`, or
`train_all(..., trainer=train_together)`).

The ten DCGANs are independent and small. Trained one after another, each iteration of each is about fifty
layer calls on a batch of 128, which on a GPU is mostly the cost of launching kernels. Trained together,
their weights are stacked along a group axis (nn/layers/grouped.py), the ten batches travel as one batch of
10·128, and every layer is one call for all ten: ten GANs for about the launches of one.

Each digit keeps everything it has when trained alone: its own initial weights (`build_gan`), its own random
generator (batch choice, noise z and augmentation draws, in the same order), its own loss, its own Adam
states and weight average, and BatchNorm statistics over its own images. So digit k's run equals training it
alone with the same seed, within float32 rounding, and it writes the very files `train_digit` writes
(checkpoint, log, sample grids, status): a run started one way can be resumed the other way.

    group = GroupedDCGAN([build_gan(config, d) for d in digits])   # stacks their weights and states
    metrics = group.train_step(real, z, rngs)     # real, z: the digits' batches stacked; rngs: one per digit
    state_k = split_state(group.state_dict(), k)  # digit k's DCGAN.state_dict()
"""
import numpy as np

from nn import Sequential, backend
from nn.layers.grouped import group_layers
from svhn.imageset import save_grid_png, to_float, to_uint8
from gan import runs
from gan.dcgan.augment import DiffAugment
from gan.dcgan.nets import DCGAN, Z_DIM, generate
from gan.dcgan.train import (FIGURE_ITERATIONS, GRID_SIZE, LOG_EVERY, DivergedError, _progress, build_gan,
                             check_health, checkpoint_path, digit_dir, digit_seed, load_checkpoint, log_path,
                             plot_losses, read_log, read_status, samples_path, train_digit, write_log,
                             write_status)


# ----------------------------------------------------------------------------- states

def stack_states(states):
    """One grouped state dict from G per-digit ones (`DCGAN.state_dict()`): every array stacked along a
    new first axis, except 0-d values (the iteration, Adam's step count and rate), which all must share."""
    out = {}
    for key in states[0]:
        values = [s[key] for s in states]
        if np.ndim(values[0]) == 0:
            if any(v != values[0] for v in values):
                raise ValueError(f"stack_states: the digits differ in {key} ({', '.join(map(str, values))}); "
                                 f"only runs that stand at the same iteration can be trained together")
            out[key] = values[0]
        else:
            out[key] = np.stack(values)
    return out


def split_state(state, g):
    """Group g's own state dict from a grouped one (the inverse of `stack_states`)."""
    return {key: v if np.ndim(v) == 0 else v[g] for key, v in state.items()}


# ----------------------------------------------------------------------------- the grouped DCGAN

class GroupedLoss:
    """A DCGAN loss (PaperLoss or BCELoss) on G groups at once: each group's loss and gradient are those
    of the loss on that group's batch alone, so the losses come back as a (G,) vector."""

    def __init__(self, loss, groups):
        self.loss, self.groups, self.name = loss, groups, loss.name

    def _each(self, fn, *arrays):
        parts = [fn(*group) for group in zip(*(a.reshape((self.groups, -1) + a.shape[1:]) for a in arrays))]
        xp = backend.xp
        return xp.stack([p[0] for p in parts]), xp.concatenate([p[1] for p in parts])

    def discriminator(self, z, X1):
        return self._each(self.loss.discriminator, z, X1)

    def generator(self, z):
        return self._each(self.loss.generator, z)


class GroupedDiffAugment(DiffAugment):
    """DiffAugment on a grouped batch: group g's transforms drawn from its own generator rngs[g]."""

    def __init__(self, groups):
        self.groups = groups

    def forward(self, x, rngs):
        shape = (x.shape[0] // self.groups,) + x.shape[1:]
        draws = [self.draw(rng, shape) for rng in rngs]
        return self.apply(x, *(np.concatenate(parts) for parts in zip(*draws)))


class GroupedDCGAN(DCGAN):
    """G DCGANs of the same settings trained as one (see the module docstring). `train_step(real, z, rngs)`
    takes the groups' batches stacked (G·N images, G·M noise vectors) and one random generator per group,
    and returns each metric as a (G,) device vector; `state_dict()` is the groups' states stacked."""

    def __init__(self, gans):
        first, self.groups = gans[0], len(gans)
        G = Sequential(*[group_layers([gan.G.layers[i] for gan in gans]) for i in range(len(first.G.layers))])
        D = Sequential(*[group_layers([gan.D.layers[i] for gan in gans]) for i in range(len(first.D.layers))])
        super().__init__(G, D, loss=first.loss.name, lr=first.opt_G.lr, lr_d=first.opt_D.lr,
                         beta1=first.opt_G.beta1, label_smoothing=first.label_smoothing, d_every=first.d_every,
                         augment=first.augment is not None, ema_decay=first.ema_decay)
        self.loss = GroupedLoss(self.loss, self.groups)
        self.augment = GroupedDiffAugment(self.groups) if self.augment else None
        self.load_state_dict(stack_states([gan.state_dict() for gan in gans]))

    def batch_mean(self, values):
        """The mean over each group's batch: a (G,) vector."""
        return values.reshape(self.groups, -1).mean(axis=1)


# ----------------------------------------------------------------------------- training

def train_together(per_digit, run_dir, config, progress=True, log=print):
    """Train (or resume) the DCGANs of several digits as one GroupedDCGAN: per_digit = {digit: its real
    images (uint8 NHWC)}. Writes what `train_digit` writes for each digit and returns {digit: status}.
    Digits that stopped earlier are skipped; when the others do not all stand at the same iteration (a run
    trained partly one by one), or fewer than two are left, they are trained one by one instead."""
    results = {}
    todo = {}
    for digit, images in per_digit.items():
        status = read_status(run_dir, digit)
        if status["state"] == "stopped":
            results[digit] = train_digit(images, digit, run_dir, config, progress=progress, log=log)   # logs the skip
        elif len(images) == 0:
            raise ValueError(f"digit {digit}: no training images")
        else:
            todo[digit] = images
    gans, rngs, fixed_z = {}, {}, {}
    for digit in todo:
        digit_dir(run_dir, digit).mkdir(parents=True, exist_ok=True)
        gans[digit] = build_gan(config, digit)
        ckpt = checkpoint_path(run_dir, digit)
        if ckpt.is_file():
            rngs[digit], fixed_z[digit] = load_checkpoint(ckpt, gans[digit])
        else:
            rngs[digit] = np.random.default_rng(digit_seed(config.seed, digit) + 1)
            fixed_z[digit] = backend.asarray(rngs[digit].standard_normal((GRID_SIZE, Z_DIM)).astype(np.float32))
    if len(todo) < 2 or len({gan.iteration for gan in gans.values()}) > 1:
        if len(todo) >= 2:
            log(f"digits {','.join(map(str, todo))} stand at different iterations: trained one by one")
        for digit, images in todo.items():
            results[digit] = train_digit(images, digit, run_dir, config, progress=progress, log=log)
        return results
    digits = list(todo)
    group = GroupedDCGAN([gans[d] for d in digits])
    del gans
    results.update(_train_group(group, digits, [todo[d] for d in digits], [rngs[d] for d in digits],
                                [fixed_z[d] for d in digits], run_dir, config, progress, log))
    return results


def _train_group(group, digits, images, rngs, fixed_z, run_dir, config, progress, log):
    """The loop of `train_digit`, for every digit of `group` at once."""
    xp = backend.xp
    real = [backend.asarray(to_float(x)) for x in images]
    all_real = xp.concatenate(real)                               # one gather per step from all digits' images
    offsets = np.cumsum([0] + [len(r) for r in real[:-1]])
    rows = {d: read_log(log_path(run_dir, d), up_to=group.iteration) for d in digits}
    stopped = {}                                                  # digit -> message
    bar = _progress(total=config.iters, initial=min(group.iteration, config.iters),
                    desc=f"digits {','.join(map(str, digits))} together", enabled=progress)
    pending = {d: runs.PendingRows(rows[d], lambda row, d=d: check_health(row, rows[d], config.stuck_iters), bar,
                                   ("loss_D", "loss_G", "acc_real", "acc_fake")) for d in digits}

    def live():
        return [(i, d) for i, d in enumerate(digits) if d not in stopped]

    def read_logs():
        for _, d in live():
            try:
                pending[d].read()                                 # health-checked before anything is written
            except DivergedError as exc:
                stopped[d] = str(exc)
                write_log(log_path(run_dir, d), rows[d])
                log(f"digit {d}: stopped: {exc}")
                write_status(digit_dir(run_dir, d), "stopped", rows[d][-1]["iteration"], str(exc))

    def save_samples(path_of, title_of):
        grid = to_uint8(backend.to_numpy(generate(group.sampler, xp.concatenate(fixed_z),
                                                  batch_size=GRID_SIZE * len(digits))))
        for i, d in live():
            save_grid_png(path_of(d), grid[i * GRID_SIZE:(i + 1) * GRID_SIZE], nrow=8, scale=2, title=title_of(d))

    def checkpoint():
        state = group.state_dict()
        for i, d in live():
            runs.save_checkpoint(checkpoint_path(run_dir, d), split_state(state, i), rngs[i],
                                 fixed_z=backend.to_numpy(fixed_z[i]))
            write_log(log_path(run_dir, d), rows[d])
            write_status(digit_dir(run_dir, d), "running", group.iteration)

    B = config.batch_size
    while group.iteration < config.iters and live():
        idx, z = [], []
        for i, rng in enumerate(rngs):                            # each digit's draws, in train_digit's order
            idx.append(rng.choice(len(real[i]), size=B, replace=len(real[i]) < B) + offsets[i])
            z.append(rng.standard_normal((B, Z_DIM)).astype(np.float32))
        metrics = group.train_step(all_real[backend.asarray(np.concatenate(idx))],
                                   backend.asarray(np.concatenate(z)), rngs)
        for i, d in live():
            pending[d].add({"iteration": group.iteration, **{k: v[i] for k, v in metrics.items()}})
        figure = group.iteration in FIGURE_ITERATIONS
        if (figure or group.iteration % config.checkpoint_every == 0
                or any(len(pending[d]) >= LOG_EVERY for _, d in live())):
            read_logs()
        if figure:
            save_samples(lambda d: samples_path(run_dir, d, group.iteration),
                         lambda d: f"digit {d}, iteration {group.iteration}")
        if group.iteration % config.checkpoint_every == 0:
            checkpoint()
        bar.update(1)
    read_logs()
    bar.close()
    checkpoint()
    save_samples(lambda d: samples_path(run_dir, d), lambda d: f"digit {d}, iteration {group.iteration} (final)")
    for _, d in live():
        plot_losses(digit_dir(run_dir, d) / "losses.png", {d: rows[d]}, f"DCGAN digit {d}, loss {config.loss}")
        write_status(digit_dir(run_dir, d), "done", group.iteration)
    return {d: read_status(run_dir, d) for d in digits}
