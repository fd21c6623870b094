"""experiment — the paper's whole experiment as resumable stages (run by `python run_all.py`).

    from experiment import preset, apply_overrides, run_experiment
    settings = apply_overrides(preset("quick"), ["procedural_n=5000"])
    runner = run_experiment(settings, out="results", data_dir="svhn_data", backend_name="numpy")
    runner.actions          # {stage: "ran" | "skipped"}

Modules: settings (sizes and presets), stages (the resumable-stage runner), pipeline (the stages
and their order), report (table.md, results.json, figures), cli (run_all.py's command line).
"""
from experiment.pipeline import run_experiment
from experiment.settings import PRESETS, Settings, apply_overrides, preset, scaled

__all__ = ["run_experiment", "PRESETS", "Settings", "apply_overrides", "preset", "scaled"]
