"""SimGAN's pieces (Shrivastava et al. 2017): the refiner R, the patch discriminator, their losses,
the history buffer of refined images, and one training step of each network.

The paper (Grbić) names SimGAN as its next step: instead of generating images from noise, a
*refiner* R takes a procedural (synthetic) image x and returns a refined image x̃ = R(x) that should
look real while keeping the digit, so the procedural label stays valid. We keep the seed paper's
convention for the discriminator: its output X is the probability that a patch is *synthetic*
(refined), and the desired output is X1 = 1 for refined and X1 = 0 for real patches.

    R  = build_refiner(width=64, blocks=4)     # (N, 3, H, W) -> (N, 3, H, W) in [-1, 1]
    D  = build_patch_discriminator(width=32)   # (N, 3, 32, 32) -> X (N, 1, 8, 8): per-patch belief "refined"
    sg = SimGAN(R, D, lambda_reg=10.0)
    sg.refiner_pretrain_step(x_syn)            # L1 only:  L = mean|R(x) - x|
    sg.discriminator_step(x_real, x_syn, rng)  # L_D = BCE over every patch, half the refined from the buffer
    sg.refiner_step(x_syn)                     # L_R = BCE(X(R(x)), 0) + λ·mean|R(x) - x|

    # optional, our addition: a digit keeper C (a small classifier trained on the procedural images and
    # their labels, then frozen) adds μ·CE(C(R(x)), y) to L_R, so R is penalised for changing the digit
    C  = build_label_net(width=32)             # (N, 3, 32, 32) -> 10 logits
    sg = SimGAN(R, D, lambda_reg=1.0, label_net=C, label_weight=1.0)
    sg.label_net_step(x_syn, y_syn)            # trains C (before the refiner's phases)
    sg.refiner_step(x_syn, y_syn)              # L_R as above + μ·CE(C(R(x)), y)

    # optional, our addition: the conditional discriminator, one map per digit; each image is judged by its
    # own digit's map, real images with their labels, refined ones with the procedural labels
    D  = build_patch_discriminator(width=32, maps=10)  # (N, 3, 32, 32) -> (N, 10, 8, 8)
    sg = SimGAN(R, D, lambda_reg=1.0, conditional=True)
    sg.discriminator_step(x_real, x_syn, rng, real_y=y_real, y=y_syn)
    sg.refiner_step(x_syn, y_syn)

    # optional, our addition: a warp, so R can move strokes as well as recolour them; a flow net F predicts a
    # smooth displacement field and the refined image is R(x) resampled at the displaced points
    F  = build_flow_net(width=16)              # (N, 3, 32, 32) -> displacements (N, 2, 32, 32) in pixels
    sg = SimGAN(R, D, lambda_reg=1.0, flow_net=F, flow_weight=0.1)
    sg.refiner_step(x_syn)                     # L_R = BCE(X(W(R(x), F(x))), 0) + λ·mean|R(x) - x| + κ·mean F(x)²

SimGAN's losses, in the seed paper's symbols (X = D's belief "synthetic" for each patch, averaged
over the P patches of the map and the batch):
    L_D = -mean[ X1·log X + (1 - X1)·log(1 - X) ]      X1 = 1 for refined, 0 for real patches
    L_R = -mean[ log(1 - X(R(x))) ]  +  λ·mean|R(x) - x|
The first term of L_R asks D to call every refined patch real; the second, the self-regularisation,
keeps R(x) close to x so the digit (and its label) survive. With the conditional discriminator (one map per
digit) X of image n is sigmoid(z[n, y_n]), read from the map of its own digit y_n (`DigitMap`).

The self-regularisation guards the label only indirectly: it keeps every pixel close, which also stops R
from making the local changes that would look real (a large λ) or, with a small λ, lets R change pixels
that decide the digit. The label term (our addition; CyCADA's "semantic consistency", Hoffman et al.
2018, is the same idea with a classifier's own predictions as targets) asks for the digit directly:
    L_R += μ · CE(C(R(x)), y) = -μ · mean_n log softmax(C(R(x)))[n, y_n]
with C a classifier trained beforehand on the procedural images and their labels y (no real label is
seen) and frozen while R trains, so λ can be lowered without losing the digit.

The warp (our addition) lets the refiner redraw a digit's shape (stroke width, slant, height, position), which
3×3 convolutions held near their input by λ cannot: x̃ = W(R(x), F(x)), where W (`nn.layers.Warp`) reads R(x)
at each pixel (i, j) displaced by F(x)[:, i, j] = (Δi, Δj), bilinearly. The self-regularisation then keeps
R(x) (before the warp) close to x, and a penalty of its own keeps the displacements small:
    L_R = -mean[ log(1 - X(x̃)) ]  +  λ·mean|R(x) - x|  +  κ·mean(F(x)²)      (F(x) in pixels)
"""
import copy
from collections.abc import MutableMapping

