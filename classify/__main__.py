"""`python -m classify train|eval|predict ...` (errors: one line on stderr, exit status 2)."""
from common.cli import run_cli

from classify.cli import main

run_cli(main)
