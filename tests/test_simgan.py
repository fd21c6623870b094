"""Tests of the SimGAN refiner (gan/simgan.py, gan/simgan_nets.py): shapes, gradient checks of the
ResNet block and both losses, the history buffer, one training step, the self-regularisation's hold,
checkpoint/resume, deterministic refining and the command line.

Everything runs on tiny networks (width 4-8) and small random images, so the file takes seconds.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn import Sequential, backend, gradcheck, gradcheck_loss, layers
from nn.gradcheck import _numeric_gradient
from common.cli import run_cli
from gan.simgan import cli as simgan_cli, train as simgan
from gan.simgan import SimGANConfig, refine, train_simgan
from gan.simgan.train import build_simgan, load_config
from gan.simgan.nets import (DigitMap, FlowPenalty, HistoryBuffer, PatchLoss, ResBlock, SelfRegularisationL1, SimGAN,
                             WarpedRefiner, build_flow_net, build_label_net, build_patch_discriminator, build_refiner,
                             init_near_identity)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=6, blocks=1, d_width=4, batch_size=8, pretrain_r=2, pretrain_d=2, steps=3, kg=2,
            buffer_size=16, checkpoint_every=2)


def images(n, seed=0, size=32):
    """Random float images (n, 3, size, size) in [-1, 1] on the device."""
    rng = np.random.default_rng(seed)
    return backend.asarray(rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32))


def uint8_set(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def tiny_simgan(lambda_reg=0.5, lr=1e-3, width=8, blocks=1, seed=0, d_standardize=False, conditional=False):
    backend.seed(seed)
    D = build_patch_discriminator(4, d_standardize, maps=10 if conditional else 1)
    return SimGAN(build_refiner(width, blocks), D, lambda_reg=lambda_reg, lr_r=lr, lr_d=lr, buffer_size=32,
                  conditional=conditional)


# ----------------------------------------------------------------------------- shapes

def test_refiner_keeps_the_image_size_and_range():
    backend.seed(0)
    R = build_refiner(width=8, blocks=2)
    kinds = [type(layer).__name__ for layer in R.layers]
    assert kinds[0] == "Conv2D" and kinds[-2:] == ["Conv2D", "Tanh"] and kinds.count("ResBlock") == 2
    assert R.layers[0].kernel_size == (3, 3) and R.layers[-2].kernel_size == (1, 1)
    for size in (32, 12):                       # no striding: any size in, the same size out
        y = R.forward(images(3, size=size))
        assert y.shape == (3, 3, size, size) and y.dtype == np.float32
        assert float(abs(y).max()) < 1
    assert R.summary((3, 32, 32)).splitlines()[-1].split()[-1] == f"{R.num_params():,}"


def test_patch_discriminator_outputs_a_map_of_logits():
    from nn.layers.activations import sigmoid
    backend.seed(0)
    D = build_patch_discriminator(width=4)
    assert type(D.layers[-1]).__name__ == "Conv2D"          # logits: the loss applies the sigmoid
    X = sigmoid(D.forward(images(5)))
    assert X.shape == (5, 1, 8, 8) and X.dtype == np.float32
    assert float(X.min()) > 0 and float(X.max()) < 1


def test_a_standardising_discriminator_is_blind_to_brightness_contrast_and_colour_cast():
    """--d-standardize: D's verdict on an image does not change when each colour channel gets its own gain
    and offset (up to eps), but does change when the image's structure changes; without it, it does change."""
    x = images(4).astype(np.float64) * 0.4
    gain = backend.asarray(np.array([0.5, 1.5, 0.8]).reshape(1, 3, 1, 1))
    offset = backend.asarray(np.array([0.3, -0.2, 0.1]).reshape(1, 3, 1, 1))
    for standardize in (True, False):
        backend.seed(0)
        D = build_patch_discriminator(width=4, standardize=standardize).astype(np.float64)
        assert (type(D.layers[0]).__name__ == "Standardize") == standardize
        z = backend.to_numpy(D.forward(x, training=False))
        z_cast = backend.to_numpy(D.forward(x * gain + offset, training=False))
        z_other = backend.to_numpy(D.forward(images(4, seed=9).astype(np.float64) * 0.4, training=False))
        other, cast = np.abs(z_other - z).max(), np.abs(z_cast - z).max()
        assert other > 1e-2
        if standardize:
            assert cast < 0.05 * other              # what is left is eps's: var is 0.05, eps 1e-3
        else:
            assert cast > 0.3 * other


# ----------------------------------------------------------------------------- the ResNet block

def test_resblock_gradients_match_central_differences():
    backend.seed(0)
    block = ResBlock(3)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    assert gradcheck(block, x) < 1e-6
    assert set(block.grads) == {"conv1.W", "conv1.b", "conv2.W", "conv2.b"}


def test_resblock_is_identity_plus_residual():
    backend.seed(0)
    block = ResBlock(3)
    x = images(2, size=6)
    block.params["conv2.W"] = backend.xp.zeros_like(block.params["conv2.W"])   # writes through to conv2
    assert float(abs(block.conv2.params["W"]).max()) == 0
    assert np.array_equal(backend.to_numpy(block.forward(x)), backend.to_numpy(x))


def test_refiner_with_resblocks_saves_and_loads(tmp_path):
    backend.seed(0)
    R = build_refiner(width=4, blocks=2, identity_init=False)
    R.save(tmp_path / "r.npz")
    backend.seed(1)
    R2 = build_refiner(width=4, blocks=2, identity_init=False).load(tmp_path / "r.npz")
    x = images(2)
    assert np.array_equal(backend.to_numpy(R.forward(x)), backend.to_numpy(R2.forward(x)))
    with pytest.raises(ValueError, match="different architecture"):
        build_refiner(width=4, blocks=1, identity_init=False).load(tmp_path / "r.npz")


def test_identity_initialisation():
    backend.seed(0)
    R = init_near_identity(build_refiner(width=8, blocks=2, identity_init=False), residual_scale=0.0)
    x = images(3)
    assert np.allclose(backend.to_numpy(R.forward(x)), np.tanh(backend.to_numpy(x)), atol=1e-6)
    backend.seed(0)
    x = images(16)
    near = float(abs(build_refiner(width=8, blocks=2).forward(x) - x).mean())
    backend.seed(0)
    far = float(abs(build_refiner(width=8, blocks=2, identity_init=False).forward(x) - x).mean())
    assert near < 0.15 < far
    with pytest.raises(ValueError, match="width >= 6"):
        build_refiner(width=4)


# ----------------------------------------------------------------------------- losses