import numpy as np

from nn import Sequential, backend, data_parallel, layers, losses, optim
from nn.layers.activations import sigmoid
from nn.layers.base import Layer

CONV_METHOD = "auto"  # Conv2D's fast path (Winograd where nn measured it faster); nn's default is plain im2col
POOL_METHOD = "auto"  # MaxPool2D's fast 2×2 kernel; nn's default is the window loop (the same numbers)


# ----------------------------------------------------------------------------- the refiner

class _Joined(MutableMapping):
    """One dict over the dicts of several named layers: key "conv1.W" is layer conv1's "W".

    Reading and writing go straight through to the layers (the dict attribute, e.g. `params`,
    is looked up on every access, since layers replace their `grads` dicts), so a composite layer
    looks like a plain layer to `Sequential`, the optimizers and `gradcheck`."""

    def __init__(self, parts, attr):
        self.parts, self.attr = parts, attr

    def _split(self, key):
        name, _, inner = key.partition(".")
        if name not in self.parts:
            raise KeyError(key)
        return getattr(self.parts[name], self.attr), inner

    def __getitem__(self, key):
        d, inner = self._split(key)
        return d[inner]

    def __setitem__(self, key, value):
        d, inner = self._split(key)
        d[inner] = value

    def __delitem__(self, key):
        d, inner = self._split(key)
        del d[inner]

    def __iter__(self):
        for name, layer in self.parts.items():
            for inner in getattr(layer, self.attr):
                yield f"{name}.{inner}"

    def __len__(self):
        return sum(len(getattr(layer, self.attr)) for layer in self.parts.values())


class ResBlock(Layer):
    """A ResNet block without striding (He et al. 2016), as SimGAN's refiner uses:

        h = ReLU(conv1(x)),   y = x + conv2(h)          (two 3×3 convolutions, padding 1)
    Backward: the identity path passes dy unchanged, the convolution path adds its own gradient:
        dx = dy + conv1ᵀ(ReLU'(h) · conv2ᵀ(dy))

    `params` / `grads` are keyed "conv1.W", "conv1.b", "conv2.W", "conv2.b" and read and write the
    two convolutions' own dicts, so the block sits in an `nn.Sequential` like any other layer.
    """

    def __init__(self, channels):
        super().__init__()
        self.channels = int(channels)
        self.conv1 = layers.Conv2D(channels, channels, 3, padding=1, method=CONV_METHOD)
        self.relu = layers.ReLU()
        self.conv2 = layers.Conv2D(channels, channels, 3, padding=1, method=CONV_METHOD)
        parts = {"conv1": self.conv1, "conv2": self.conv2}
        self.params, self.grads, self.buffers = (_Joined(parts, a) for a in ("params", "grads", "buffers"))

    def forward(self, x, training=True):
        return x + self.conv2.forward(self.relu.forward(self.conv1.forward(x, training), training), training)

    def backward(self, dy):
        return dy + self.conv1.backward(self.relu.backward(self.conv2.backward(dy)))

    def replica(self):
        """A copy for one chunk of the batch (nn/data_parallel.py runs each chunk on its own thread):
        the same weights, its own caches and gradients."""
        r = copy.copy(self)
        r.conv1, r.relu, r.conv2 = (data_parallel.replica(layer) for layer in (self.conv1, self.relu, self.conv2))
        parts = {"conv1": r.conv1, "conv2": r.conv2}
        r.params, r.grads, r.buffers = (_Joined(parts, a) for a in ("params", "grads", "buffers"))
        return r

    def astype(self, dtype):
        self.conv1.astype(dtype)
        self.conv2.astype(dtype)
        return self

    def to_device(self):
        self.conv1.to_device()
        self.conv2.to_device()
        return self

    def __repr__(self):
        return f"ResBlock({self.channels})"


