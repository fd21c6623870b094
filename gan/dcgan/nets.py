"""The paper's DCGAN: a generator, a discriminator, the two losses, and one training step.

The paper (Grbić) in its own symbols:
  - the discriminator outputs X in (0, 1), its belief that an image is *synthetic* (here the network
    returns the logit z, X = sigmoid(z), and the losses apply the sigmoid);
  - the desired output is X1 = 1 for generated images and X1 = 0 for real ones;
  - the discriminator's loss is D = |X1 - X|, the generator's loss is G = 1 - D on generated images.
The generator maps 100 random values through 1 dense layer and 3 upsampling + 3 convolution
("deconvolution") layers to a 32x32 RGB image; the discriminator is 3 convolution + 3 pooling
layers + 1 dense layer. Widths, BatchNorm placement, LeakyReLU(0.2), tanh and the Adam settings
follow DCGAN (Radford et al. 2016).

    G = build_generator(upsample="nearest")      # z (N, 100) -> images (N, 3, 32, 32) in [-1, 1]
    D = build_discriminator()                    # images -> logits z (N, 1); X = sigmoid(z), belief "synthetic"
    gan = DCGAN(G, D, loss="paper")
    metrics = gan.train_step(real_batch, z)      # one discriminator and one generator update
"""
import copy

import numpy as np

from nn import Sequential, backend, init, layers, losses, optim
from nn.layers.activations import sigmoid
from gan.dcgan.augment import DiffAugment

Z_DIM = 100          # the paper's "100 random values"
UPSAMPLE_MODES = ("nearest", "deconv")
LOSSES = ("paper", "bce")
CONV_METHOD = "auto"  # Conv2D's fast path (Winograd where nn measured it faster); nn's default is plain im2col
POOL_METHOD = "auto"  # MaxPool2D's fast 2x2 kernel (nn/layers/pool_fast.py); nn's default is the window loop


# ----------------------------------------------------------------------------- the networks

def dcgan_init(model):
    """DCGAN's recipe (Radford et al. 2016), in place: every Conv/ConvTranspose/Dense W ~ N(0, 0.02),
    biases 0, BatchNorm gamma ~ N(1, 0.02), beta 0."""
    for layer in model.layers:
        if isinstance(layer, (layers.BatchNorm1D, layers.BatchNorm2D)):
            g = layer.params["gamma"]
            layer.params["gamma"] = init.normal(g.shape, 1.0, 0.02, g.dtype)
            layer.params["beta"][...] = 0
        elif "W" in layer.params:
            w = layer.params["W"]
            layer.params["W"] = init.normal(w.shape, 0.0, 0.02, w.dtype)
            if "b" in layer.params:
                layer.params["b"][...] = 0
    return model


def _up_stage(c_in, c_out, upsample, bias=False):
    """One stage that doubles the image size: nearest upsampling + 3x3 convolution, or one
    stride-2 transposed convolution (k=4, s=2, p=1). No bias where BatchNorm follows."""
    if upsample == "nearest":
        return [layers.Upsample2D(2),
                layers.Conv2D(c_in, c_out, 3, padding=1, bias=bias, method=CONV_METHOD)]
    return [layers.ConvTranspose2D(c_in, c_out, 4, stride=2, padding=1, bias=bias)]


def build_generator(upsample="nearest", width=64, z_dim=Z_DIM):
    """z (N, z_dim) -> Dense -> (4·width, 4, 4) -> three size-doubling stages -> (N, 3, 32, 32), tanh.

    Channels 4w -> 2w -> w -> 3 over sizes 4 -> 8 -> 16 -> 32; BatchNorm + ReLU after every stage
    but the last, which ends in tanh so images lie in [-1, 1] (as `svhn.imageset.to_float` scales
    real ones). DCGAN initialisation (weights N(0, 0.02)).
    """
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"unknown upsample mode {upsample!r}; choose from {', '.join(UPSAMPLE_MODES)}")
    if width < 1:
        raise ValueError(f"generator width must be >= 1, got {width}")
    c = [4 * width, 2 * width, width]
    net = [layers.Dense(z_dim, c[0] * 16), layers.Reshape((c[0], 4, 4)),
           layers.BatchNorm2D(c[0]), layers.ReLU()]
    net += _up_stage(c[0], c[1], upsample) + [layers.BatchNorm2D(c[1]), layers.ReLU()]
    net += _up_stage(c[1], c[2], upsample) + [layers.BatchNorm2D(c[2]), layers.ReLU()]
    net += _up_stage(c[2], 3, upsample, bias=True) + [layers.Tanh()]
    return dcgan_init(Sequential(*net))