def test_self_regularisation_value_and_gradient():
    rng = np.random.default_rng(0)
    refined, x = rng.uniform(-1, 1, (2, 3, 4, 4)), rng.uniform(-1, 1, (2, 3, 4, 4))
    loss = SelfRegularisationL1()
    assert loss.forward(backend.asarray(refined), backend.asarray(x)) == pytest.approx(np.abs(refined - x).mean())
    assert gradcheck_loss(SelfRegularisationL1(), refined, backend.asarray(x)) < 1e-6
    with pytest.raises(ValueError, match="differ"):
        loss.forward(backend.asarray(refined), backend.asarray(x[:1]))


@pytest.mark.parametrize("target", ["array", 0.0, 1.0])
def test_patch_loss_value_and_gradient(target):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 1, 4, 4))
    X1 = backend.asarray((rng.random(z.shape) < 0.5).astype(np.float64)) if target == "array" else target
    t = backend.to_numpy(X1) if target == "array" else np.full(z.shape, target)
    X = 1 / (1 + np.exp(-z))
    expected = -(t * np.log(X) + (1 - t) * np.log(1 - X)).mean()
    assert PatchLoss().forward(backend.asarray(z), X1) == pytest.approx(expected, rel=1e-10)
    assert gradcheck_loss(PatchLoss(), z, X1) < 1e-6


@pytest.mark.parametrize("d_standardize, conditional", [(False, False), (True, False), (False, True), (True, True)])
def test_refiner_loss_gradient_through_the_discriminator(d_standardize, conditional):
    """dL_R/dx̃ of L_R = BCE(D(x̃), 0) + λ·mean|x̃ - x|, back through D's layers (with or without its
    per-channel standardisation; one map, or the map of each image's digit), in float64."""
    sg = tiny_simgan(lambda_reg=0.3, d_standardize=d_standardize, conditional=conditional)
    sg.D.astype(np.float64)
    rng = np.random.default_rng(2)
    x = backend.asarray(rng.uniform(-1, 1, (2, 3, 8, 8)))
    y = backend.asarray(np.array([3, 8])) if conditional else None

    class RefinerLoss:
        def forward(self, refined):
            loss, terms, grads = sg.refiner_loss(refined, x, y)
            assert set(terms) == {"loss_adv", "loss_reg"} and set(grads) == {"refined"}
            self.grad = grads["refined"]
            assert loss == pytest.approx(terms["loss_adv"] + 0.3 * terms["loss_reg"])
            return loss

        def backward(self):
            return self.grad

    assert gradcheck_loss(RefinerLoss(), rng.uniform(-1, 1, (2, 3, 8, 8))) < 1e-6


def test_digit_map_picks_each_images_own_map_and_sends_the_gradient_there_only():
    """DigitMap: z_y[n] = z[n, y_n]; dL/dz is dL/dz_y in map y_n and 0 in the nine others (float64 check)."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(3, 10, 2, 2))
    y = backend.asarray(np.array([0, 7, 7]))
    pick = DigitMap()
    out = backend.to_numpy(pick.forward(backend.asarray(z), y))
    assert out.shape == (3, 1, 2, 2)
    assert np.array_equal(out[:, 0], z[[0, 1, 2], [0, 7, 7]])
    dz = backend.to_numpy(pick.backward(backend.asarray(np.ones((3, 1, 2, 2)))))
    assert np.array_equal(dz.sum(axis=(2, 3)) != 0, np.eye(10, dtype=bool)[[0, 7, 7]])

    class PickedPatchLoss:                                     # BCE over the picked maps, targets 0/1 by patch
        patch = PatchLoss()
        target = backend.asarray(rng.integers(0, 2, (3, 1, 2, 2)).astype(np.float64))

        def forward(self, logits):
            return self.patch.forward(pick.forward(logits, y), self.target)

        def backward(self):
            return pick.backward(self.patch.backward())

    assert gradcheck_loss(PickedPatchLoss(), z) < 1e-6


def test_the_refiner_is_judged_by_its_own_digits_map():
    """L_R's adversarial term is BCE(z[n, y_n], 0): the map of each image's own digit, not another's."""
    sg = tiny_simgan(conditional=True)
    x = images(4, 7)
    z = sg.D.forward(x, True)
    digits = np.array([2, 5, 5, 9])
    expected = PatchLoss().forward(z[backend.asarray(np.arange(4)), backend.asarray(digits)][:, None], 0.0)
    adv = sg.refiner_loss(x, x, backend.asarray(digits))[1]["loss_adv"]
    assert float(adv) == pytest.approx(float(expected), rel=1e-6)
    other = sg.refiner_loss(x, x, backend.asarray((digits + 1) % 10))[1]["loss_adv"]
    assert abs(float(other) - float(adv)) > 1e-4


def test_the_conditional_discriminator_judges_each_image_by_its_own_digits_map():
    sg = tiny_simgan(conditional=True)
    x = images(4, 6)
    z = backend.to_numpy(sg.D.forward(x, True))
    assert z.shape == (4, 10, 8, 8)
    for digits in ([0, 1, 2, 3], [9, 9, 4, 0]):
        y = backend.asarray(np.array(digits))
        assert np.allclose(backend.to_numpy(sg._verdict(x, y))[:, 0], z[np.arange(4), digits])
    with pytest.raises(ValueError, match="labels"):
        sg.refiner_loss(x, x)                                  # no labels: refused, not a silent map 0
    with pytest.raises(ValueError, match="one label per image"):
        sg._verdict(x, backend.asarray(np.array([1, 2])))
    with pytest.raises(ValueError, match="labels"):
        sg.discriminator_step(x, x, np.random.default_rng(0), real_y=None, y=backend.asarray(np.zeros(4, np.int64)))


def label_simgan(lambda_reg=0.3, label_weight=2.0, seed=0):
    backend.seed(seed)
    return SimGAN(build_refiner(8, 1), build_patch_discriminator(4), lambda_reg=lambda_reg, lr_r=1e-3,
                  lr_d=1e-3, buffer_size=32, label_net=build_label_net(4), label_weight=label_weight)


def test_refiner_loss_gradient_with_the_label_term():
    """dL_R/dx̃ of L_R = BCE(D(x̃), 0) + λ·mean|x̃ - x| + μ·CE(C(x̃), y), back through D and the digit
    keeper C, in float64; L_R is the sum of its logged terms."""
    sg = label_simgan(lambda_reg=0.3, label_weight=2.0)
    sg.D.astype(np.float64)
    sg.C.astype(np.float64)
    rng = np.random.default_rng(3)
    x = backend.asarray(rng.uniform(-1, 1, (2, 3, 32, 32)))
    y = backend.asarray(np.array([3, 7]))

    class RefinerLoss:
        def forward(self, refined):
            loss, terms, grads = sg.refiner_loss(refined, x, y)
            assert loss == pytest.approx(terms["loss_adv"] + 0.3 * terms["loss_reg"] + 2.0 * terms["loss_label"])
            self.grad = grads["refined"]
            return loss

        def backward(self):
            return self.grad

    assert gradcheck_loss(RefinerLoss(), rng.uniform(-1, 1, (2, 3, 32, 32))) < 1e-6
    with pytest.raises(ValueError, match="labels"):
        sg.refiner_loss(x, x)                                   # the label term without labels


