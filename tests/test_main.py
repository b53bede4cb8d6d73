"""Tests for the entry point: config loading, workdir, unimplemented modes."""

import json
import subprocess
import sys

from conftest import REPO


def _main(*args, cwd):
  return subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.main", *args],
      cwd=cwd, capture_output=True, text=True, timeout=120)


def test_unknown_mode_fails_before_writing(tmp_path):
  workdir = tmp_path / "run"
  result = _main(f"--config={REPO}/configs/pretrain.py", f"--workdir={workdir}",
                 "--config.mode=nonsense", cwd=REPO)
  assert result.returncode != 0
  assert "config.mode='nonsense' is not a mode" in result.stderr
  assert not workdir.exists()


def test_unknown_override_is_rejected(tmp_path):
  result = _main(f"--config={REPO}/configs/pretrain.py", f"--workdir={tmp_path}",
                 "--config.no_such_field=1", cwd=REPO)
  assert result.returncode != 0
  assert "no_such_field" in result.stderr
