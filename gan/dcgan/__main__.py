"""`python -m gan.dcgan ...`, the same as `python -m gan ...` (see gan/dcgan/cli.py)."""
from common.cli import run_cli
from gan.dcgan.cli import main

if __name__ == "__main__":
    run_cli(main)
