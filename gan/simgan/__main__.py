"""`python -m gan.simgan train|refine ...` (see gan/simgan/cli.py)."""
from common.cli import run_cli
from gan.simgan.cli import main

if __name__ == "__main__":
    run_cli(main)
