"""Shared test fixtures: the repository root on sys.path, the NumPy backend by default,
and the location of the optional real SVHN sample (tests that need it skip without it).

Environment variables the tests read:
  SVHN_SAMPLE_DIR  a folder holding a real SVHN sample in the official layout (train_32x32.mat,
                   test_32x32.mat); default: shared/svhn/sample in the folder beside this clone
                   (where CI puts one). Tests that need it skip, saying so, when it is absent.
  NN_BACKEND       the array backend the tests start on (numpy when unset, empty or unusable:
                   tests that need CuPy skip on their own).
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_DIR = Path(os.environ.get("SVHN_SAMPLE_DIR") or ROOT.parent / "shared" / "svhn" / "sample")


def _start_backend():
    """The backend NN_BACKEND names, or NumPy when it names none that works here."""
    from nn import backend
    try:
        backend.set_backend(backend.default_backend_name())
    except (ValueError, RuntimeError):
        backend.set_backend("numpy")


@pytest.fixture(autouse=True)
def _numpy_backend_by_default():
    """Every test starts on the backend NN_BACKEND names (NumPy unless set) and restores it."""
    _start_backend()
    yield
    _start_backend()


@pytest.fixture
def sample_dir():
    if not (SAMPLE_DIR / "train_32x32.mat").exists():
        pytest.skip(f"real SVHN sample not found at {SAMPLE_DIR}: set SVHN_SAMPLE_DIR to a folder "
                    f"with train_32x32.mat and test_32x32.mat")
    return SAMPLE_DIR
