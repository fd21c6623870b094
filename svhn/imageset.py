"""The project-wide image-set contract: what an image set is, in memory and on disk.

Every image set, whatever made it (real SVHN, the procedural synthesizer, a GAN), is the
same thing: `x` uint8 of shape (N, 32, 32, 3) (NHWC, RGB) and `y` int64 of shape (N,)
with digits 0..9. On disk it is an `.npz` holding exactly those two arrays.

This module validates, saves and loads image sets, converts them to and from the float
NCHW tensors the networks use, and tiles them into preview images (PNG grids).
Everything here is NumPy in, NumPy out; callers move arrays to the GPU themselves.
"""
import io
import zipfile
from pathlib import Path

import numpy as np

from common.files import atomic_savez, atomic_write_bytes, npz_problem

IMAGE_SHAPE = (32, 32, 3)


class ImageSetError(ValueError):
    """An image set (arrays or file) does not follow the contract; the message is one line."""


def check_image_set(x, y, source="image set"):
    """Check that (x, y) is a valid image set; raise ImageSetError naming `source` if not.

    x: uint8 array of shape (N, 32, 32, 3), N > 0.  y: integer array of shape (N,), values 0..9.
    Returns (x, y) unchanged, so calls can be chained.
    """
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise ImageSetError(f"{source}: x and y must be NumPy arrays, got "
                            f"{type(x).__name__} and {type(y).__name__}")
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ImageSetError(f"{source}: x must have shape (N, 32, 32, 3), got {x.shape}")
    if x.dtype != np.uint8:
        raise ImageSetError(f"{source}: x must be uint8, got {x.dtype}")
    if x.shape[0] == 0:
        raise ImageSetError(f"{source}: the image set is empty (N = 0)")
    if y.shape != (x.shape[0],):
        raise ImageSetError(f"{source}: y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ImageSetError(f"{source}: y must be an integer array, got {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi > 9:
        raise ImageSetError(f"{source}: labels must be digits 0..9, found values in {lo}..{hi}")
    return x, y


def save_image_set(path, x, y):
    """Validate (x, y) and write them atomically to `path` as an uncompressed `.npz`
    holding `x` (uint8) and `y` (int64)."""
    check_image_set(x, y, source=str(path))
    atomic_savez(path, x=x, y=y.astype(np.int64, copy=False))


def load_image_set(path):
    """Read an image set `.npz` written by `save_image_set` (or any tool following the
    contract) and return (x uint8, y int64), validated. Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageSetError(f"{path}: image set file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise ImageSetError(f"{path}: not an image set, missing array(s) {', '.join(missing)} "
                                    f"(found: {', '.join(data.files) or 'none'})")
            x, y = data["x"], data["y"]
    except ImageSetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ImageSetError(f"{path}: not a readable .npz image set ({npz_problem(exc)}); give an .npz holding "
                            f"x uint8 (N, 32, 32, 3) and y (N,), as the project's commands write") from None
    check_image_set(x, y, source=str(path))
    return x, y.astype(np.int64, copy=False)


def to_float(x):
    """uint8 NHWC images -> float32 NCHW in [-1, 1] (x / 127.5 - 1), as the networks expect."""
    x = np.asarray(x)
    return (x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5)) - np.float32(1.0)


def to_uint8(x):
    """float NCHW images in [-1, 1] -> uint8 NHWC (clipped to the range, rounded)."""
    x = np.asarray(x, dtype=np.float32)
    pixels = np.clip((x + 1.0) * 127.5, 0.0, 255.0)
    return np.ascontiguousarray(np.rint(pixels).astype(np.uint8).transpose(0, 2, 3, 1))


def image_grid(x, nrow=None, pad=1):
    """Tile uint8 NHWC images into one uint8 HWC image: `nrow` images per row
    (default: about square), `pad` pixels of black between and around them."""
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[0] == 0:
        raise ImageSetError(f"image_grid: expected non-empty uint8 images (N, H, W, C), "
                            f"got {x.dtype} {x.shape}")
    n, h, w, c = x.shape
    ncol = int(nrow) if nrow else int(np.ceil(np.sqrt(n)))
    if ncol < 1:
        raise ImageSetError(f"image_grid: nrow must be >= 1, got {nrow}")
    nrows = -(-n // ncol)
    cells = np.zeros((nrows * ncol, h + pad, w + pad, c), dtype=np.uint8)
    cells[:n, pad:, pad:] = x
    grid = cells.reshape(nrows, ncol, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(nrows * (h + pad), ncol * (w + pad), c)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)))


def save_grid_png(path, x, nrow=None, scale=2, title=None):
    """Write `image_grid(x, nrow)` as a PNG, upscaled `scale` times (nearest neighbour, so
    the 32x32 crops stay sharp), with an optional one-line `title` above it. Atomic."""
    from PIL import Image, ImageDraw

    grid = image_grid(x, nrow=nrow)
    scale = max(1, int(scale))
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    image = Image.fromarray(grid.squeeze(-1) if grid.shape[-1] == 1 else grid)
    if title:
        canvas = Image.new(image.mode, (image.width, image.height + 16), color=0)
        canvas.paste(image, (0, 16))
        white = 255 if image.mode == "L" else (255,) * len(image.getbands())
        ImageDraw.Draw(canvas).text((2, 2), str(title), fill=white)
        image = canvas
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