def build_refiner(width=64, blocks=4, identity_init=True):
    """R: x (N, 3, H, W) in [-1, 1] -> x̃ = R(x), same shape, in (-1, 1). No striding, no pooling:

        3×3 conv 3→width, ReLU → `blocks` × [ResBlock(width), ReLU] → 1×1 conv width→3 → tanh

    (SimGAN: a 3×3 convolution with 64 feature maps, 4 ResNet blocks, a 1×1 convolution to the
    image's channels). Weights are drawn from `backend.host_rng()`: seed it first.
    identity_init: start R near the identity (see `init_near_identity`; needs width >= 6).
    """
    if int(width) < 1 or int(blocks) < 0:
        raise ValueError(f"refiner: width must be >= 1 and blocks >= 0, got width={width}, blocks={blocks}")
    net = [layers.Conv2D(3, width, 3, padding=1, method=CONV_METHOD), layers.ReLU()]
    for _ in range(int(blocks)):
        net += [ResBlock(width), layers.ReLU()]
    net += [layers.Conv2D(width, 3, 1, method=CONV_METHOD), layers.Tanh()]
    R = Sequential(*net)
    return init_near_identity(R) if identity_init else R


def init_near_identity(R, residual_scale=0.1):
    """Make R(x) ≈ tanh(x), close to the identity on [-1, 1], before any training (our addition:
    SimGAN reaches the identity only by pretraining on mean|R(x) - x|, which this shortens).

    The first convolution copies each colour c into two channels, +x_c and -x_c (centre tap ±1);
    after the ReLU they hold max(x_c, 0) and max(-x_c, 0), both >= 0, so they pass every
    ReLU after a ResBlock unchanged when the blocks add little (their second convolution is scaled
    by `residual_scale`). The last 1×1 convolution takes their difference, max(x, 0) - max(-x, 0) = x.
    The other channels keep their random weights. In place; returns R.
    """
    stem, out = R.layers[0], R.layers[-2]
    if stem.out_channels < 6:
        raise ValueError(f"refiner: the identity initialisation needs width >= 6, got {stem.out_channels}")
    W = backend.to_numpy(stem.params["W"]).copy()
    b = backend.to_numpy(stem.params["b"]).copy()
    W_out = np.zeros(out.params["W"].shape, dtype=np.float32)
    W[:6], b[:6] = 0, 0
    for c in range(3):
        W[c, c, 1, 1], W[3 + c, c, 1, 1] = 1, -1
        W_out[c, c], W_out[c, 3 + c] = 1, -1
    stem.params["W"], stem.params["b"] = backend.asarray(W), backend.asarray(b)
    out.params["W"] = backend.asarray(W_out)
    out.params["b"] = backend.xp.zeros_like(out.params["b"])
    for layer in R.layers:
        if isinstance(layer, ResBlock):
            layer.params["conv2.W"] = layer.params["conv2.W"] * np.float32(residual_scale)
    return R


def build_flow_net(width=16):
    """F: images (N, 3, 32, 32) -> displacements (N, 2, 32, 32) in pixels, (Δi, Δj) for every pixel.

        3×3 conv s2 3→w, ReLU → 3×3 conv s2 w→2w, ReLU → 3×3 conv 2w→2w, ReLU → 3×3 conv 2w→2 → bilinear ×4

    The field is predicted on an 8×8 grid, each of its vectors seeing a 23×23 window of the image (a digit's
    whole stroke, not a 3×3 neighbourhood), and upsampled bilinearly, so it is smooth: neighbouring pixels
    move together, as they do when a digit is slanted, stretched or thinned. The last convolution starts at
    zero, so F starts with no displacement at all and the warp with the identity.
    """
    if int(width) < 1:
        raise ValueError(f"flow net: width must be >= 1, got {width}")
    w = int(width)
    F = Sequential(
        layers.Conv2D(3, w, 3, stride=2, padding=1, method=CONV_METHOD), layers.ReLU(),
        layers.Conv2D(w, 2 * w, 3, stride=2, padding=1, method=CONV_METHOD), layers.ReLU(),
        layers.Conv2D(2 * w, 2 * w, 3, padding=1, method=CONV_METHOD), layers.ReLU(),
        layers.Conv2D(2 * w, 2, 3, padding=1, method=CONV_METHOD), layers.BilinearUpsample2D(4))
    last = F.layers[-2]
    last.params["W"], last.params["b"] = (backend.xp.zeros_like(last.params[k]) for k in ("W", "b"))
    return F