def build_discriminator(width=64, in_channels=3):
    """Images (N, 3, 32, 32) -> logits z (N, 1); X = sigmoid(z) in (0, 1) is the belief that each
    image is synthetic (the losses apply the sigmoid).

    Three stages of 3x3 convolution, (BatchNorm,) LeakyReLU(0.2) and 2x2 max-pooling
    (32 -> 16 -> 8 -> 4; channels w -> 2w -> 4w; no BatchNorm in the first stage),
    then Flatten and Dense(4w·16, 1). in_channels > 3: extra input planes after the colour channels
    (the conditional GAN's one-hot digit, gan/dcgan/conditional.py).
    """
    if width < 1:
        raise ValueError(f"discriminator width must be >= 1, got {width}")
    c = [width, 2 * width, 4 * width]
    net = [layers.Conv2D(in_channels, c[0], 3, padding=1, method=CONV_METHOD), layers.LeakyReLU(0.2), layers.MaxPool2D(2, method=POOL_METHOD)]
    net += [layers.Conv2D(c[0], c[1], 3, padding=1, bias=False, method=CONV_METHOD), layers.BatchNorm2D(c[1]),
            layers.LeakyReLU(0.2), layers.MaxPool2D(2, method=POOL_METHOD)]
    net += [layers.Conv2D(c[1], c[2], 3, padding=1, bias=False, method=CONV_METHOD), layers.BatchNorm2D(c[2]),
            layers.LeakyReLU(0.2), layers.MaxPool2D(2, method=POOL_METHOD)]
    net += [layers.Flatten(), layers.Dense(c[2] * 16, 1)]
    return dcgan_init(Sequential(*net))


# ----------------------------------------------------------------------------- the losses

class PaperLoss:
    """The paper's losses. Discriminator: D = |X1 - X| (mean), X1 = 1 generated, 0 real.
    Generator: G = 1 - D on generated images, i.e. G = mean(X): push X (belief "synthetic") down.

    Both take D's logits z, apply the sigmoid X = sigmoid(z) and return dLoss/dz = dLoss/dX·X·(1 - X):
    through the sigmoid the gradient fades when the discriminator is confident (the original GAN's
    saturation).
    """
    name = "paper"

    def __init__(self):
        self.d_loss = losses.PaperDiscriminatorLoss()
        self.g_loss = losses.PaperGeneratorLoss()

    def discriminator(self, z, X1):
        """D = mean|X1 - X| and dD/dz."""
        X = sigmoid(z)
        loss = self.d_loss.forward(X, X1)
        return loss, self.d_loss.backward() * X * (1 - X)

    def generator(self, z):
        """G = 1 - D(X, X1=1) = mean(X) and dG/dz."""
        X = sigmoid(z)
        loss = self.g_loss.forward(X)
        return loss, self.g_loss.backward() * X * (1 - X)


class BCELoss:
    """The usual GAN loss under the paper's convention (X = belief "synthetic"):
    discriminator  L_D = BCE(X, X1)   (X1 = 1 generated, 0 real);
    generator      L_G = BCE(X, 0) = -mean log(1 - X)   on generated images — the *non-saturating*
    form: the generator asks the discriminator to call its images real (X1 = 0), which keeps a
    strong gradient when the discriminator is confident.
    Computed from the logit z (X = sigmoid(z)) for stability: dL/dz = (X - target) / M.
    """
    name = "bce"

    def __init__(self):
        self.loss = losses.BCEWithLogits()

    def discriminator(self, z, X1):
        return self.loss.forward(z, X1), self.loss.backward()

    def generator(self, z):
        target = backend.xp.zeros_like(z)
        return self.loss.forward(z, target), self.loss.backward()


def make_loss(name):
    if name == "paper":
        return PaperLoss()
    if name == "bce":
        return BCELoss()
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")


# ----------------------------------------------------------------------------- training

