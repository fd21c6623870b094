"""run_all.py and the `experiment` package: the smoke preset end to end on a tiny generated SVHN
fixture (no GPU, no internet, no real SVHN files), resumability, and the settings and runner units.

The end-to-end runs share one output folder, in this order (module fixture `runs`):
  a. the procedural stage is interrupted half-way  -> nothing of it is kept, no report
  b. digit 3's DCGAN is interrupted after its first iteration -> its checkpoint is kept (hidden name)
  c. a full run                                     -> redoes (a), resumes (b), makes every output
  d. the same run again                             -> skips every stage
  e. one setting changed (dcgan_per_digit)          -> reruns only what depends on it
  f. the same as (e) on a copy of the data folder, its files touched -> skips every stage (stages are
     keyed on the data's content, not its path or modification time)
"""
import dataclasses
import json
import os
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io

from experiment import layout, pipeline
from experiment.pipeline import classifier_name, epochs_for, mixing_points, run_experiment, simgan_settings
from experiment.settings import PRESETS, apply_overrides, parse_value, preset, scaled
from experiment.stages import Runner, Stage, content_hash
from common.cli import run_cli
from gan import read_log
from gan.simgan import SimGANConfig

TRAIN_PER_DIGIT, TEST_PER_DIGIT = 8, 3


def write_fixture(folder, seed=0):
    """train_32x32.mat and test_32x32.mat in SVHN's layout (X (32, 32, 3, N) uint8, y (N, 1) with 10 for
    digit 0): random images, every digit TRAIN_PER_DIGIT / TEST_PER_DIGIT times."""
    rng = np.random.default_rng(seed)
    for split, per in (("train", TRAIN_PER_DIGIT), ("test", TEST_PER_DIGIT)):
        y = np.repeat(np.arange(10), per)
        x = rng.integers(0, 256, (32, 32, 3, len(y)), dtype=np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.where(y == 0, 10, y).reshape(-1, 1)
                                                         .astype(np.uint8)})
    return folder


def tiny_loss_plot(path, *args, **kwargs):
    """Stands in for gan.dcgan.train.plot_losses in these runs: a real (1x1) PNG, without matplotlib, which
    costs most of the smoke DCGAN stage's time (gan draws them; this file tests the pipeline)."""
    import io

    from PIL import Image

    from common.files import atomic_write_bytes
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    PLOT_TITLES[Path(path).name] = args[1] if len(args) > 1 else kwargs.get("title")


PLOT_TITLES = {}
"""The title each stand-in plot was given, by file name (the report's DCGAN loss figure names the loss)."""


def smoke(out, data_dir, *overrides, **kwargs):
    lines = []
    runner = run_experiment(apply_overrides(preset("smoke"), list(overrides)), out=out, data_dir=str(data_dir),
                            preset="smoke", progress=False, log=lines.append, **kwargs)
    return runner, lines


# ---------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_all")
    (root / "svhn").mkdir()
    data_dir = write_fixture(root / "svhn")
    out = root / "out"
    seen = {"out": out}
    import gan.dcgan.train
    import experiment.report
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SVHN_CACHE_DIR", str(root / "cache"))
        mp.setattr(gan.dcgan.train, "plot_losses", tiny_loss_plot)
        mp.setattr(experiment.report, "plot_losses", tiny_loss_plot)

        # a. the procedural stage writes half its output, then is interrupted
        def half_procedural(ctx, folder, upstream):
            (folder / "images.npz").write_bytes(b"half an image set")
            raise KeyboardInterrupt

        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(pipeline, "run_procedural", half_procedural)
            with pytest.raises(KeyboardInterrupt):
                smoke(out, data_dir)
        seen["a_stages"] = sorted(p.name for p in (out / "stages").iterdir())
        seen["a_top"] = sorted(p.name for p in out.iterdir())

        # b. digit 3's DCGAN is interrupted after one iteration (checkpointed)
        real_train_digit = pipeline.train_digit

        def interrupt_digit_3(images, digit, run_dir, config, *args, **kwargs):
            if digit != 3:
                return real_train_digit(images, digit, run_dir, config, *args, **kwargs)
            real_train_digit(images, digit, run_dir, dataclasses.replace(config, iters=1), *args, **kwargs)
            raise KeyboardInterrupt

        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(pipeline, "train_digit", interrupt_digit_3)
            with pytest.raises(KeyboardInterrupt):
                smoke(out, data_dir)
        seen["b_stages"] = sorted(p.name for p in (out / "stages").iterdir() if not p.name.startswith("."))
        seen["b_partial"] = sorted(p.parent.name for p in (out / "stages").glob(
            ".dcgan_digit_3.partial-*/run/digit_*/checkpoint.npz"))

        # c. full, d. again, e. one setting changed
        runner, seen["c_log"] = smoke(out, data_dir)
        seen["c"] = dict(runner.actions)
        seen["c_manifests"] = runner.manifests
        seen["c_results"] = json.loads((out / "results.json").read_text())
        seen["c_table"] = (out / "table.md").read_text()
        runner, seen["d_log"] = smoke(out, data_dir)
        seen["d"] = dict(runner.actions)
        runner, seen["e_log"] = smoke(out, data_dir, "dcgan_per_digit=5")
        seen["e"] = dict(runner.actions)
        seen["e_manifests"] = runner.manifests
        seen["e_results"] = json.loads((out / "results.json").read_text())

        # f. the data folder copied elsewhere, its files touched: identical bytes, so nothing is redone
        import shutil
        copy = shutil.copytree(data_dir, root / "elsewhere" / "svhn_copy")
        for f in copy.iterdir():
            os.utime(f, (f.stat().st_atime + 100, f.stat().st_mtime + 100))
        runner, seen["f_log"] = smoke(out, copy, "dcgan_per_digit=5")
        seen["f"] = dict(runner.actions)

        # g. two classifier seeds per table row and two sets of ten DCGANs: only the new runs train
        runner, seen["g_log"] = smoke(out, data_dir, "dcgan_per_digit=5", "clf_seeds=2", "dcgan_seeds=2")
        seen["g"] = dict(runner.actions)
        seen["g_manifests"] = runner.manifests
        seen["g_results"] = json.loads((out / "results.json").read_text())
        seen["g_table"] = (out / "table.md").read_text()
    return seen


