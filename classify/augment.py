"""Data augmentation for the ConvNet, vectorised over the batch (no loop over images or pixels).

Every random number is drawn on the host from a seeded NumPy generator and then moved to the
device, so the same seed gives the same augmented batches on NumPy and CuPy. The images are
NCHW float32 in [-1, 1] (as `svhn.imageset.to_float` makes them) on the current device.

Two kinds of change, both of which keep the digit's label:
- geometry (`random_affine`): a small random rotation, scale, shear and shift of each image,
  resampled bilinearly with the border pixels repeated (SVHN crops continue past their edges);
- colour (`random_colour`): contrast, brightness and saturation jitter, a random order of the
  RGB channels and polarity inversion (x → -x: light digits on dark and dark on light both occur
  in house numbers), then `cutout`: a random square set to grey (0), as an occluder.
"""
from dataclasses import dataclass

import numpy as np

from nn import backend


@dataclass(frozen=True)
class AugmentConfig:
    """How strong each random change is (the defaults are the recommended recipe)."""
    rotate_deg: float = 10.0      # rotation angle θ ~ U(-rotate_deg, rotate_deg)
    scale: float = 0.12           # zoom factor ~ U(1 - scale, 1 + scale)
    shear: float = 0.12           # horizontal shear ~ U(-shear, shear)
    shift_px: float = 3.0         # translation in pixels ~ U(-shift_px, shift_px), each axis
    contrast: float = 0.4         # contrast factor ~ U(1 - contrast, 1 + contrast)
    brightness: float = 0.25      # added to every pixel, ~ U(-brightness, brightness) (range [-1, 1])
    saturation: float = 0.6       # blend with the grey image: factor ~ U(1 - saturation, 1 + saturation)
    channel_shuffle_p: float = 0.5  # probability of a random permutation of R, G, B
    invert_p: float = 0.5         # probability of polarity inversion x → -x
    cutout_p: float = 0.5         # probability of one grey square
    cutout_px: int = 10           # its side in pixels


NONE = AugmentConfig(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)


def affine_sample(x, A, t):
    """Resample each image n through its own 2×2 matrix A[n] and shift t[n] (in pixels).

    The output pixel at (row, col), taken relative to the image centre c as p = (col - c, row - c),
    reads the input at  A[n] @ p + t[n] + c,  bilinearly interpolated; coordinates outside the image
    are clamped to the border (edge pixels repeat). A = identity, t = (dx, dy) integers is an exact shift.

    x: (N, C, H, W) on the device; A: (N, 2, 2) and t: (N, 2) host arrays. Returns (N, C, H, W).
    """
    xp = backend.xp
    N, C, H, W = x.shape
    A = backend.asarray(A, dtype=x.dtype)
    t = backend.asarray(t, dtype=x.dtype)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    rows = xp.arange(H, dtype=x.dtype)[:, None] - cy          # (H, 1)
    cols = xp.arange(W, dtype=x.dtype)[None, :] - cx          # (1, W)
    # source coordinates (N, H, W)
    sx = A[:, 0, 0, None, None] * cols + A[:, 0, 1, None, None] * rows + t[:, 0, None, None] + cx
    sy = A[:, 1, 0, None, None] * cols + A[:, 1, 1, None, None] * rows + t[:, 1, None, None] + cy
    sx = xp.clip(sx, 0, W - 1)
    sy = xp.clip(sy, 0, H - 1)
    fx = xp.minimum(xp.floor(sx), W - 2)                        # the left/top neighbour, as float32
    fy = xp.minimum(xp.floor(sy), H - 2)
    wx = (sx - fx)[:, None]                                     # (N, 1, H, W) weights, broadcast over C
    wy = (sy - fy)[:, None]
    x0, y0 = fx.astype(np.int32), fy.astype(np.int32)
    n = xp.arange(N)[:, None, None]
    img = x.transpose(0, 2, 3, 1)                               # NHWC, so one gather takes all channels

    def at(yy, xx):
        return img[n, yy, xx].transpose(0, 3, 1, 2)             # (N, H, W, C) -> (N, C, H, W)

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return xp.ascontiguousarray(top * (1 - wy) + bottom * wy)


