"""Fonts for the synthesizer: a named list, where to find each file, and a glyph cache.

The same seed must give the same images on every machine, so the default fonts are named
here, in a fixed order, and come from packages pinned in requirements.txt:

- matplotlib's own fonts that have real digit glyphs (DejaVu, STIX General, Computer Modern
  cmr10, cmb10, cmti10, cmss10, cmtt10;
  not cmex10/cmsy10/STIXNonUni*/STIXSiz*/DejaVu*Display, which map digits to symbols or have
  none, nor cmmi10, whose old-style figures go below the baseline);
- the `font-*` PyPI packages, which ship TTF/OTF files in `<package>/files/`;
- `pymupdf-fonts`, which ships fonts as compressed bytes inside Python modules.

A family whose package is missing is skipped (with the other fonts the images then differ
from the reference, so `generate` warns once). Users can add a folder of their own fonts or
the machine's system fonts (`ProceduralSettings.fonts`); those are checked before use
(`digits_usable`): every digit 0..9 must draw something, the ten glyphs must differ, be of
similar height, and "0" must be taller than wide, which rejects symbol and icon fonts.

Glyphs are rendered once per process, at GLYPH_PX, thickened (`stroke`) and shrunk to a few
fixed scales (`LEVELS`) as needed, and cached; the renderer scales them the rest of the way,
so no font object per size is needed.
"""
import functools
import hashlib
import importlib.util
import io
import json
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from common.files import atomic_write_bytes

GLYPH_PX = 48
"""Font size (pixels per em) at which glyphs are rendered and cached; digits come out about
34 pixels tall, larger than any digit in the 2x-supersampled 64-pixel canvas needs."""

DIGITS = "0123456789"

# (family, source, file names). source "matplotlib": matplotlib's mpl-data/fonts/ttf folder;
# a module name: that package's files/ folder; "pymupdf_fonts": keys of pymupdf_fonts.fontbuffers.
BUILTIN_FAMILIES = (
    ("DejaVu Sans", "matplotlib", ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                                   "DejaVuSans-BoldOblique.ttf")),
    ("DejaVu Sans Mono", "matplotlib", ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
                                        "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf")),
    ("DejaVu Serif", "matplotlib", ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                                    "DejaVuSerif-BoldItalic.ttf")),
    ("STIX General", "matplotlib", ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
                                    "STIXGeneralBolIta.ttf")),
    ("Computer Modern Roman", "matplotlib", ("cmr10.ttf", "cmb10.ttf", "cmti10.ttf")),
    ("Computer Modern Sans", "matplotlib", ("cmss10.ttf",)),
    ("Computer Modern Typewriter", "matplotlib", ("cmtt10.ttf",)),
    ("Roboto", "font_roboto", tuple(f"Roboto-{s}.ttf" for s in (
        "Regular", "Italic", "Medium", "MediumItalic", "Bold", "BoldItalic", "Black", "BlackItalic",
        "Light", "LightItalic", "Thin", "ThinItalic"))),
    ("Source Sans Pro", "font_source_sans_pro", tuple(f"SourceSansPro-{s}.ttf" for s in (
        "Regular", "It", "Semibold", "SemiboldIt", "Bold", "BoldIt", "Black", "BlackIt",
        "Light", "LightIt", "ExtraLight", "ExtraLightIt"))),
    ("Source Serif Pro", "font_source_serif_pro", tuple(f"SourceSerifPro-{s}.ttf" for s in (
        "Regular", "It", "Semibold", "SemiboldIt", "Bold", "BoldIt", "Black", "BlackIt",
        "Light", "LightIt", "ExtraLight", "ExtraLightIt"))),
    ("Lato", "font_lato", tuple(f"Lato-{s}.ttf" for s in (
        "Regular", "Italic", "Bold", "BoldItalic", "Black", "BlackItalic", "Light", "LightItalic",
        "Thin", "ThinItalic"))),
    ("Fjalla One", "font_fjallaone", ("FjallaOne-Regular.ttf",)),
    ("Caladea", "font_caladea", ("Caladea-Regular.ttf", "Caladea-Italic.ttf", "Caladea-Bold.ttf",
                                 "Caladea-BoldItalic.ttf")),
    ("Hanken Grotesk", "font_hanken_grotesk", tuple(f"HankenGrotesk-{s}.otf" for s in (
        "Regular", "Italic", "Medium", "MediumItalic", "SemiBold", "SemiBoldItalic", "Bold",
        "BoldItalic", "Light", "LightItalic"))),
    ("Manrope", "font_manrope", tuple(f"Manrope-{s}.ttf" for s in (
        "Regular", "Medium", "SemiBold", "Bold", "ExtraBold", "Light", "ExtraLight"))),
    ("Red Hat Display", "font_rhd", tuple(f"RedHatDisplay-{s}.ttf" for s in (
        "Regular", "Italic", "Medium", "MediumItalic", "SemiBold", "SemiBoldItalic", "Bold",
        "BoldItalic", "ExtraBold", "ExtraBoldItalic", "Black", "BlackItalic", "Light", "LightItalic"))),
    ("Fredoka One", "font_fredoka_one", ("FredokaOne-Regular.ttf",)),
    ("Cascadia Mono", "pymupdf_fonts", ("cascadia", "cascadiai", "cascadiab", "cascadiabi")),
    ("FiraGO", "pymupdf_fonts", ("figo", "figit", "figbo", "figbi")),
    ("Fira Mono", "pymupdf_fonts", ("fimo", "fimbo")),
    ("Space Mono", "pymupdf_fonts", ("spacemo", "spacemit", "spacembo", "spacembi")),
    ("Noto Sans", "pymupdf_fonts", ("notos", "notosit", "notosbo", "notosbi")),
    ("Ubuntu", "pymupdf_fonts", ("ubuntu", "ubuntuit", "ubuntubo", "ubuntubi")),
    ("Ubuntu Mono", "pymupdf_fonts", ("ubuntm", "ubuntmit", "ubuntmbo", "ubuntmbi")),
)

SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
                    "/Library/Fonts", "/System/Library/Fonts", "~/Library/Fonts", "C:/Windows/Fonts")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")


@dataclass(frozen=True)
class FontRef:
    """One font file: its family, a readable name, and where its bytes come from
    (`path` on disk, or `buffer_key` in pymupdf_fonts)."""
    family: str
    name: str
    path: str = ""
    buffer_key: str = ""

    def load(self, size):
        """A PIL FreeType font of `size` pixels per em."""
        from PIL import ImageFont
        if self.buffer_key:
            return ImageFont.truetype(io.BytesIO(_pymupdf_bytes(self.buffer_key)), size)
        return ImageFont.truetype(self.path, size)


@functools.lru_cache(maxsize=None)
def _pymupdf_bytes(key):
    import pymupdf_fonts      # here: an optional package, loaded only when its fonts are drawn
    return pymupdf_fonts.fontbuffers[key]()


def _package_dir(module):
    """Folder of an installed package, found without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    # matplotlib keeps its fonts in mpl-data/fonts/ttf (found without importing matplotlib,
    # which takes longer than making a thousand images); the font-* packages in files/
    return folder / ("mpl-data/fonts/ttf" if module == "matplotlib" else "files")


def builtin_fonts(families=()):
    """The named built-in fonts that are installed, as (FontRef, ...) in the fixed order above,
    and the list of families that are missing. `families` restricts the list by name."""
    wanted = set(families)
    unknown = wanted - {f for f, _, _ in BUILTIN_FAMILIES}
    if unknown:
        raise ValueError(f"ProceduralSettings.families: unknown font family {sorted(unknown)[0]!r} "
                         f"(see procedural.fonts.BUILTIN_FAMILIES)")
    refs, missing = [], []
    for family, source, names in BUILTIN_FAMILIES:
        if wanted and family not in wanted:
            continue
        if source == "pymupdf_fonts":
            if importlib.util.find_spec("pymupdf_fonts") is None:
                missing.append(family)
                continue
            refs += [FontRef(family, key, buffer_key=key) for key in names]
            continue
        folder = _package_dir(source)
        found = [FontRef(family, n, path=str(folder / n)) for n in names
                 if folder is not None and (folder / n).is_file()]
        if not found:
            missing.append(family)
        refs += found
    return tuple(refs), missing


def folder_fonts(folder):
    """Every usable font file under `folder` (recursively, sorted by path), grouped into
    families by the family name inside each file (so a typeface with ten weights is one
    family, as in the built-in list)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"fonts folder {folder}: not a folder")
    refs = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in FONT_SUFFIXES and p.is_file() and digits_usable(str(p)):
            refs.append(FontRef(_family_name(str(p)) or p.stem, p.name, path=str(p)))
    return tuple(refs)


