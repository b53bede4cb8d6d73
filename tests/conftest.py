"""Shared test fixtures and helpers: locations of the shared reference data,
config loading, tiny random datasets and denoisers.

The helpers are plain functions, imported by tests as `from conftest import
…` (pytest puts `tests/` on `sys.path`; a test's subprocess that imports a
test module must put `tests/` there itself).
"""

import os
import pathlib

# The tests' programs are tiny, so their time is XLA compilation: LLVM's
# optimisation passes cost more than they save there (~30 % of the suite's
# time). Set before JAX starts, so every test and every subprocess that copies
# `os.environ` compiles this way. (`--xla_cpu_use_fusion_emitters=false` would
# save more, but it compiles the rollout and its re-scoring differently, so
# the ratio-exactly-1 test could no longer hold bit for bit.)
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0"
                      " --xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " +
                           FAST_COMPILE_FLAGS).strip()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest

from motiongrpo_jax.data import aria
from motiongrpo_jax.data import aria_hands
from motiongrpo_jax.data import records
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.model import denoiser
from motiongrpo_jax.model import params_io

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


def unit(x: np.ndarray) -> np.ndarray:
  """`x` scaled to unit length along its last axis, float32."""
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_record(i: int, split: str, num_frames: int, *,
                  translation_scale: float = 1.0) -> records.SequenceRecord:
  """A valid record of random (not physically consistent) values: fast.

  Args:
    i: seed of the values; the record is named `test/<i>`.
    split: the record's split.
    num_frames: frames T.
    translation_scale: scale of the normal draws of the pose translations.

  Returns:
    The record, without hands.
  """
  rng = np.random.default_rng(i)
  pose = lambda: np.concatenate(  # pylint: disable=unnecessary-lambda-assignment
      [unit(rng.normal(size=(num_frames, 4))),
       translation_scale * rng.normal(size=(num_frames, 3)).astype(np.float32)],
      axis=-1)
  quats = rng.normal(size=(num_frames, 21, 4))
  quats[..., 0] += 3.0  # Rotations nearer the identity.
  return records.SequenceRecord(
      betas=rng.normal(size=16).astype(np.float32), T_world_root=pose(),
      body_quats=unit(quats), hand_quats=None,
      contacts=(rng.random((num_frames, 21)) > 0.5).astype(np.float32),
      T_world_cpf=pose(), T_cpf_tm1_cpf_t=pose(),
      height_from_floor=rng.random((num_frames, 1)).astype(np.float32),
      joints_wrt_cpf=rng.normal(size=(num_frames, 21, 3)).astype(np.float32),
      name=f"test/{i}", source="test", split=split)


def save_tiny_denoiser(path: pathlib.Path, *, encoder_layers: int = 1,
                       param_std: float = 0.1,
                       rotation_bias: float = 0.0) -> pathlib.Path:
  """Saves a tiny denoiser with random parameters as a model directory.

  No `init` (slow to compile): every parameter is drawn from N(0, std²)
  (seed 0, in tree order).

  Args:
    path: the model directory to write.
    encoder_layers: blocks over the condition stream (1 decoder block,
      width 16, 2 heads, no hands).
    param_std: standard deviation of the parameters.
    rotation_bias: c added to the body-rotation output bias as c·I per
      joint: with c = 3 the outputs are near 3·I + noise, whose SO(3)
      projection is well conditioned (float round-off stays round-off).

  Returns:
    `path`.
  """
  config = denoiser.DenoiserConfig(
      d_latent=16, d_feedforward=32, d_noise_emb=16, num_heads=2,
      encoder_layers=encoder_layers, decoder_layers=1, include_hands=False)
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: (param_std * rng.normal(size=s.shape)).astype(s.dtype),
      params_io.abstract_params(config))
  if rotation_bias:
    body_out = params["decoders_body_rotmats"]["linear_5"]
    body_out["bias"] = body_out["bias"] + np.tile(
        rotation_bias * np.eye(3).ravel(), 21).astype(np.float32)
  params_io.save_model(path, config, params)
  return path


def save_tiny_base(root: pathlib.Path, *, num_frames: int,
                   encoder_layers: int) -> pathlib.Path:
  """A tiny base denoiser (`root/model`) and a dataset beside it (`root/data`).

  The dataset holds `random_record`s: 3 train, 1 val and 1 test sequence.

  Args:
    root: the directory to fill.
    num_frames: frames per sequence.
    encoder_layers: the denoiser's condition-stream blocks.

  Returns:
    `root`.
  """
  splits = ["train"] * 3 + ["val", "test"]
  tfds_builder.build(
      [random_record(i, s, num_frames) for i, s in enumerate(splits)],
      root / "data")
  save_tiny_denoiser(root / "model", encoder_layers=encoder_layers)
  return root


def write_trajectory_csv(path: pathlib.Path, timestamps_us: np.ndarray,
                         T_world_device: np.ndarray,
                         columns: tuple[str, ...] = aria.TRAJECTORY_COLUMNS
                         ) -> pathlib.Path:
  """A closed_loop_trajectory.csv with MPS's column names (x, y, z, w).

  Only the columns our reader needs (projectaria-tools' reader wants all of
  MPS's, so "auto" reads it with ours).

  Args:
    path: the file to write.
    timestamps_us: (N,) device times.
    T_world_device: (N, 7) `wxyz_xyz`.
    columns: the columns written (drop one to spoil the file).
  """
  header = aria.TRAJECTORY_COLUMNS
  lines = ["graph_uid," + ",".join(columns) + ",quality_score"]
  for t, (w, x, y, z, tx, ty, tz) in zip(timestamps_us, T_world_device):
    values = dict(zip(header[1:], [tx, ty, tz, x, y, z, w]))
    values[header[0]] = int(t)
    lines.append("g," + ",".join(
        str(values[c]) if c == header[0] else f"{float(values[c]):.12g}"
        for c in columns) + ",1")
  path.write_text("\n".join(lines) + "\n")
  return path


def write_wrist_csv(path: pathlib.Path, timestamps_us: np.ndarray,
                    confidence: np.ndarray, wrist_device: np.ndarray,
                    palm_device: np.ndarray, normals: bool = True
                    ) -> pathlib.Path:
  """A wrist_and_palm_poses.csv in MPS's format (columns and their order).

  A side with confidence ≤ 0 is written as MPS writes a missing hand: zero
  positions and normals. Normals (when written) are made-up unit vectors.

  Args:
    path: the file to write.
    timestamps_us: (N,) device times.
    confidence: (N, 2) left, right.
    wrist_device: (N, 2, 3) wrist positions in the device frame.
    palm_device: (N, 2, 3) palm positions.
    normals: write the normal columns (MPS hand tracking v2 files).
  """
  columns = aria_hands.POSE_COLUMNS + (aria_hands.NORMAL_COLUMNS
                                       if normals else ())
  present = (np.asarray(confidence) > 0)[..., None]
  wrist = np.where(present, wrist_device, 0.0)
  palm = np.where(present, palm_device, 0.0)
  unit = palm / np.maximum(np.linalg.norm(palm, axis=-1, keepdims=True),
                           1e-9)
  lines = [",".join(columns)]
  for i, t in enumerate(timestamps_us):
    row = [str(int(t))]
    for side in range(2):
      row += [repr(float(confidence[i, side]))]
      row += [repr(float(v)) for v in (*wrist[i, side], *palm[i, side])]
    if normals:  # per side palm then wrist normal
      row += [repr(float(v)) for side in range(2)
              for v in (*unit[i, side], *-unit[i, side])]
    lines.append(",".join(row))
  path.write_text("\n".join(lines) + "\n")
  return path