class WarpedRefiner:
    """The refiner with a warp: x̃ = W(R(x), F(x)), R(x) resampled at the points moved by F(x) (`nn.layers.Warp`).

    Forward keeps R(x) (`unwarped`) and F(x) (`flow`), which L_R's other terms read. Backward takes the
    gradients of L_R with respect to all three, x̃, R(x) and F(x), and fills R's and F's `grads`:
        [dR(x), dF(x)] = Wᵀ(dx̃) + [d_unwarped, d_flow]     then R.backward, F.backward
    """

    def __init__(self, R, F):
        self.R, self.F, self.warp = R, F, layers.Warp()

    def forward(self, x, training=True):
        self.unwarped = self.R.forward(x, training)
        self.flow = self.F.forward(x, training)
        return self.warp.forward(backend.xp.concatenate([self.unwarped, self.flow], axis=1), training)

    def backward(self, d_refined, d_unwarped, d_flow):
        d = self.warp.backward(d_refined)
        channels = self.unwarped.shape[1]
        self.R.backward(d[:, :channels] + d_unwarped, input_grad=False)   # x needs no gradient
        self.F.backward(d[:, channels:] + d_flow, input_grad=False)


def build_patch_discriminator(width=32, standardize=False, maps=1):
    """D: images (N, 3, 32, 32) -> logits z (N, maps, 8, 8); X = sigmoid(z) is, for each patch, its
    belief that it is refined (the sigmoid is applied by the loss, `PatchLoss`, stably).

        [Standardize per channel →] 3×3 conv s2 3→w, LReLU → 3×3 conv s2 w→2w, LReLU → 3×3 conv 2w→2w, LReLU
        → 1×1 conv 2w→2w, LReLU → 1×1 conv 2w→maps

    Each of the 8×8 outputs sees a 15×15 window of the image (SimGAN's local adversarial loss:
    D judges patches, so R cannot fool it with one global change and keeps local detail).
    No BatchNorm: a batch mixes real images, new refined ones and ones from the history buffer.

    standardize (our addition): D first gives every colour channel of every image mean 0 and variance 1
    (`nn.layers.Standardize(per_channel=True)`), so it cannot tell refined from real by brightness,
    contrast or a colour cast, and R gains nothing by changing them: a classifier trained on the refined
    images randomises brightness and contrast anyway and scrambles colour (classify's colour augmentation:
    saturation, channel order, polarity), and such changes were most of what the refiners learnt without
    it. R's changes must then be in the local structure (texture, edges, blur).
    """
    if int(width) < 1:
        raise ValueError(f"patch discriminator: width must be >= 1, got {width}")
    w = int(width)
    first = [layers.Standardize(per_channel=True)] if standardize else []
    return Sequential(
        *first,
        layers.Conv2D(3, w, 3, stride=2, padding=1, method=CONV_METHOD), layers.LeakyReLU(0.2),
        layers.Conv2D(w, 2 * w, 3, stride=2, padding=1, method=CONV_METHOD), layers.LeakyReLU(0.2),
        layers.Conv2D(2 * w, 2 * w, 3, padding=1, method=CONV_METHOD), layers.LeakyReLU(0.2),
        layers.Conv2D(2 * w, 2 * w, 1, method=CONV_METHOD), layers.LeakyReLU(0.2),
        layers.Conv2D(2 * w, int(maps), 1, method=CONV_METHOD))


class DigitMap:
    """The conditional discriminator's verdict on each image: the map of its own digit.

    Forward:   z (N, K, h, w), y (N,) integers in [0, K)  ->  z_y (N, 1, h, w),  z_y[n] = z[n, y_n]
    Backward:  dL/dz[n, k] = dL/dz_y[n] if k = y_n, else 0   (the other K - 1 maps get no gradient)
    """

    def forward(self, z, y):
        if tuple(y.shape) != (z.shape[0],):
            raise ValueError(f"DigitMap: need one label per image, got labels of shape {tuple(y.shape)} "
                             f"for {z.shape[0]} images")
        self.shape, self.y = z.shape, y
        return z[backend.xp.arange(len(y)), y][:, None]

    def backward(self, dz_y):
        xp = backend.xp
        dz = xp.zeros(self.shape, dtype=dz_y.dtype)
        dz[xp.arange(len(self.y)), self.y] = dz_y[:, 0]
        return dz