def test_label_net_maps_images_to_ten_logits_and_learns_a_fixed_batch():
    backend.seed(0)
    C = build_label_net(4)
    assert C.forward(images(5, 1)).shape == (5, 10)
    with pytest.raises(ValueError, match="width"):
        build_label_net(0)
    sg = label_simgan()
    x, y = images(16, 2), backend.asarray(np.arange(16) % 10)
    first = sg.label_net_step(x, y)
    for _ in range(60):
        last = sg.label_net_step(x, y)
    assert float(last["loss_label"]) < 0.5 * float(first["loss_label"])
    assert float(last["acc_label"]) > 0.9
    with pytest.raises(ValueError, match="label_net"):
        SimGAN(build_refiner(8, 1), build_patch_discriminator(4), label_weight=1.0)


def test_the_label_term_moves_the_refiner_towards_the_digit_keepers_label():
    """With λ = 0 and the discriminator's term weighed down, refiner steps on the label term lower C's
    loss on R(x); C itself is frozen (its weights do not change)."""
    sg = label_simgan(lambda_reg=0.0, label_weight=100.0)
    x, y = images(8, 4), backend.asarray(np.arange(8) % 10)
    for _ in range(40):
        sg.label_net_step(x, (y + 1) % 10)      # C learns other labels than y, so R has something to change
    C_before = [backend.to_numpy(p).copy() for p, _ in sg.C.parameters()]
    before = float(sg.refiner_loss(sg.R.forward(x), x, y)[1]["loss_label"])
    for _ in range(10):
        sg.refiner_step(x, y)
    after = float(sg.refiner_loss(sg.R.forward(x), x, y)[1]["loss_label"])
    assert after < 0.9 * before
    assert all(np.array_equal(a, backend.to_numpy(p)) for a, (p, _) in zip(C_before, sg.C.parameters()))


# ----------------------------------------------------------------------------- the warp

def warp_simgan(lambda_reg=0.3, flow_weight=0.5, lr=1e-3, conditional=False, seed=0):
    backend.seed(seed)
    D = build_patch_discriminator(4, maps=10 if conditional else 1)
    return SimGAN(build_refiner(8, 1), D, lambda_reg=lambda_reg, lr_r=lr, lr_d=lr, buffer_size=32,
                  conditional=conditional, flow_net=build_flow_net(3), flow_weight=flow_weight)


def randomise_last_layer(F, seed=0):
    """Give the flow net's last convolution (zero at the start) random weights, so F moves pixels."""
    last = [layer for layer in F.layers if type(layer).__name__ == "Conv2D"][-1]
    rng = np.random.default_rng(seed)
    for k in ("W", "b"):
        last.params[k] = backend.asarray(rng.normal(0, 0.5, last.params[k].shape).astype(last.params[k].dtype))


def test_the_flow_net_starts_with_no_displacement_and_its_field_is_smooth():
    backend.seed(0)
    R, F = build_refiner(8, 1), build_flow_net(4)
    x = images(3, 5)
    assert F.forward(x).shape == (3, 2, 32, 32) and float(abs(F.forward(x)).max()) == 0
    assert np.array_equal(backend.to_numpy(WarpedRefiner(R, F).forward(x)), backend.to_numpy(R.forward(x)))
    randomise_last_layer(F)
    field = backend.to_numpy(F.forward(x))
    coarse = x
    for layer in F.layers[:-1]:                                        # all but the upsampling
        coarse = layer.forward(coarse)
    coarse = backend.to_numpy(coarse)
    assert coarse.shape == (3, 2, 8, 8) and float(abs(field).max()) > 0.01
    # neighbouring pixels move together: each step of the upsampled field is at most a quarter of the coarse grid's
    step = max(abs(np.diff(field, axis=a)).max() for a in (2, 3))
    assert step <= max(abs(np.diff(coarse, axis=a)).max() for a in (2, 3)) / 4 + 1e-6
    assert not np.array_equal(backend.to_numpy(WarpedRefiner(R, F).forward(x)), backend.to_numpy(R.forward(x)))
    with pytest.raises(ValueError, match="width"):
        build_flow_net(0)


def test_flow_penalty_value_and_gradient():
    f = np.random.default_rng(1).normal(0, 2, (2, 2, 4, 4))
    assert float(FlowPenalty().forward(backend.asarray(f))) == pytest.approx((f ** 2).mean(), rel=1e-12)
    assert gradcheck_loss(FlowPenalty(), f) < 1e-6


@pytest.mark.parametrize("conditional", [False, True])
def test_refiner_loss_gradient_through_the_warp(conditional):
    """L_R = BCE(D(W(t, f)), 0) + λ·mean|t - x| + κ·mean(f²) as a function of the refiner's image t and the
    displacements f, in float64: its gradient is Wᵀ(dL/dx̃) plus the self-regularisation's (on t) and the
    penalty's (on f), as `WarpedRefiner.backward` adds them."""
    sg = warp_simgan(lambda_reg=0.3, flow_weight=0.5, conditional=conditional)
    sg.D.astype(np.float64)
    rng = np.random.default_rng(5)
    x = backend.asarray(rng.uniform(-1, 1, (2, 3, 8, 8)))
    y = backend.asarray(np.array([4, 1])) if conditional else None
    warp = layers.Warp()

    class RefinerLoss:
        def forward(self, t_and_f):
            t, f = t_and_f[:, :3], t_and_f[:, 3:]
            loss, terms, self.grads = sg.refiner_loss(warp.forward(t_and_f), x, y, unwarped=t, flow=f)
            assert set(terms) == {"loss_adv", "loss_reg", "loss_flow"}
            assert loss == pytest.approx(terms["loss_adv"] + 0.3 * terms["loss_reg"] + 0.5 * terms["loss_flow"])
            assert float(terms["loss_reg"]) == pytest.approx(float(abs(t - x).mean()))   # on t, not on x̃
            return loss

        def backward(self):
            d = warp.backward(self.grads["refined"])
            return backend.xp.concatenate([d[:, :3] + self.grads["unwarped"], d[:, 3:] + self.grads["flow"]], axis=1)

    disp = rng.normal(0, 1.2, (2, 2, 8, 8))
    disp = np.where(np.abs(disp - np.round(disp)) < 0.01, disp + 0.3, disp)
    assert gradcheck_loss(RefinerLoss(), np.concatenate([rng.uniform(-1, 1, (2, 3, 8, 8)), disp], axis=1)) < 1e-6


