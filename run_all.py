"""The paper's whole experiment, end to end: `python run_all.py --help`.

    python run_all.py --data-dir DIR        # quick preset (<= 30 min on 2 CPU cores; DIR holds SVHN's .mat files)
    python run_all.py --backend cupy --preset paper               # the paper's sizes, on a GPU

The stages, presets and report live in the `experiment` package (experiment/pipeline.py lists the
stages; experiment/settings.py every size; experiment/stages.py how reruns are decided).
"""
from experiment.cli import main
from common.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