def _family_name(path):
    """The family name a font file declares (e.g. "DejaVu Serif"), or None."""
    try:
        return FontRef("", "", path=path).load(GLYPH_PX).getname()[0] or None
    except Exception:  # unreadable: the caller falls back to the file name
        return None


def system_fonts():
    """Usable font files in the usual system font folders (these differ between machines)."""
    refs = []
    for d in SYSTEM_FONT_DIRS:
        if Path(d).expanduser().is_dir():
            refs += folder_fonts(d)
    return tuple(refs)


@functools.lru_cache(maxsize=None)
def digits_usable(path):
    """True when the font at `path` draws ten distinct, similar-height digits with a "0" that
    is taller than wide (rejects symbol fonts, icon fonts, old-style figures, blanks)."""
    try:
        glyphs = _render_digits(FontRef("", "", path=path).load(GLYPH_PX))
    except Exception:  # unreadable or unsupported file: just not usable
        return False
    if any(g.mask.size == 0 or g.mask.max() < 128 for g in glyphs):
        return False
    heights = np.array([g.mask.shape[0] for g in glyphs], float)
    if np.any(np.abs(heights - np.median(heights)) > 0.25 * np.median(heights)):
        return False
    zero = glyphs[0].mask
    if zero.shape[0] <= zero.shape[1]:
        return False
    keys = {(g.mask.shape, g.mask.tobytes()) for g in glyphs}
    return len(keys) == 10


def resolve_fonts(sources=("builtin",), families=()):
    """The list of FontRefs `ProceduralSettings.fonts` names, de-duplicated, in a fixed order.
    Raises ValueError when it is empty."""
    refs, seen = [], set()
    for source in sources:
        if source == "builtin":
            found, missing = builtin_fonts(families)
            if missing:
                warnings.warn(f"procedural: font packages for {', '.join(missing)} are not installed; "
                              f"images will differ from other machines (pip install -r requirements.txt)",
                              stacklevel=3)
        elif source == "system":
            found = system_fonts()
        else:
            found = folder_fonts(source)
            if not found:
                raise ValueError(f"fonts folder {source}: no usable .ttf/.otf font with digits 0-9 found")
        for r in found:
            key = (r.path or r.buffer_key, r.buffer_key)
            if key not in seen:
                seen.add(key)
                refs.append(r)
    if not refs:
        raise ValueError(f"no usable fonts found for ProceduralSettings.fonts={tuple(sources)!r}")
    return tuple(refs)


def group_families(refs):
    """[(family, [FontRef, ...]), ...] in first-appearance order: the renderer draws a family,
    then a style within it."""
    groups = {}
    for r in refs:
        groups.setdefault(r.family, []).append(r)
    return list(groups.items())


# ---- glyph cache --------------------------------------------------------------------------

