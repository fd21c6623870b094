"""`python -m gan train|sample ...`: the DCGANs (see gan/dcgan/cli.py; the SimGAN is `python -m gan.simgan`)."""
from common.cli import run_cli
from gan.dcgan.cli import main

if __name__ == "__main__":
    run_cli(main)
