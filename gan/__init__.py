"""gan — the generators: the paper's DCGAN per digit (gan/dcgan/) and the SimGAN refiner (gan/simgan/).

    from gan import Config, train_all, sample
    train_all("runs/paper", Config(iters=900, loss="paper", data_dir="svhn_data"), digits=range(10))
    x, y = sample("runs/paper", per_digit=7300, seed=0)       # uint8 (73000, 32, 32, 3), int64 labels

    from gan.simgan import train_simgan, refine               # the refiner (see gan/simgan/__init__.py)

Both keep their runs in folders with the same layout and resume rules (gan/runs.py). Label
fidelity and the SimGAN comparison need a classifier too, so they live above this package, in
`classify` (`python -m classify fidelity|compare-simgan`).
Command lines: `python -m gan train|sample --help`, `python -m gan.simgan train|refine --help`.
"""
from gan.dcgan import (DCGAN, FIGURE_ITERATIONS, LOSSES, UPSAMPLE_MODES, Z_DIM, BCELoss, Config, DivergedError,
                       PaperLoss, build_discriminator, build_generator, copy_digit_run, digit_dir, generate,
                       load_config, load_generator, log_path, parse_digits, plot_losses, prepare_run, read_log,
                       read_status, sample, samples_path, train_all, train_digit, train_together)

__all__ = ["DCGAN", "FIGURE_ITERATIONS", "LOSSES", "UPSAMPLE_MODES", "Z_DIM", "BCELoss", "Config",
           "DivergedError", "PaperLoss", "build_discriminator", "build_generator", "copy_digit_run", "digit_dir",
           "generate", "load_config", "load_generator", "log_path", "parse_digits", "plot_losses", "prepare_run",
           "read_log", "read_status", "sample", "samples_path", "train_all", "train_digit", "train_together"]
