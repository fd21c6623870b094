"""Every size of the experiment in one place: `Settings`, the three presets, and `--set` parsing.

    settings = preset("quick")                               # the default: the whole pipeline, small
    settings = apply_overrides(settings, ["procedural_n=5000", "mix_real=0,100,all"])
    settings = scaled(preset("smoke"), 4)                    # every count and iteration number x 4

A field is one of: a whole number, a number, a word, a whole number or `all` (None: everything
available), a yes/no flag, or a comma-separated list. `Settings.check()` raises a ValueError with
one line naming the field when a value makes no sense.
"""
import ast
import dataclasses
import inspect
import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    # ---- data -------------------------------------------------------------------------------
    train_n: int = None
    """Real training images used (a random subset drawn with the seed); all = every image of the
    training split (the paper: 73,257)."""
    test_n: int = None
    """Real test images used (a random subset); all = the whole test split (the paper: 26,032)."""

    # ---- the procedural set (the paper's "simple method", Figure 6) -------------------------
    procedural_n: int = 73_000
    """Procedural images synthesized (the paper: 73,000)."""

    # ---- ten DCGANs, one per digit (Figures 7 and 8) ---------------------------------------
    dcgan_iters: int = 2000
    """Training iterations of each digit's DCGAN (batch dcgan_batch)."""
    dcgan_iters_digit5: int = 2000
    """Iterations of digit 5's DCGAN, whose samples at iterations 1, 51, 76, 201, 401 and 701 are the
    paper's Figures 7-8 (at least dcgan_iters is used). The DCGAN set samples digit 5 from its
    generator at dcgan_iters, like the other digits."""
    dcgan_per_digit: int = 7300
    """Images synthesized per digit (the paper: 7,300, so 73,000 in all)."""
    dcgan_loss: str = None
    """paper: D = |X1 - X|, G = 1 - D (the paper's); bce: binary cross-entropy, non-saturating G.
    default (here and below) = gan.Config's recipe (the paper's loss; the other settings are those measured
    best on the SVHN sample, where bce gave the higher label fidelity)."""
    dcgan_upsample: str = None
    """Generator stages: nearest (upsampling + 3x3 conv, the paper's) or deconv (stride-2 transposed conv)."""
    dcgan_augment: bool = None
    """DiffAugment on every image the discriminator sees (beyond the paper; against D memorising few images)."""
    dcgan_width: int = None
    """Channels of the narrowest stage (G: 4w-2w-w, D: w-2w-4w)."""
    dcgan_batch: int = None
    """Real and generated images per DCGAN iteration."""
    dcgan_together: bool = None
    """Train each set's ten DCGANs as one grouped model in one stage (`gan train --together`): the same
    results within float32 rounding, about one GAN's kernel launches on a GPU instead of ten, but slower
    than one by one on NumPy. default: yes with --backend cupy, no with numpy."""

    # ---- SimGAN refiner (the paper's named next step); default = gan.simgan's recipe --------------
    simgan_steps: int = None
    """Adversarial iterations (each: simgan_kg refiner updates + 1 discriminator update)."""
    simgan_pretrain_r: int = None
    """Refiner updates on the self-regularisation term alone (R learns the identity)."""
    simgan_pretrain_d: int = None
    """Discriminator updates before the adversarial phase."""
    simgan_kg: int = None
    """Refiner updates per discriminator update (SimGAN's Kg)."""
    simgan_lambda: float = None
    """λ, the weight of the self-regularisation mean|R(x) - x|."""
    simgan_lambda_final: float = None
    """λ at the last adversarial step: > 0 makes λ go geometrically from simgan_lambda to this over the
    adversarial steps (0: λ constant)."""
    simgan_label_weight: float = None
    """μ, the weight of the label term CE(C(R(x)), y) of a digit keeper C trained on the procedural
    images first (0: off, SimGAN as published)."""
    simgan_label_steps: int = None
    """Updates of the digit keeper C before the refiner's (when μ > 0)."""
    simgan_d_standardize: bool = None
    """The discriminator sees every colour channel of every image standardised (blind to brightness,
    contrast and colour cast)."""
    simgan_d_conditional: bool = None
    """The discriminator has one map per digit and judges each image by its own digit's map (the real
    training images with their labels, refined ones with the procedural labels)."""
    simgan_flow_weight: float = None
    """κ, the weight of the warp's penalty mean(displacement²) (pixels²): > 0 adds a warp, so the refiner can
    move strokes as well as recolour them (0: off, SimGAN as published)."""
    simgan_width: int = None
    """Refiner channels."""
    simgan_blocks: int = None
    """Refiner ResNet blocks."""
    simgan_batch: int = None
    """Images per SimGAN update."""

    # ---- the ConvNet (6 conv, 3 pool, 1 dense), one per training set ---------------------------
    clf_steps: int = None
    """Optimizer steps of each classifier (rounded up to whole epochs); all = classify's own recipe
    (at least 20 epochs and 2,000 steps)."""
    clf_arch: str = "bn"
    """bn (BatchNorm + dropout, classify's recipe) or paper (plain conv + ReLU)."""
    clf_widths: tuple = (32, 64, 128)
    """Channels of the ConvNet's three stages."""
    clf_batch: int = 64
    """Images per classifier step."""
    clf_lr: float = None
    """Peak learning rate (SGD, warm-up then cosine decay); default = classify's recipe (0.05 with BatchNorm)."""
    clf_augment: str = "recipe"
    """Training-time augmentation: recipe (classify's: geometry, colour, inversion, cutout), light (small
    shifts, rotations and colour changes only; short runs learn sooner) or none."""
    clf_tta: bool = True
    """Test-time augmentation (mean over the image and 4 shifted copies) in the final test."""
    clf_seeds: int = 1
    """Classifier seeds behind each row of the table: the row's ConvNet is trained this many times
    (seeds seed, seed+1, ...) and the table shows the mean and its standard error. The mixing curve
    uses the first."""
    dcgan_seeds: int = 1
    """Independent sets of ten DCGANs (GAN training seeds seed, seed+1, ...), each sampled into its own
    DCGAN set; the DCGAN row trains clf_seeds ConvNets on each set and shows the mean over all of
    them. The figures, label fidelity and mixing curve use the first set."""

    # ---- the mixing curve (beyond the paper) -------------------------------------------------
    mix_real: tuple = (0, 100, 300, 1000, 10_000, "all")
    """Numbers of real training images on the curve's x axis (all = every one)."""
    mix_synthetic: tuple = ("procedural", "dcgan")
    """Synthetic sets added to those real images (each point is also trained without one)."""
    mix_real_share: float = 0.5
    """At the curve's points with real and synthetic images: the share of every batch that is real images
    (classify's batch shares: the few real images are seen many times); none = in proportion to the numbers
    of images. 0.5 measured better on the sample (docs/results.md §11, 3 classifier seeds): 100 real + 73,000 DCGAN
    images 80.9 % with half of each batch real against 73.3 % in proportion; 783 real + DCGAN 88.9 % (76.3 %, one
    seed, in proportion)."""

    def check(self):
        """Raise ValueError (one line naming the field) when a value makes no sense; return self."""
        def fail(name, why):
            raise ValueError(f"setting {name}: {why}, got {getattr(self, name)!r}")

        for f in fields(self):
            kind, value = KINDS[f.name], getattr(self, f.name)
            if value is None:
                if f.name not in NULLABLE:
                    fail(f.name, "must be given")
                continue
            if kind in ("int", "count") and not _is_int(value):
                fail(f.name, "must be a whole number")
            if kind == "int" and value < 1:
                fail(f.name, "must be at least 1")
            if kind == "count" and value < 0:
                fail(f.name, "must be at least 0")
            if kind == "float" and not (isinstance(value, float) and math.isfinite(value) and value >= 0):
                fail(f.name, "must be a number >= 0")
            if kind == "flag" and not isinstance(value, bool):
                fail(f.name, "must be yes or no")
            if kind == "word" and value not in WORDS[f.name]:
                fail(f.name, f"must be one of {', '.join(WORDS[f.name])}")
        for name in ("dcgan_batch", "simgan_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                fail(name, "must be at least 2 (BatchNorm needs a batch)")
        if self.clf_lr is not None and not 0 < self.clf_lr < 1:
            fail("clf_lr", "must be a number in (0, 1) or default")
        if self.mix_real_share is not None and not 0 < self.mix_real_share < 1:
            fail("mix_real_share", "must be a number in (0, 1) or none")
        if len(self.clf_widths) != 3 or not all(_is_int(w) and w >= 1 for w in self.clf_widths):
            fail("clf_widths", "must be three whole numbers >= 1")
        if not self.mix_real or not all(v == "all" or (_is_int(v) and v >= 0) for v in self.mix_real):
            fail("mix_real", "must be a list of whole numbers >= 0 or all")
        if not all(s in SYNTHETIC_SETS for s in self.mix_synthetic):
            fail("mix_synthetic", f"must name sets from {', '.join(SYNTHETIC_SETS)}")
        return self

    @classmethod
    def field_docs(cls):
        """{field: its documentation}, read from the attribute docstrings in this file."""
        body = ast.parse(inspect.getsource(cls)).body[0].body
        return {a.target.id: " ".join(b.value.value.split()) for a, b in zip(body, body[1:])
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}

    def as_dict(self):
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


SYNTHETIC_SETS = ("procedural", "dcgan", "simgan")

KINDS = {
    "train_n": "int", "test_n": "int", "clf_steps": "int",
    "procedural_n": "int", "dcgan_iters": "int", "dcgan_iters_digit5": "int", "dcgan_width": "int",
    "dcgan_batch": "int", "dcgan_per_digit": "int", "simgan_steps": "count", "simgan_pretrain_r": "count",
    "simgan_pretrain_d": "count", "simgan_kg": "int", "simgan_width": "int", "simgan_blocks": "count",
    "simgan_batch": "int", "clf_batch": "int", "clf_seeds": "int", "dcgan_seeds": "int",
    "simgan_lambda": "float", "simgan_lambda_final": "float", "simgan_label_weight": "float",
    "simgan_flow_weight": "float",
    "simgan_label_steps": "count", "clf_lr": "float", "mix_real_share": "float",
    "dcgan_loss": "word", "dcgan_upsample": "word", "clf_arch": "word", "clf_augment": "word",
    "dcgan_augment": "flag", "dcgan_together": "flag", "clf_tta": "flag", "simgan_d_standardize": "flag",
    "simgan_d_conditional": "flag",
    "clf_widths": "ints", "mix_real": "ints_or_all", "mix_synthetic": "words",
}
"""How each field is parsed from `--set FIELD=VALUE`."""
WORDS = {"dcgan_loss": ("paper", "bce"), "dcgan_upsample": ("nearest", "deconv"), "clf_arch": ("bn", "paper", "bn-std"),
         "clf_augment": ("recipe", "light", "none")}
"""The values a word field may take."""
NULLABLE = {f.name for f in fields(Settings) if f.default is None} | {"mix_real_share"}
"""Fields that may be None: `all` (train_n, test_n, clf_steps: everything) or `default` (a package's recipe)."""
NONE_WORDS = ("all", "default", "none")

SCALED = ("procedural_n", "dcgan_iters", "dcgan_iters_digit5", "dcgan_per_digit", "simgan_steps",
          "simgan_pretrain_r", "simgan_pretrain_d", "simgan_label_steps", "clf_steps")
"""The counts `scaled` multiplies (sizes and iteration numbers; not widths or batch sizes)."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------- presets

PRESETS = {
    # The paper's sizes: 73,000 images per training set, the full test set, DCGANs trained to good
    # samples, classify's full recipe. Meant for --backend cupy (hours on a CPU).
    "paper": Settings(),

    # The same pipeline in <= 30 minutes on 2 CPU cores with the 783/300-image SVHN sample: a tenth of
    # the paper's synthetic sets; digit 5's DCGAN to iteration 701 (Figures 7-8), the other nine to 200,
    # in batches of 64 (gan's 128 would double the DCGAN stages' time);
    # a small SimGAN; a narrower ConvNet (16-32-64 channels) trained 800 steps with a lower learning
    # rate and light augmentation (classify's full recipe needs far more steps to leave the
    # predict-the-commonest-digit plateau on 783 images: 20 % after 1,000 steps, against 74 % with these).
    "quick": Settings(
        test_n=2000,
        procedural_n=7300,
        dcgan_iters=200, dcgan_iters_digit5=701, dcgan_per_digit=730, dcgan_batch=64,
        simgan_steps=150, simgan_pretrain_r=150, simgan_pretrain_d=50, simgan_width=32, simgan_blocks=2,
        clf_steps=800, clf_widths=(16, 32, 64), clf_batch=32, clf_lr=0.01, clf_augment="light",
        mix_real=(0, 100, 300, "all"),
    ),

    # Seconds, for CI: tiny networks and a handful of steps, every stage and output exercised.
    "smoke": Settings(
        procedural_n=60,
        dcgan_iters=2, dcgan_iters_digit5=3, dcgan_width=4, dcgan_batch=4, dcgan_per_digit=6,
        simgan_steps=1, simgan_pretrain_r=1, simgan_pretrain_d=1, simgan_kg=1, simgan_width=6, simgan_blocks=1,
        simgan_batch=4,
        clf_steps=2, clf_widths=(4, 4, 8), clf_batch=16, clf_tta=False,
        mix_real=(0, 10, "all"),
    ),
}


def preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------- --set

def parse_value(name, text):
    """The value of `--set name=text`, typed by the field's kind (see KINDS); `all` / `default` give
    None where the field allows it."""
    kind, text = KINDS[name], text.strip()

    def whole(t):
        try:
            return int(t.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"--set {name}={text}: {t.strip()!r} is not a whole number") from None

    items = [t for t in text.split(",") if t.strip()]
    if name in NULLABLE and text.lower() in NONE_WORDS:
        return None
    if kind in ("int", "count"):
        return whole(text)
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--set {name}={text}: not a number") from None
    if kind == "flag":
        if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"--set {name}={text}: use yes or no")
        return text.lower() in ("1", "true", "yes", "on")
    if kind == "ints":
        return tuple(whole(t) for t in items)
    if kind == "ints_or_all":
        return tuple("all" if t.strip().lower() == "all" else whole(t) for t in items)
    if kind == "words":
        return tuple(t.strip() for t in items if t.strip().lower() != "none")
    return text


def apply_overrides(settings, items):
    """`settings` with each 'FIELD=VALUE' of `items` applied, checked."""
    changes = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--set {item}: expected FIELD=VALUE (see --list-settings)")
        if name not in KINDS:
            raise ValueError(f"--set {item}: unknown setting {name!r} (see --list-settings)")
        changes[name] = parse_value(name, value)
    return dataclasses.replace(settings, **changes).check()


def scaled(settings, factor):
    """`settings` with every count in SCALED multiplied by `factor` (at least 1; None stays None)."""
    if not factor > 0:
        raise ValueError(f"the scale must be a positive number, got {factor}")
    changes = {name: max(0 if KINDS[name] == "count" else 1, int(round(getattr(settings, name) * factor)))
               for name in SCALED if getattr(settings, name) is not None}
    return dataclasses.replace(settings, **changes).check()


def describe(settings):
    """Lines `name = value   # documentation` for --list-settings."""
    docs = Settings.field_docs()
    lines = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        shown = ("all" if f.name in ("train_n", "test_n", "clf_steps") else "none" if f.name == "mix_real_share"
                 else "default") if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else value
        lines += [f"{f.name} = {shown}", f"    {docs.get(f.name, '')}"]
    return lines