@dataclass
class Glyph:
    """One digit rendered at GLYPH_PX: `mask` (uint8 coverage, cropped to the ink), its
    top-left corner relative to the pen position on the ascender line (`left`, `top`), and
    the pen `advance` to the next digit."""
    mask: np.ndarray
    left: int
    top: int
    advance: float


def _render_digits(font):
    """The ten digits of a PIL font as Glyphs, each cropped to its ink."""
    from PIL import Image, ImageDraw
    out = []
    for ch in DIGITS:
        l, t, r, b = font.getbbox(ch)
        img = Image.new("L", (max(r - l, 1), max(b - t, 1)), 0)
        ImageDraw.Draw(img).text((-l, -t), ch, font=font, fill=255)
        mask = np.asarray(img)
        rows, cols = np.flatnonzero(mask.max(1)), np.flatnonzero(mask.max(0))
        if rows.size:   # the box can include empty bearings
            mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            l, t = l + cols[0], t + rows[0]
        else:
            mask = mask[:0, :0]
        out.append(Glyph(np.ascontiguousarray(mask), int(l), int(t), float(font.getlength(ch))))
    return out


def thicken(glyph, radius):
    """The glyph with its ink grown by `radius` whole pixels on every side (grey-level
    dilation with a disk: the maximum over every shift within the disk)."""
    if radius <= 0 or glyph.mask.size == 0:
        return glyph
    h, w = glyph.mask.shape
    padded = np.pad(glyph.mask, 2 * radius)
    out = padded.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dx or dy) and dx * dx + dy * dy <= radius * radius + radius:
                np.maximum(out[radius:radius + h + 2 * radius, radius:radius + w + 2 * radius],
                           padded[radius + dy:radius + dy + h + 2 * radius,
                                  radius + dx:radius + dx + w + 2 * radius],
                           out=out[radius:radius + h + 2 * radius, radius:radius + w + 2 * radius])
    out = np.ascontiguousarray(out[radius:radius + h + 2 * radius, radius:radius + w + 2 * radius])
    return Glyph(out, glyph.left - radius, glyph.top - radius, glyph.advance + 2 * radius)


LEVELS = (1.0, 0.75, 0.5625, 0.421875, 0.31640625)
"""Scales of the cached glyph pyramid (each 3/4 of the one before). The renderer takes the
level just larger than the size it needs, so its own resampling only shrinks by at most 3/4
(bilinear resampling is clean there; stronger shrinking would alias)."""


def shrink(glyph, factor):
    """The glyph resized by `factor` < 1 with PIL's anti-aliased (area-averaging) resize."""
    from PIL import Image
    h, w = glyph.mask.shape
    if not glyph.mask.size:
        return Glyph(glyph.mask, round(glyph.left * factor), round(glyph.top * factor), glyph.advance * factor)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    mask = np.asarray(Image.fromarray(glyph.mask).resize(size, Image.Resampling.BOX))
    return Glyph(mask, round(glyph.left * factor), round(glyph.top * factor), glyph.advance * factor)


_GLYPHS = {}


def glyphs(ref, stroke=0, level=0):
    """The ten digits of font `ref`, their ink thickened by `stroke` pixels (at GLYPH_PX), at
    scale LEVELS[level]: rendered once per process and cached."""
    key = (ref, stroke, level)
    g = _GLYPHS.get(key)
    if g is None:
        if level:
            g = [shrink(glyph, LEVELS[level]) for glyph in glyphs(ref, stroke, 0)]
        elif stroke:
            g = [thicken(glyph, stroke) for glyph in glyphs(ref, 0, 0)]
        else:
            g = _render_digits(ref.load(GLYPH_PX))
        _GLYPHS[key] = g
    return g


# ---- the glyph pyramid of every font, prepared once and kept on disk ----------------------

STROKES = (0, 1, 2)
"""Outline thickenings the renderer can ask for (see ProceduralSettings.stroke_probs)."""
GLYPH_CACHE_VERSION = 1
"""Bump when the way glyphs are rendered changes, so old cache files are not used."""