@pytest.mark.slow
def test_interrupted_stage_leaves_no_partial_output(runs):
    assert runs["a_stages"] == ["data"]                       # no procedural folder, final or partial
    assert runs["a_top"] == ["stages"]                        # no table.md, results.json, figures
    assert "procedural" in runs["b_stages"]                   # the next run (b) redid it


@pytest.mark.slow
def test_interrupted_resumable_stage_keeps_checkpoints_and_resumes(runs):
    assert "dcgan_digit_3" not in runs["b_stages"]            # nothing under the final name ...
    assert runs["b_partial"] == ["digit_3"]                    # ... but its checkpoint is kept
    assert {"dcgan_digit_5", "dcgan_digit_0", "dcgan_digit_2"} <= set(runs["b_stages"])   # finished before it
    assert runs["c"]["dcgan_digit_3"] == "ran" and runs["c_manifests"]["dcgan_digit_3"]["resumed"] is True
    assert runs["c"]["dcgan_digit_2"] == "skipped"
    assert runs["c_manifests"]["dcgan_digit_3"]["summary"]["status"]["iteration"] == PRESETS["smoke"].dcgan_iters
    assert not list((runs["out"] / "stages").glob(".*"))      # no partial folders after the full run


@pytest.mark.slow
def test_smoke_outputs_exist_and_numbers_are_in_range(runs):
    out, r = runs["out"], runs["c_results"]
    for name in ("table.md", "results.json"):
        assert (out / name).is_file()
    figures = {"fig6_procedural", "fig7_dcgan_digit5", "fig8_dcgan_digit5_iterations", "dcgan_samples",
               "simgan_pairs", "confusion_matrices", "losses_dcgan", "losses_simgan", "losses_classifiers",
               "accuracy_table", "mixing_curve"} | {f"dcgan_digit_{k}" for k in range(10)}
    for name in figures:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", name
    assert [t["row"] for t in r["table"]] == ["real", "procedural", "dcgan", "simgan"]
    assert [t["paper_accuracy"] for t in r["table"]] == [0.86, 0.63, 0.77, None]
    for t in r["table"]:
        assert 0 <= t["test_accuracy"] <= 1
        assert np.asarray(t["confusion_matrix"]).sum() == 10 * TEST_PER_DIGIT
    smoke_settings = PRESETS["smoke"]
    assert [t["n_images"] for t in r["table"]] == [10 * TRAIN_PER_DIGIT] + [smoke_settings.procedural_n] + \
        [10 * smoke_settings.dcgan_per_digit, smoke_settings.procedural_n]
    # mixing curve: 0, 10 and all (80) real images, with none / procedural / dcgan; never the empty point
    points = {(p["real_images"], p["synthetic_set"]) for p in r["mixing_curve"]}
    assert points == {(k, s) for k in (0, 10, 80) for s in (None, "procedural", "dcgan")} - {(0, None)}
    assert all(0 <= p["test_accuracy"] <= 1 for p in r["mixing_curve"])
    for fid in r["label_fidelity"].values():
        assert 0 <= fid["mean"] <= 1
    assert r["backend"] == "numpy" and r["preset"] == "smoke" and r["versions"]["numpy"] == np.__version__
    assert r["data"]["n_train"] == 10 * TRAIN_PER_DIGIT and r["data"]["n_test"] == 10 * TEST_PER_DIGIT
    assert set(r["stages"]) | {"report"} == set(runs["c"]) and r["run_time_s"] > 0
    table = runs["c_table"]
    for row in ("real SVHN", "procedural", "DCGAN", "SimGAN-refined procedural", "86 %", "63 %", "77 %", "—",
                "smoke", "numpy", "| 1 GAN × 1 classifier seed |", "| 1 classifier seed |"):
        assert row in table
    assert len(runs["c_log"]) == len(runs["c"]) + 1           # one summary line per stage, and a last one
    assert PLOT_TITLES["losses_dcgan.png"] == "DCGAN per digit, loss paper"   # the resolved loss, not "None"


