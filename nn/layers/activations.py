"""Element-wise activations. Each keeps what its derivative needs."""
from nn import backend
from nn.layers.base import Layer


class ReLU(Layer):
    """y = max(x, 0);   dx = dy · [x > 0]"""

    def forward(self, x, training=True):
        self.mask = x > 0
        return backend.xp.maximum(x, 0)

    def backward(self, dy):
        return dy * self.mask


class LeakyReLU(Layer):
    """y = x if x > 0 else alpha·x;   dx = dy · (1 if x > 0 else alpha)"""

    def __init__(self, alpha=0.2):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, training=True):
        # the slope is 1 where x > 0 and alpha elsewhere; plain arithmetic (no `where`) keeps NumPy on
        # its fast vector loops
        self.slope = (x > 0).astype(x.dtype) * x.dtype.type(1 - self.alpha) + x.dtype.type(self.alpha)
        return x * self.slope

    def backward(self, dy):
        return dy * self.slope

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)) (computed stably);   dx = dy · y · (1 - y)"""

    def forward(self, x, training=True):
        self.y = sigmoid(x)
        return self.y

    def backward(self, dy):
        return dy * self.y * (1 - self.y)


class Tanh(Layer):
    """y = tanh(x);   dx = dy · (1 - y²)"""

    def forward(self, x, training=True):
        self.y = backend.xp.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y * self.y)


def sigmoid(x):
    """Numerically stable logistic function: exp is only ever taken of a non-positive number."""
    xp = backend.xp
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
