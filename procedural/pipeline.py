"""`generate`: labelled 32x32 house-number crops, in parallel, reproducibly.

Work is cut into chunks of CHUNK consecutive images. A chunk is rendered by `render_chunk`:
draw every image's random numbers from its own seed (draws.py), draw its layers with PIL
(geometry.py), then finish the whole chunk with vectorised NumPy (effects.py). Chunks go to
worker processes; since every image depends only on (seed, index, label, settings), the
result is the same for any number of workers. Across machines the random decisions are the
same; the pixels are too where Pillow's build (its FreeType and libjpeg) is the same: on one
with another Pillow version, a third of the images differed where a glyph's rasterised edge
moved.
"""
import multiprocessing as mp
import os

import numpy as np
from PIL import Image

from procedural import draws as draws_mod
from procedural.effects import finish, palette_rows, pick_colours
from procedural.fonts import group_families, prepare, resolve_fonts
from procedural.geometry import draw_layers
from procedural.settings import ProceduralSettings

CHUNK = 250
"""Images per chunk: large enough for the vectorised steps to pay off, small enough for a
smooth progress bar and little memory."""


def balanced_labels(n, seed):
    """n labels with every digit 0..9 equally often (counts differ by at most one), shuffled
    by the seed."""
    y = np.arange(n, dtype=np.int64) % 10
    draws_mod.label_rng(seed).shuffle(y)
    return y


def render_chunk(start, labels, seed, settings, families):
    """Render images start .. start+len(labels)-1 (labels given) -> uint8 (B, 32, 32, 3):
    random numbers, colours, per-image layers, then the vectorised finish."""
    b = len(labels)
    d = draws_mod.draw(seed, range(start, start + b))
    palette = pick_colours(d, settings)
    rows = palette_rows(palette)
    # each image's layers are pasted side by side into one strip per layer
    text_strip = Image.new("L", (32 * b, 32))
    background_strip = Image.new("RGB", (32 * b, 32))
    u = d.u.tolist()
    for i in range(b):
        text, background = draw_layers(u[i], int(labels[i]), settings, families, rows[i])
        text_strip.paste(text, (32 * i, 0))
        if background is None:
            background_strip.paste(tuple(rows[i]["plate"]), (32 * i, 0, 32 * i + 32, 32))
        else:
            background_strip.paste(background, (32 * i, 0))
    text = np.asarray(text_strip).reshape(32, b, 32).transpose(1, 0, 2)
    background = np.asarray(background_strip).reshape(32, b, 32, 3).transpose(1, 0, 2, 3)
    return finish(d, np.ascontiguousarray(text), np.ascontiguousarray(background), palette, settings)


# ---- worker processes -------------------------------------------------------------------

_WORKER = {}


def _init_worker(seed, settings, families):
    _WORKER.update(seed=seed, settings=settings, families=families)
    prepare([r for _, members in families for r in members])   # a no-op after 'fork'



def _work(task):
    start, labels = task
    w = _WORKER
    return start, render_chunk(start, labels, w["seed"], w["settings"], w["families"])


def _context():
    """'fork' where the platform has it (fast start, inherits the imports), else 'spawn'."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def default_workers():
    """One worker per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def generate(n, seed=0, settings=None, labels=None, workers=None, progress=None):
    """Synthesize `n` labelled house-number crops.

    n: number of images (>= 1). seed: base seed (int >= 0); the same seed, settings and
    labels give the same images for any `workers`. settings: a ProceduralSettings (default:
    the recommended one). labels: optional (n,) digits 0..9 to draw; default balanced over
    the ten digits and shuffled. workers: processes to use (default: one per CPU core; 1 runs
    in this process). progress: optional callable, called with the number of images just
    finished (e.g. a tqdm bar's `update`).

    Returns (x uint8 (n, 32, 32, 3), y int64 (n,)).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"procedural.generate: n must be a whole number >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"procedural.generate: seed must be a whole number >= 0, got {seed!r}")
    settings = (settings or ProceduralSettings())
    if not isinstance(settings, ProceduralSettings):
        raise ValueError(f"procedural.generate: settings must be a ProceduralSettings, "
                         f"got {type(settings).__name__}")
    settings.validate()
    n, seed = int(n), int(seed)
    if labels is None:
        y = balanced_labels(n, seed)
    else:
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"procedural.generate: labels must be {n} integers, got "
                             f"{y.dtype} array of shape {y.shape}")
        if y.min() < 0 or y.max() > 9:
            raise ValueError("procedural.generate: labels must be digits 0..9")
        y = y.astype(np.int64)
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"procedural.generate: workers must be a whole number >= 1, got {workers!r}")

    refs = resolve_fonts(settings.fonts, settings.families)
    families = group_families(refs)
    prepare(refs)   # glyphs from the disk cache (or rendered once), before workers fork
    x = np.empty((n, 32, 32, 3), np.uint8)
    tasks = [(s, y[s:s + CHUNK]) for s in range(0, n, CHUNK)]
    workers = min(int(workers), len(tasks))
    if workers == 1:
        for start, labels_chunk in tasks:
            x[start:start + len(labels_chunk)] = render_chunk(start, labels_chunk, seed, settings, families)
            if progress:
                progress(len(labels_chunk))
    else:
        with _context().Pool(workers, initializer=_init_worker,
                             initargs=(seed, settings, families)) as pool:
            for start, chunk in pool.imap_unordered(_work, tasks):
                x[start:start + len(chunk)] = chunk
                if progress:
                    progress(len(chunk))
    return x, y


def preview_images(x, y, per_digit=10):
    """Images for a Figure-6-like preview: row k holds the first `per_digit` images of digit
    k; when some digit has fewer, simply the first 10 x per_digit images."""
    rows = [np.flatnonzero(y == k)[:per_digit] for k in range(10)]
    if all(len(r) == per_digit for r in rows):
        return x[np.concatenate(rows)]
    return x[:10 * per_digit]
