"""The paper's whole experiment, end to end (placeholder until the stages land)."""
import sys

if __name__ == "__main__":
    print("error: run_all.py is not built yet: the experiment's stages (svhn, procedural, gan, classify) are still being written",
          file=sys.stderr)
    sys.exit(2)
