"""Shared test fixtures: locations of the shared reference data."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# The shared folder (golden files, example data) sits beside the repository;
# MOTIONGRPO_SHARED_DIR overrides the location.
SHARED = pathlib.Path(os.environ.get("MOTIONGRPO_SHARED_DIR", REPO.parent / "shared"))
EGOALLO_REFERENCE = SHARED / "reference" / "egoallo"
SHARED_DATA = SHARED / "data"


@pytest.fixture
def egoallo_reference() -> pathlib.Path:
  """The EgoAllo golden files; skips the test when they are absent."""
  if not (EGOALLO_REFERENCE / "golden_forward.npz").exists():
    pytest.skip(f"EgoAllo golden files not found at {EGOALLO_REFERENCE}")
  return EGOALLO_REFERENCE


@pytest.fixture
def shared_data() -> pathlib.Path:
  """The shared example data (BVH, Aria MPS); skips when absent."""
  if not (SHARED_DATA / "README.md").exists():
    pytest.skip(f"shared example data not found at {SHARED_DATA}")
  return SHARED_DATA