def build_label_net(width=32):
    """C, the digit keeper: images (N, 3, 32, 32) -> 10 logits, trained on procedural images and then
    frozen (its cross-entropy on R(x) is the label term of L_R). A small plain ConvNet:

        [3×3 conv 3→w, ReLU, 2×2 max-pool] → [3×3 conv w→2w, ReLU, pool] → [3×3 conv 2w→2w, ReLU, pool]
        → flatten (2w·4·4) → dense → 10

    No BatchNorm and no dropout, so it computes the same function in training and in testing and its
    gradient with respect to its input is that of the function it is frozen at.
    """
    if int(width) < 1:
        raise ValueError(f"label net: width must be >= 1, got {width}")
    w = int(width)
    return Sequential(
        layers.Conv2D(3, w, 3, padding=1, method=CONV_METHOD), layers.ReLU(), layers.MaxPool2D(2, method=POOL_METHOD),
        layers.Conv2D(w, 2 * w, 3, padding=1, method=CONV_METHOD), layers.ReLU(), layers.MaxPool2D(2, method=POOL_METHOD),
        layers.Conv2D(2 * w, 2 * w, 3, padding=1, method=CONV_METHOD), layers.ReLU(), layers.MaxPool2D(2, method=POOL_METHOD),
        layers.Flatten(), layers.Dense(2 * w * 4 * 4, 10))


# ----------------------------------------------------------------------------- the losses

class SelfRegularisationL1:
    """SimGAN's self-regularisation, the mean absolute difference between refined and input image:

    Forward:   L_reg = mean|x̃ - x| = 1/M · sum |x̃ - x|        (M = number of elements)
    Backward:  dL_reg/dx̃ = sign(x̃ - x) / M
    """

    def forward(self, refined, x):
        if tuple(refined.shape) != tuple(x.shape):
            raise ValueError(f"SelfRegularisationL1: refined shape {tuple(refined.shape)} and input shape "
                             f"{tuple(x.shape)} differ")
        self.diff = refined - x
        return backend.xp.abs(self.diff).mean()

    def backward(self):
        return backend.xp.sign(self.diff) / self.diff.size


class FlowPenalty:
    """The warp's own regulariser: the mean squared displacement (per axis, in pixels²).

    Forward:   L_flow = mean(f²) = 1/M · sum f²        (f = F(x), (N, 2, H, W); M = number of elements)
    Backward:  dL_flow/df = 2f / M
    """

    def forward(self, flow):
        self.flow = flow
        return (flow * flow).mean()

    def backward(self):
        return 2 * self.flow / self.flow.size


class PatchLoss:
    """Binary cross-entropy over every patch of D's map, from D's logits z (X = sigmoid(z)):

    Forward:   L = -mean_{n,p}[ X1·log X + (1 - X1)·log(1 - X) ]     X1 = 1 refined, 0 real
    Backward:  dL/dz = (X - X1) / M                                   (M = patches × batch)
    `X1` is a number (the same target for every patch) or an array of z's shape.
    """

    def __init__(self):
        self.bce = losses.BCEWithLogits()

    def forward(self, z, X1):
        target = X1 if hasattr(X1, "shape") else backend.xp.full(z.shape, float(X1), dtype=z.dtype)
        return self.bce.forward(z, target)

    def backward(self):
        return self.bce.backward()


# ----------------------------------------------------------------------------- the history buffer