def test_the_warped_refiner_fills_the_gradients_of_both_networks():
    """WarpedRefiner.backward against central differences of s = sum(g·x̃) + sum(g_t·R(x)) + sum(g_f·F(x)) for
    entries of R's and F's weights (float64)."""
    backend.seed(1)
    R, F = build_refiner(6, 1), build_flow_net(2)
    randomise_last_layer(F, seed=2)
    R.astype(np.float64)
    F.astype(np.float64)
    refiner = WarpedRefiner(R, F)
    rng = np.random.default_rng(6)
    x = backend.asarray(rng.uniform(-1, 1, (2, 3, 8, 8)))
    g, g_t, g_f = (backend.asarray(rng.standard_normal(shape)) for shape in ((2, 3, 8, 8), (2, 3, 8, 8), (2, 2, 8, 8)))

    def s():
        y = refiner.forward(x)
        return float((g * y).sum() + (g_t * refiner.unwarped).sum() + (g_f * refiner.flow).sum())

    s()
    refiner.backward(g, g_t, g_f)
    checked = 0
    for net in (R, F):
        for param, grad in net.parameters():
            picked = rng.choice(param.size, size=min(3, param.size), replace=False)
            numeric = _numeric_gradient(s, param, picked, 1e-6)
            assert backend.to_numpy(grad).ravel()[picked] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
            checked += len(picked)
    assert checked > 20


def test_a_larger_flow_weight_keeps_the_displacements_smaller():
    x = images(8, 9, size=16)
    moved = {}
    for kappa in (1e-4, 10.0):
        sg = warp_simgan(lambda_reg=0.0, flow_weight=kappa, lr=3e-3)
        for _ in range(15):
            terms = sg.refiner_step(x)
        moved[kappa] = float(terms["loss_flow"])
    assert moved[1e-4] > 0 and moved[10.0] < 0.5 * moved[1e-4]


def test_a_simgan_refuses_a_flow_net_without_a_weight_and_a_weight_without_a_net():
    backend.seed(0)
    for kwargs in (dict(flow_net=build_flow_net(2)), dict(flow_weight=1.0)):
        with pytest.raises(ValueError, match="flow_weight"):
            SimGAN(build_refiner(8, 1), build_patch_discriminator(4), **kwargs)
    sg, x = warp_simgan(), images(2, 3, size=8)
    for half in (dict(unwarped=x), dict(flow=x[:, :2])):
        with pytest.raises(ValueError, match="both"):
            sg.refiner_loss(x, x, **half)


