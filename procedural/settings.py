"""Every random range of the synthesizer, in one place: `ProceduralSettings`.

The paper's "simple method" varies "position, size, font and colour of the number, the
background colour, the amount of noise, the position, shape and number of random distractors,
and rotation". Each of those (and a few more things real SVHN crops show: neighbouring digits
cut by the crop's edges, plates with edges, blur, JPEG artefacts) is one field below.

Conventions:
- A `(lo, hi)` pair is a range; each image draws a value uniformly from it (log-uniformly
  where a field says so).
- A `*_prob` field is the probability that an image gets that feature.
- Lengths are fractions of the 32-pixel crop side unless a field says "pixels"; the
  digit height is the ink height of the centre digit (the one that is the label).
- Colours are RGB in 0..1; "intensity" is Rec. 601 luma (0.299 R + 0.587 G + 0.114 B).

`ProceduralSettings()` holds the recommended defaults; change fields with
`dataclasses.replace(settings, field=value)`. `validate()` (called by `generate`) raises a
`ValueError` with one line naming the field when a value makes no sense.
"""
import ast
import inspect
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ProceduralSettings:
    # ---- fonts --------------------------------------------------------------------------
    fonts: tuple = ("builtin",)
    """Which fonts to draw from: any of "builtin" (the named, pinned font list in
    procedural/fonts.py: matplotlib's fonts plus the font packages in requirements.txt),
    "system" (every usable TrueType/OpenType file under the usual system font folders;
    these differ between machines, so images then differ too), or a folder path (its
    .ttf/.otf files, searched recursively). A font is first drawn by family, then by style,
    so a family with 14 weights is not 14 times as likely as a family with one."""
    families: tuple = ()
    """Restrict the built-in list to these family names (e.g. ("Roboto", "Lato")); empty = all."""

    # ---- the digits: size, position, geometry -------------------------------------------
    digit_height: tuple = (0.55, 0.95)
    """Ink height of the centre digit, as a fraction of the crop height (SVHN crops are
    centred on a digit's bounding box, so the digit fills most of the height: the rough
    ink-height estimate of bench/procedural_stats.py has a median of 0.88 on the real
    sample, 0.78 with the former range 0.45..0.88, 0.84 with this one)."""
    aspect: tuple = (0.6, 1.15)
    """Horizontal stretch of the glyphs (condensed or extended lettering). House-number
    lettering is often narrower than a font's own digits (see docs/results.md for the
    screening runs behind this range)."""
    position_jitter: float = 0.07
    """Largest shift of the centre digit's centre from the crop centre, along x and y."""
    rotation_deg: float = 10.0
    """Largest in-plane rotation, degrees, either way."""
    shear: float = 0.2
    """Largest horizontal shear (x += shear * y), either way; slants upright digits."""
    perspective: float = 0.15
    """Largest perspective foreshortening: the relative change of scale from the crop's
    centre to its edge, independently along x and y, either way."""
    stroke_probs: tuple = (0.55, 0.3, 0.15)
    """Probabilities of thickening the glyph outline by 0, 1 or 2 pixels at the 48-pixel
    glyph size (each such pixel is 0.4 to 0.8 pixels in the crop, by the digit's size)."""
    edge_gamma: tuple = (0.6, 1.6)
    """Exponent applied to the anti-aliased glyph coverage (drawn log-uniformly): below 1
    thickens strokes by a fraction of a pixel, above 1 thins them."""

    # ---- neighbouring digits (house numbers have several) -------------------------------
    neighbour_prob: float = 0.9
    """Probability of a digit immediately to the left of the centre digit, and (drawn
    separately) to the right; most SVHN crops show parts of neighbouring digits."""
    second_neighbour_prob: float = 0.4
    """Probability of one more digit beyond an existing neighbour (usually outside the crop,
    but visible for small or tightly spaced digits)."""
    spacing: tuple = (-0.1, 0.25)
    """Gap between neighbouring digits' advance boxes, as a fraction of the digit height
    (negative: tighter than the font's own spacing)."""

    # ---- colours and background ---------------------------------------------------------
    min_contrast: float = 0.22
    """Smallest difference of intensity between the digits and the plate behind them."""
    dark_on_light_prob: float = 0.5
    """Probability of dark digits on a light plate (else light digits on a dark plate)."""
    plate_chroma: float = 0.2
    """Largest colourfulness (chroma) of the plate, wall and distractor colours; most draws
    are well below it (chroma = plate_chroma * u**2 for u uniform in 0..1). Real SVHN
    backgrounds are mostly greyish: median chroma about 0.04."""
    digit_chroma: float = 0.2
    """Largest chroma of the digit colour (drawn like plate_chroma)."""
    street_hue_prob: float = 0.8
    """Probability that a colour's hue is a blue (enamel plates, shade) or a warm one (brick,
    wood, brass), the hues of nearly all colourful SVHN pixels; otherwise any hue."""
    plate_prob: float = 0.45
    """Probability that the number sits on a plate whose edges can show (the wall around
    it has another colour); otherwise the plate fills the crop."""
    plate_margin: tuple = (0.05, 0.7)
    """Margin between the digits' ink and the plate's edge, as a fraction of the digit height."""
    border_prob: float = 0.25
    """Probability (given a plate) of a border line around the plate in the digit colour."""
    border_width: tuple = (0.02, 0.07)
    """Width of that border line, as a fraction of the crop."""
    shadow_prob: float = 0.2
    """Probability of a drop shadow or raised edge behind the digits."""
    shadow_offset: tuple = (0.03, 0.08)
    """Length of the shadow's offset (random direction), as a fraction of the crop."""
    gradient: float = 0.35
    """Largest strength of a linear illumination gradient across the crop (the image is
    multiplied by 1 + g * t, t going from -1 to 1 along a random direction)."""
    shading: tuple = (0.0, 0.0)
    """Strength of uneven illumination (patches of shade and light across the crop): the
    image is multiplied by exp(strength * field), the field a 4x4 grid of normal numbers
    smoothly upsampled to the crop (so it varies over a third to a half of the crop). Off by
    default: (0, 0.3), tried together with downscale_prob 0.5, did not help in screening
    (docs/results.md)."""
    texture: tuple = (0.0, 0.08)
    """Strength (intensity units) of the smooth random background texture: a coarse 5x5 and a
    finer 12x12 grid of normal numbers, upsampled to the crop and multiplied by this."""
    brightness: tuple = (0.7, 1.15)
    """Overall exposure: the whole scene is multiplied by this."""
    colour_cast: float = 0.12
    """Largest white-balance error: each channel is multiplied by 1 + colour_cast * v,
    v a random unit-ish vector."""
    haze: tuple = (0.0, 0.3)
    """Loss of contrast: the image is mixed with its own mean by this fraction."""

    # ---- distractors ----------------------------------------------------------------------
    distractors: tuple = (0, 3)
    """Least and most number of random shapes (lines, rectangles, ellipses, blobs) drawn
    behind the digits, each in its own random colour."""
    distractor_size: tuple = (0.1, 0.8)
    """Size of a distractor shape, as a fraction of the crop."""

    # ---- camera degradations ----------------------------------------------------------------
    blur_sigma: tuple = (0.2, 1.5)
    """Gaussian blur along x: standard deviation in pixels of the 32-pixel crop."""
    blur_anisotropy: tuple = (0.6, 1.6)
    """Ratio of the blur along y to the blur along x (drawn log-uniformly), so some blur is
    directional, as from camera shake."""
    downscale_prob: float = 0.35
    """Probability of a resolution loss: downscale to a smaller square, then back to 32."""
    downscale_size: tuple = (14, 28)
    """Side, pixels, of that smaller square (an integer drawn from this range)."""
    noise_sigma: tuple = (0.0, 0.02)
    """Standard deviation of additive Gaussian pixel noise, intensity units (0..1)."""
    jpeg_prob: float = 0.5
    """Probability of a JPEG compression round trip."""
    jpeg_quality: tuple = (20, 90)
    """JPEG quality (an integer drawn from this range, rounded down to a multiple of 5)."""

    # -------------------------------------------------------------------------------------
    def validate(self):
        """Raise ValueError (one line naming the field) when a setting makes no sense;
        return self, so calls can be chained."""
        def fail(name, why):
            raise ValueError(f"ProceduralSettings.{name}: {why}, got {getattr(self, name)!r}")

        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v

        def check_range(name, lo_ok, hi_ok, integer=False):
            v = getattr(self, name)
            if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(number(t) for t in v)):
                fail(name, "must be a (low, high) pair of numbers")
            if integer and not all(float(t).is_integer() for t in v):
                fail(name, "must hold whole numbers")
            if v[0] > v[1]:
                fail(name, "low must not exceed high")
            if v[0] < lo_ok or v[1] > hi_ok:
                fail(name, f"must lie within [{lo_ok}, {hi_ok}]")

        def check_number(name, lo_ok, hi_ok):
            v = getattr(self, name)
            if not number(v):
                fail(name, "must be a number")
            if not lo_ok <= v <= hi_ok:
                fail(name, f"must lie within [{lo_ok}, {hi_ok}]")

        if not isinstance(self.fonts, (tuple, list)) or not self.fonts or \
                not all(isinstance(f, str) and f for f in self.fonts):
            fail("fonts", 'must be a non-empty tuple of "builtin", "system" or folder paths')
        if not isinstance(self.families, (tuple, list)) or \
                not all(isinstance(f, str) for f in self.families):
            fail("families", "must be a tuple of family names")

        check_range("digit_height", 0.05, 1.5)
        check_range("aspect", 0.2, 5.0)
        if self.aspect[0] <= 0:
            fail("aspect", "must be positive")
        check_number("position_jitter", 0.0, 0.5)
        check_number("rotation_deg", 0.0, 180.0)
        check_number("shear", 0.0, 2.0)
        check_number("perspective", 0.0, 0.9)
        p = self.stroke_probs
        if not (isinstance(p, (tuple, list)) and len(p) == 3 and all(number(t) and t >= 0 for t in p)
                and abs(sum(p) - 1.0) < 1e-6):
            fail("stroke_probs", "must be three non-negative probabilities summing to 1")
        check_range("edge_gamma", 0.1, 10.0)
        for name in ("street_hue_prob", "neighbour_prob", "second_neighbour_prob", "dark_on_light_prob", "plate_prob",
                     "border_prob", "shadow_prob", "downscale_prob", "jpeg_prob"):
            check_number(name, 0.0, 1.0)
        check_range("spacing", -0.5, 3.0)
        check_number("min_contrast", 0.0, 0.9)
        check_number("plate_chroma", 0.0, 1.0)
        check_number("digit_chroma", 0.0, 1.0)
        check_range("plate_margin", 0.0, 5.0)
        check_range("border_width", 0.0, 0.5)
        check_range("shadow_offset", 0.0, 0.5)
        check_number("gradient", 0.0, 1.0)
        check_range("shading", 0.0, 2.0)
        check_range("texture", 0.0, 1.0)
        check_range("brightness", 0.0, 4.0)
        check_number("colour_cast", 0.0, 1.0)
        check_range("haze", 0.0, 1.0)
        check_range("distractors", 0, MAX_DISTRACTORS, integer=True)
        check_range("distractor_size", 0.0, 2.0)
        check_range("blur_sigma", 0.0, 8.0)
        check_range("blur_anisotropy", 0.05, 20.0)
        check_range("downscale_size", 2, 32, integer=True)
        check_range("noise_sigma", 0.0, 1.0)
        check_range("jpeg_quality", 1, 100, integer=True)
        return self

    @classmethod
    def field_docs(cls):
        """{field name: its documentation} read from this file's attribute docstrings."""
        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body
        docs = {}
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and \
                    isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
        return docs


MAX_DISTRACTORS = 6
"""The most distractor shapes one image can have (each uses a fixed block of random numbers)."""

FIELD_NAMES = tuple(f.name for f in fields(ProceduralSettings))
