"""The console a user sees, run as subprocesses: a quiet demo, one `error:`
line with the stated exit status per bad input, no workdir left behind."""

import gzip
import subprocess
import sys

import numpy as np
from scipy.spatial.transform import Rotation

from motiongrpo_jax import cli
from motiongrpo_jax.data import aria

from conftest import REPO
from conftest import save_tiny_denoiser

# The tiny demo's console, pretraining then evaluating: per run the workdir
# line, the data lines, the size line, start, progress, validations and the
# finish (10 + 5 lines). 25 leaves room for a warning; TFDS's bars alone were
# 20 lines, Orbax's restore chatter 25.
_MAX_DEMO_LINES = 25


def _run(module, *args, cwd):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def _errors(result):
  return [l for l in result.stderr.splitlines() if l.startswith("error:")]


def _assert_one_error(result, status, *words):
  lines = _errors(result)
  assert result.returncode == status, result.stderr[-2000:]
  assert len(lines) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  for word in words:
    assert word in lines[0], lines[0]


def test_demo_console_is_short_and_clean(tmp_path):
  workdir = tmp_path / "run"
  result = _run("motiongrpo_jax.main", "--config=configs/pretrain.py:demo",
                f"--workdir={workdir}", "--config.train.num_steps=4",
                "--config.optimizer.warmup_steps=1",
                "--config.train.eval_every_steps=4",
                "--config.train.log_every_steps=2",
                "--config.data.synthetic_num_sequences=12",
                "--config.data.batch_size=2", cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  console = (result.stdout + result.stderr).splitlines()
  # Evaluating it restores the checkpoint read-only (Orbax's notices).
  result = _run("motiongrpo_jax.main", "--config=configs/eval.py:demo",
                f"--config.checkpoint={workdir}", f"--workdir={tmp_path / 'eval'}",
                "--config.data.max_windows=2", cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  console += (result.stdout + result.stderr).splitlines()
  text = "\n".join(console)
  assert len(console) <= _MAX_DEMO_LINES, text
  for chatter in ("[A", "libtpu", "read_only", "read only", "Metadata file",
                  "Downloading and preparing", "Shuffling",
                  "Generating splits"):
    assert chatter not in text, chatter


def test_unknown_variant_is_one_usage_line(tmp_path):
  result = _run("motiongrpo_jax.main", "--config=configs/pretrain.py:nope",
                f"--workdir={tmp_path / 'run'}", cwd=REPO)
  _assert_one_error(result, cli.USAGE_EXIT, "configs/pretrain.py",
                    "unknown variant 'nope'")
  assert "helpfull" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_misspelt_key_is_one_usage_line(tmp_path):
  result = _run("motiongrpo_jax.main", "--config=configs/pretrain.py:demo",
                "--config.trian.num_steps=3", f"--workdir={tmp_path / 'run'}",
                cwd=REPO)
  _assert_one_error(result, cli.USAGE_EXIT, "trian", "train")


def test_missing_config_file_is_one_usage_line(tmp_path):
  result = _run("motiongrpo_jax.main", "--config=configs/no_such_file.py",
                f"--workdir={tmp_path / 'run'}", cwd=REPO)
  _assert_one_error(result, cli.USAGE_EXIT, "configs/no_such_file.py")


def test_truncated_bvh_is_one_data_line(tmp_path, shared_data):
  source = sorted((shared_data / "bandai_namco_2" / "val").glob("*.bvh.gz"))[0]
  text = gzip.decompress(source.read_bytes()).decode()
  inputs = tmp_path / "bvh"
  inputs.mkdir()
  (inputs / "cut.bvh").write_text(text[:len(text) // 2])
  out = tmp_path / "out"
  result = _run("motiongrpo_jax.tools.build_dataset", "--source=bvh",
                "--preset=bandai_namco", f"--input={inputs}",
                f"--output_dir={out}", cwd=REPO)
  _assert_one_error(result, cli.DATA_EXIT, "cut.bvh", "truncated")
  assert not out.exists()


def _write_mps(folder, *, nan=False, scale_quaternion=1.0):
  """A closed_loop_trajectory.csv: 3 s of device poses at 30 Hz, row 40
  spoilt by a NaN or a quaternion scaled off the unit sphere."""
  folder.mkdir()
  times_us = np.arange(90) * 33_333
  xyzw = Rotation.from_euler("z", 0.01 * np.arange(90)[:, None]).as_quat()
  columns = aria.TRAJECTORY_COLUMNS  # time, tx…tz, qx, qy, qz, qw
  lines = ["graph_uid," + ",".join(columns) + ",quality_score"]
  for i, t in enumerate(times_us):
    q = xyzw[i] * (scale_quaternion if i == 40 else 1.0)
    row = [0.02 * i, 0.0, 1.6, *q]
    if nan and i == 40:
      row[0] = float("nan")
    lines.append(f"g,{t}," + ",".join(f"{v:.9g}" for v in row) + ",1")
  (folder / "closed_loop_trajectory.csv").write_text("\n".join(lines) + "\n")
  return folder


def _infer(tmp_path, mps):
  model = save_tiny_denoiser(tmp_path / "model")
  workdir = tmp_path / "run"
  result = _run("motiongrpo_jax.main", "--config=configs/infer.py",
                f"--config.checkpoint={model}", f"--config.input={mps}",
                f"--workdir={workdir}", cwd=REPO)
  return result, workdir


def test_nan_in_mps_csv_is_one_data_line_and_leaves_no_workdir(tmp_path):
  result, workdir = _infer(tmp_path, _write_mps(tmp_path / "mps", nan=True))
  _assert_one_error(result, cli.DATA_EXIT, "closed_loop_trajectory.csv")
  assert not workdir.exists()


def test_non_unit_quaternion_is_one_data_line(tmp_path):
  result, workdir = _infer(
      tmp_path, _write_mps(tmp_path / "mps", scale_quaternion=1.5))
  _assert_one_error(result, cli.DATA_EXIT, "closed_loop_trajectory.csv",
                    "quaternion")
  assert not workdir.exists()


def test_existing_workdir_is_never_removed(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("mine")
  result = _run("motiongrpo_jax.main", "--config=configs/infer.py",
                "--config.input=/no/such/input", f"--workdir={workdir}",
                cwd=REPO)
  assert result.returncode == cli.DATA_EXIT
  assert (workdir / "notes.txt").read_text() == "mine"


def test_traceback_on_request(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.main",
       "--config=configs/infer.py", "--config.input=/no/such/input",
       f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
      text=True, timeout=300, env={**__import__("os").environ,
                                   cli.TRACEBACK_ENV: "1"})
  assert result.returncode != 0 and "Traceback" in result.stderr