def test_a_run_with_the_warp_trains_its_flow_net_resumes_exactly_and_refines_with_it(tmp_path):
    real, _ = uint8_set(20, 1)
    proc, labels = uint8_set(30, 2)
    quiet = dict(progress=False, log=lambda *a: None, figures=False)
    settings = {**TINY, "flow_weight": 0.01, "lr_r": 1e-2, "label_weight": 1.0, "label_steps": 2}   # with the digit keeper
    train_simgan(real, proc, tmp_path / "once", proc_y=labels, **quiet, **settings)
    rows = simgan.read_log(tmp_path / "once" / "log.csv")
    assert all(r["loss_flow"] is not None for r in rows if r["phase"] == "adversarial")
    assert all(r["loss_flow"] is None for r in rows if r["phase"] != "adversarial")
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, **quiet, **{**settings, "steps": 1})
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, **quiet, steps=3)
    a, b = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("once", "twice"))
    assert a.keys() == b.keys() and any(k.startswith("F/") for k in a) and any(k.startswith("opt_F/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    F = build_flow_net(3)
    last = f"F/{len(F.layers) - 2}.W"                                     # the convolution before the upsampling
    assert last in a and float(abs(a[last]).max()) > 0                 # F's last convolution moved away from zero
    sg = build_simgan(load_config(tmp_path / "once"))
    simgan.load_checkpoint(tmp_path / "once" / "checkpoint.npz", sg)
    x = backend.asarray(simgan.to_float(proc))
    warped = simgan.to_uint8(backend.to_numpy(sg.refiner.forward(x, training=False)))
    unwarped = simgan.to_uint8(backend.to_numpy(sg.R.forward(x, training=False)))
    refined = refine(tmp_path / "once", proc)
    assert np.array_equal(refined, warped) and not np.array_equal(refined, unwarped)
    plain = tmp_path / "plain"
    train_simgan(real, proc, plain, **quiet, **{**TINY, "steps": 1})
    assert not any(k.startswith(("F/", "opt_F/")) for k in np.load(plain / "checkpoint.npz").files)


# ----------------------------------------------------------------------------- the history buffer

def constant_images(values):
    """Images whose pixels all equal their value, so the buffer's contents can be read back."""
    return backend.asarray(np.broadcast_to(np.asarray(values, np.float32)[:, None, None, None],
                                           (len(values), 3, 2, 2)).copy())


def stored(buffer):
    return sorted(float(v) for v in backend.to_numpy(buffer.images[:len(buffer), 0, 0, 0]))


def test_history_buffer_fills_wraps_and_samples():
    buf = HistoryBuffer(5)
    rng = np.random.default_rng(0)
    assert len(buf) == 0
    buf.push(constant_images([1, 2, 3]))
    assert len(buf) == 3 and stored(buf) == [1, 2, 3]
    with pytest.raises(ValueError, match="holds 3"):
        buf.sample(4, rng)
    buf.push(constant_images([4, 5, 6, 7]))            # wraps: 6 and 7 overwrite the oldest, 1 and 2
    assert len(buf) == 5 and stored(buf) == [3, 4, 5, 6, 7]
    draws = backend.to_numpy(buf.sample(5, rng))[:, 0, 0, 0]
    assert sorted(draws) == [3, 4, 5, 6, 7]              # without replacement: every image once
    seen = set()
    for _ in range(50):
        seen |= set(backend.to_numpy(buf.sample(2, rng))[:, 0, 0, 0].tolist())
    assert seen == {3, 4, 5, 6, 7}                       # and only filled slots are ever drawn
    buf.push(constant_images(range(10, 18)))            # more than the capacity: the last 5 stay
    assert stored(buf) == [13, 14, 15, 16, 17]
    again = HistoryBuffer(5).load_state_dict(buf.state_dict())
    assert stored(again) == stored(buf) and again.next == buf.next


def test_history_buffer_keeps_each_images_label_beside_it():
    """With the conditional D an image and its digit stay paired through wrapping, sampling and a checkpoint."""
    buf = HistoryBuffer(5)
    rng = np.random.default_rng(1)
    buf.push(constant_images([10, 21, 32]), backend.asarray(np.array([0, 1, 2])))
    buf.push(constant_images([43, 54, 65, 76]), backend.asarray(np.array([3, 4, 5, 6])))   # wraps
    for again in (buf, HistoryBuffer(5).load_state_dict(buf.state_dict())):
        x, y = again.sample(5, rng, with_labels=True)
        values, labels = backend.to_numpy(x)[:, 0, 0, 0], backend.to_numpy(y)
        assert sorted(labels.tolist()) == [2, 3, 4, 5, 6]
        assert np.array_equal(values.astype(int) % 10, labels)   # each image came with its own label
    with pytest.raises(ValueError, match="labels"):
        buf.push(constant_images([1]))                         # labels with every batch, or with none
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        buf.push(constant_images([1, 2]), backend.asarray(np.array([1])))
    plain = HistoryBuffer(5)
    plain.push(constant_images([1, 2]))
    with pytest.raises(ValueError, match="without labels"):
        plain.sample(1, rng, with_labels=True)
    assert "labels" not in plain.state_dict()                  # checkpoints of plain runs are as before


def test_conditional_discriminator_step_pairs_buffer_images_with_their_labels():
    """The refined half from the buffer is judged by the maps of the digits those images were refined as."""
    sg = tiny_simgan(conditional=True)
    sg.R.forward = lambda x, training=True: x                 # refined = input, so the buffer's contents are known
    rng = np.random.default_rng(0)
    seen = []
    verdict = sg._verdict
    sg._verdict = lambda batch, y: seen.append((backend.to_numpy(batch), backend.to_numpy(y))) or verdict(batch, y)
    for step in range(3):                                    # pixel value = step / 100 + digit / 10
        y = rng.integers(0, 10, 8)
        value = (step / 100 + y / 10).astype(np.float32)
        x = backend.asarray(np.broadcast_to(value[:, None, None, None], (8, 3, 32, 32)).copy())
        real_y = rng.integers(0, 10, 8)
        sg.discriminator_step(images(8, step), x, rng, real_y=backend.asarray(real_y), y=backend.asarray(y))
    batch, labels = seen[-1]
    assert np.array_equal(labels[:8], real_y)                  # real images with their own labels
    fake, fake_y = batch[8:], labels[8:]
    value = fake[:, 0, 0, 0]
    step, digit = np.round(value * 100) % 10, np.round(value * 100) // 10
    assert (step[:4] == 2).all() and (step[4:] < 2).all()  # 4 new, 4 from the buffer (earlier steps)
    assert np.array_equal(digit, fake_y)                       # each image judged by its own digit's map
    assert len(sg.buffer) == 12


def test_discriminator_step_takes_half_its_refined_batch_from_the_buffer():
    sg = tiny_simgan()
    rng = np.random.default_rng(0)
    calls = []
    sample = sg.buffer.sample
    sg.buffer.sample = lambda n, r: calls.append(n) or sample(n, r)
    sg.discriminator_step(images(8, 1), images(8, 2), rng)
    assert len(sg.buffer) == 4 and calls == []           # buffer had < 4 images: all 8 are new
    out = sg.discriminator_step(images(8, 3), images(8, 4), rng)
    assert len(sg.buffer) == 8 and calls == [4]          # 4 new + 4 from the buffer; 4 new pushed
    assert 0 <= out["acc_real"] <= 1 and 0 < out["X_refined"] < 1 and np.isfinite(out["loss_D"])


# ----------------------------------------------------------------------------- training

def test_one_refiner_step_lowers_the_refiner_loss_on_a_fixed_batch():
    sg = tiny_simgan(lambda_reg=0.5, lr=1e-3)
    x = images(8, 5, size=16)
    before = sg.refiner_loss(sg.R.forward(x), x)[0]
    D_before = [backend.to_numpy(p).copy() for p, _ in sg.D.parameters()]
    sg.refiner_step(x)
    after = sg.refiner_loss(sg.R.forward(x), x)[0]
    assert after < before
    assert all(np.array_equal(a, backend.to_numpy(p)) for a, (p, _) in zip(D_before, sg.D.parameters()))


def test_a_very_large_lambda_keeps_the_refiner_near_the_identity():
    """After L1 pretraining, adversarial training with λ = 1e4 keeps mean|R(x) - x| where it was,
    while the same training with λ = 0 drives R away from the identity."""
    sg = tiny_simgan(lambda_reg=0.0, lr=5e-3, width=8, blocks=1)
    x_all, real = images(64, 6, size=12) * 0.8, images(64, 7, size=12) * 0.2 + 0.5

    def distance(model):
        return float(abs(model.R.forward(x_all) - x_all).mean())

    for i in range(250):
        sg.refiner_pretrain_step(x_all[(i * 8) % 64:(i * 8) % 64 + 8])
    d0 = distance(sg)
    assert d0 < 0.1
    result = {}
    for lam in (1e4, 0.0):
        run, r = copy.deepcopy(sg), np.random.default_rng(1)
        run.lambda_reg = lam
        for i in range(25):
            batch = x_all[r.choice(64, 8, replace=False)]
            run.refiner_step(batch)
            run.discriminator_step(real[r.choice(64, 8, replace=False)], batch, r)
        result[lam] = distance(run)
    assert result[1e4] <= d0 * 1.1
    assert result[0.0] > 4 * d0


def test_train_writes_outputs_and_refine_is_deterministic(tmp_path):
    real, _ = uint8_set(20, 1)
    proc, labels = uint8_set(30, 2)
    summary = train_simgan(real, proc, tmp_path / "run", proc_y=labels, progress=False, log=lambda *a: None, **TINY)
    assert summary["iteration"] == 2 + 2 + 3
    for name in ("config.json", "checkpoint.npz", "log.csv", "losses.png", "pairs.png", "refined.npz"):
        assert (tmp_path / "run" / name).is_file(), name
    rows = simgan.read_log(tmp_path / "run" / "log.csv")
    assert [r["phase"] for r in rows] == ["pretrain_R"] * 2 + ["pretrain_D"] * 2 + ["adversarial"] * 3
    from svhn.imageset import load_image_set
    x_ref, y_ref = load_image_set(tmp_path / "run" / "refined.npz")
    assert np.array_equal(y_ref, labels) and x_ref.shape == proc.shape
    a, b = refine(tmp_path / "run", proc), refine(tmp_path / "run", proc[::-1])
    assert a.dtype == np.uint8 and a.shape == proc.shape
    assert np.array_equal(a, x_ref) and np.array_equal(a[::-1], b)   # same image, same result, any batch


def test_resumed_run_takes_the_same_steps(tmp_path):
    real, _ = uint8_set(20, 1)
    proc, _ = uint8_set(30, 2)
    quiet = dict(progress=False, log=lambda *a: None, figures=False)
    train_simgan(real, proc, tmp_path / "once", **quiet, **TINY)
    train_simgan(real, proc, tmp_path / "twice", **quiet, **{**TINY, "steps": 1})
    train_simgan(real, proc, tmp_path / "twice", **quiet, steps=3)          # resumes with its saved settings
    a, b = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("once", "twice"))
    assert a.keys() == b.keys()
    for k in a:
        if k != "rng_state":
            assert np.array_equal(a[k], b[k]), k
    assert a["rng_state"] == b["rng_state"]
    with pytest.raises(ValueError, match="lambda_reg"):
        train_simgan(real, proc, tmp_path / "once", **quiet, lambda_reg=3.0)


def test_a_run_with_the_label_term_trains_the_digit_keeper_first_and_resumes_exactly(tmp_path):
    real, _ = uint8_set(20, 1)
    proc, labels = uint8_set(30, 2)
    quiet = dict(progress=False, log=lambda *a: None, figures=False)
    settings = {**TINY, "label_weight": 1.0, "label_steps": 3}
    train_simgan(real, proc, tmp_path / "once", proc_y=labels, **quiet, **settings)
    rows = simgan.read_log(tmp_path / "once" / "log.csv")
    assert [r["phase"] for r in rows] == (["pretrain_C"] * 3 + ["pretrain_R"] * 2 + ["pretrain_D"] * 2
                                          + ["adversarial"] * 3)
    assert all(r["loss_label"] is not None and r["acc_label"] is not None for r in rows[:3])
    assert all(r["loss_label"] is not None for r in rows[-3:])       # the label term of the refiner's loss
    assert all(r["loss_label"] is None for r in rows[3:7])
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, **quiet, **{**settings, "steps": 1})
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, **quiet, steps=3)
    a, b = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("once", "twice"))
    assert a.keys() == b.keys() and any(k.startswith("C/") for k in a) and any(k.startswith("opt_C/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="labels"):
        train_simgan(real, proc, tmp_path / "nolabels", **quiet, **settings)
    assert not (tmp_path / "nolabels").exists()                     # refused before anything was written


def test_a_conditional_run_uses_the_real_labels_and_resumes_exactly(tmp_path):
    real, real_labels = uint8_set(20, 1)
    proc, labels = uint8_set(30, 2)
    quiet = dict(progress=False, log=lambda *a: None, figures=False)
    settings = {**TINY, "d_conditional": True}
    train_simgan(real, proc, tmp_path / "once", proc_y=labels, real_y=real_labels, **quiet, **settings)
    assert build_simgan(load_config(tmp_path / "once")).D.layers[-1].params["W"].shape[0] == 10
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, real_y=real_labels, **quiet, **{**settings, "steps": 1})
    train_simgan(real, proc, tmp_path / "twice", proc_y=labels, real_y=real_labels, **quiet, steps=3)
    a, b = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("once", "twice"))
    assert a.keys() == b.keys() and "buffer/labels" in a
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    other = {**settings, "steps": 1}
    train_simgan(real, proc, tmp_path / "shuffled", proc_y=labels, real_y=real_labels[::-1], **quiet, **other)
    train_simgan(real, proc, tmp_path / "same", proc_y=labels, real_y=real_labels, **quiet, **other)
    d1, d2 = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("shuffled", "same"))
    assert not np.array_equal(d1["D/4.W"], d2["D/4.W"])        # the real labels reach D
    for missing in (dict(proc_y=labels), dict(real_y=real_labels)):
        with pytest.raises(ValueError, match="labels"):
            train_simgan(real, proc, tmp_path / "nolabels", **missing, **quiet, **settings)
        assert not (tmp_path / "nolabels").exists()            # refused before anything was written


