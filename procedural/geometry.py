"""Step 1 of an image, done per image with PIL: where the ink goes.

For one image this draws two 32x32 layers:

- `text`: coverage (0..255) of the centre digit (the label) and its neighbours, in one font,
  as one row of a house number, scaled, rotated, sheared and seen in perspective. The glyphs
  come from the font cache at the pyramid level just above the wanted size, so the one
  bilinear warp here never shrinks by more than 3/4 (no aliasing);
- `background`: RGB: the wall, the plate the number is painted on (transformed with the
  digits, so it tilts with them; its edges show when the wall differs), the plate's border
  line, and distractor shapes (lines, rectangles, blobs), each in its own colour. PIL draws
  shapes without anti-aliasing, so they are drawn on a 64x64 canvas and 2x2-averaged.

The colours come from effects.pick_colours (vectorised over the batch, before this step);
lighting, blur and noise come after it (effects.finish). Arithmetic on the few numbers of one
image is plain Python (faster than NumPy for 3x3 matrices).
"""
import math

import numpy as np
from PIL import Image, ImageDraw

from procedural.draws import COLUMN as C
from procedural.fonts import LEVELS, glyphs

CROP = 32
"""Side of the crop, pixels."""
CANVAS = 64
"""Side of the canvas the background shapes are drawn on: twice the crop."""

_TRANSFORM = Image.Transform.PERSPECTIVE
_BILINEAR = Image.Resampling.BILINEAR


def span(u, bounds):
    """Map a uniform number `u` in [0, 1) onto the range `bounds` = (lo, hi)."""
    lo, hi = bounds
    return lo + (hi - lo) * u


def either_way(u, largest):
    """Map `u` in [0, 1) onto [-largest, largest)."""
    return (2.0 * u - 1.0) * largest


def pick(u, n):
    """Map `u` in [0, 1) onto a whole number 0..n-1."""
    return min(int(u * n), n - 1)


def place_digits(glyph_set, digits, spacing_px):
    """Lay `digits` out on one line, left to right, with `spacing_px` extra gap between them.

    Returns the strip (uint8 coverage) and the boxes (x0, y0, x1, y1) of every digit's ink in
    strip coordinates. A glyph's `left`/`top` place its ink relative to the pen position, and
    the pen moves on by the glyph's advance width plus the gap after each digit.
    """
    pen, boxes = 0.0, []
    for d in digits:
        g = glyph_set[d]
        x, y = int(round(pen + g.left)), g.top
        boxes.append((x, y, x + g.mask.shape[1], y + g.mask.shape[0]))
        pen += g.advance + spacing_px
    x_min = min(b[0] for b in boxes)
    y_min = min(b[1] for b in boxes)
    boxes = [(x0 - x_min, y0 - y_min, x1 - x_min, y1 - y_min) for x0, y0, x1, y1 in boxes]
    strip = np.zeros((max(b[3] for b in boxes), max(b[2] for b in boxes)), np.uint8)
    for d, (x0, y0, x1, y1) in zip(digits, boxes):
        np.maximum(strip[y0:y1, x0:x1], glyph_set[d].mask, out=strip[y0:y1, x0:x1])
    return strip, boxes


def homography(u, s, centre, scale):
    """The 3x3 matrix (nested lists) that maps strip coordinates to crop coordinates.

    In order: move the centre digit's ink centre to the origin; stretch to the drawn height
    (and x by the aspect); shear; rotate; add perspective (w = 1 + px x + py y, so a point
    at the canvas edge has its scale divided by 1 +- perspective); move to the canvas centre
    plus the position jitter.
    """
    sx, sy = scale * span(u[C["aspect"]], s.aspect), scale
    shear = either_way(u[C["shear"]], s.shear)
    theta = math.radians(either_way(u[C["rotation"]], s.rotation_deg))
    cos, sin = math.cos(theta), math.sin(theta)
    half = CROP / 2
    px = either_way(u[C["persp_x"]], s.perspective) / half
    py = either_way(u[C["persp_y"]], s.perspective) / half
    ox = half + either_way(u[C["jitter_x"]], s.position_jitter) * CROP
    oy = half + either_way(u[C["jitter_y"]], s.position_jitter) * CROP
    # linear part: rotate @ shear @ stretch
    a, b = cos * sx, (cos * shear - sin) * sy
    c, d = sin * sx, (sin * shear + cos) * sy
    cx, cy = centre
    tx, ty = -(a * cx + b * cy), -(c * cx + d * cy)
    w = [px * a + py * c, px * b + py * d, px * tx + py * ty + 1.0]
    return [[a + ox * w[0], b + ox * w[1], tx + ox * w[2]],
            [c + oy * w[0], d + oy * w[1], ty + oy * w[2]],
            w]


