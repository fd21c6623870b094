"""Ten DCGANs trained as one (`gan train --together`): the grouped layers (nn/layers/grouped.py) and the
grouped DCGAN (gan/dcgan/grouped.py).

What must hold: each grouped layer computes, per group, what the ungrouped layer computes on that group's
batch (and its gradients pass a float64 check); a grouped training run writes the same files as training
the digits one by one and, in float64, the same numbers (to 1e-10); runs can be resumed either way.
In float32 the two orders of summation differ in the last bits, and a GAN's training amplifies such
differences over many steps, so float32 runs are compared over their first iterations only.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import gan.dcgan.grouped as grouped
import gan.dcgan.train as train
from gan import runs
from gan.dcgan.augment import DiffAugment
from gan.dcgan.grouped import GroupedDiffAugment, split_state, stack_states, train_together
from gan.dcgan.train import Config, checkpoint_path, digit_dir, log_path, read_log, train_all
from nn import gradcheck, layers
from nn.layers.grouped import GroupedBatchNorm2D, GroupedConv2D, GroupedDense, group_layers

G, N = 3, 4
LAYERS = {
    "dense": (lambda: layers.Dense(6, 5), (N, 6)),
    "conv": (lambda: layers.Conv2D(3, 4, 3, padding=1), (N, 3, 6, 6)),
    "conv_stride2_nobias": (lambda: layers.Conv2D(2, 3, 3, stride=2, padding=1, bias=False), (N, 2, 7, 7)),
    "batchnorm": (lambda: layers.BatchNorm2D(4), (N, 4, 3, 3)),
    "conv_transpose": (lambda: layers.ConvTranspose2D(3, 2, 4, stride=2, padding=1), (N, 3, 3, 3)),
    "conv_transpose_outpad_nobias": (lambda: layers.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1,
                                                                    bias=False), (N, 2, 3, 4)),
}


def random_layers(make, rng):
    out = [make() for _ in range(G)]
    for layer in out:
        for k, v in layer.params.items():
            layer.params[k] = rng.standard_normal(v.shape).astype(np.float32)
    return out


@pytest.mark.parametrize("name", LAYERS)
def test_grouped_layer_equals_its_ungrouped_layers(name):
    make, shape = LAYERS[name]
    rng = np.random.default_rng(1)
    singles = random_layers(make, rng)
    group = group_layers(singles)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(G)]
    ys = [layer.forward(x) for layer, x in zip(singles, xs)]
    np.testing.assert_allclose(group.forward(np.concatenate(xs)), np.concatenate(ys), rtol=1e-5, atol=1e-5)
    dys = [rng.standard_normal(y.shape).astype(np.float32) for y in ys]
    dxs = [layer.backward(dy) for layer, dy in zip(singles, dys)]
    np.testing.assert_allclose(group.backward(np.concatenate(dys)), np.concatenate(dxs), rtol=1e-5, atol=1e-5)
    assert set(group.grads) == set(group.params) == set(singles[0].params)
    for k in group.grads:
        np.testing.assert_allclose(group.grads[k], np.stack([layer.grads[k] for layer in singles]), rtol=1e-5, atol=1e-5)
    for k in group.buffers:                                   # BatchNorm's running statistics, per group
        np.testing.assert_allclose(group.buffers[k], np.stack([layer.buffers[k] for layer in singles]), rtol=1e-6)
    # evaluation mode (BatchNorm: the running statistics) agrees too
    np.testing.assert_allclose(group.forward(np.concatenate(xs), training=False),
                               np.concatenate([layer.forward(x, training=False) for layer, x in zip(singles, xs)]),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LAYERS)
def test_grouped_layer_gradients_float64(name):
    make, shape = LAYERS[name]
    rng = np.random.default_rng(2)
    group = group_layers(random_layers(make, rng))
    assert gradcheck(group, rng.standard_normal((G * shape[0],) + shape[1:])) < 1e-6


def test_group_layers_rejects_what_it_cannot_group():
    with pytest.raises(ValueError, match="no grouped form"):
        group_layers([layers.BatchNorm1D(3) for _ in range(2)])
    with pytest.raises(ValueError, match="different kinds"):
        group_layers([layers.Conv2D(2, 2, 3), layers.Conv2D(2, 2, 3, method="winograd"), layers.Dense(2, 2)])
    with pytest.raises(ValueError, match="differs in shape"):
        group_layers([layers.Dense(3, 4), layers.Dense(3, 5)])
    relu = group_layers([layers.ReLU(), layers.ReLU()])          # parameter-free layers are shared
    assert isinstance(relu, layers.ReLU)
    with pytest.raises(ValueError, match="multiple of 3"):
        GroupedDense(3, 2, 2).forward(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="multiple of 2"):
        GroupedConv2D(2, 1, 1, 3, padding=1).forward(np.zeros((3, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="expected input"):
        GroupedBatchNorm2D(2, 3).forward(np.zeros((4, 2, 4, 4), np.float32))


def test_states_stack_and_split():
    a = {"iteration": np.array(5), "W": np.ones((2, 3)), "b": np.zeros(3)}
    b = {"iteration": np.array(5), "W": 2 * np.ones((2, 3)), "b": np.ones(3)}
    s = stack_states([a, b])
    assert s["W"].shape == (2, 2, 3) and int(s["iteration"]) == 5
    for g, original in enumerate((a, b)):
        back = split_state(s, g)
        assert back.keys() == original.keys() and all(np.array_equal(back[k], original[k]) for k in back)
    with pytest.raises(ValueError, match="same iteration"):
        stack_states([a, dict(b, iteration=np.array(6))])


def test_grouped_augmentation_draws_each_groups_own_transforms():
    x = np.random.default_rng(0).standard_normal((2 * 5, 3, 32, 32)).astype(np.float32)
    seeds = (11, 12)
    together = GroupedDiffAugment(2).forward(x, [np.random.default_rng(s) for s in seeds])
    alone = [DiffAugment().forward(x[5 * g:5 * (g + 1)], np.random.default_rng(s)) for g, s in enumerate(seeds)]
    np.testing.assert_array_equal(together, np.concatenate(alone))


# ---------------------------------------------------------------------------------- training runs

DIGITS = (1, 4, 7)
SETTINGS = dict(width=4, batch_size=8, checkpoint_every=3, seed=3, loss="bce", stuck_iters=0)


def fixture_images():
    rng = np.random.default_rng(0)
    labels = np.repeat(DIGITS, [20, 11, 30])                 # unequal numbers of images per digit
    return rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), labels


@pytest.fixture
def float64_gans(monkeypatch):
    """Every DCGAN built in float64, so that two orders of summation agree to ~1e-13."""
    build = train.build_gan

    def build64(config, digit):
        gan = build(config, digit)
        for net in (gan.G, gan.D, gan.G_ema):
            net.astype(np.float64)
        return gan
    monkeypatch.setattr(train, "build_gan", build64)
    monkeypatch.setattr(grouped, "build_gan", build64)


def checkpoints_close(run_a, run_b, tol):
    for d in DIGITS:
        a, _ = runs.load_checkpoint(checkpoint_path(run_a, d))
        b, _ = runs.load_checkpoint(checkpoint_path(run_b, d))
        assert a.keys() == b.keys()
        assert a["rng_state"] == b["rng_state"]                  # the same random numbers were drawn
        for k in a:
            if k != "rng_state":
                np.testing.assert_allclose(a[k], b[k], rtol=0, atol=tol, err_msg=f"digit {d}: {k}")


@pytest.mark.slow
def test_together_equals_one_by_one_and_resumes_either_way(tmp_path, float64_gans):
    x, y = fixture_images()
    train_all(tmp_path / "one", Config(iters=8, **SETTINGS), DIGITS, x, y, progress=False)
    train_all(tmp_path / "together", Config(iters=8, **SETTINGS), DIGITS, x, y, progress=False, trainer=train_together)
    checkpoints_close(tmp_path / "one", tmp_path / "together", 1e-10)
    for d in DIGITS:
        files = sorted(p.name for p in digit_dir(tmp_path / "one", d).iterdir())
        assert files == sorted(p.name for p in digit_dir(tmp_path / "together", d).iterdir())
        assert "samples_0001.png" in files and "samples_final.png" in files
        one, together = read_log(log_path(tmp_path / "one", d)), read_log(log_path(tmp_path / "together", d))
        assert [r["iteration"] for r in one] == [r["iteration"] for r in together] == list(range(1, 9))
        for a, b in zip(one, together):
            for k in ("loss_D", "loss_G", "acc_real", "acc_fake", "X_real", "X_fake"):
                assert a[k] == pytest.approx(b[k], abs=1e-5)         # the log keeps 6 digits
        status = json.loads((digit_dir(tmp_path / "together", d) / "status.json").read_text())
        assert status == {"state": "done", "iteration": 8, "message": ""}
    # half together, then on one by one; and the other way round
    train_all(tmp_path / "mixed", Config(iters=4, **SETTINGS), DIGITS, x, y, progress=False, trainer=train_together)
    train_all(tmp_path / "mixed", Config(iters=8, **SETTINGS), DIGITS, x, y, progress=False, explicit=("iters",))
    checkpoints_close(tmp_path / "one", tmp_path / "mixed", 1e-10)
    train_all(tmp_path / "mixed2", Config(iters=4, **SETTINGS), DIGITS, x, y, progress=False)
    train_all(tmp_path / "mixed2", Config(iters=8, **SETTINGS), DIGITS, x, y, progress=False, explicit=("iters",),
              trainer=train_together)
    checkpoints_close(tmp_path / "one", tmp_path / "mixed2", 1e-10)


@pytest.mark.slow
def test_together_in_float32_agrees_over_the_first_iterations(tmp_path):
    x, y = fixture_images()
    train_all(tmp_path / "one", Config(iters=3, **SETTINGS), DIGITS, x, y, progress=False)
    train_all(tmp_path / "together", Config(iters=3, **SETTINGS), DIGITS, x, y, progress=False, trainer=train_together)
    for d in DIGITS:
        for a, b in zip(read_log(log_path(tmp_path / "one", d)), read_log(log_path(tmp_path / "together", d))):
            for k in ("loss_D", "loss_G", "X_real", "X_fake"):
                assert a[k] == pytest.approx(b[k], abs=1e-4)


def test_digits_at_different_iterations_train_one_by_one(tmp_path):
    x, y = fixture_images()
    train_all(tmp_path / "run", Config(iters=2, **SETTINGS), (1,), x, y, progress=False)
    lines = []
    results = train_all(tmp_path / "run", Config(iters=3, **SETTINGS), DIGITS, x, y, progress=False,
                        explicit=("iters",), trainer=train_together, log=lines.append)
    assert lines == ["digits 1,4,7 stand at different iterations: trained one by one"]
    assert all(r == {"state": "done", "iteration": 3, "message": ""} for r in results.values())


@pytest.mark.slow
def test_together_with_transposed_convolutions(tmp_path, float64_gans):
    x, y = fixture_images()
    config = Config(iters=3, upsample="deconv", **SETTINGS)
    train_all(tmp_path / "one", config, DIGITS, x, y, progress=False)
    train_all(tmp_path / "together", config, DIGITS, x, y, progress=False, trainer=train_together)
    checkpoints_close(tmp_path / "one", tmp_path / "together", 1e-10)
