"""Losses. Each has `forward(...) -> value` (the mean over the batch, a 0-d value on the current
device: `float(value)` reads it, `backend.ScalarLog` reads many at once, so a training step never
waits for the GPU) and `backward() -> gradient` with respect to its first input.

The GAN losses follow the paper (Grbić): the discriminator outputs X, "the probability that the
image is synthetic"; the desired output is X1 = 1 for synthetic (generated) and X1 = 0 for real
images; the discriminator's loss is D = |X1 - X| and the generator's loss is G = 1 - D.
"""
import numpy as np

from nn import backend
from nn.layers.activations import sigmoid


def _check_same_shape(name, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{name}: prediction shape {tuple(a.shape)} and target shape {tuple(b.shape)} differ")


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, with integer labels, computed stably.

    Forward:   p = softmax(z) with z shifted by max(z);  L = -1/N · sum_n log p[n, y_n]
    Backward:  dL/dz = (p - onehot(y)) / N

    With label_smoothing ε > 0 the targets are q = (1 - ε)·onehot(y) + ε/K (Szegedy et al. 2016):
    Forward:   L = -1/N · sum_n sum_k q_nk · log p_nk
    Backward:  dL/dz = (p - q) / N

    check_labels=False skips the per-call check that labels lie in 0..K-1 (it reads the labels back
    from the device, a synchronisation): for training loops that checked their whole data set once.
    """

    def __init__(self, label_smoothing=0.0, check_labels=True):
        self.check_labels = bool(check_labels)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, labels):
        xp = backend.xp
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(f"SoftmaxCrossEntropy: expected logits (N, K) and labels (N,), "
                             f"got shapes {tuple(logits.shape)} and {tuple(labels.shape)}")
        K = logits.shape[1]
        if self.check_labels and labels.size and (int(labels.min()) < 0 or int(labels.max()) >= K):
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in 0..{K - 1}, "
                             f"got range {int(labels.min())}..{int(labels.max())}")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_sum
        n = xp.arange(logits.shape[0])
        if self.label_smoothing:
            N, eps = logits.shape[0], self.label_smoothing
            q = xp.full((N, K), eps / K, dtype=logits.dtype)
            q[n, labels] += 1 - eps
            self.cache = (xp.exp(log_p), q)
            return -(q * log_p).sum() / N
        self.cache = (xp.exp(log_p), labels)
        return -log_p[n, labels].mean()

    def backward(self):
        xp = backend.xp
        p, labels = self.cache
        if self.label_smoothing:
            return (p - labels) / len(p)        # here `labels` holds the smoothed targets q
        d = p.copy()
        d[xp.arange(len(labels)), labels] -= 1
        return d / len(labels)


class BCE:
    """Binary cross-entropy on probabilities p in (0, 1), clipped to [eps, 1 - eps]:

    Forward:   L = -mean( t·log p + (1 - t)·log(1 - p) )
    Backward:  dL/dp = (p - t) / (p·(1 - p)) / M          (M = number of elements)
    """

    def __init__(self, eps=1e-7):
        self.eps = eps

    def forward(self, p, target):
        xp = backend.xp
        _check_same_shape("BCE", p, target)
        pc = xp.clip(p, self.eps, 1 - self.eps)
        self.cache = (pc, target)
        return -(target * xp.log(pc) + (1 - target) * xp.log(1 - pc)).mean()

    def backward(self):
        pc, t = self.cache
        return (pc - t) / (pc * (1 - pc)) / pc.size


class BCEWithLogits:
    """Binary cross-entropy on logits z (p = sigmoid(z)), computed stably:

    Forward:   L = mean( max(z, 0) - z·t + log(1 + exp(-|z|)) )
    Backward:  dL/dz = (sigmoid(z) - t) / M
    """

    def forward(self, z, target):
        xp = backend.xp
        _check_same_shape("BCEWithLogits", z, target)
        self.cache = (z, target)
        return (xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-xp.abs(z)))).mean()

    def backward(self):
        z, t = self.cache
        return (sigmoid(z) - t) / z.size


class PaperDiscriminatorLoss:
    """The paper's discriminator loss,  D = |X1 - X|,  averaged over the batch.

    X  = the discriminator's output, its belief that the image is *synthetic*, in (0, 1);
    X1 = the desired output: 1 for synthetic (generated) images, 0 for real ones.
    Backward:  dD/dX = -sign(X1 - X) / M    (= -1/M for synthetic images, +1/M for real ones,
    since X lies strictly between 0 and 1).
    """

    def forward(self, X, X1):
        xp = backend.xp
        _check_same_shape("PaperDiscriminatorLoss", X, X1)
        self.cache = (X, X1)
        return xp.abs(X1 - X).mean()

    def backward(self):
        X, X1 = self.cache
        return -backend.xp.sign(X1 - X) / X.size


class PaperGeneratorLoss:
    """The paper's generator loss,  G = 1 - D,  where D = |X1 - X| is the discriminator's loss on the
    generated images (X1 = 1, "synthetic"). The generator gains exactly what the discriminator loses:

        G = 1 - mean|1 - X| = mean(X)          (X = D's belief that the generated image is synthetic)
    Backward:  dG/dX = +1 / M  — push X down, i.e. make the discriminator believe "real".
    (Through a sigmoid this gradient is X·(1 - X)/M, small when the discriminator is confident:
    the same saturation as the original minimax GAN loss.)
    """

    def forward(self, X):
        xp = backend.xp
        self.X = X
        D = xp.abs(1 - X).mean()
        return 1 - D

    def backward(self):
        X = self.X
        return backend.xp.sign(1 - X) / X.size
