"""Names and places the pipeline and the report share: the table's rows, each stage's name, and
where a stage keeps what the report reads (kept apart so that the report does not import the
pipeline, which runs the report as its last stage)."""
from gan import Config
from gan.simgan import REFINED_FILE


SET_STAGE = {"procedural": "procedural", "dcgan": "dcgan_set", "simgan": "simgan"}
"""The stage that makes each synthetic training set ..."""
SET_FILE = {"procedural": "images.npz", "dcgan": "images.npz", "simgan": f"run/{REFINED_FILE}"}
"""... and the image-set file in that stage's folder."""
TABLE_ROWS = (("real", "all", None), ("procedural", 0, "procedural"), ("dcgan", 0, "dcgan"),
              ("simgan", 0, "simgan"))
"""The table's rows: (row, real images, synthetic set)."""


def classifier_name(real, synthetic):
    """'classify_real-all', 'classify_real-0+procedural', 'classify_real-100+dcgan', ..."""
    return f"classify_real-{real}" + (f"+{synthetic}" if synthetic else "")


def mixing_points(settings, n_train):
    """[(real, synthetic)] of the mixing curve: each count of mix_real ("all" for n_train or more) with
    no synthetic set and with each of mix_synthetic, but not the empty point (0 real, no synthetic)."""
    points = []
    for k in settings.mix_real:
        real = "all" if k == "all" or k >= n_train else k
        for syn in (None,) + tuple(settings.mix_synthetic):
            if (real, syn) not in points and not (real == 0 and syn is None):
                points.append((real, syn))
    return points


def given(**settings):
    """The settings whose value is given (not None: None means "the package's own recipe")."""
    return {k: v for k, v in settings.items() if v is not None}


def dcgan_config(ctx):
    """gan.Config: its recipe, with the dcgan_* settings that are given (not None) in its place."""
    s = ctx.settings
    return Config(iters=s.dcgan_iters, seed=ctx.seed,
                  **given(loss=s.dcgan_loss, upsample=s.dcgan_upsample, augment=s.dcgan_augment,
                          width=s.dcgan_width, batch_size=s.dcgan_batch))


def dcgan_run(ctx, digit):
    """gan.dcgan's run folder of one digit's DCGAN (it holds digit_K/: checkpoint, log, sample grids)."""
    return ctx.stage_dir(f"dcgan_digit_{digit}") / "run"