@pytest.mark.slow
def test_dcgan_set_samples_digit_5_at_the_others_iteration_count(runs):
    # digit 5 trains on to dcgan_iters_digit5 for Figures 7-8, but the set's images of 5 come from
    # a copy of its generator at dcgan_iters, like every other digit's
    smoke_settings = PRESETS["smoke"]
    assert smoke_settings.dcgan_iters_digit5 > smoke_settings.dcgan_iters
    d5 = runs["out"] / "stages" / "dcgan_digit_5"
    full = json.loads((d5 / "run" / "digit_5" / "status.json").read_text())
    snap = json.loads((d5 / "run_at_dcgan_iters" / "digit_5" / "status.json").read_text())
    assert full["iteration"] == smoke_settings.dcgan_iters_digit5
    assert snap["iteration"] == smoke_settings.dcgan_iters and snap["state"] == "done"
    assert pipeline.dcgan_set_run(pipeline.Context(smoke_settings, runs["out"]), 5) == d5 / "run_at_dcgan_iters"
    assert pipeline.dcgan_set_run(pipeline.Context(smoke_settings, runs["out"]), 4) == \
        runs["out"] / "stages" / "dcgan_digit_4" / "run"
    assert not (d5 / "run_at_dcgan_iters.tmp").exists()


@pytest.mark.slow
def test_ten_dcgans_together_in_one_stage(runs, tmp_path):
    """dcgan_together: one grouped stage in place of the ten; interrupted while digit 5 trains on alone
    (Figures 7-8) and resumed without training the ten again; the same iterations, snapshot, set and
    report as one by one, and the same losses within float32 rounding."""
    import gan.dcgan.grouped
    import gan.dcgan.train
    import experiment.report
    data_dir, out, s = runs["out"].parent / "svhn", tmp_path / "out", PRESETS["smoke"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SVHN_CACHE_DIR", str(tmp_path / "cache"))
        for module in (gan.dcgan.train, gan.dcgan.grouped, experiment.report):
            mp.setattr(module, "plot_losses", tiny_loss_plot)

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        def must_not_run(*args, **kwargs):
            raise AssertionError("the ten DCGANs trained again on resume")

        with pytest.MonkeyPatch.context() as inner:               # interrupted after the ten, in digit 5's run
            inner.setattr(pipeline, "train_digit", interrupt)
            with pytest.raises(KeyboardInterrupt):
                smoke(out, data_dir, "dcgan_together=yes")
        partial_snapshot = list((out / "stages").glob(".dcgan_digits.partial-*/run_at_dcgan_iters/digit_5"))
        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(pipeline, "train_together", must_not_run)
            runner, _ = smoke(out, data_dir, "dcgan_together=yes")
    assert len(partial_snapshot) == 1
    actions, manifest = dict(runner.actions), runner.manifests["dcgan_digits"]
    assert actions["dcgan_digits"] == "ran" and manifest["resumed"] is True
    assert not any(name.startswith("dcgan_digit_") for name in actions)
    stage = out / "stages" / "dcgan_digits"
    status = {d: json.loads((stage / "run" / f"digit_{d}" / "status.json").read_text()) for d in range(10)}
    assert {d: st["iteration"] for d, st in status.items()} == {d: s.dcgan_iters_digit5 if d == 5 else s.dcgan_iters
                                                                  for d in range(10)}
    assert all(st["state"] == "done" for st in status.values())
    snap = json.loads((stage / "run_at_dcgan_iters" / "digit_5" / "status.json").read_text())
    assert snap["iteration"] == s.dcgan_iters
    ctx = pipeline.Context(apply_overrides(s, ["dcgan_together=yes"]), out)
    assert pipeline.dcgan_set_run(ctx, 5) == stage / "run_at_dcgan_iters"
    assert pipeline.dcgan_set_run(ctx, 4) == stage / "run"
    results = json.loads((out / "results.json").read_text())
    assert results["dcgan"]["iterations"] == {str(d): s.dcgan_iters_digit5 if d == 5 else s.dcgan_iters
                                              for d in range(10)}
    assert results["dcgan"]["stopped"] == {} and (out / "figures" / "fig7_dcgan_digit5.png").is_file()
    assert results["table"][2]["n_images"] == 10 * s.dcgan_per_digit
    one_by_one = runs["out"] / "stages"
    for d in (0, 3, 9):
        for a, b in zip(read_log(one_by_one / f"dcgan_digit_{d}" / "run" / f"digit_{d}" / "log.csv"),
                        read_log(stage / "run" / f"digit_{d}" / "log.csv"), strict=True):
            for k in ("loss_D", "loss_G", "X_real", "X_fake"):
                assert a[k] == pytest.approx(b[k], abs=1e-4)


def test_dcgan_together_defaults_to_the_gpu():
    s = PRESETS["smoke"]
    assert s.dcgan_together is None
    assert layout.dcgan_together(pipeline.Context(s, Path("o"), backend="cupy"))
    assert not layout.dcgan_together(pipeline.Context(s, Path("o"), backend="numpy"))
    off = apply_overrides(s, ["dcgan_together=no"])
    assert not layout.dcgan_together(pipeline.Context(off, Path("o"), backend="cupy"))
    assert layout.dcgan_stage_of(pipeline.Context(s, Path("o"), backend="cupy"), 3, 1) == "dcgan_digits-g1"
    assert layout.dcgan_stage_of(pipeline.Context(s, Path("o")), 3, 1) == "dcgan_digit_3-g1"


def test_dcgan_stage_keys_leave_out_the_conditional_setting_the_experiment_never_uses(tmp_path):
    """Results folders made before gan's Config had `conditional` resume their DCGAN stages: the key holds the
    very settings it held then."""
    before = {"iters", "loss", "upsample", "width", "batch_size", "lr", "lr_d", "beta1", "label_smoothing",
              "d_every", "augment", "ema_decay", "seed", "checkpoint_every", "stuck_iters", "data_dir"}
    for backend_name in ("numpy", "cupy"):
        ctx = pipeline.Context(PRESETS["smoke"], tmp_path, backend=backend_name)
        keyed = [st.settings["config"] for st in pipeline.plan(ctx, n_train=80) if st.name.startswith("dcgan_digit")]
        assert keyed and all(set(config) == before for config in keyed)


def test_simgan_stage_key_leaves_out_the_standardising_discriminator_while_off(tmp_path):
    """Results folders made before gan.simgan had `d_standardize` resume their refiner: its stage key holds the
    very settings it held then; turned on, the key says so."""
    ctx = pipeline.Context(PRESETS["smoke"], tmp_path, backend="numpy")
    key = next(st.settings for st in pipeline.plan(ctx, n_train=80) if st.name == "simgan")
    assert "lambda_reg" in key
    assert not {"d_standardize", "d_conditional", "flow_weight", "lr_flow", "lambda_final"} & set(key)
    on = pipeline.Context(apply_overrides(PRESETS["smoke"], ["simgan_d_standardize=yes"]), tmp_path, backend="numpy")
    assert next(st.settings for st in pipeline.plan(on, n_train=80) if st.name == "simgan")["d_standardize"] is True


@pytest.mark.slow
def test_second_run_skips_every_stage(runs):
    assert set(runs["d"].values()) == {"skipped"}
    assert all("skipped" in line for line in runs["d_log"][:-1])


@pytest.mark.slow
def test_copied_or_touched_data_with_the_same_bytes_redoes_nothing(runs):
    assert set(runs["f"].values()) == {"skipped"} and len(runs["f"]) == len(runs["e"])


@pytest.mark.slow
def test_changed_setting_reruns_only_what_depends_on_it(runs):
    ran = {name for name, action in runs["e"].items() if action == "ran"}
    assert ran == {"dcgan_set", "classify_real-0+dcgan", "classify_real-10+dcgan", "classify_real-all+dcgan",
                   "report"}
    assert runs["e_results"]["table"][2]["n_images"] == 50
    # an unaffected classifier keeps its manifest (same run, same accuracy)
    name = "classify_real-0+procedural"
    assert runs["e_manifests"][name]["id"] == runs["c_manifests"][name]["id"]


@pytest.mark.slow
def test_table_rows_over_classifier_and_gan_seeds(runs):
    ran = {name for name, action in runs["g"].items() if action == "ran"}
    # the second set of ten DCGANs, its image set, a second classifier seed for every row, and the
    # DCGAN row's two classifiers on the second set; the runs of (e) are reused as the first seed
    assert ran == ({f"dcgan_digit_{d}-g1" for d in range(10)} | {"dcgan_set-g1", "report"}
                   | {"classify_real-all-c1", "classify_real-0+procedural-c1", "classify_real-0+dcgan-c1",
                      "classify_real-0+simgan-c1", "classify_real-0+dcgan-g1", "classify_real-0+dcgan-g1-c1"})
    m = runs["g_manifests"]
    assert m["dcgan_digit_3-g1"]["settings"]["config"]["seed"] == m["dcgan_digit_3"]["settings"]["config"]["seed"] + 1
    assert m["classify_real-all-c1"]["settings"]["seed"] == m["classify_real-all"]["settings"]["seed"] + 1
    # digit 5 of the second set trains like the others (only the first set's makes Figures 7-8)
    assert m["dcgan_digit_5-g1"]["summary"]["iterations"] == PRESETS["smoke"].dcgan_iters
    table = {t["row"]: t for t in runs["g_results"]["table"]}
    assert [len(t["stages"]) for t in table.values()] == [2, 2, 4, 2]
    assert table["dcgan"]["gan_seeds"] == 2 and table["real"]["gan_seeds"] is None
    for t in table.values():
        accs = [runs["g_manifests"][name]["summary"]["test_accuracy"] for name in t["stages"]]
        assert t["test_accuracies"] == accs
        assert t["test_accuracy"] == pytest.approx(np.mean(accs))
        assert t["test_accuracy_se"] == pytest.approx(np.std(accs, ddof=1) / np.sqrt(len(accs)))
        assert np.asarray(t["confusion_matrix"]).sum() == len(accs) * 10 * TEST_PER_DIGIT
    # the two DCGAN sets differ (another GAN seed), and the table says how many runs stand behind each row
    first = np.load(runs["out"] / "stages" / "dcgan_set" / "images.npz")["x"]
    second = np.load(runs["out"] / "stages" / "dcgan_set-g1" / "images.npz")["x"]
    assert first.shape == second.shape and not np.array_equal(first, second)
    assert "| 2 GAN × 2 classifier seeds |" in runs["g_table"] and "| 2 classifier seeds |" in runs["g_table"]
    assert " ± " in runs["g_table"]


# ---------------------------------------------------------------------------------- the runner

def _toy(name, value, deps=(), calls=None, content=True):
    """A stage writing value.txt; with `content`, its id comes from its output."""
    def run(folder, upstream):
        calls.append(name)
        (folder / "value.txt").write_text(str(value))
        return {"content": str(value)} if content else {}
    return Stage(name, run, {"value": value}, tuple(deps))


def test_runner_skips_downstream_when_a_rerun_makes_the_same_outputs(tmp_path):
    calls = []
    for extra in ("x", "y"):
        runner = Runner(tmp_path, log=lambda line: None)
        a = _toy("a", 1, calls=calls)
        a.settings["unrelated"] = extra                       # changes a's key, not its output
        runner.run(a)
        runner.run(_toy("b", 2, ["a"], calls))
    assert calls == ["a", "b", "a"]                           # b was skipped: a's content did not change


def test_runner_redo_propagates_and_a_deleted_output_reruns(tmp_path):
    calls = []
    runner = Runner(tmp_path, log=lambda line: None)
    runner.run(_toy("a", 1, calls=calls, content=False))
    runner.run(_toy("b", 2, ["a"], calls))
    runner = Runner(tmp_path, log=lambda line: None, force={"a"})
    runner.run(_toy("a", 1, calls=calls, content=False))
    runner.run(_toy("b", 2, ["a"], calls))
    assert calls == ["a", "b", "a", "b"]                      # a new run of a has a new id: b follows
    (tmp_path / "b" / "value.txt").unlink()
    runner = Runner(tmp_path, log=lambda line: None)
    runner.run(_toy("a", 1, calls=calls, content=False))
    runner.run(_toy("b", 2, ["a"], calls))
    assert calls[4:] == ["b"]                                 # b's output was missing: only b reruns


def toy_stage_run(name, value, folder, upstream):
    """A picklable toy stage (for worker processes): writes its value and the process that ran it."""
    if value == "fail":
        (folder / "half.txt").write_text("half")
        raise ValueError(f"{name} failed half-way")
    (folder / "value.txt").write_text(f"{value} {sum(int(m['summary']['value']) for m in upstream.values())}")
    return {"value": value, "pid": os.getpid()}


def test_runner_runs_independent_stages_in_worker_processes(tmp_path):
    def stages(d_value=4):
        spec = [("a", 1, ()), ("b", 2, ("a",)), ("c", 3, ("a",)), ("d", d_value, ("b", "c"))]
        return [Stage(n, partial(toy_stage_run, n, v), {"v": v}, deps) for n, v, deps in spec]

    runner = Runner(tmp_path, log=lambda line: None)
    runner.run_many(stages(), jobs=2)
    assert runner.actions == {"a": "ran", "b": "ran", "c": "ran", "d": "ran"}
    assert (tmp_path / "d" / "value.txt").read_text() == "4 5"                  # read b's and c's outputs
    assert all(m["summary"]["pid"] != os.getpid() for m in runner.manifests.values())
    runner = Runner(tmp_path, log=lambda line: None)
    with pytest.raises(ValueError, match="d failed half-way"):
        runner.run_many(stages("fail"), jobs=2)
    assert set(runner.actions.values()) == {"skipped"}
    assert (tmp_path / "d" / "value.txt").read_text() == "4 5"                  # the old output stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "d"]   # no partial folder left


def test_runner_failure_keeps_the_old_output(tmp_path):
    runner = Runner(tmp_path, log=lambda line: None)
    runner.run(_toy("a", 1, calls=[]))

    def broken(folder, upstream):
        (folder / "value.txt").write_text("half")
        raise RuntimeError("failed half-way")

    with pytest.raises(RuntimeError):
        Runner(tmp_path, log=lambda line: None).run(Stage("a", broken, {"value": 2}))
    assert (tmp_path / "a" / "value.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_content_hash_depends_on_values_dtype_and_shape():
    a = np.arange(6, dtype=np.uint8)
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(a.reshape(2, 3))
    assert content_hash(a) != content_hash(a.astype(np.int64))
    assert content_hash(a) != content_hash(a[::-1])


# ---------------------------------------------------------------------------------- settings

def test_set_overrides_are_typed_and_checked():
    s = apply_overrides(preset("quick"), ["procedural_n=5_000", "clf_steps=all", "mix_real=0,50,all",
                                          "mix_synthetic=dcgan", "simgan_lambda=0.1", "clf_tta=no",
                                          "clf_widths=8,16,32"])
    assert (s.procedural_n, s.clf_steps, s.mix_real, s.mix_synthetic) == (5000, None, (0, 50, "all"), ("dcgan",))
    assert (s.simgan_lambda, s.clf_tta, s.clf_widths) == (0.1, False, (8, 16, 32))
    assert preset("quick").procedural_n == 7300                      # presets are not changed
    for bad in ("procedural_n=0", "procedural_n=lots", "nope=1", "procedural_n", "dcgan_loss=mse",
                "mix_synthetic=gan", "clf_widths=8,16", "mix_real=-1", "simgan_lambda=-1"):
        with pytest.raises(ValueError, match="procedural_n|nope|dcgan_loss|mix_synthetic|clf_widths|mix_real|"
                                             "simgan_lambda"):
            apply_overrides(preset("quick"), [bad])
    assert parse_value("train_n", "all") is None and parse_value("dcgan_augment", "yes") is True


def test_simgan_label_term_settings_reach_the_refiner():
    s = apply_overrides(preset("smoke"), ["simgan_label_weight=2", "simgan_label_steps=7"])
    ctx = SimpleNamespace(settings=s, seed=3)
    got = simgan_settings(ctx)
    assert (got["label_weight"], got["label_steps"], got["seed"]) == (2.0, 7, 3)
    assert SimGANConfig(**got).label_phase == 7
    assert "label_weight" not in simgan_settings(SimpleNamespace(settings=preset("smoke"), seed=0))
    assert scaled(s, 2).simgan_label_steps == 14
    for bad in ("simgan_label_weight=-1", "simgan_label_weight=nan", "simgan_label_steps=-1"):
        with pytest.raises(ValueError, match="simgan_label_"):
            apply_overrides(preset("smoke"), [bad])


def test_simgan_standardising_discriminator_setting_reaches_the_refiner():
    got = simgan_settings(SimpleNamespace(settings=apply_overrides(preset("smoke"), ["simgan_d_standardize=yes"]),
                                          seed=0))
    assert got["d_standardize"] is True and SimGANConfig(**got).d_standardize is True
    assert "d_standardize" not in simgan_settings(SimpleNamespace(settings=preset("smoke"), seed=0))
    with pytest.raises(ValueError, match="simgan_d_standardize"):
        apply_overrides(preset("smoke"), ["simgan_d_standardize=maybe"])


@pytest.mark.parametrize("setting, name, value", [("simgan_flow_weight", "flow_weight", 0.05),
                                                   ("simgan_lambda_final", "lambda_final", 1.0)])
def test_simgan_weight_settings_reach_the_refiner(tmp_path, setting, name, value):
    got = simgan_settings(SimpleNamespace(settings=apply_overrides(preset("smoke"), [f"{setting}={value}"]), seed=0))
    assert got[name] == value and getattr(SimGANConfig(**got), name) == value
    assert name not in simgan_settings(SimpleNamespace(settings=preset("smoke"), seed=0))
    on = pipeline.Context(apply_overrides(PRESETS["smoke"], [f"{setting}={value}"]), tmp_path, backend="numpy")
    assert next(st.settings for st in pipeline.plan(on, n_train=80) if st.name == "simgan")[name] == value
    for bad in (f"{setting}=-1", f"{setting}=lots"):
        with pytest.raises(ValueError, match=setting):
            apply_overrides(preset("smoke"), [bad])


def test_simgan_conditional_discriminator_setting_reaches_the_refiner(tmp_path, monkeypatch):
    got = simgan_settings(SimpleNamespace(settings=apply_overrides(preset("smoke"), ["simgan_d_conditional=yes"]),
                                          seed=0))
    assert got["d_conditional"] is True and SimGANConfig(**got).d_conditional is True
    assert "d_conditional" not in simgan_settings(SimpleNamespace(settings=preset("smoke"), seed=0))
    on = pipeline.Context(apply_overrides(PRESETS["smoke"], ["simgan_d_conditional=yes"]), tmp_path, backend="numpy")
    assert next(st.settings for st in pipeline.plan(on, n_train=80) if st.name == "simgan")["d_conditional"] is True
    seen = {}

    def fake_train(x_real, x_proc, out, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt                                          # the arguments are all this test needs

    x, y = np.zeros((20, 32, 32, 3), np.uint8), np.arange(20) % 10
    monkeypatch.setattr(pipeline, "train_simgan", fake_train)
    monkeypatch.setattr(pipeline.Context, "real", lambda self: (x, y, x[:5], y[:5]))
    monkeypatch.setattr(pipeline, "load_image_set", lambda path: (x[:8], y[:8]))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_simgan(on, tmp_path, {})
    assert seen["real_y"] is y and seen["d_conditional"] is True                 # the real labels reach D


def test_presets_are_valid_and_scale():
    for s in PRESETS.values():
        s.check()
    big = scaled(preset("smoke"), 10)
    assert big.procedural_n == 10 * preset("smoke").procedural_n and big.dcgan_width == preset("smoke").dcgan_width
    assert preset("paper").procedural_n == 73_000 and preset("paper").dcgan_per_digit == 7300
    q = preset("quick")
    assert q.dcgan_iters_digit5 >= 701 and q.mix_real == (0, 100, 300, "all")


def test_mixing_points_skip_the_empty_point_and_clamp_to_all():
    s = apply_overrides(preset("quick"), ["mix_real=0,100,300,1000,all"])
    points = mixing_points(s, n_train=783)
    assert (0, None) not in points and len(points) == len(set(points))
    assert {p[0] for p in points} == {0, 100, 300, "all"}           # 1000 > 783 images: the same as all
    assert classifier_name("all", None) == "classify_real-all"
    assert classifier_name(100, "dcgan") == "classify_real-100+dcgan"


def test_real_share_reaches_only_the_mixed_classifiers(monkeypatch, tmp_path):
    """mix_real_share: the mixed points' classifiers get batch shares (share, 1 - share) and a key saying so;
    the others, and every classifier when it is not set, train and are keyed as before."""
    seen = {}

    def fake_train(parts, **kwargs):
        seen[tuple(len(p[1]) for p in parts)] = kwargs["batch_shares"]
        raise KeyboardInterrupt                                          # the arguments are all this test needs

    s = apply_overrides(preset("smoke"), ["mix_real_share=0.25"])
    ctx = pipeline.Context(s, tmp_path)
    stages = {st.name: st for st in pipeline.plan(ctx, n_train=80)}
    assert stages["classify_real-10+dcgan"].settings["real_share"] == 0.25
    assert "real_share" not in stages["classify_real-all"].settings
    assert "real_share" not in stages["classify_real-0+dcgan"].settings
    assert preset("quick").mix_real_share == preset("paper").mix_real_share == 0.5     # the measured default
    proportional = apply_overrides(preset("smoke"), ["mix_real_share=none"])
    plain = {st.name: st for st in pipeline.plan(pipeline.Context(proportional, tmp_path), n_train=80)}
    assert all("real_share" not in st.settings for st in plain.values() if st.name.startswith("classify_"))
    x = np.zeros((20, 32, 32, 3), np.uint8)
    y = np.arange(20) % 10
    monkeypatch.setattr(pipeline, "train_classifier", fake_train)
    monkeypatch.setattr(pipeline.Context, "real", lambda self: (x, y, x[:5], y[:5]))
    monkeypatch.setattr(pipeline.Context, "image_set", lambda self, name: (x[:8], y[:8]))
    for real, syn in ((10, "dcgan"), ("all", None), (0, "dcgan")):
        with pytest.raises(KeyboardInterrupt):
            pipeline.run_classifier(ctx, real, syn, 0, tmp_path, {})
    assert seen == {(10, 8): (0.25, 0.75), (20,): None, (8,): None}


def test_epochs_give_at_least_the_steps():
    # 783 images: 78 held out for validation, 705 // 64 = 11 steps per epoch
    assert epochs_for(783, 300, 64) == 28
    assert epochs_for(10, 5, 64) == 5                                 # one (partial) batch per epoch


def test_e2e_benchmark_table_says_what_was_skipped():
    from bench.e2e import markdown
    result = {"preset": "smoke", "scale": 1.0, "data": "stand-in", "machine": "cpu", "blas_threads": "1",
              "backends": {"numpy": {"stages": {"data": 0.5, "report": 2.0}, "total_s": 2.5},
                           "cupy": {"skipped": "CuPy or a GPU is not available on this machine"}}}
    text = markdown(result)
    assert "- cupy: skipped (CuPy or a GPU is not available" in text
    assert "| data | 0.50 |" in text and "| total | 2.50 |" in text and "speed-up" not in text
    result["backends"]["cupy"] = {"stages": {"data": 0.25, "report": 0.5}, "total_s": 0.75}
    assert "| report | 2.00 | 0.50 | 4.0x |" in markdown(result)


def test_e2e_table_compares_backends_that_train_the_dcgans_differently(tmp_path):
    """NumPy trains the ten DCGANs one by one (dcgan_digit_K), CuPy together (dcgan_digits): every stage
    gets a row, "—" where a backend has none, and one row sums each backend's DCGAN training."""
    from bench.e2e import DCGAN_TOTAL, bar_chart, markdown
    numpy_stages = {"data": 1.0, **{f"dcgan_digit_{d}": 2.0 for d in range(10)}, "report": 1.0}
    result = {"preset": "quick", "scale": 1.0, "data": "stand-in", "machine": "cpu", "blas_threads": "1",
              "backends": {"numpy": {"stages": numpy_stages, "total_s": 22.0},
                           "cupy": {"stages": {"data": 0.5, "dcgan_digits": 4.0, "report": 0.5}, "total_s": 5.0}}}
    text = markdown(result)
    assert "| dcgan_digit_5 | 2.00 | — | — |" in text and "| dcgan_digits | — | 4.00 | — |" in text
    assert f"| {DCGAN_TOTAL} | 20.00 | 4.00 | 5.0x |" in text and "| total | 22.00 | 5.00 | 4.4x |" in text
    bar_chart(result, tmp_path / "e2e.png")
    assert (tmp_path / "e2e.png").read_bytes()[:4] == b"\x89PNG"
    result["backends"]["cupy"]["stages"] = dict(numpy_stages)      # the same stages: no summed row
    assert DCGAN_TOTAL not in markdown(result)


def test_e2e_reports_digits_that_stopped_in_the_grouped_stage(monkeypatch, tmp_path):
    from bench import e2e

    class Runner:
        manifests = {"data": {"seconds": 1.0},
                     "dcgan_digit_2": {"seconds": 1.0, "summary": {"status": {"state": "stopped", "message": "nan"}}},
                     "dcgan_digits": {"seconds": 3.0, "summary": {"digits": {
                         "3": {"status": {"state": "done"}}, "7": {"status": {"state": "stopped", "message": "stuck"}}}}}}
    monkeypatch.setattr(e2e, "run_experiment", lambda *a, **k: Runner())
    timed = e2e.time_backend("numpy", {}, tmp_path, tmp_path, 0, True)
    assert timed["dcgan_stopped"] == {"dcgan_digit_2": "nan", "dcgan_digits/7": "stuck"}


def test_bench_e2e_passes_tf32_and_threads_on(monkeypatch):
    import bench.__main__ as bench_main
    seen = []
    monkeypatch.setattr(bench_main.e2e, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.delenv("NN_BACKEND", raising=False)
    assert bench_main.main(["--e2e", "--tf32", "--threads", "2", "--seed", "3"]) == 0
    assert seen == [["--backend", "numpy", "--seed", "3", "--tf32", "--threads", "2"]]


def test_e2e_backend_defaults_to_nn_backend_and_reaches_the_pipeline(tmp_path, monkeypatch):
    from bench import e2e
    calls = []
    monkeypatch.setattr(e2e, "time_backend", lambda name, *a, **k: calls.append((name, a[-2:])) or
                        {"stages": {"data": 1.0}, "total_s": 1.0, "dcgan_stopped": {}})
    monkeypatch.setattr(e2e, "bar_chart", lambda result, path: None)
    monkeypatch.setenv("NN_BACKEND", "numpy")
    (tmp_path / "svhn").mkdir()
    argv = ["--data-dir", str(tmp_path / "svhn"), "--out", str(tmp_path / "o"), "--quiet"]
    assert e2e.main(argv + ["--threads", "1", "--tf32"]) == 0
    assert calls == [("numpy", (1, True))]                   # one backend, not numpy,cupy; options passed on
    monkeypatch.setenv("NN_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="NN_BACKEND"):
        e2e.main(argv)


@pytest.mark.slow
def test_e2e_benchmark_runs_the_smoke_pipeline_and_writes_its_outputs(tmp_path, monkeypatch):
    from bench import e2e
    monkeypatch.setenv("SVHN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "svhn").mkdir()
    data_dir = write_fixture(tmp_path / "svhn")
    out = tmp_path / "bench"
    assert e2e.main(["--backend", "numpy", "--data-dir", str(data_dir), "--out", str(out), "--quiet"]) in (0, None)
    result = json.loads((out / "e2e.json").read_text())
    numpy_run = result["backends"]["numpy"]
    assert {"data", "procedural", "dcgan_set", "report"} <= set(numpy_run["stages"])
    assert {f"dcgan_digit_{d}" for d in range(10)} <= set(numpy_run["stages"])
    assert numpy_run["total_s"] > 0 and numpy_run["dcgan_stopped"] == {}
    assert "| dcgan_digit_5 |" in (out / "e2e.md").read_text()
    assert (out / "e2e.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------- command line

def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from experiment.cli import main
    monkeypatch.setenv("SVHN_CACHE_DIR", str(tmp_path / "cache"))
    for argv in (["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                 ["--set", "procedural_n=-5"], ["--preset", "smoke", "--redo", "nosuchstage", "--data-dir",
                                                str(write_fixture(tmp_path)), "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_cli_lists_settings(capsys):
    from experiment.cli import main
    assert main(["--preset", "paper", "--set", "procedural_n=123", "--list-settings"]) == 0
    text = capsys.readouterr().out
    assert "procedural_n = 123" in text and "dcgan_per_digit = 7300" in text
