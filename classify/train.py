"""Training the paper's ConvNet on any image set (the recommended recipe is the default).

One optimizer step on a minibatch (x_n, y_n), n = 1..B:
    z = ConvNet(augment(x))                                 logits (B, 10)
    L = -1/B sum_n sum_k q_nk log softmax(z_n)_k            cross-entropy with label smoothing:
        q_nk = (1 - ε)·[k = y_n] + ε/10
    SGD with momentum 0.9 and weight decay λ on every parameter, learning rate η(t):
        a linear warm-up over the first WARMUP of the steps, then a cosine decay to 0.
    After each step the exponential moving average (EMA) of the weights is updated,
        θ_ema ← β·θ_ema + (1 - β)·θ        (BatchNorm's running statistics too),
    and it is the EMA model that is validated, kept and returned.

The metrics keep two records of training: `history` (the smoothed training loss and accuracy and the
validation accuracy, about VALIDATIONS times per run) and `loss_curve` (the mean training loss and
accuracy over each LOG_EVERY steps, the whole run), which shows when a run leaves the ln 10 plateau.

Training length: `epochs` passes over the training images, by default
    epochs = max(MIN_EPOCHS, ceil(MIN_STEPS / steps_per_epoch)),
so a small set (the 783-image sample: 705 after the validation split, 11 steps of 64 per epoch,
182 epochs) still gets MIN_STEPS optimizer steps, and the full SVHN training split (73,257 images:
68,257 after the validation split, 1,066 steps per epoch) gets MIN_EPOCHS epochs (21,320 steps).

A validation split (VAL_FRACTION of the training images, at most MAX_VAL) is held out; the
model is validated about VALIDATIONS times during training and the best one (highest validation
accuracy, the later one on ties) is kept.

Sometimes a run never leaves the plateau where the net predicts every class with probability 1/10
(training loss ln 10 = 2.303 throughout). Its main cause was the dense layer's curvature, beyond
what SGD can follow at the recipe's learning rate (see classify.model, FEATURE_SCALE); since the
ConvNet scales its dense inputs, runs leave the plateau within about 150 steps. `did_not_learn`
still spots a run that never does, and the metrics carry a "warning".
"""
import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from nn import backend, losses, optim
from nn.optim import ema_decay, ema_update
from svhn.imageset import to_float

from classify.augment import NONE, AugmentConfig, augment
from classify.data import ClassifyError, resolve_sets
from classify.evaluate import evaluate, predict_proba, write_report
from classify.model import ARCHS, WIDTHS, build_model

