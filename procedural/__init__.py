"""The paper's "simple method": a procedural house-number synthesizer.

    from procedural import generate, ProceduralSettings
    x, y = generate(1000, seed=0)          # uint8 (1000, 32, 32, 3), int64 (1000,) in 0..9

Each 32x32 crop shows one centred digit (the label) in a random font, often with parts of
neighbouring digits cut by the left and right edges, as SVHN crops do; random size, position,
rotation, shear, perspective and stroke width; digit, plate and wall colours with a minimum
contrast in both polarities; texture, lighting, distractors; blur, resolution loss, noise and
JPEG artefacts. Every random range is a field of `ProceduralSettings`.

Modules, in the order an image is made: settings (the ranges), fonts (which fonts, glyph
cache), draws (each image's random numbers from its own seed), geometry (per-image layers
drawn with PIL), effects (colours, light and camera, vectorised over a batch), generate
(chunks and worker processes). Command line: `python -m procedural --help`.
"""
from procedural.pipeline import balanced_labels, generate, preview_images
from procedural.settings import ProceduralSettings

__all__ = ["generate", "ProceduralSettings", "balanced_labels", "preview_images"]
