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


def gan_tag(g):
    """The suffix of everything made by the g-th set of ten DCGANs (GAN seed = run seed + g): '' for
    the first, so a run with one set keeps its plain names; '-g1', '-g2', ... for the others."""
    return f"-g{g}" if g else ""


def dcgan_set_name(g):
    """The name of the g-th DCGAN training set: 'dcgan', 'dcgan-g1', ..."""
    return "dcgan" + gan_tag(g)


def set_stage(synthetic):
    """The stage that makes a synthetic set ('procedural', 'dcgan', 'dcgan-g1', 'simgan'), and its file."""
    kind, _, g = synthetic.partition("-")
    return SET_STAGE[kind] + (f"-{g}" if g else ""), SET_FILE[kind]


def classifier_name(real, synthetic, clf=0):
    """'classify_real-all', 'classify_real-0+procedural', 'classify_real-100+dcgan', ...; the clf-th
    classifier seed (seed + clf) of a table row adds '-c1', '-c2', ...: 'classify_real-0+dcgan-g1-c2'."""
    return f"classify_real-{real}" + (f"+{synthetic}" if synthetic else "") + (f"-c{clf}" if clf else "")


def table_runs(settings, synthetic):
    """[(synthetic set, classifier seed offset)]: the ConvNets behind one table row, clf_seeds of them on
    each set (for the DCGAN row, on each of the dcgan_seeds sets)."""
    sets = [dcgan_set_name(g) for g in range(settings.dcgan_seeds)] if synthetic == "dcgan" else [synthetic]
    return [(s, c) for s in sets for c in range(settings.clf_seeds)]


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


def dcgan_config(ctx, g=0):
    """gan.Config of the g-th set of ten DCGANs (seed: the run's + g): its recipe, with the dcgan_*
    settings that are given (not None) in its place."""
    s = ctx.settings
    return Config(iters=s.dcgan_iters, seed=ctx.seed + g,
                  **given(loss=s.dcgan_loss, upsample=s.dcgan_upsample, augment=s.dcgan_augment,
                          width=s.dcgan_width, batch_size=s.dcgan_batch))


def dcgan_together(ctx):
    """Whether each set's ten DCGANs train as one grouped model in one stage (the dcgan_together
    setting; by default on a GPU, where it saves nine GANs' kernel launches, and not on NumPy)."""
    together = ctx.settings.dcgan_together
    return ctx.backend != "numpy" if together is None else together


def dcgan_stage(digit, g=0):
    """The stage name of one digit's DCGAN in the g-th set: 'dcgan_digit_3', 'dcgan_digit_3-g1', ..."""
    return f"dcgan_digit_{digit}" + gan_tag(g)


def dcgan_group_stage(g=0):
    """The stage name of the g-th set's ten DCGANs trained together: 'dcgan_digits', 'dcgan_digits-g1', ..."""
    return "dcgan_digits" + gan_tag(g)


def dcgan_stage_of(ctx, digit, g=0):
    """The stage that trains digit `digit`'s DCGAN of the g-th set: its own, or the set's grouped one."""
    return dcgan_group_stage(g) if dcgan_together(ctx) else dcgan_stage(digit, g)


def dcgan_run(ctx, digit, g=0):
    """gan.dcgan's run folder of one digit's DCGAN (it holds digit_K/: checkpoint, log, sample grids; a
    grouped stage's run holds all ten digits)."""
    return ctx.stage_dir(dcgan_stage_of(ctx, digit, g)) / "run"