class HistoryBuffer:
    """A ring buffer of earlier refined images (SimGAN, section 2.3).

    The discriminator sees half of its refined batch from here, so it keeps penalising artefacts
    the refiner made earlier and the refiner cannot cycle back to them. `push` writes images at
    the next slots, wrapping round and overwriting the oldest once full; `sample` draws uniformly
    (without replacement) from the filled part. The storage, on the current device, is allocated
    at the first push with that batch's image shape. With the conditional discriminator each image
    keeps its digit label beside it (push them together; `sample(..., with_labels=True)`).
    """

    def __init__(self, capacity):
        if int(capacity) < 0:
            raise ValueError(f"history buffer size must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.images = None   # (capacity, C, H, W) once something was pushed
        self.labels = None   # (capacity,) integers, once images were pushed with their labels
        self.count = 0       # how many slots hold an image
        self.next = 0        # where the next image goes

    def __len__(self):
        return self.count

    def push(self, images, labels=None):
        """Write `images` (k, C, H, W) (and their `labels` (k,)) at the next k slots (mod capacity);
        a batch larger than the buffer keeps only its last `capacity` images."""
        if self.capacity == 0 or len(images) == 0:
            return
        if self.images is None:
            self.images = backend.xp.zeros((self.capacity, *images.shape[1:]), dtype=np.float32)
            if labels is not None:
                self.labels = backend.xp.zeros(self.capacity, dtype=np.int64)
        if tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"history buffer holds images of shape {tuple(self.images.shape[1:])}, "
                             f"got {tuple(images.shape[1:])}")
        if (labels is None) != (self.labels is None):
            raise ValueError("history buffer: push labels with every batch, or with none")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"history buffer: {len(images)} images but {len(labels)} labels")
        images = images[-self.capacity:]
        slots = backend.asarray((self.next + np.arange(len(images))) % self.capacity)
        self.images[slots] = images
        if labels is not None:
            self.labels[slots] = labels[-self.capacity:]
        self.next = int((self.next + len(images)) % self.capacity)
        self.count = min(self.capacity, self.count + len(images))

    def sample(self, n, rng, with_labels=False):
        """n images drawn without replacement from the filled slots (rng: a NumPy Generator);
        with_labels: the pair (images, their labels)."""
        if n > self.count:
            raise ValueError(f"history buffer holds {self.count} images, cannot sample {n}")
        if with_labels and self.labels is None:
            raise ValueError("history buffer: its images were pushed without labels")
        idx = backend.asarray(rng.choice(self.count, size=n, replace=False))
        return (self.images[idx], self.labels[idx]) if with_labels else self.images[idx]

    def state_dict(self):
        filled = (backend.to_numpy(self.images[:self.count]).copy() if self.count
                  else np.zeros((0, 0, 0, 0), np.float32))
        state = {"images": filled, "count": np.array(self.count), "next": np.array(self.next),
                 "capacity": np.array(self.capacity)}
        if self.labels is not None:
            state["labels"] = backend.to_numpy(self.labels[:self.count]).copy()
        return state

    def load_state_dict(self, state, source="checkpoint"):
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"{source}: history buffer of size {int(state['capacity'])}, this run uses {self.capacity}")
        self.count, self.next = int(state["count"]), int(state["next"])
        self.images = self.labels = None
        if self.count:
            filled = np.asarray(state["images"], dtype=np.float32)
            self.images = backend.xp.zeros((self.capacity, *filled.shape[1:]), dtype=np.float32)
            self.images[:self.count] = backend.asarray(filled)
            if "labels" in state:
                self.labels = backend.xp.zeros(self.capacity, dtype=np.int64)
                self.labels[:self.count] = backend.asarray(np.asarray(state["labels"], dtype=np.int64))
        return self


# ----------------------------------------------------------------------------- training steps

