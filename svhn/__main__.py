"""`python -m svhn ...`: see `python -m svhn --help`."""
from common.cli import run_cli
from svhn.cli import main

if __name__ == "__main__":
    run_cli(main)
