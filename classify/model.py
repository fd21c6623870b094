"""The paper's ConvNet (Grbić, Figure 2): 6 convolution layers (3×3), 3 max-pooling layers and
1 fully connected layer from a 32×32 RGB image to 10 class scores (softmax probabilities).

The paper gives no channel counts. We use three VGG-style stages of two 3×3 convolutions
(padding 1, so each stage keeps the size) followed by a 2×2 max-pool:

    input 3×32×32
    [conv 3→32, conv 32→32]   → pool → 32×16×16
    [conv 32→64, conv 64→64]  → pool → 64×8×8
    [conv 64→128, conv 128→128] → pool → 128×4×4
    flatten (2048) → dense → 10 logits

Two variants, selected by name:
- "paper": exactly that, every convolution followed by ReLU (no normalisation);
- "bn" (the default): BatchNorm2D after every convolution (before the ReLU), the flattened features
  scaled by 1/√(4·4) = 1/4, and dropout before the dense layer. BatchNorm lets a high learning rate
  train quickly and regularises; dropout helps on small training sets. Both have the paper's
  6 conv / 3 pool / 1 dense shape.
- "bn-std": "bn" behind `nn.layers.Standardize`, which gives every input image mean 0 and variance 1
  (in training and testing alike), so brightness and contrast cannot tell images apart. Meant for
  synthetic training sets whose generators each leave their own contrast on their images (the DCGANs,
  one per digit: docs/results.md, section 9).

Why the 1/4 (FEATURE_SCALE). The BatchNorm'd convolutions do not care how large their weights are,
but the dense layer does. Its loss curvature along W is E[x xᵀ] ⊗ S (x: its 2048 inputs, S: the
softmax covariance, eigenvalue 1/10 at uniform guessing), and SGD with momentum β diverges along a
direction of curvature λ once lr·λ > 2(1 + β). The inputs come out of ReLU and max-pool, so they are
all ≥ 0 with a mean near 0.86: E[x xᵀ] has one huge eigenvalue, close to |E x|² (measured 1,696 on
256 procedural images at initialisation), which puts the limit near 2·1.9/170 ≈ 0.02, below the
recipe's 0.05. Unscaled, the loss jumps to 5 during the warm-up, the last stage's ReLUs die (99.99 %
of the dense inputs exactly 0 after 100 steps) and the net stays on the ln 10 plateau for good.
Multiplying the inputs by c multiplies that curvature by c² = 1/16 and leaves the functions the net
can represent unchanged (the dense weights grow 4× larger instead, so the same weight decay holds
that function 16× more tightly). Measurements: docs/results.md, section 8.
"""
import numpy as np

from nn import Sequential, backend
from nn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Scale, Standardize
from common.files import atomic_savez
from nn.model import ARCH_KEY

CONV_METHOD = "auto"  # Conv2D's fast path (Winograd where nn measured it faster); nn's default is plain im2col
POOL_METHOD = "auto"  # MaxPool2D's fast 2x2 kernel (nn/layers/pool_fast.py); nn's default is the window loop

WIDTHS = (32, 64, 128)   # channels of the three stages
DROPOUT = 0.3            # dropout before the dense layer in the "bn" variant
FEATURE_SCALE = 0.25     # the "bn" variant's dense inputs are multiplied by this (1/√(4·4); see above)
ARCHS = ("bn", "paper", "bn-std")


def _stage(c_in, c_out, batchnorm):
    """Two 3×3 convolutions, c_in→c_out and c_out→c_out (each + optional BatchNorm + ReLU),
    then a 2×2 max-pool that halves the height and width."""
    layers = []
    for c in (c_in, c_out):
        layers.append(Conv2D(c, c_out, 3, padding=1, bias=not batchnorm, method=CONV_METHOD))
        if batchnorm:
            layers.append(BatchNorm2D(c_out))
        layers.append(ReLU())
    layers.append(MaxPool2D(2, method=POOL_METHOD))
    return layers


def build_model(arch="bn", seed=0, widths=WIDTHS):
    """The ConvNet as an `nn.Sequential`, its weights drawn after `backend.seed(seed)`.

    arch: "bn" (BatchNorm + dropout, the default recipe), "paper" (plain conv + ReLU) or "bn-std"
    ("bn" on per-image standardised inputs).
    widths: the channels of the three stages (default 32, 64, 128).
    Input (N, 3, 32, 32) float32 in [-1, 1]; output (N, 10) logits.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    backend.seed(seed)
    batchnorm = arch in ("bn", "bn-std")
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"widths must be three positive channel counts, got {tuple(widths)}")
    c1, c2, c3 = widths
    layers = [Standardize()] if arch == "bn-std" else []
    layers += _stage(3, c1, batchnorm) + _stage(c1, c2, batchnorm) + _stage(c2, c3, batchnorm)
    layers.append(Flatten())
    if batchnorm:
        layers += [Scale(FEATURE_SCALE), Dropout(DROPOUT)]
    layers.append(Dense(c3 * 4 * 4, 10))
    model = Sequential(*layers)
    model.arch, model.widths = arch, tuple(int(c) for c in widths)   # remembered for save_model
    return model


ARCH_NAME_KEY = "__classify_arch__"
WIDTHS_KEY = "__classify_widths__"


def save_model(model, path):
    """Write the model's weights, BatchNorm statistics, layer list, arch name and widths to an .npz (atomically)."""
    atomic_savez(path, **model.state_dict(), **{ARCH_KEY: np.array(model.architecture()),
                                                ARCH_NAME_KEY: np.array(model.arch),
                                                WIDTHS_KEY: np.array(model.widths)})


def load_model(path):
    """Rebuild the ConvNet saved by `save_model` (its arch name and widths are in the file) and load its weights.

    A missing or unreadable file, or one that holds another network, is a ValueError with one line."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arch = str(f[ARCH_NAME_KEY]) if ARCH_NAME_KEY in f.files else None
            widths = tuple(int(c) for c in f[WIDTHS_KEY]) if WIDTHS_KEY in f.files else WIDTHS
    except FileNotFoundError:
        raise ValueError(f"{path}: no such model file") from None
    except Exception:
        raise ValueError(f"{path}: not a readable .npz model file") from None
    if arch not in ARCHS:
        raise ValueError(f"{path}: not a classify ConvNet model (no known architecture name in the file; "
                         f"expected one of {', '.join(ARCHS)}, found {arch!r})")
    model = build_model(arch, seed=0, widths=widths)
    model.load(path)
    return model.eval()