def _cache_root():
    """The project's per-user cache folder (as svhn.data.user_cache_root):
    `$XDG_CACHE_HOME/svhn-gan` or `~/.cache/svhn-gan`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "svhn-gan"


def _cache_file(refs):
    """Where the glyphs of `refs` are cached: the name holds a hash of everything they depend
    on (each font file's absolute path, size and modification time, or its package's version;
    Pillow's version, whose FreeType draws them; the pyramid's sizes)."""
    import PIL
    parts = [GLYPH_CACHE_VERSION, PIL.__version__, GLYPH_PX, LEVELS, STROKES]
    for r in refs:
        if r.buffer_key:
            parts.append([r.buffer_key, metadata.version("pymupdf-fonts")])
        else:
            st = os.stat(r.path)
            parts.append([os.path.abspath(r.path), st.st_size, st.st_mtime_ns])
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
    return _cache_root() / "glyphs" / f"glyphs-{key}.npz"


def _save(path, refs):
    """Pack every cached glyph of `refs` into one .npz: a table (font, stroke, level, digit,
    height, width, left, top), the advances, and all masks' pixels end to end."""
    table, advance, pixels = [], [], []
    for i, r in enumerate(refs):
        for s in STROKES:
            for lv in range(len(LEVELS)):
                for d, g in enumerate(_GLYPHS[(r, s, lv)]):
                    table.append((i, s, lv, d, *g.mask.shape, g.left, g.top))
                    advance.append(g.advance)
                    pixels.append(g.mask.ravel())
    buf = io.BytesIO()
    np.savez(buf, table=np.array(table, np.int64), advance=np.array(advance), pixels=np.concatenate(pixels))
    atomic_write_bytes(path, buf.getvalue())


def _load(path, refs):
    """Fill the glyph cache from a file written by `_save`; False if it cannot be read."""
    try:
        with np.load(path) as f:
            table, advance, pixels = f["table"], f["advance"], f["pixels"]
    except Exception:  # missing, partial or foreign file: just a cache miss
        return False
    if len(table) != len(refs) * len(STROKES) * len(LEVELS) * 10:
        return False
    ends = np.cumsum(table[:, 4] * table[:, 5])
    starts = ends - table[:, 4] * table[:, 5]
    for row in range(0, len(table), 10):
        i, s, lv = (int(v) for v in table[row, :3])
        _GLYPHS[(refs[i], s, lv)] = [
            Glyph(pixels[starts[k]:ends[k]].reshape(table[k, 4], table[k, 5]), int(table[k, 6]),
                  int(table[k, 7]), float(advance[k])) for k in range(row, row + 10)]
    return True


def prepare(refs, use_disk=True):
    """Make sure this process holds every glyph of `refs` at every stroke and level: read them
    from the per-user disk cache when it matches, else render them (about a second for the
    built-in fonts) and save them there for next time. Worker processes forked afterwards
    inherit them. A cache folder that cannot be written is simply not used."""
    if all((r, s, lv) in _GLYPHS for r in refs for s in STROKES for lv in range(len(LEVELS))):
        return
    path = None
    if use_disk:
        try:
            path = _cache_file(refs)
        except OSError:
            path = None
        if path is not None and _load(path, refs):
            return
    for r in refs:
        for s in STROKES:
            for lv in range(len(LEVELS)):
                glyphs(r, s, lv)
    if path is not None:
        try:
            _save(path, refs)
        except OSError:
            pass


def describe(refs):
    """One line per family: name and number of styles (for --list-fonts and reports)."""
    return [f"{family} ({len(members)} style{'s' if len(members) > 1 else ''})"
            for family, members in group_families(refs)]


if __name__ == "__main__":  # pragma: no cover - a quick look at what is installed
    for line in describe(resolve_fonts()):
        print(line)
    print(os.linesep.join(f"missing: {m}" for m in builtin_fonts()[1]))