def test_a_lambda_schedule_weighs_the_l1_term_by_its_lambda_and_resumes_exactly(tmp_path, monkeypatch):
    real, _ = uint8_set(20, 1)
    proc, _ = uint8_set(30, 2)
    quiet = dict(progress=False, log=lambda *a: None, figures=False)
    settings = {**TINY, "lambda_reg": 8.0, "lambda_final": 0.5, "checkpoint_every": 1}
    train_simgan(real, proc, tmp_path / "once", **quiet, **settings)
    adversarial = [r for r in simgan.read_log(tmp_path / "once" / "log.csv") if r["phase"] == "adversarial"]
    assert [r["lambda_reg"] for r in adversarial] == pytest.approx([8.0, 2.0, 0.5], rel=1e-5)
    for r in adversarial:                        # the refiner's loss is weighed by that iteration's λ
        assert r["loss_R"] == pytest.approx(r["loss_adv"] + r["lambda_reg"] * r["loss_reg"], rel=1e-5)

    iteration = simgan.train_iteration               # interrupted after the first adversarial iteration, resumed
    done = []

    def interrupted(*args, **kwargs):
        if len(done) == 5:
            raise KeyboardInterrupt
        done.append(1)
        return iteration(*args, **kwargs)

    monkeypatch.setattr(simgan, "train_iteration", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_simgan(real, proc, tmp_path / "twice", **quiet, **settings)
    monkeypatch.undo()
    train_simgan(real, proc, tmp_path / "twice", **quiet, **settings)
    a, b = (dict(np.load(tmp_path / r / "checkpoint.npz")) for r in ("once", "twice"))
    for k in a:
        assert np.array_equal(a[k], b[k]), k

    train_simgan(real, proc, tmp_path / "constant", **quiet, **{**settings, "lambda_final": 0.0})
    assert not np.array_equal(a["R/0.W"], np.load(tmp_path / "constant" / "checkpoint.npz")["R/0.W"])
    with pytest.raises(ValueError, match="schedule"):                   # its path spans `steps`: no training further
        train_simgan(real, proc, tmp_path / "once", **quiet, steps=5)
    assert np.array_equal(np.load(tmp_path / "once" / "checkpoint.npz")["R/0.W"], a["R/0.W"])
    train_simgan(real, proc, tmp_path / "constant", **quiet, steps=4)   # without a schedule it may


def test_without_the_label_term_a_run_has_no_digit_keeper(tmp_path):
    real, _ = uint8_set(20, 1)
    proc, labels = uint8_set(30, 2)
    train_simgan(real, proc, tmp_path / "run", proc_y=labels, progress=False, log=lambda *a: None, figures=False,
                 **{**TINY, "label_steps": 5})
    state = np.load(tmp_path / "run" / "checkpoint.npz")
    assert not any(k.startswith(("C/", "opt_C/")) for k in state.files)
    assert [r["phase"] for r in simgan.read_log(tmp_path / "run" / "log.csv")][0] == "pretrain_R"


def test_config_phases():
    c = SimGANConfig(label_weight=1.0, label_steps=2, pretrain_r=1, pretrain_d=0, steps=2)
    assert c.total == 5 and [c.phase(i) for i in range(5)] == ["pretrain_C"] * 2 + ["pretrain_R"] + ["adversarial"] * 2
    c = SimGANConfig(label_steps=2, pretrain_r=0, pretrain_d=1, steps=1)       # μ = 0: no digit keeper phase
    assert c.total == 2 and [c.phase(i) for i in range(2)] == ["pretrain_D", "adversarial"]


def test_config_lambda_schedule():
    c = SimGANConfig(lambda_reg=10.0, pretrain_r=2, pretrain_d=1, steps=5)
    assert [c.lambda_at(i) for i in range(c.total)] == [10.0] * 8                 # no schedule: constant
    c = SimGANConfig(lambda_reg=10.0, lambda_final=0.1, label_weight=1.0, label_steps=1, pretrain_r=2, pretrain_d=1,
                     steps=5)
    assert [c.lambda_at(i) for i in range(4)] == [10.0] * 4                       # the phases before: lambda_reg
    assert [c.lambda_at(i) for i in range(4, 9)] == pytest.approx([10.0, 10 ** 0.5, 1.0, 10 ** -0.5, 0.1])
    assert SimGANConfig(lambda_reg=2.0, lambda_final=4.0, steps=1).lambda_at(0) == 2.0   # one step: the start


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="kg"):
        SimGANConfig(kg=0).check()
    with pytest.raises(ValueError, match="lambda_reg"):
        SimGANConfig(lambda_reg=-1).check()
    with pytest.raises(ValueError, match="label_weight"):
        SimGANConfig(label_weight=-0.5).check()
    with pytest.raises(ValueError, match="label_steps"):
        SimGANConfig(label_steps=-1).check()
    for bad in (dict(flow_weight=-0.1), dict(flow_weight=float("nan")), dict(lr_flow=-1e-3), dict(lr_flow=1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimGANConfig(**bad).check()
    SimGANConfig(flow_weight=0.1, lr_flow=1e-3).check()
    for bad in (dict(lambda_final=-1.0), dict(lambda_final=float("inf")), dict(lambda_reg=0.0, lambda_final=1.0)):
        with pytest.raises(ValueError, match="lambda_final"):
            SimGANConfig(**bad).check()
    SimGANConfig(lambda_reg=10.0, lambda_final=1.0).check()
    with pytest.raises(ValueError, match="unknown"):
        SimGANConfig.from_dict({"lamda": 1})


# ----------------------------------------------------------------------------- command line

def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(simgan_cli.main, argv)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--real", "/no/such/dir", "--procedural", "p.npz", "--out", "o"], "no such folder"),
    (["train", "--real", "R.npz", "--procedural", "/no/p.npz", "--out", "o"], "not found"),
    (["refine", "--run", "/no/run", "--input", "x.npz", "--out", "y.npz"], "not found"),
    (["train", "--real", "R.npz", "--procedural", "P.npz", "--out", "o", "--kg", "0"], "--kg: '0' is not a whole number >= 1"),
    (["train", "--real", "R.npz", "--procedural", "P.npz", "--out", "o", "--label-weight", "-1"], "--label-weight"),
])
def test_cli_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from svhn.imageset import save_image_set
    save_image_set("R.npz", *uint8_set(10, 1))
    save_image_set("P.npz", *uint8_set(10, 2))
    code, err = run_main(argv, capsys)
    assert code == 2 and message in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_cli_refine_of_an_untrained_folder_is_one_line(capsys, tmp_path):
    from svhn.imageset import save_image_set
    save_image_set(tmp_path / "x.npz", *uint8_set(4))
    code, err = run_main(["refine", "--run", str(tmp_path), "--input", str(tmp_path / "x.npz"),
                          "--out", str(tmp_path / "y.npz")], capsys)
    assert code == 2 and "not a SimGAN run folder" in err and err.count("\n") == 1


