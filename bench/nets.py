"""The two nets the benchmark times, built in `nn` and (for --vs-torch) identically in PyTorch.

- reference ConvNet: 3 × [conv3×3, ReLU, conv3×3, ReLU, maxpool 2] with 32/64/128 channels, dense 2048→10
- DCGAN-shaped G+D: G = z(100) → dense → 256×4×4 → 3 × [upsample 2, conv3×3, BN, ReLU] → 3 channels, tanh;
  D = 3 × [conv3×3, (BN), LeakyReLU 0.2, maxpool 2] (64/128/256) → dense → sigmoid
"""
from nn import Sequential, layers as L


def reference_convnet(method="auto"):
    def stage(cin, cout):
        return [L.Conv2D(cin, cout, 3, padding=1, method=method), L.ReLU(),
                L.Conv2D(cout, cout, 3, padding=1, method=method), L.ReLU(), L.MaxPool2D(2, method="auto")]
    return Sequential(*stage(3, 32), *stage(32, 64), *stage(64, 128), L.Flatten(), L.Dense(2048, 10))


def dcgan_generator(method="auto"):
    return Sequential(
        L.Dense(100, 256 * 4 * 4), L.Reshape((256, 4, 4)), L.BatchNorm2D(256), L.ReLU(),
        L.Upsample2D(2), L.Conv2D(256, 128, 3, padding=1, method=method), L.BatchNorm2D(128), L.ReLU(),
        L.Upsample2D(2), L.Conv2D(128, 64, 3, padding=1, method=method), L.BatchNorm2D(64), L.ReLU(),
        L.Upsample2D(2), L.Conv2D(64, 3, 3, padding=1, method=method), L.Tanh())


def dcgan_discriminator(method="auto"):
    return Sequential(
        L.Conv2D(3, 64, 3, padding=1, method=method), L.LeakyReLU(0.2), L.MaxPool2D(2, method="auto"),
        L.Conv2D(64, 128, 3, padding=1, method=method), L.BatchNorm2D(128), L.LeakyReLU(0.2), L.MaxPool2D(2, method="auto"),
        L.Conv2D(128, 256, 3, padding=1, method=method), L.BatchNorm2D(256), L.LeakyReLU(0.2), L.MaxPool2D(2, method="auto"),
        L.Flatten(), L.Dense(256 * 4 * 4, 1), L.Sigmoid())


def torch_reference_convnet():
    import torch.nn as tnn

    def stage(cin, cout):
        return [tnn.Conv2d(cin, cout, 3, padding=1), tnn.ReLU(), tnn.Conv2d(cout, cout, 3, padding=1), tnn.ReLU(),
                tnn.MaxPool2d(2)]
    return tnn.Sequential(*stage(3, 32), *stage(32, 64), *stage(64, 128), tnn.Flatten(), tnn.Linear(2048, 10))


def torch_dcgan():
    import torch.nn as tnn

    def up(cin, cout):
        return [tnn.Upsample(scale_factor=2), tnn.Conv2d(cin, cout, 3, padding=1), tnn.BatchNorm2d(cout), tnn.ReLU()]
    G = tnn.Sequential(tnn.Linear(100, 4096), tnn.Unflatten(1, (256, 4, 4)), tnn.BatchNorm2d(256), tnn.ReLU(),
                       *up(256, 128), *up(128, 64), tnn.Upsample(scale_factor=2), tnn.Conv2d(64, 3, 3, padding=1),
                       tnn.Tanh())
    D = tnn.Sequential(tnn.Conv2d(3, 64, 3, padding=1), tnn.LeakyReLU(0.2), tnn.MaxPool2d(2),
                       tnn.Conv2d(64, 128, 3, padding=1), tnn.BatchNorm2d(128), tnn.LeakyReLU(0.2), tnn.MaxPool2d(2),
                       tnn.Conv2d(128, 256, 3, padding=1), tnn.BatchNorm2d(256), tnn.LeakyReLU(0.2), tnn.MaxPool2d(2),
                       tnn.Flatten(), tnn.Linear(4096, 1), tnn.Sigmoid())
    return G, D