def inverse_coefficients(m):
    """The 8 coefficients PIL's perspective transform wants: the inverse of `m`, scaled so that
    its last entry is 1 (PIL maps each output pixel back to the input)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    inv = [e * i - f * h, c * h - b * i, b * f - c * e,
           f * g - d * i, a * i - c * g, c * d - a * f,
           d * h - e * g, b * g - a * h, a * e - b * d]
    return tuple(v / inv[8] for v in inv[:8])


def project(m, points):
    """Map (x, y) points through the homography `m`."""
    out = []
    for x, y in points:
        w = m[2][0] * x + m[2][1] * y + m[2][2]
        out.append(((m[0][0] * x + m[0][1] * y + m[0][2]) / w, (m[1][0] * x + m[1][1] * y + m[1][2]) / w))
    return out


def neighbours(u, s):
    """Digits to the left (nearest first) and right of the centre digit."""
    left, right = [], []
    for side, out in (("left", left), ("right", right)):
        if u[C[f"{side}1"]] < s.neighbour_prob:
            out.append(pick(u[C[f"{side}1_digit"]], 10))
            if u[C[f"{side}2"]] < s.second_neighbour_prob:
                out.append(pick(u[C[f"{side}2_digit"]], 10))
    return left, right


def stroke_of(u, probs):
    """0, 1 or 2 pixels of outline thickening, drawn with probabilities `probs`."""
    return 0 if u < probs[0] else (1 if u < probs[0] + probs[1] else 2)


def draw_layers(u, label, s, families, colours):
    """Both layers of one image.

    u: the image's row of uniform numbers (a list; see draws.COLUMNS); label: the centre digit;
    s: ProceduralSettings; families: [(family, [FontRef, ...]), ...]; colours: this image's
    palette as 0..255 RGB lists: {"wall", "plate", "digit", "distractors" (one per slot)}.

    Returns two PIL images of the crop's size: text ("L" coverage) and background ("RGB"),
    the latter None when it is just the plate colour everywhere. (The caller pastes them into
    one strip per batch: one conversion to NumPy per batch instead of two per image.)
    """
    members = families[pick(u[C["family"]], len(families))][1]
    font, stroke = members[pick(u[C["style"]], len(members))], stroke_of(u[C["stroke"]], s.stroke_probs)
    # the wanted ink height in the crop, and the pyramid level just above it
    target = span(u[C["height"]], s.digit_height) * CROP
    want = target / max(glyphs(font, stroke)[label].mask.shape[0], 1)
    level = max([k for k, f in enumerate(LEVELS) if f >= want] or [0])
    glyph_set = glyphs(font, stroke, level)

    left, right = neighbours(u, s)
    digits = left[::-1] + [int(label)] + right
    ink_height = max(glyph_set[label].mask.shape[0], 1)
    strip, boxes = place_digits(glyph_set, digits, span(u[C["spacing"]], s.spacing) * ink_height)
    x0, y0, x1, y1 = boxes[len(left)]
    matrix = homography(u, s, ((x0 + x1) / 2, (y0 + y1) / 2), target / ink_height)
    strip_img = Image.frombuffer("L", (strip.shape[1], strip.shape[0]), strip, "raw", "L", 0, 1)
    text = strip_img.transform((CROP, CROP), _TRANSFORM, inverse_coefficients(matrix), _BILINEAR)

    has_plate = u[C["plate"]] < s.plate_prob
    lo, hi = s.distractors
    count = int(lo) + pick(u[C["n_distractors"]], int(hi) - int(lo) + 1)
    if not has_plate and not count:
        return text, None

    background = Image.new("RGB", (CANVAS, CANVAS), tuple(colours["wall" if has_plate else "plate"]))
    draw = ImageDraw.Draw(background)
    if has_plate:
        # the plate: the digits' ink box plus random margins, tilted with the digits
        margin = [span(u[C[k]], s.plate_margin) * ink_height for k in ("margin_l", "margin_t", "margin_r", "margin_b")]
        bx0 = min(b[0] for b in boxes) - margin[0]
        by0 = min(b[1] for b in boxes) - margin[1]
        bx1 = max(b[2] for b in boxes) + margin[2]
        by1 = max(b[3] for b in boxes) + margin[3]
        corners = [(2 * x, 2 * y) for x, y in project(matrix, [(bx0, by0), (bx1, by0), (bx1, by1), (bx0, by1)])]
        draw.polygon(corners, fill=tuple(colours["plate"]))
        if u[C["border"]] < s.border_prob:
            width = max(1, int(round(span(u[C["border_width"]], s.border_width) * CANVAS)))
            draw.line(corners + corners[:1], fill=tuple(colours["digit"]), width=width, joint="curve")
    for k in range(count):
        draw_distractor(u, k, s, draw, tuple(colours["distractors"][k]))
    return text, background.reduce(2)


DISTRACTOR_KINDS = ("edge", "segment", "frame", "box", "blob")


def draw_distractor(u, k, s, draw, fill):
    """Distractor `k`: an edge line across the whole canvas (door frames, plate and wall edges),
    a line segment, a rectangle outline, a filled rectangle or a filled ellipse (a blob),
    centred anywhere on the canvas, in colour `fill`."""
    base = C[f"d{k}_kind"]
    kind, x0, y0, x1, y1, size, line = u[base:base + 7]   # the order of draws._DISTRACTOR_FIELDS
    kind = DISTRACTOR_KINDS[pick(kind, len(DISTRACTOR_KINDS))]
    size = span(size, s.distractor_size) * CANVAS
    cx, cy = span(x0, (-0.1, 1.1)) * CANVAS, span(y0, (-0.1, 1.1)) * CANVAS
    hw, hh = (0.2 + 0.8 * x1) * size / 2, (0.2 + 0.8 * y1) * size / 2
    width = 1 + pick(line, 5)
    if kind == "edge":
        if x1 < 0.5:   # roughly horizontal or vertical, across the canvas
            draw.line([(0, cy), (CANVAS, cy + (y1 - 0.5) * 8)], fill=fill, width=width)
        else:
            draw.line([(cx, 0), (cx + (y1 - 0.5) * 8, CANVAS)], fill=fill, width=width)
    elif kind == "segment":
        draw.line([(cx - hw, cy - hh), (cx + hw, cy + hh)], fill=fill, width=width)
    elif kind == "frame":
        draw.rectangle([cx - hw, cy - hh, cx + hw, cy + hh], outline=fill, width=width)
    elif kind == "box":
        draw.rectangle([cx - hw, cy - hh, cx + hw, cy + hh], fill=fill)
    else:
        draw.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=fill)
