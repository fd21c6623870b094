"""One class-conditional DCGAN for all ten digits (beyond the paper: `gan train --conditional`).

The paper trains ten DCGANs, each on its own digit's real images only, so each sees a tenth of the data
and none learns from the others what house-number crops have in common (backgrounds, colours, lighting,
blur, the neighbouring digits at the edges). A conditional GAN (Mirza & Osindero 2014) is one generator
and one discriminator for all ten digits, each told which digit y it is about:

    G(z, y):  the input is z (100 random values) followed by the one-hot digit (10 values), so the first
              Dense layer maps 110 values; the rest is the paper's generator.
    D(x, y):  the image's 3 colour channels are followed by 10 constant planes, the one-hot digit (plane y
              all ones, the others zeros), so the first convolution sees 13 channels; the rest is the
              paper's discriminator.

The losses are the DCGAN's (the paper's or BCE) unchanged; what conditioning adds is what "real" means:
D learns what a real image *of digit y* looks like, so a generated image labelled 3 that looks like a
real 8 is called synthetic, and G(z, 3) is pushed towards real 3s. Each real batch keeps its images'
own digits and the generated batch is drawn with the same digits, so D cannot tell the two apart by
their mix of labels.

DiffAugment (gan/dcgan/augment.py) transforms the colour channels only: the label planes reach D as
they are. Images drawn from a conditional run are labelled with the digit they were conditioned on.

    gan = ConditionalDCGAN(build_conditional_generator(), build_conditional_discriminator())
    metrics = gan.train_step(real, z, rng, labels=y)     # y: the real batch's digits
    images = generate(gan.sampler, generator_input(z, y))
"""
from nn import backend
from nn.layers.activations import sigmoid
from gan.dcgan.nets import DCGAN, Z_DIM, build_discriminator, build_generator

N_DIGITS = 10


def one_hot(labels, n=N_DIGITS):
    """(N,) integer digits -> (N, n) float32 rows with a single 1 at each digit."""
    xp = backend.xp
    return (xp.asarray(labels)[:, None] == xp.arange(n)[None, :]).astype(xp.float32)


def generator_input(z, labels):
    """G's input (N, z_dim + 10): the noise followed by the one-hot digit."""
    return backend.xp.concatenate([z, one_hot(labels).astype(z.dtype)], axis=1)


def with_label_planes(images, labels):
    """D's input (N, 3 + 10, H, W): the images' colour channels followed by one constant plane per
    digit, 1 on the image's own digit and 0 elsewhere."""
    xp = backend.xp
    n, _, h, w = images.shape
    planes = xp.broadcast_to(one_hot(labels).astype(images.dtype)[:, :, None, None], (n, N_DIGITS, h, w))
    return xp.concatenate([images, planes], axis=1)


def build_conditional_generator(upsample="nearest", width=64, z_dim=Z_DIM):
    """The paper's generator taking z and the one-hot digit: (N, z_dim + 10) -> (N, 3, 32, 32)."""
    return build_generator(upsample, width, z_dim=z_dim + N_DIGITS)


def build_conditional_discriminator(width=64):
    """The paper's discriminator taking an image and 10 one-hot label planes: (N, 13, 32, 32) -> logits."""
    return build_discriminator(width, in_channels=3 + N_DIGITS)


class ConditionalDCGAN(DCGAN):
    """A DCGAN whose G and D are told the digit (see the module docstring). The discriminator's input
    is an image with its label planes, `with_label_planes(x, y)`; everything else (the losses, the
    options, checkpoints) is DCGAN's."""

    def _d_forward(self, x):
        """x: (N, 13, H, W), an image and its label planes. The augmentation acts on the colour
        channels only. Returns (X, z) as DCGAN's."""
        xp = backend.xp
        image, planes = x[:, :3], x[:, 3:]
        if self.augment:
            image = self.augment.forward(image, self.rng)
        z = self.D.forward(xp.concatenate([image, planes], axis=1), True)
        return sigmoid(z), z

    def _d_backward(self, dz, input_grad=True):
        """dLoss/d(image) for the colour channels only (the label planes are constants)."""
        d_in = self.D.backward(dz, input_grad)
        if not input_grad:
            return None
        d_image = backend.xp.ascontiguousarray(d_in[:, :3])
        return self.augment.backward(d_image) if self.augment else d_image

    def train_step(self, real, z, rng=None, labels=None):
        """One iteration on real images of the digits `labels` ((N,) integers): G makes one image
        per digit of the same batch of digits from z, then D and G are updated as in DCGAN."""
        if labels is None:
            raise ValueError("ConditionalDCGAN.train_step: needs the real batch's digits (labels=...)")
        if self.augment and rng is None:
            raise ValueError("ConditionalDCGAN.train_step: augmentation needs a random generator (rng=...)")
        self.rng = rng
        fake = self.G.forward(generator_input(z, labels), training=True)
        return self.update_both(with_label_planes(real, labels), with_label_planes(fake, labels))
