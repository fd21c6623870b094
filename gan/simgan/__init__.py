"""SimGAN (Shrivastava et al. 2017): a refiner that makes procedural digits look like real SVHN crops.

    from gan.simgan import train_simgan, refine
    train_simgan(real_x, proc_x, "runs/simgan", proc_y=proc_y, lambda_reg=10.0, kg=2, steps=1000)
    x_refined = refine("runs/simgan", proc_x)           # uint8 (N, 32, 32, 3), same order as proc_x

    nets.py     the refiner, the patch discriminator (returns logits), the losses, the history buffer, the steps
    train.py    the schedule, run folders (gan/runs.py), checkpoints, logs, figures, refining
    cli.py      `python -m gan.simgan train|refine`
"""
from gan.simgan.nets import (HistoryBuffer, PatchLoss, ResBlock, SelfRegularisationL1, SimGAN,
                             build_patch_discriminator, build_refiner)
from gan.simgan.train import (LOSSES_FILE, PAIRS_FILE, PHASES, REFINED_FILE, SimGANConfig, SimGANDiverged,
                              SimGANError, check_trained, load_config, load_refiner, read_log, refine, refine_images,
                              resolve_config, train_simgan)

__all__ = ["HistoryBuffer", "PatchLoss", "ResBlock", "SelfRegularisationL1", "SimGAN", "build_patch_discriminator",
           "build_refiner", "LOSSES_FILE", "PAIRS_FILE", "PHASES", "REFINED_FILE", "SimGANConfig", "SimGANDiverged",
           "SimGANError", "check_trained", "load_config", "load_refiner", "read_log", "refine", "refine_images", "resolve_config",
           "train_simgan"]