def test_cli_train_then_refine(tmp_path, capsys):
    from svhn.imageset import load_image_set, save_image_set
    save_image_set(tmp_path / "real.npz", *uint8_set(12, 1))
    x, y = uint8_set(12, 2)
    save_image_set(tmp_path / "proc.npz", x, y)
    run = str(tmp_path / "run")
    flags = ["--width", "6", "--blocks", "1", "--d-width", "4", "--batch-size", "4", "--pretrain-r", "1",
             "--pretrain-d", "1", "--steps", "1", "--quiet"]
    code, _ = run_main(["train", "--real", str(tmp_path / "real.npz"), "--procedural", str(tmp_path / "proc.npz"),
                        "--out", run, *flags], capsys)
    assert code == 0
    code, _ = run_main(["refine", "--run", run, "--input", str(tmp_path / "proc.npz"),
                        "--out", str(tmp_path / "ref.npz"), "--quiet"], capsys)
    assert code == 0
    xr, yr = load_image_set(tmp_path / "ref.npz")
    assert np.array_equal(yr, y) and np.array_equal(xr, load_image_set(Path(run) / "refined.npz")[0])


def tiny_cli_flags(tmp_path):
    """Writes a tiny real and procedural image set into tmp_path; the `train` flags of a tiny run on them."""
    from svhn.imageset import save_image_set
    save_image_set(tmp_path / "real.npz", *uint8_set(12, 1))
    save_image_set(tmp_path / "proc.npz", *uint8_set(12, 2))
    return ["--width", "6", "--blocks", "1", "--d-width", "4", "--batch-size", "4", "--pretrain-r", "1",
            "--pretrain-d", "1", "--quiet", "--real", str(tmp_path / "real.npz"), "--procedural", str(tmp_path / "proc.npz")]


def forget_settings(run, *names):
    """Remove settings from RUN_DIR/config.json, as a run made before they existed would have it."""
    config = json.loads((Path(run) / "config.json").read_text())
    for name in names:
        del config[name]
    (Path(run) / "config.json").write_text(json.dumps(config))


def test_cli_d_standardize_is_saved_kept_on_resume_and_old_runs_load_without_it(tmp_path, capsys):
    flags = tiny_cli_flags(tmp_path)
    std, plain = str(tmp_path / "std"), str(tmp_path / "plain")
    assert run_main(["train", "--out", std, "--steps", "1", "--d-standardize", *flags], capsys)[0] == 0
    assert load_config(std).d_standardize is True
    assert build_simgan(load_config(std)).D.layers[0].per_channel is True
    assert run_main(["train", "--out", std, "--steps", "2", *flags], capsys)[0] == 0      # resumed: still on
    assert load_config(std).d_standardize is True
    assert run_main(["train", "--out", plain, "--steps", "1", *flags], capsys)[0] == 0
    code, err = run_main(["train", "--out", plain, "--steps", "2", "--d-standardize", *flags], capsys)
    assert code == 2 and "d_standardize" in err                                         # a trained run keeps it
    forget_settings(plain, "d_standardize")                                                # a run from before the option
    assert load_config(plain).d_standardize is False