MIN_STEPS = 2000
MIN_EPOCHS = 20
VAL_FRACTION = 0.1
MAX_VAL = 5000
VALIDATIONS = 40
LOG_EVERY = 25      # steps between reads of the losses and accuracies from the device (progress bar)
PEAK_LR = {"bn": 0.05, "bn-std": 0.05, "paper": 0.02}    # the plain net diverges at BatchNorm's learning rate


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the recommended recipe."""
    arch: str = "bn"
    widths: tuple = WIDTHS        # channels of the three convolution stages
    epochs: int = None            # None: max(MIN_EPOCHS, enough epochs for MIN_STEPS steps)
    min_steps: int = MIN_STEPS
    batch_size: int = 64
    lr: float = None              # peak learning rate; None: PEAK_LR[arch]
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.05          # fraction of the steps spent warming the learning rate up
    label_smoothing: float = 0.1
    ema_decay: float = 0.999      # 0 switches the weight average off
    val_fraction: float = VAL_FRACTION
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta: bool = True              # test-time augmentation in the final test
    batch_shares: tuple = None    # share of every batch drawn from each training set, in order (see `mixed_batches`);
                                  # None: one pass over all the images in a random order per epoch
    seed: int = 0

    def check(self):
        if self.arch not in ARCHS:
            raise ClassifyError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHS)}")
        for name in ("batch_size", "min_steps"):
            if getattr(self, name) < 1:
                raise ClassifyError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ClassifyError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.val_fraction < 1:
            raise ClassifyError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("label_smoothing", "ema_decay", "momentum", "warmup"):
            if not 0 <= getattr(self, name) < 1:
                raise ClassifyError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise ClassifyError(f"lr (the peak learning rate) must be in (0, 1), got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ClassifyError(f"weight_decay must be a number >= 0, got {self.weight_decay}")
        if len(self.widths) != 3 or any(int(w) < 1 for w in self.widths):
            raise ClassifyError(f"widths must be three whole numbers >= 1, got {self.widths}")
        if self.batch_shares is not None and (not all(math.isfinite(v) and v >= 0 for v in self.batch_shares)
                                              or sum(self.batch_shares) <= 0):
            raise ClassifyError(f"batch shares must be numbers >= 0, not all 0, got {self.batch_shares}")
        return self


def learning_rate(step, total, peak, warmup):
    """η(t): linear warm-up from peak/warm_steps to peak over warm_steps, then cosine decay to 0."""
    warm_steps = max(1, int(warmup * total))
    if step < warm_steps:
        return peak * (step + 1) / warm_steps
    progress = (step - warm_steps) / max(1, total - warm_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * progress))


STUCK_LOSS = 0.97 * math.log(10)      # a final training loss this high: the net still guesses uniformly


def did_not_learn(history, seed_option="--seed", lr_option="--lr"):
    """A one-line warning if the last recorded training loss is still about ln 10, the loss of
    predicting 1/10 for every class (with or without label smoothing); None if the net learnt.
    The advice names the options that change the seed and the learning rate (run_all.py has
    other ones than classify's)."""
    if not history or history[-1]["train_loss"] < STUCK_LOSS:
        return None
    return (f"the ConvNet did not learn: its training loss ended at {history[-1]['train_loss']:.3f}, the "
            f"loss of guessing every class equally (ln 10 = {math.log(10):.3f}); train again with "
            f"another {seed_option} or a lower {lr_option}")


def validation_size(n, fraction=VAL_FRACTION):
    """How many of n training images are held out for validation: round(fraction·n), at most MAX_VAL;
    0 when that would leave no image (or none) to train on."""
    n_val = min(MAX_VAL, int(round(fraction * n)))
    return n_val if 0 < n_val < n else 0


def split_validation(x, y, fraction, rng):
    """Hold out round(fraction·N) images (at most MAX_VAL) for validation: (x_train, y_train, x_val, y_val)."""
    train, val = validation_split(len(x), fraction, rng)
    return x[train], y[train], x[val], y[val]


def validation_split(n, fraction, rng):
    """(train indices, validation indices) of n images: round(fraction·n) (at most MAX_VAL) held out at random."""
    n_val = validation_size(n, fraction)
    if n_val == 0:
        return np.arange(n), np.arange(0)
    order = rng.permutation(n)
    return order[n_val:], order[:n_val]


def plan(n_train, cfg):
    """(batch size, steps per epoch, epochs, total steps) for n_train training images."""
    batch = min(cfg.batch_size, n_train)
    steps_per_epoch = n_train // batch
    epochs = cfg.epochs or max(MIN_EPOCHS, math.ceil(cfg.min_steps / steps_per_epoch))
    return batch, steps_per_epoch, epochs, epochs * steps_per_epoch


def train_classifier(train_sets, test=None, config=None, data_dir=None, progress=True, report_dir=None,
                     **settings):
    """Train the ConvNet and (optionally) test it.

    train_sets: a list of set names ("real", "procedural", "a.npz", "real:300") and/or (x, y)
        arrays (x uint8 (N, 32, 32, 3), y digits 0..9); they are capped and concatenated.
    test: a set name ("real" = the SVHN test split), an (x, y) pair, or None (no test).
    config: a TrainConfig; or give its fields as keywords (epochs=..., seed=..., arch=...).
    data_dir: where the SVHN .mat files are (for "real").
    progress: show a tqdm bar.  report_dir: if given, write confusion.png and misclassified.png there.
    Returns (model, metrics): the trained `nn.Sequential` in eval mode, and a JSON-ready dict with
    test_accuracy, per_digit_accuracy, confusion_matrix (when tested), train_sets and the settings.
    """
    cfg = (dataclasses.replace(config, **settings) if config else TrainConfig(**settings)).check()
    x, y, described = resolve_sets(train_sets, "train", data_dir, cfg.seed)
    x_test, y_test, test_described = (resolve_sets([test], "test", data_dir, cfg.seed) if test is not None
                                      else (None, None, None))
    if cfg.batch_shares is not None and len(cfg.batch_shares) != len(described):
        raise ClassifyError(f"{len(cfg.batch_shares)} batch shares for {len(described)} training sets: give one "
                            f"share per set, in the same order")
    rng = np.random.default_rng(cfg.seed)
    train, val = validation_split(len(x), cfg.val_fraction, rng)
    x_tr, y_tr, x_val, y_val = x[train], y[train], x[val], y[val]
    sources = np.repeat(np.arange(len(described)), [d["n"] for d in described])[train]    # each image's set
    started = time.perf_counter()
    model, history, best = fit(x_tr, y_tr, x_val, y_val, cfg, rng, progress, sources)
    train_time = time.perf_counter() - started
    metrics = {"train_sets": described, "n_train": int(len(x_tr)), "n_val": int(len(x_val))}
    if x_test is not None:
        result = evaluate(model, x_test, y_test, tta=cfg.tta, source=test_described[0]["name"])
        predictions = result.pop("predictions")
        if report_dir is not None:
            write_report(report_dir, x_test, y_test, predictions, result, test_described[0]["name"])
        metrics = {"test_accuracy": result["accuracy"], "per_digit_accuracy": result["per_digit_accuracy"],
                   "confusion_matrix": result["confusion_matrix"], "test_loss": result["loss"],
                   "test_set": test_described[0], "n_test": result["n"], **metrics}
    batch, spe, epochs, total = plan(len(x_tr), cfg)
    metrics.update(best)
    warning = did_not_learn(history)
    if warning:
        metrics["warning"] = warning
    metrics.update({"epochs": epochs, "steps": total, "batch_size": batch,
                    "train_time_s": round(train_time, 1), "backend": backend.name,
                    **settings_dict(cfg), "history": history})
    return model, metrics


def settings_dict(cfg):
    """The run's settings as JSON-ready values (the learning rate resolved for the architecture)."""
    d = asdict(cfg)
    d["lr"] = cfg.lr or PEAK_LR[cfg.arch]
    d.pop("epochs")
    return d


def train_step(model, loss_fn, opt, xb, yb):
    """One SGD step on the batch (xb, yb); returns (loss, accuracy on the batch) as 0-d device
    values, so the step never waits for the GPU (`float()` or a `backend.ScalarLog` reads them)."""
    z = model.forward(xb, training=True)
    loss = loss_fn.forward(z, yb)
    model.backward(loss_fn.backward(), input_grad=False)
    opt.step()
    return loss, (z.argmax(axis=1) == yb).mean()


def batches(x, y, batch, rng, cfg):
    """One epoch of augmented minibatches on the device, in a random order (the last partial batch is dropped)."""
    order = rng.permutation(len(x))
    for b in range(len(x) // batch):
        idx = order[b * batch:(b + 1) * batch]
        yield augment(backend.asarray(to_float(x[idx])), rng, cfg.augment), backend.asarray(y[idx])


def mixed_batches(x, y, sources, batch, rng, cfg):
    """One epoch (len(x) // batch steps, as `batches`) of augmented minibatches in which a fixed share of every batch
    comes from each training set: set i gives k_i = cfg.batch_shares[i] / sum(shares) · batch images (rounded so
    that the k_i add up to the batch). Each set is walked in its own random order, reshuffled when used up, so a
    small set (a few real images beside many synthetic ones) is seen as often as its share asks, every image of
    it equally often."""
    shares = np.asarray(cfg.batch_shares, dtype=float) / sum(cfg.batch_shares)
    k = np.floor(shares * batch).astype(int)
    k[np.argsort(-(shares * batch - k), kind="stable")[:batch - k.sum()]] += 1      # largest remainders
    pools = [np.flatnonzero(sources == i) for i in range(len(shares))]
    for i in np.flatnonzero(k):
        if len(pools[i]) == 0:
            raise ClassifyError(f"training set {i + 1} has a batch share but no training images left after the "
                                f"validation split")
    queues = [np.zeros(0, dtype=np.int64) for _ in pools]
    for _ in range(len(x) // batch):
        parts = []
        for i in np.flatnonzero(k):
            while len(queues[i]) < k[i]:
                queues[i] = np.concatenate([queues[i], rng.permutation(pools[i])])
            parts.append(queues[i][:k[i]])
            queues[i] = queues[i][k[i]:]
        idx = np.concatenate(parts)
        yield augment(backend.asarray(to_float(x[idx])), rng, cfg.augment), backend.asarray(y[idx])


def validation_accuracy(model, x_val, y_val):
    """Plain (single-view) accuracy of the model on the held-out images."""
    return float((predict_proba(model, x_val, tta=False).argmax(axis=1) == y_val).mean())


def fit(x, y, x_val, y_val, cfg, rng, progress=True, sources=None):
    """The training loop on uint8 images x, y (validation on x_val, y_val); returns
    (model, history, best) with the best validated EMA model loaded, in eval mode; best holds
    val_accuracy, best_epoch and the loss_curve. sources: each image's training set (0, 1, ...),
    needed with cfg.batch_shares."""
    batch, steps_per_epoch, epochs, total = plan(len(x), cfg)
    peak = cfg.lr or PEAK_LR[cfg.arch]
    model = build_model(cfg.arch, cfg.seed, cfg.widths)
    average = copy.deepcopy(model) if cfg.ema_decay else model      # the weights that are validated and kept
    opt = optim.SGD(model, lr=peak, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):           # once per data set, on the host
        raise ClassifyError(f"training labels must be digits 0..9, got range {int(y.min())}..{int(y.max())}")
    loss_fn = losses.SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing, check_labels=False)
    every = max(1, epochs // VALIDATIONS)
    history, best, best_state = [], {"val_accuracy": None, "best_epoch": epochs}, None
    step, run = 0, None                                   # run: running (loss, accuracy), averaged over ~20 steps
    curve, window = [], []                                # curve: the loss_curve; window: its unfinished block
    pending = backend.ScalarLog()                         # the steps' (loss, accuracy), still on the device
    bar = tqdm(total=total, desc=f"train {cfg.arch}", unit="step", disable=not progress, leave=False)

    def catch_up(epoch):                                  # one device -> host read for all pending steps
        nonlocal run, window
        for row in pending.flush():
            now = (row["loss"], row["acc"])
            run = now if run is None else tuple(0.95 * r + 0.05 * n for r, n in zip(run, now))
            window.append(now)
            if len(window) == LOG_EVERY:                  # one point per LOG_EVERY steps, at its last step
                loss, acc = np.mean(window, axis=0)
                curve.append({"step": row["step"], "train_loss": round(float(loss), 4),
                              "train_accuracy": round(float(acc), 4)})
                window = []
        bar.set_postfix(epoch=epoch, loss=f"{run[0]:.3f}", acc=f"{run[1]:.3f}", refresh=False)

    for epoch in range(1, epochs + 1):
        epoch_batches = (batches(x, y, batch, rng, cfg) if cfg.batch_shares is None
                         else mixed_batches(x, y, sources, batch, rng, cfg))
        for xb, yb in epoch_batches:
            opt.lr = learning_rate(step, total, peak, cfg.warmup)
            loss, acc = train_step(model, loss_fn, opt, xb, yb)
            pending.add({"loss": loss, "acc": acc, "step": step + 1})
            if average is not model:
                ema_update(average, model, ema_decay(step, cfg.ema_decay))
            step += 1
            bar.update(1)
            if len(pending) >= LOG_EVERY:
                catch_up(epoch)
        if epoch % every == 0 or epoch == epochs:
            catch_up(epoch)
            record = {"epoch": epoch, "step": step, "train_loss": round(run[0], 4), "train_accuracy": round(run[1], 4)}
            if len(x_val):
                record["val_accuracy"] = val_acc = validation_accuracy(average, x_val, y_val)
                bar.set_postfix(epoch=epoch, loss=f"{run[0]:.3f}", acc=f"{run[1]:.3f}", val=f"{val_acc:.3f}")
                if best["val_accuracy"] is None or val_acc >= best["val_accuracy"]:
                    best, best_state = {"val_accuracy": val_acc, "best_epoch": epoch}, average.state_dict()
            history.append(record)
    bar.close()
    if best_state is not None:
        average.load_state_dict(best_state, source="best checkpoint")
    return average.eval(), history, {**best, "loss_curve": curve}
