"""gan — the paper's method: one DCGAN per digit, trained on the real images of that digit.

    from gan import Config, train_all, sample, fidelity
    train_all("runs/paper", Config(iters=300, loss="paper", data_dir="svhn_data"), digits=range(10))
    x, y = sample("runs/paper", per_digit=7300, seed=0)       # uint8 (73000, 32, 32, 3), int64 labels
    fidelity("runs/paper", data_dir="svhn_data")             # {"mean": ..., "per_digit": {...}}

The networks and losses (the paper's D = |X1 - X| and G = 1 - D, or BCE) are in gan/dcgan.py,
training, checkpoints and figures in gan/train.py, sampling and label fidelity in gan/synthesis.py.
Command line: `python -m gan train|sample|fidelity --help`.
"""
from gan.dcgan import (DCGAN, LOSSES, UPSAMPLE_MODES, Z_DIM, BCELoss, PaperLoss, build_discriminator,
                       build_generator, generate)
from gan.train import Config, DivergedError, load_generator, parse_digits, train_all, train_digit
from gan.synthesis import fidelity, label_fidelity, sample

__all__ = ["DCGAN", "LOSSES", "UPSAMPLE_MODES", "Z_DIM", "BCELoss", "PaperLoss", "build_discriminator",
           "build_generator", "generate", "Config", "DivergedError", "load_generator", "parse_digits",
           "train_all", "train_digit", "fidelity", "label_fidelity", "sample"]
