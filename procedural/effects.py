"""Step 2, vectorised over a batch with NumPy: colours, lighting, camera.

Before step 1 (geometry.py) `pick_colours` chooses every colour of the batch; after it,
`finish` turns the layers of B images (text coverage and an RGB background, 32x32 uint8 each)
into B finished uint8 crops of 32x32x3. Every operation works on whole arrays;
the only Python loops run over a handful of distinct values (downscale sizes, JPEG
qualities), never over pixels.

The order follows how a photo is made:
1. scene: the background of step 1 (wall, plate, border, distractors) with texture, drop
   shadow, digits;
2. light: gradient, uneven shading, exposure, white balance, haze;
3. optics and sensor: blur and resolution loss (one 32x32 matrix per image and axis),
   Gaussian noise, rounding to 8 bits;
4. storage: JPEG compression.
"""
import io

import numpy as np
from PIL import Image

from procedural.settings import MAX_DISTRACTORS

LUMA = np.array([0.299, 0.587, 0.114])
"""Rec. 601 weights: the intensity of an RGB colour."""


def _hue_plane():
    """Two orthonormal RGB directions with zero intensity: moving along them changes hue and
    colourfulness but not intensity."""
    a = np.cross(LUMA, [0.0, 0.0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(LUMA / np.linalg.norm(LUMA), a)
    b /= np.linalg.norm(b)
    # make both exactly intensity-free (LUMA is not unit length)
    return np.stack([a - LUMA * (a @ LUMA) / (LUMA @ LUMA), b - LUMA * (b @ LUMA) / (LUMA @ LUMA)])


HUE_PLANE = _hue_plane()


def span(u, bounds):
    lo, hi = bounds
    return lo + (hi - lo) * u


def colours(lum, hue, chroma):
    """RGB colours in 0..1 of intensity `lum`, hue angle `hue` (0..1 = a full turn) and
    colourfulness `chroma` (arrays of one shape; the result has a last axis of 3), clipped to
    the RGB cube (which can change the intensity a little)."""
    angle = 2 * np.pi * hue
    direction = np.cos(angle)[..., None] * HUE_PLANE[0] + np.sin(angle)[..., None] * HUE_PLANE[1]
    return np.clip(lum[..., None] + chroma[..., None] * direction, 0.0, 1.0)


def intensity(rgb):
    return rgb @ LUMA


BLUE_HUES = (0.58, 0.75)
"""Hue angles (in turns of HUE_PLANE) of the blues of enamel plates and shaded walls."""
WARM_HUES = (0.03, 0.27)
"""Hue angles of reds, oranges, browns and yellows (brick, wood, brass, sandstone)."""


def street_hue(u, p):
    """Map uniform `u` to a hue angle: with probability p from the blue or the warm family
    (60:40), otherwise any hue. Measured on SVHN, almost every colourful pixel is one of these."""
    blue = u < 0.6 * p
    warm = (u >= 0.6 * p) & (u < p)
    return np.where(blue, span(u / np.maximum(0.6 * p, 1e-12), BLUE_HUES),
                    np.where(warm, span((u - 0.6 * p) / np.maximum(0.4 * p, 1e-12), WARM_HUES),
                             (u - p) / max(1 - p, 1e-12)))


def pick_colours(d, s):
    """The batch's palette, a dict of float RGB arrays in 0..1: "plate", "digit", "wall",
    "shadow" (B, 3) and "distractors" (B, MAX_DISTRACTORS, 3). The digits are at least
    `min_contrast` away from the plate in intensity, in either polarity."""
    mc = s.min_contrast
    dark = d["dark_on_light"] < s.dark_on_light_prob
    # dark digits: plate in [mc, 1], digits below plate - mc; light digits: the mirror image
    plate_lum = np.where(dark, mc + (1 - mc) * d["plate_lum"], (1 - mc) * d["plate_lum"])
    digit_lum = np.where(dark, (plate_lum - mc) * d["digit_lum"],
                         plate_lum + mc + (1 - plate_lum - mc) * d["digit_lum"])
    hue = lambda name: street_hue(d[name], s.street_hue_prob)  # noqa: E731
    plate = colours(plate_lum, hue("plate_hue"), s.plate_chroma * d["plate_chroma"] ** 2)
    digit = colours(digit_lum, hue("digit_hue"), s.digit_chroma * d["digit_chroma"] ** 2)
    # clipping to the RGB cube can eat contrast: fall back to the grey pair, which has it
    weak = np.abs(intensity(digit) - intensity(plate)) < mc - 1e-9
    plate[weak] = plate_lum[weak, None]
    digit[weak] = digit_lum[weak, None]
    wall = colours(d["wall_lum"], hue("wall_hue"), s.plate_chroma * d["wall_chroma"] ** 2)
    # a drop shadow is darker than the plate; a raised edge (1 in 4) lighter
    shadow_lum = np.where(d["shadow_dark"] < 0.75, 0.25 * d["shadow_lum"] * plate_lum,
                          plate_lum + (1 - plate_lum) * (0.5 + 0.5 * d["shadow_lum"]))
    shadow = np.repeat(shadow_lum[:, None], 3, axis=1)
    k = MAX_DISTRACTORS
    dist = [np.stack([d[f"d{j}_{f}"] for j in range(k)], axis=1) for f in ("lum", "hue", "chroma")]
    distractors = colours(dist[0], street_hue(dist[1], s.street_hue_prob), s.plate_chroma * dist[2] ** 2)
    return {"plate": plate, "digit": digit, "wall": wall, "shadow": shadow, "distractors": distractors}


def palette_rows(palette):
    """Per-image colour dicts of 0..255 integer lists, for drawing with PIL."""
    as_int = {k: np.rint(v * 255).astype(int).tolist() for k, v in palette.items()}
    return [{k: v[i] for k, v in as_int.items()} for i in range(len(palette["plate"]))]


def to_unit(layer):
    """uint8 layer (coverage or colour, 0..255) -> float32 in 0..1."""
    return layer.astype(np.float32) * np.float32(1 / 255)


def resample_matrix(n_in, n_out):
    """(n_out, n_in) matrix of linear (triangle-filter) resampling, anti-aliased when shrinking,
    as PIL's bilinear resize does: output pixel i averages the inputs around its centre."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support)
    return w / w.sum(axis=1, keepdims=True)


def gaussian_matrices(sigma, n=32):
    """(B, n, n) matrices that blur a length-n signal with standard deviations `sigma` (B,);
    rows are renormalised at the borders, sigma 0 gives the identity."""
    i = np.arange(n)
    dist2 = (i[None, :, None] - i[None, None, :]) ** 2
    var = np.maximum(sigma, 1e-3)[:, None, None] ** 2
    w = np.exp(-dist2 / (2 * var))
    return w / w.sum(axis=2, keepdims=True)


def shift(masks, dx, dy):
    """Shift each (32, 32) mask by whole pixels (dx[b], dy[b]), filling with zeros."""
    out = np.zeros_like(masks)
    n = masks.shape[1]
    for b in np.flatnonzero((dx != 0) | (dy != 0)):
        x, y = int(dx[b]), int(dy[b])
        out[b, max(y, 0):n + min(y, 0), max(x, 0):n + min(x, 0)] = \
            masks[b, max(-y, 0):n + min(-y, 0), max(-x, 0):n + min(-x, 0)]
    return out


def over(img, rgb, alpha):
    """Paint colour(s) `rgb` over `img` (B, 3, 32, 32) with coverage `alpha` (B, 32, 32), in place:
    img <- img + (rgb - img) * alpha."""
    img += (rgb - img) * alpha[:, None]
    return img


def compose(d, text, background, palette, s):
    """Step 1 of this module: the scene, (B, 3, 32, 32) float32 in 0..1 (channels first, so
    every per-image colour broadcasts over whole contiguous planes).

    text: (B, 32, 32) uint8 coverage; background: (B, 32, 32, 3) uint8 RGB (geometry.py)."""
    f32 = np.float32
    digit_rgb, shadow_rgb = (palette[k].astype(f32)[:, :, None, None] for k in ("digit", "shadow"))
    img = to_unit(background).transpose(0, 3, 1, 2).copy()
    # smooth random texture: coarse and fine random grids, upsampled, in intensity units
    up_c = resample_matrix(d.texture_coarse.shape[1], 32).astype(f32)
    up_f = resample_matrix(d.texture_fine.shape[1], 32).astype(f32)
    tex = up_c @ d.texture_coarse @ up_c.T + f32(0.5) * (up_f @ d.texture_fine @ up_f.T)
    img += (span(d["texture"], s.texture).astype(f32)[:, None, None] * tex)[:, None]

    # drop shadow (or a raised, lighter edge): the text mask shifted, painted first
    angle = 2 * np.pi * d["shadow_angle"]
    length = span(d["shadow_length"], s.shadow_offset) * 32
    on = d["shadow"] < s.shadow_prob
    dx = np.where(on, np.rint(length * np.cos(angle)), 0).astype(int)
    dy = np.where(on, np.rint(length * np.sin(angle)), 0).astype(int)
    over(img, shadow_rgb, to_unit(shift(text, dx, dy)))

    # the digits; edge_gamma thickens (< 1) or thins (> 1) the anti-aliased stroke edges
    lo, hi = s.edge_gamma
    gamma = (lo * (hi / lo) ** d["edge_gamma"]).astype(f32)
    return over(img, digit_rgb, to_unit(text) ** gamma[:, None, None])


def light(img, d, s):
    """Step 2: illumination gradient, uneven shading, exposure, white balance, haze (in place)."""
    f32 = np.float32
    t = np.linspace(-1, 1, 32)
    angle = 2 * np.pi * d["gradient_angle"]
    ramp = (np.cos(angle)[:, None, None] * t[None, None, :] +
            np.sin(angle)[:, None, None] * t[None, :, None]) / np.sqrt(2)
    gain = (1 + (s.gradient * d["gradient"])[:, None, None] * ramp) * \
        span(d["brightness"], s.brightness)[:, None, None]
    up = resample_matrix(d.shading.shape[1], 32)
    gain = gain * np.exp(span(d["shading"], s.shading)[:, None, None] * (up @ d.shading @ up.T))
    cast = 1 + s.colour_cast * (2 * np.stack([d["cast_r"], d["cast_g"], d["cast_b"]], axis=1) - 1)
    img *= gain.astype(f32)[:, None]
    img *= cast.astype(f32)[:, :, None, None]
    haze = span(d["haze"], s.haze).astype(f32)[:, None, None, None]
    img += (img.mean(axis=(1, 2, 3), keepdims=True) - img) * haze
    return img


def camera(img, d, s):
    """Step 3: blur and resolution loss as one matrix per image and axis, then noise, then
    rounding to uint8 (returned channels last, as the image-set format has them)."""
    sigma_x = span(d["blur_x"], s.blur_sigma)
    lo, hi = s.blur_anisotropy
    sigma_y = sigma_x * lo * (hi / lo) ** d["blur_y"]
    rows, cols = gaussian_matrices(sigma_y), gaussian_matrices(sigma_x)
    down = d["downscale"] < s.downscale_prob
    lo, hi = s.downscale_size
    size = (lo + np.minimum((d["downscale_size"] * (hi - lo + 1)).astype(int), hi - lo)).astype(int)
    for n in np.unique(size[down]):
        a = resample_matrix(n, 32) @ resample_matrix(32, n)
        sel = down & (size == n)
        rows[sel] = a @ rows[sel]
        cols[sel] = a @ cols[sel]
    x = rows.astype(np.float32)[:, None] @ img @ cols.transpose(0, 2, 1).astype(np.float32)[:, None]
    x += span(d["noise"], s.noise_sigma).astype(np.float32)[:, None, None, None] * d.noise
    x *= 255
    np.clip(x, 0, 255, out=x)
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


JPEG_STEP = 5
"""JPEG qualities are rounded down to a multiple of this (fewer encoder calls per batch)."""


def jpeg(x, d, s):
    """Step 4: a JPEG round trip for the chosen images, at their own quality.

    Images of equal quality are encoded together as one long strip: with chroma subsampling
    off (4:4:4) JPEG works on independent 8x8 blocks, and 32 is a multiple of 8, so each image
    comes back exactly as if it had been compressed alone, at a fraction of the cost.
    """
    on = d["jpeg"] < s.jpeg_prob
    lo, hi = s.jpeg_quality
    quality = lo + np.minimum((d["jpeg_quality"] * (hi - lo + 1)).astype(int), hi - lo)
    quality = np.maximum(lo, quality - quality % JPEG_STEP)   # few distinct qualities: faster
    x = np.ascontiguousarray(x)
    for q in np.unique(quality[on]):
        idx = np.flatnonzero(on & (quality == q))
        for part in np.array_split(idx, -(-len(idx) // 1024)):   # JPEG sides stay < 65,536
            strip = np.ascontiguousarray(x[part].transpose(1, 0, 2, 3).reshape(32, -1, 3))
            buf = io.BytesIO()
            Image.fromarray(strip).save(buf, format="JPEG", quality=int(q), subsampling=0)
            buf.seek(0)
            back = np.asarray(Image.open(buf).convert("RGB"))
            x[part] = back.reshape(32, len(part), 32, 3).transpose(1, 0, 2, 3)
    return x


def finish(d, text, background, palette, s):
    """Steps 1-4: the finished uint8 crops (B, 32, 32, 3) from the layers of geometry.py."""
    return jpeg(camera(light(compose(d, text, background, palette, s), d, s), d, s), d, s)
