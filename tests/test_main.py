"""Tests for the entry point: config loading, workdir, unimplemented modes."""

import json
import subprocess
import sys

import pytest

from motiongrpo_jax import configs


def _main(*args, cwd):
  return subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.main", *args],
      cwd=cwd, capture_output=True, text=True, timeout=120)


def test_unknown_mode_fails_before_writing(tmp_path):
  workdir = tmp_path / "run"
  # From a directory outside the checkout: the package's configs/.
  result = _main("--config=configs/pretrain.py", f"--workdir={workdir}",
                 "--config.mode=nonsense", cwd=tmp_path)
  assert result.returncode != 0
  assert "config.mode='nonsense' is not a mode" in result.stderr
  assert not workdir.exists()


def test_unknown_override_is_rejected(tmp_path):
  result = _main("--config=configs/pretrain.py", f"--workdir={tmp_path}",
                 "--config.no_such_field=1", cwd=tmp_path)
  assert result.returncode != 0
  assert "no_such_field" in result.stderr


@pytest.mark.parametrize("arg, expected", [
    # No such file from here: the package's, variant kept.
    ("--config=configs/grpo.py:bvh", f"--config={configs.DIRECTORY}/grpo.py:bvh"),
    ("--config=some/dir/configs/eval.py",
     f"--config={configs.DIRECTORY}/eval.py"),
    # Not a config of the package, or another flag: unchanged.
    ("--config=configs/nope.py", "--config=configs/nope.py"),
    ("--config=mine.py", "--config=mine.py"),
    ("--workdir=configs/grpo.py", "--workdir=configs/grpo.py"),
])
def test_config_flag_finds_the_packaged_configs(arg, expected, tmp_path,
                                               monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert configs.resolve_flag(["prog", arg]) == ["prog", expected]
  # A file that exists from the working directory wins.
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "grpo.py").write_text("")
  assert configs.resolve_flag(["p", "--config=configs/grpo.py"]) == [
      "p", "--config=configs/grpo.py"]