def test_cli_d_conditional_reads_the_real_labels_and_is_saved(tmp_path, capsys):
    flags = ["--steps", "2", *tiny_cli_flags(tmp_path)]
    run = str(tmp_path / "cond")
    assert run_main(["train", "--out", run, "--d-conditional", *flags], capsys)[0] == 0
    assert load_config(run).d_conditional is True
    assert "buffer/labels" in np.load(Path(run) / "checkpoint.npz").files
    forget_settings(run, "d_conditional")                                                # a run from before the option
    assert load_config(run).d_conditional is False


def test_cli_flow_weight_adds_the_warp_and_is_saved(tmp_path, capsys):
    flags = ["--steps", "2", *tiny_cli_flags(tmp_path)]
    run = str(tmp_path / "warp")
    assert run_main(["train", "--out", run, "--flow-weight", "0.2", *flags], capsys)[0] == 0
    assert load_config(run).flow_weight == 0.2
    sg = build_simgan(load_config(run))
    assert sg.opt_F.lr == sg.opt_R.lr == load_config(run).lr_r                          # lr_flow 0: the refiner's rate
    fast = str(tmp_path / "fast")
    assert run_main(["train", "--out", fast, "--flow-weight", "0.2", "--lr-flow", "0.003", *flags], capsys)[0] == 0
    assert load_config(fast).lr_flow == 0.003 and build_simgan(load_config(fast)).opt_F.lr == 0.003
    code, err = run_main(["train", "--out", str(tmp_path / "bad"), "--flow-weight", "0.2", "--lr-flow", "1", *flags],
                         capsys)
    assert code == 2 and "--lr-flow" in err and not (tmp_path / "bad").exists()
    assert "F/0.W" in np.load(Path(run) / "checkpoint.npz").files
    code, err = run_main(["train", "--out", str(tmp_path / "bad"), "--flow-weight", "-1", *flags], capsys)
    assert code == 2 and "--flow-weight" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    forget_settings(run, "flow_weight", "lr_flow")                                      # a run from before the options
    assert load_config(run).flow_weight == 0 and load_config(run).lr_flow == 0


def test_cli_lambda_final_is_saved_checked_and_keeps_the_steps_of_its_schedule(tmp_path, capsys):
    flags = ["--steps", "2", *tiny_cli_flags(tmp_path)]
    run = str(tmp_path / "schedule")
    assert run_main(["train", "--out", run, "--lambda-reg", "10", "--lambda-final", "1", *flags], capsys)[0] == 0
    assert (load_config(run).lambda_reg, load_config(run).lambda_final) == (10.0, 1.0)
    assert [r["lambda_reg"] for r in simgan.read_log(Path(run) / "log.csv")][-2:] == [10.0, 1.0]
    code, err = run_main(["train", "--out", run, *flags[2:], "--steps", "3"], capsys)
    assert code == 2 and "schedule" in err and len(err.strip().splitlines()) == 1
    for bad, option in ((["--lambda-final", "-1"], "--lambda-final"), (["--lambda-reg", "0", "--lambda-final", "1"],
                                                                         "lambda_final")):
        code, err = run_main(["train", "--out", str(tmp_path / "bad"), *bad, *flags], capsys)
        assert code == 2 and option in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()
    forget_settings(run, "lambda_final")                                               # a run from before the option
    assert load_config(run).lambda_final == 0


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "gan.simgan", "train", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--lambda-reg" in out.stdout and "--kg" in out.stdout


@pytest.mark.slow
def test_compare_trains_both_classifiers_and_writes_a_report(tmp_path, monkeypatch):
    from classify import simgan_compare as simgan_eval
    real, _ = uint8_set(20, 1)
    proc, labels = uint8_set(40, 2)
    train_simgan(real, proc, tmp_path / "run", progress=False, log=lambda *a: None, figures=False, **TINY)
    small = {"test": uint8_set(12, 3), "train+test": uint8_set(20, 4)}
    monkeypatch.setattr(simgan_eval, "real_test_sets", lambda data_dir: small)
    report = simgan_eval.compare(tmp_path / "run", proc, labels, "unused", n=30, seeds=(0,), progress=False,
                                 log=lambda *a: None, epochs=1, min_steps=1, tta=False)
    assert [(r["seed"], r["set"]) for r in report["runs"]] == [(0, "procedural"), (0, "refined")]
    assert report["mean"]["refined"]["repeats"] == 1 and 0 <= report["mean"]["procedural"]["test"] <= 1
    assert json.loads((tmp_path / "run" / "compare.json").read_text())["n"] == 30
    with pytest.raises(ValueError, match="n must be"):
        simgan_eval.compare(tmp_path / "run", proc, labels, "unused", n=41)
    # a later call for one set adds to the report instead of replacing it
    again = simgan_eval.compare(tmp_path / "run", proc, labels, "unused", n=30, seeds=(1,), sets=("refined",),
                                progress=False, log=lambda *a: None, epochs=1, min_steps=1, tta=False)
    assert [(r["seed"], r["set"]) for r in again["runs"]] == [(0, "procedural"), (0, "refined"), (1, "refined")]
    assert again["mean"]["refined"]["repeats"] == 2 and again["mean"]["procedural"]["repeats"] == 1


def test_image_statistics_tell_flat_from_noisy_images():
    from classify.simgan_compare import image_statistics
    flat = np.full((4, 32, 32, 3), 100, np.uint8)
    noisy, _ = uint8_set(4)
    a, b = image_statistics(flat), image_statistics(noisy)
    assert a == {"brightness": 100.0, "contrast": 0.0, "saturation": 0.0, "detail": 0.0}
    assert b["contrast"] > 30 and b["detail"] > 30 and b["saturation"] > 50


@pytest.mark.cupy
@pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine")
def test_cupy_training_matches_numpy(tmp_path):
    """The same tiny run on both backends: the same weights, history buffer and refined images."""
    real, _ = uint8_set(20, 1)
    proc, _ = uint8_set(30, 2)
    out = {}
    for name in ("numpy", "cupy"):
        backend.set_backend(name)
        train_simgan(real, proc, tmp_path / name, progress=False, log=lambda *a: None, figures=False, **TINY)
        out[name] = (dict(np.load(tmp_path / name / "checkpoint.npz")), refine(tmp_path / name, proc))
    backend.set_backend("numpy")
    (a, ra), (b, rb) = out["numpy"], out["cupy"]
    assert a.keys() == b.keys() and int(a["buffer/count"]) == int(b["buffer/count"])
    for k in a:
        if k.startswith(("R/", "D/")):
            # Adam divides by sqrt(v): a rounding difference in a near-zero gradient can become a
            # step of ±lr (1e-3 here), so weights agree to a couple of such steps, not to float32 rounding
            np.testing.assert_allclose(a[k], b[k], rtol=1e-2, atol=2e-3, err_msg=k)
    assert np.abs(ra.astype(int) - rb).max() <= 2