class DCGAN:
    """A generator, a discriminator, their Adam optimizers and one loss: the unit that is trained,
    checkpointed and resumed. `train_step` does one discriminator update then one generator update,
    as the PyTorch DCGAN example does.

    Options beyond the paper (all off by default):
      label_smoothing  s: the discriminator's target for real images is X1 = s instead of 0
                       (one-sided smoothing; keeps D from becoming over-confident on few images);
      d_every          k: update the discriminator only every k-th iteration (G every iteration),
                       for when D wins too easily;
      lr_d             the discriminator's own learning rate (default: lr, as G's);
      augment          True: DiffAugment (gan/augment.py) on every image D sees, real or generated,
                       so D cannot memorise the few real images (needs `rng` in train_step);
      ema_decay        β > 0: keep G_ema, a moving average of G's weights, updated after every
                       generator step, θ_ema ← β_t·θ_ema + (1 - β_t)·θ with β_t = min(β, (1+t)/(10+t))
                       after t iterations. `sampler` (what images are drawn from) is G_ema.
    """

    def __init__(self, G, D, loss="paper", lr=2e-4, beta1=0.5, label_smoothing=0.0, d_every=1, augment=False,
                 lr_d=None, ema_decay=0.0):
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {ema_decay}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label smoothing must be in [0, 0.5), got {label_smoothing}")
        if int(d_every) < 1:
            raise ValueError(f"d_every must be >= 1, got {d_every}")
        self.G, self.D = G, D
        self.loss = make_loss(loss)
        self.opt_G = optim.Adam(G, lr=lr, betas=(beta1, 0.999))
        self.opt_D = optim.Adam(D, lr=lr if lr_d is None else lr_d, betas=(beta1, 0.999))
        self.label_smoothing = float(label_smoothing)
        self.d_every = int(d_every)
        self.augment = DiffAugment() if augment else None
        self.ema_decay = float(ema_decay)
        self.G_ema = copy.deepcopy(G) if ema_decay else None
        self.rng = None
        self.iteration = 0

    @property
    def sampler(self):
        """The generator images are drawn from: the weight average G_ema if kept, else G."""
        return self.G_ema if self.G_ema is not None else self.G

    # --- the discriminator (with the augmentation in front of it)
    def _d_forward(self, x):
        """Returns (X, z): D's logits z and X = sigmoid(z), the belief "synthetic"."""
        h = self.augment.forward(x, self.rng) if self.augment else x
        z = self.D.forward(h, True)
        return sigmoid(z), z

    def _d_backward(self, dz, input_grad=True):
        """Backpropagate dLoss/dz through D; returns dLoss/d(image) (with input_grad=False only D's
        gradients are filled and None is returned)."""
        d_out = self.D.backward(dz, input_grad)
        if not input_grad:
            return None
        return self.augment.backward(d_out) if self.augment else d_out

    def discriminator_step(self, real, fake, update=True):
        """One update of D on a real and a generated batch (or, with update=False, only its loss).
        The loss is the mean over both batches, D = (D_real + D_fake) / 2, with X1 = 0 (or the
        smoothed value) for real and X1 = 1 for generated images. Returns (D, X_real, X_fake)."""
        xp = backend.xp
        X_real, out = self._d_forward(real)
        X1_real = xp.full(X_real.shape, self.label_smoothing, dtype=X_real.dtype)
        loss_real, d_out = self.loss.discriminator(out, X1_real)
        if update:
            self._d_backward(d_out * 0.5, input_grad=False)
            grads_real = [g.copy() for _, g in self.D.parameters()]
        X_fake, out = self._d_forward(fake)
        loss_fake, d_out = self.loss.discriminator(out, xp.ones_like(X_fake))
        if update:   # the layers keep one batch's gradients: add the real batch's back in
            self._d_backward(d_out * 0.5, input_grad=False)
            for (_, g), g_real in zip(self.D.parameters(), grads_real):
                g += g_real
            self.opt_D.step()
        # the mean in float64, as Python floats would add them (exact for float32 losses)
        return 0.5 * (xp.asarray(loss_real, dtype=xp.float64) + xp.asarray(loss_fake, dtype=xp.float64)), X_real, X_fake

    def generator_step(self, fake):
        """One update of G: the loss of D's verdict on `fake` (the output of G's last forward),
        backpropagated through D (whose weights stay) into G. Returns (G loss, X on fake)."""
        X_fake, out = self._d_forward(fake)
        loss, d_out = self.loss.generator(out)
        self.G.backward(self._d_backward(d_out))
        self.opt_G.step()
        return loss, X_fake

    def train_step(self, real, z, rng=None):
        """One iteration: generate G(z), update D on (real, G(z)), then update G.

        real: (N, 3, 32, 32) in [-1, 1] on the current device; z: (M, z_dim); rng: a NumPy Generator
        for the augmentation's random transforms (needed only with augment=True).
        Returns a dict of 0-d device values (no synchronisation with the host; `float()` reads one,
        `backend.ScalarLog` many at once): loss_D, loss_G, acc_real, acc_fake (D's accuracy: X < 0.5
        on real, X >= 0.5 on generated), X_real, X_fake (mean beliefs).
        """
        if self.augment and rng is None:
            raise ValueError("DCGAN.train_step: augmentation needs a random generator (rng=...)")
        self.rng = rng
        return self.update_both(real, self.G.forward(z, training=True))

    def update_both(self, real, fake):
        """The iteration's updates once G has made `fake`: D on (real, fake), then G, then G's
        weight average. Returns train_step's metrics."""
        update_D = self.iteration % self.d_every == 0
        self.iteration += 1
        loss_D, X_real, X_fake = self.discriminator_step(real, fake, update=update_D)
        loss_G, _ = self.generator_step(fake)
        if self.G_ema is not None:
            optim.ema_update(self.G_ema, self.G, optim.ema_decay(self.iteration, self.ema_decay))
        return {"loss_D": loss_D, "loss_G": loss_G, "acc_real": self.batch_mean(X_real < 0.5),
                "acc_fake": self.batch_mean(X_fake >= 0.5), "X_real": self.batch_mean(X_real),
                "X_fake": self.batch_mean(X_fake)}

    @staticmethod
    def batch_mean(values):
        """The mean over the batch (a 0-d device value)."""
        return values.mean()

    # --- state for checkpoints
    def state_dict(self):
        """Every array needed to take the same next step: G and D (parameters + BatchNorm buffers),
        both optimizers' states, G_ema (if kept) and the iteration, as one flat dict of host arrays."""
        state = {"iteration": np.array(self.iteration)}
        parts = [("G/", self.G), ("D/", self.D), ("opt_G/", self.opt_G), ("opt_D/", self.opt_D)]
        if self.G_ema is not None:
            parts.append(("G_ema/", self.G_ema))
        for prefix, obj in parts:
            state.update({prefix + k: v for k, v in obj.state_dict().items()})
        return state

    def load_state_dict(self, state, source="checkpoint"):
        def part(prefix):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if self.G_ema is not None and not part("G_ema/"):
            raise ValueError(f"{source}: has no averaged generator (G_ema); it was trained without "
                             f"ema_decay, so load it with ema_decay=0")
        self.G.load_state_dict(part("G/"), source=source)
        self.D.load_state_dict(part("D/"), source=source)
        self.opt_G.load_state_dict(part("opt_G/"))
        self.opt_D.load_state_dict(part("opt_D/"))
        if self.G_ema is not None:
            self.G_ema.load_state_dict(part("G_ema/"), source=source)
        self.iteration = int(state["iteration"])
        return self


