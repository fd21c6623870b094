"""The paper's method: one DCGAN per digit, trained on the real images of that digit.

    nets.py     the generator, the discriminator (returns logits), the paper's and BCE losses, one training step
    train.py    training the ten DCGANs: run folders, checkpoints, logs, sample grids, divergence checks
    grouped.py  the ten (or any several) trained as one grouped model, the same results as one by one
    conditional.py  beyond the paper: one class-conditional GAN for all ten digits (`gan train --conditional`)
    sampling.py image sets drawn from a run's generators
    cli.py      `python -m gan train|sample` (also `python -m gan.dcgan`)
"""
from gan.dcgan.nets import (DCGAN, LOSSES, UPSAMPLE_MODES, Z_DIM, BCELoss, PaperLoss, build_discriminator,
                            build_generator, dcgan_init, generate)
from gan.dcgan.train import (FIGURE_ITERATIONS, Config, DivergedError, copy_digit_run, digit_dir, load_config,
                             load_generator, log_path, parse_digits, plot_losses, prepare_run, read_log,
                             read_status, samples_path, train_all, train_digit)
from gan.dcgan.sampling import sample, trained_digits
from gan.dcgan.grouped import train_together
from gan.dcgan.conditional import ConditionalDCGAN

__all__ = ["DCGAN", "ConditionalDCGAN", "LOSSES", "UPSAMPLE_MODES", "Z_DIM", "BCELoss", "PaperLoss", "build_discriminator",
           "build_generator", "dcgan_init", "generate", "FIGURE_ITERATIONS", "Config", "DivergedError",
           "copy_digit_run", "digit_dir", "load_config", "load_generator", "log_path", "parse_digits",
           "plot_losses", "prepare_run", "read_log", "read_status", "samples_path", "train_all", "train_digit",
           "train_together", "sample", "trained_digits"]