class SimGAN:
    """The refiner R, the patch discriminator D, their Adam optimizers, the loss weight λ and the
    history buffer: what one run trains, checkpoints and resumes; optionally the digit keeper C
    (`label_net`) with its weight μ (`label_weight`) and its own Adam optimizer.

    Images are float (N, 3, H, W) in [-1, 1] on the current device, labels integer (N,) on the device;
    every step returns a dict of 0-d device values for the log (read to the host by the training loop
    every few steps, never inside a step).

    conditional: D has one map per digit (`build_patch_discriminator(maps=10)`) and judges each image by its
    own digit's map (`DigitMap`); every step then needs the labels: the procedural ones for refined images,
    the real images' own for real ones.
    """

    def __init__(self, R, D, lambda_reg=10.0, lr_r=1e-4, lr_d=1e-3, beta1=0.5, buffer_size=512,
                 label_net=None, label_weight=0.0, lr_label=1e-3, conditional=False, flow_net=None, flow_weight=0.0,
                 lr_flow=None):
        if lambda_reg < 0:
            raise ValueError(f"lambda_reg must be >= 0, got {lambda_reg}")
        if label_weight < 0 or (label_weight > 0 and label_net is None):
            raise ValueError(f"label_weight must be >= 0 and needs a label_net when > 0, got {label_weight}")
        if flow_weight < 0 or (flow_net is None) != (flow_weight == 0):
            raise ValueError(f"flow_weight must be > 0 with a flow_net and 0 without one, got {flow_weight}")
        self.R, self.D, self.C, self.F = R, D, label_net, flow_net
        self.refiner = R if flow_net is None else WarpedRefiner(R, flow_net)   # x -> x̃
        self.flow_weight = float(flow_weight)
        self.conditional = bool(conditional)
        self.digit_map = DigitMap()
        self.lambda_reg, self.label_weight = float(lambda_reg), float(label_weight)
        self.opt_R = optim.Adam(R, lr=lr_r, betas=(beta1, 0.999))
        self.opt_D = optim.Adam(D, lr=lr_d, betas=(beta1, 0.999))
        self.opt_C = optim.Adam(label_net, lr=lr_label) if label_net is not None else None
        self.opt_F = (optim.Adam(flow_net, lr=lr_r if lr_flow is None else lr_flow, betas=(beta1, 0.999))
                      if flow_net is not None else None)
        self.buffer = HistoryBuffer(buffer_size)
        self.l1 = SelfRegularisationL1()
        self.flow_penalty = FlowPenalty()
        self.patch = PatchLoss()
        self.ce = losses.SoftmaxCrossEntropy(check_labels=False)   # labels are checked once, with the data set

    # --- the digit keeper
    def label_net_step(self, x, y):
        """One update of C on procedural images x and their labels y: L_C = CE(C(x), y)."""
        if self.C is None:
            raise ValueError("this SimGAN has no label net")
        z = self.C.forward(x, True)
        loss = self.ce.forward(z, y)
        self.C.backward(self.ce.backward())
        self.opt_C.step()
        return {"loss_label": loss, "acc_label": (z.argmax(axis=1) == y).mean()}

    def _verdict(self, images, y):
        """D's logits for `images`: its one map, or (conditional) the map of each image's digit y."""
        z = self.D.forward(images, True)
        if not self.conditional:
            return z
        if y is None:
            raise ValueError("the conditional discriminator needs the images' labels")
        return self.digit_map.forward(z, y)

    def _verdict_backward(self, dz):
        """dL/dx from dL/dz of `_verdict`'s logits (through `DigitMap` when conditional, then D)."""
        return self.D.backward(self.digit_map.backward(dz) if self.conditional else dz)

    # --- the refiner
    def refiner_loss(self, refined, x, y=None, unwarped=None, flow=None):
        """L_R = BCE(X(x̃), X1 = 0) + λ·mean|x̃ - x| [+ μ·CE(C(x̃), y)] and its gradient. D's and C's weights
        are not updated here, but their grads are overwritten. With a warp, x̃ = W(R(x), F(x)) and the
        self-regularisation reads `unwarped` = R(x) instead of x̃, and L_R gains κ·mean(F(x)²) of `flow` = F(x).
        Returns (L_R, terms, grads): `terms` the log's loss_adv, loss_reg, (with the label term) loss_label and
        (with the warp) loss_flow; `grads` {"refined": dL_R/dx̃}, and with the warp also "unwarped": dL_R/dR(x)
        and "flow": dL_R/dF(x) (the paths that do not pass through x̃)."""
        if (unwarped is None) != (flow is None):
            raise ValueError("refiner_loss: with a warp give both `unwarped` (R(x)) and `flow` (F(x)), without one neither")
        z = self._verdict(refined, y)
        adv = self.patch.forward(z, 0.0)                 # "judged real": X1 = 0 for every patch
        grads = {"refined": self._verdict_backward(self.patch.backward())}
        reg = self.l1.forward(refined if unwarped is None else unwarped, x)
        if unwarped is None:
            grads["refined"] = grads["refined"] + self.lambda_reg * self.l1.backward()
        else:
            grads["unwarped"] = self.lambda_reg * self.l1.backward()
        xp = backend.xp      # L_R in float64, as Python floats would add it (exact for float32 terms)
        loss = xp.asarray(adv, dtype=xp.float64) + self.lambda_reg * xp.asarray(reg, dtype=xp.float64)
        terms = {"loss_adv": adv, "loss_reg": reg}
        if self.label_weight > 0:
            if y is None:
                raise ValueError("the label term (label_weight > 0) needs the procedural images' labels")
            label = self.ce.forward(self.C.forward(refined, True), y)   # C has no BatchNorm or dropout
            grads["refined"] = grads["refined"] + self.label_weight * self.C.backward(self.ce.backward())
            loss = loss + self.label_weight * xp.asarray(label, dtype=xp.float64)
            terms["loss_label"] = label
        if flow is not None:
            moved = self.flow_penalty.forward(flow)
            grads["flow"] = self.flow_weight * self.flow_penalty.backward()
            loss = loss + self.flow_weight * xp.asarray(moved, dtype=xp.float64)
            terms["loss_flow"] = moved
        return loss, terms, grads

    def refiner_pretrain_step(self, x):
        """One update of R on the self-regularisation alone, L = mean|R(x) - x| (teaches R the identity)."""
        refined = self.R.forward(x, True)
        reg = self.l1.forward(refined, x)
        self.R.backward(self.l1.backward())
        self.opt_R.step()
        return {"loss_reg": reg}

    def refiner_step(self, x, y=None):
        """One update of R (and, with the warp, of F) on L_R (the adversarial term through D, λ times the L1 term,
        with a label net μ times the label term through C, with the warp κ times the flow penalty; y: x's labels,
        needed with the label term and with the conditional D)."""
        refined = self.refiner.forward(x, True)
        if self.F is None:
            loss, terms, grads = self.refiner_loss(refined, x, y)
            self.R.backward(grads["refined"], input_grad=False)
        else:
            loss, terms, grads = self.refiner_loss(refined, x, y, self.refiner.unwarped, self.refiner.flow)
            self.refiner.backward(grads["refined"], grads["unwarped"], grads["flow"])
            self.opt_F.step()
        self.opt_R.step()
        return {"loss_R": loss, **terms}

    # --- the discriminator
    def discriminator_step(self, real, x, rng, real_y=None, y=None):
        """One update of D on a real batch and a refined batch R(x) of the same size, half of whose
        images are replaced by earlier refined images from the history buffer (once it holds
        enough); afterwards a random half of the new refined images goes into the buffer.
        real_y, y: the labels of `real` and `x`, needed by the conditional D only.

        L_D = BCE over every patch of both batches together: X1 = 0 real, X1 = 1 refined.
        Returns loss_D, acc_real / acc_refined (patches D gets right: X < 0.5 on real,
        X >= 0.5 on refined) and X_real / X_refined (mean beliefs).
        """
        xp = backend.xp
        if self.conditional and (real_y is None or y is None):
            raise ValueError("the conditional discriminator needs the labels of the real and the procedural images")
        refined = self.refiner.forward(x, True)
        half = len(refined) // 2
        fake, fake_y = refined, y
        if half and len(self.buffer) >= half:
            kept = len(refined) - half
            if self.conditional:
                old, old_y = self.buffer.sample(half, rng, with_labels=True)
                fake_y = xp.concatenate([y[:kept], old_y])
            else:
                old = self.buffer.sample(half, rng)
            fake = xp.concatenate([refined[:kept], old])
        batch = xp.concatenate([real, fake])
        z = self._verdict(batch, xp.concatenate([real_y, fake_y]) if self.conditional else None)
        X1 = xp.concatenate([xp.zeros((len(real), *z.shape[1:]), z.dtype), xp.ones((len(fake), *z.shape[1:]), z.dtype)])
        loss = self.patch.forward(z, X1)
        self._verdict_backward(self.patch.backward())
        self.opt_D.step()
        pushed = backend.asarray(rng.permutation(len(refined))[:half])
        self.buffer.push(refined[pushed], y[pushed] if self.conditional else None)
        X = sigmoid(z)
        X_real, X_fake = X[:len(real)], X[len(real):]
        return {"loss_D": loss, "acc_real": (X_real < 0.5).mean(), "acc_refined": (X_fake >= 0.5).mean(),
                "X_real": X_real.mean(), "X_refined": X_fake.mean()}

    # --- checkpoints
    def _parts(self):
        parts = [("R/", self.R), ("D/", self.D), ("opt_R/", self.opt_R), ("opt_D/", self.opt_D),
                 ("buffer/", self.buffer)]
        parts += [("C/", self.C), ("opt_C/", self.opt_C)] if self.C is not None else []
        return parts + ([("F/", self.F), ("opt_F/", self.opt_F)] if self.F is not None else [])

    def state_dict(self):
        """R and D, both optimizers, the history buffer (and C, F with their optimizers) as one flat dict of host arrays."""
        state = {}
        for prefix, obj in self._parts():
            state.update({prefix + k: v for k, v in obj.state_dict().items()})
        return state

    def load_state_dict(self, state, source="checkpoint"):
        def part(prefix):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        self.R.load_state_dict(part("R/"), source=source)
        self.D.load_state_dict(part("D/"), source=source)
        self.opt_R.load_state_dict(part("opt_R/"))
        self.opt_D.load_state_dict(part("opt_D/"))
        self.buffer.load_state_dict(part("buffer/"), source=source)
        if self.C is not None:
            self.C.load_state_dict(part("C/"), source=source)
            self.opt_C.load_state_dict(part("opt_C/"))
        if self.F is not None:
            self.F.load_state_dict(part("F/"), source=source)
            self.opt_F.load_state_dict(part("opt_F/"))
        return self