def generate(G, z, batch_size=64, bn="batch"):
    """Images G(z) (N, 3, 32, 32) in [-1, 1], in batches, without changing G.

    bn="batch": BatchNorm uses each batch's own statistics, as during training (the usual way to
    sample a DCGAN); the running statistics are saved and restored around it.
    bn="running": BatchNorm uses its running statistics (eval mode).
    """
    return forward_in_batches(G, z, batch_size, bn)


def belief_synthetic(D, images, batch_size=64):
    """X = sigmoid(D(images)) (N,): the discriminator's belief that each image is synthetic, computed
    as in training on a batch of generated images (BatchNorm on each batch's own statistics, no
    augmentation), without changing D."""
    return sigmoid(forward_in_batches(D, images, batch_size, "batch"))[:, 0]


def forward_in_batches(net, x, batch_size, bn):
    """net(x) in batches of `batch_size`; bn="batch" (each batch's statistics, the running ones
    saved and restored around it) or "running" (eval mode)."""
    xp = backend.xp
    if bn not in ("batch", "running"):
        raise ValueError(f"unknown BatchNorm sampling mode {bn!r}; choose batch or running")
    saved = [dict(layer.buffers) for layer in net.layers]
    try:
        out = [net.forward(x[i:i + batch_size], training=(bn == "batch")) for i in range(0, len(x), batch_size)]
    finally:
        for layer, buffers in zip(net.layers, saved):
            layer.buffers.update(buffers)
    return xp.concatenate(out)
