"""The random numbers behind each image, drawn from that image's own seed.

Image `i` of a run with base seed `s` draws everything from
`numpy.random.default_rng([s, 0, i])`: first a fixed-length row of uniform numbers in [0, 1)
(one named column per decision, `COLUMNS`), then random bytes for its noise fields. So an image depends only on
(s, i, its label and the settings): not on how many images are made, in which batch, or by how
many worker processes. A setting maps a uniform number onto its range (`lo + (hi - lo) * u`),
so changing one setting never shifts the random numbers of another.
"""
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from procedural.settings import MAX_DISTRACTORS

_DISTRACTOR_FIELDS = ("kind", "x0", "y0", "x1", "y1", "size", "line", "lum", "hue", "chroma")

COLUMNS = (
    # font and glyphs
    "family", "style", "stroke", "edge_gamma",
    # geometry of the digits
    "height", "aspect", "jitter_x", "jitter_y", "rotation", "shear", "persp_x", "persp_y",
    # neighbouring digits
    "left1", "left2", "right1", "right2", "left1_digit", "left2_digit", "right1_digit",
    "right2_digit", "spacing",
    # plate, border, shadow
    "plate", "margin_l", "margin_r", "margin_t", "margin_b", "border", "border_width",
    "shadow", "shadow_angle", "shadow_length", "shadow_dark",
    # colours
    "dark_on_light", "plate_lum", "digit_lum", "plate_hue", "plate_chroma", "digit_hue",
    "digit_chroma", "wall_lum", "wall_hue", "wall_chroma", "shadow_lum",
    # lighting and texture
    "gradient", "gradient_angle", "shading", "texture", "brightness", "cast_r", "cast_g", "cast_b", "haze",
    # camera
    "blur_x", "blur_y", "downscale", "downscale_size", "noise", "jpeg", "jpeg_quality",
    # distractors
    "n_distractors",
) + tuple(f"d{k}_{f}" for k in range(MAX_DISTRACTORS) for f in _DISTRACTOR_FIELDS)

COLUMN = {name: i for i, name in enumerate(COLUMNS)}

TEXTURE_COARSE = 5
"""Side of the coarse random grid that is smoothly upsampled into background texture."""
TEXTURE_FINE = 12
"""Side of the finer random grid (stucco, grain)."""
SHADING = 4
"""Side of the random grid that is smoothly upsampled into uneven illumination."""


@dataclass
class Draws:
    """The random numbers of a batch of images: `u` (B, len(COLUMNS)) uniform in [0, 1),
    standard-normal texture grids, the illumination grid and per-pixel noise (B, 3, 32, 32).
    `draws["rotation"]` is a column."""
    u: np.ndarray
    texture_coarse: np.ndarray
    texture_fine: np.ndarray
    noise: np.ndarray
    shading: np.ndarray

    def __getitem__(self, name):
        return self.u[:, COLUMN[name]]

    def __len__(self):
        return len(self.u)


def image_rng(seed, index):
    """The random generator of image `index` under base seed `seed`."""
    return np.random.default_rng([int(seed), 0, int(index)])


def label_rng(seed):
    """The random generator that shuffles the balanced labels."""
    return np.random.default_rng([int(seed), 1])


def _normal_table():
    """256 standard-normal quantiles (at (k + 0.5) / 256), rescaled to unit variance: a random
    byte looked up here is a (256-level) standard-normal number, ~15x cheaper to draw."""
    q = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)
    return q / q.std()


NORMAL_TABLE = _normal_table()
_N_NORMAL = TEXTURE_COARSE ** 2 + TEXTURE_FINE ** 2 + 3 * 32 * 32 + SHADING ** 2
_N_WORDS = -(-_N_NORMAL // 8)


def draw(seed, indices):
    """Draws for the images `indices` (any iterable of ints) under base seed `seed`."""
    indices = list(indices)
    b = len(indices)
    u = np.empty((b, len(COLUMNS)))
    words = np.empty((b, _N_WORDS), np.uint64)
    for row, i in enumerate(indices):
        rng = image_rng(seed, i)
        u[row] = rng.random(len(COLUMNS))
        words[row] = rng.bit_generator.random_raw(_N_WORDS)
    # the raw 64-bit words as bytes in a fixed (little-endian) order, then as normal numbers
    normal = NORMAL_TABLE[words.astype("<u8").view(np.uint8)[:, :_N_NORMAL]]
    n_coarse, n_fine = TEXTURE_COARSE ** 2, TEXTURE_FINE ** 2
    coarse = normal[:, :n_coarse].reshape(b, TEXTURE_COARSE, TEXTURE_COARSE)
    fine = normal[:, n_coarse:n_coarse + n_fine].reshape(b, TEXTURE_FINE, TEXTURE_FINE)
    n_noise = n_coarse + n_fine + 3 * 32 * 32
    noise = normal[:, n_coarse + n_fine:n_noise].reshape(b, 3, 32, 32)
    shading = normal[:, n_noise:].reshape(b, SHADING, SHADING)
    return Draws(u, coarse, fine, noise, shading)
