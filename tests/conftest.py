"""Shared test fixtures: the repository root on sys.path, the NumPy backend by default,
and the location of the optional real SVHN sample (tests that need it skip without it)."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_DIR = Path(os.environ.get("SVHN_SAMPLE_DIR", ROOT.parent / "shared" / "svhn" / "sample"))


@pytest.fixture(autouse=True)
def _numpy_backend_by_default():
    """Every test starts on the backend NN_BACKEND names (NumPy unless set) and restores it."""
    from nn import backend
    name = os.environ.get("NN_BACKEND", "numpy")
    backend.set_backend(name)
    yield
    backend.set_backend(name)


@pytest.fixture
def sample_dir():
    if not (SAMPLE_DIR / "train_32x32.mat").exists():
        pytest.skip(f"real SVHN sample not found at {SAMPLE_DIR} (set SVHN_SAMPLE_DIR)")
    return SAMPLE_DIR