def random_affine(x, rng, cfg):
    """Rotate by θ, scale by s, shear by k and shift by (dx, dy), independently per image:
    A = R(θ) · [[1, k], [0, 1]] / s  (the inverse map, from output to input pixels)."""
    N = len(x)
    theta = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg, N))
    s = rng.uniform(1 - cfg.scale, 1 + cfg.scale, N)
    k = rng.uniform(-cfg.shear, cfg.shear, N)
    t = rng.uniform(-cfg.shift_px, cfg.shift_px, (N, 2))
    cos, sin = np.cos(theta), np.sin(theta)
    A = np.empty((N, 2, 2))
    A[:, 0, 0], A[:, 0, 1] = cos / s, (cos * k - sin) / s
    A[:, 1, 0], A[:, 1, 1] = sin / s, (sin * k + cos) / s
    return affine_sample(x, A, t)


def random_colour(x, rng, cfg):
    """Contrast, brightness and saturation jitter, channel shuffle and polarity inversion; clipped to [-1, 1]."""
    xp = backend.xp
    N, C = x.shape[:2]

    def per_image(values):                                      # host (N,) -> device (N, 1, 1, 1)
        return backend.asarray(values.astype(np.float32)).reshape(N, 1, 1, 1)

    grey = x.mean(axis=1, keepdims=True)                        # (N, 1, H, W)
    sat = per_image(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation, N))
    x = grey + sat * (x - grey)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    con = per_image(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast, N))
    x = mean + con * (x - mean) + per_image(rng.uniform(-cfg.brightness, cfg.brightness, N))
    shuffle = rng.random(N) < cfg.channel_shuffle_p
    perm = np.where(shuffle[:, None], rng.permuted(np.tile(np.arange(C), (N, 1)), axis=1), np.arange(C))
    x = x[xp.arange(N)[:, None], backend.asarray(perm)]         # per-image channel order
    sign = np.where(rng.random(N) < cfg.invert_p, -1.0, 1.0)
    return xp.clip(x * per_image(sign), -1.0, 1.0)


def cutout(x, rng, cfg):
    """Set one random cfg.cutout_px-square (centre anywhere, clipped at the border) of some images to 0."""
    xp = backend.xp
    N, _, H, W = x.shape
    if cfg.cutout_p <= 0 or cfg.cutout_px <= 0:
        return x
    cy, cx = rng.integers(0, H, N), rng.integers(0, W, N)
    half = cfg.cutout_px / 2
    on = rng.random(N) < cfg.cutout_p
    y0 = backend.asarray(np.where(on, cy - half, H + 1))[:, None, None]   # off: a box below the image
    x0 = backend.asarray(cx - half)[:, None, None]
    rows = xp.arange(H)[None, :, None]
    cols = xp.arange(W)[None, None, :]
    box = (rows >= y0) & (rows < y0 + cfg.cutout_px) & (cols >= x0) & (cols < x0 + cfg.cutout_px)
    return x * (~box)[:, None].astype(x.dtype)


def augment(x, rng, cfg=AugmentConfig()):
    """The full training augmentation of a batch x (N, C, H, W) in [-1, 1]: geometry, colour, cutout."""
    if cfg == NONE:
        return x
    x = random_affine(x, rng, cfg)
    x = random_colour(x, rng, cfg)
    return cutout(x, rng, cfg)


def shifted_copies(x, shifts):
    """The test-time-augmentation views of x: one exact integer shift (dx, dy) of every image per entry."""
    N = len(x)
    A = np.broadcast_to(np.eye(2), (N, 2, 2))
    return [x if (dx, dy) == (0, 0) else affine_sample(x, A, np.tile([dx, dy], (N, 1))) for dx, dy in shifts]
