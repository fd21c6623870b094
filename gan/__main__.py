"""`python -m gan ...` (see gan/cli.py)."""
from common.cli import run_cli
from gan.cli import main

if __name__ == "__main__":
    run_cli(main)
