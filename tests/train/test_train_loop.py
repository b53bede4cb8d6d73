"""Tests for train/loop.py: exact resume (SIGTERM, SIGKILL), non-finite steps,
metrics files, config checks. Uses the stand-in problem of `train_toy.py`."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import train_toy as toy
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import metrics_writer

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 6-step run: (params, {step: loss})."""
  workdir = tmp_path_factory.mktemp("reference")
  result = toy.train(workdir, 6)
  losses = {r["step"]: r["loss"] for r in metrics_writer.read_metrics(workdir)
            if r["split"] == "train"}
  return toy.params_of(result), losses


def _assert_same_params(a, b):
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_after_sigterm_is_bitwise_exact(reference, tmp_path):
  ref_params, ref_losses = reference
  evaluated = []

  def evaluate_then_sigterm(state):
    step = int(state.step)
    evaluated.append(step)
    if step == 3:  # A real SIGTERM, delivered to this process mid-run.
      os.kill(os.getpid(), signal.SIGTERM)
    return {"val_loss": float(step)}

  first = toy.train(tmp_path, 6, evaluate=evaluate_then_sigterm,
                    eval_every_steps=3)
  assert first.preempted
  assert int(first.state.step) == 3
  assert evaluated == [0, 3]
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2, 3]
  # The loop restored the previous handler on exit.
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

  second = toy.train(tmp_path, 6)
  assert not second.preempted and second.start_step == 3
  _assert_same_params(toy.params_of(second), ref_params)

  records = metrics_writer.read_metrics(tmp_path)
  train = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
  # The resumed steps saw the same batches and keys: identical losses.
  assert {r["step"]: r["loss"] for r in train} == ref_losses
  for key in ("loss", "mean_abs_error", "grad_norm", "param_norm",
              "update_norm", "learning_rate", "skipped", "nonfinite_steps",
              "steps_per_second"):
    assert key in train[-1], key
  assert train[0]["learning_rate"] == 0.0  # Warm-up starts at 0.
  assert [(r["step"], r["val_loss"]) for r in records if r["split"] == "val"] \
      == [(0, 0.0), (3, 3.0)]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
  """A child process is SIGKILLed after its step-4 checkpoint, then re-run."""
  num_steps = 12
  workdir, out = tmp_path / "run", tmp_path / "params.npz"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(_REPO), str(_HERE)]))
  command = [sys.executable, str(_HERE / "train_toy.py"), str(workdir),
             str(num_steps), str(out), "0.03"]  # ~0.25 s per step.
  child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
  step4 = workdir / "checkpoints" / "4"
  deadline = time.monotonic() + 120
  while not step4.is_dir() and child.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  child.send_signal(signal.SIGKILL)
  _, stderr = child.communicate(timeout=60)
  assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
  assert not out.exists()  # Killed before the end.
  killed_at = max(int(p.name) for p in (workdir / "checkpoints").iterdir()
                  if p.name.isdigit())
  assert 4 <= killed_at < num_steps

  rerun = subprocess.run(command, env=env, capture_output=True, timeout=240)
  assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
  resumed = dict(np.load(out))

  uninterrupted = toy.params_of(toy.train(tmp_path / "reference", num_steps))
  _assert_same_params(resumed, uninterrupted)


def _indices_of_batches(batches):
  it = toy.make_iterator()
  out = [next(it)["index"] for _ in range(max(batches) + 1)]
  return {int(i) for b in batches for i in out[b]}


def test_nonfinite_step_is_skipped_and_training_continues(tmp_path):
  # Batch 2 (step 3) has NaN inputs in every example.
  result = toy.train(tmp_path, 4, nan_indices=_indices_of_batches([2]))
  train = [r for r in metrics_writer.read_metrics(tmp_path)
           if r["split"] == "train"]
  assert [r["skipped"] for r in train] == [0.0, 0.0, 1.0, 0.0]
  assert [r["nonfinite_steps"] for r in train] == [0.0, 0.0, 1.0, 1.0]
  assert train[2]["loss"] == "nan" and train[2]["update_norm"] == 0.0
  assert train[3]["update_norm"] > 0
  assert int(result.state.nonfinite_steps) == 1
  assert all(np.isfinite(v).all() for v in toy.params_of(result).values())


def test_too_many_nonfinite_steps_stop_with_last_good_checkpoint(tmp_path):
  # Batches 0 and 1 are clean; every later example is NaN.
  clean = _indices_of_batches([0, 1])
  nan = set(range(toy.NUM_EXAMPLES)) - clean
  with pytest.raises(loop.NonFiniteError,
                     match=r"3 non-finite steps in a row .*max_consecutive_nonfinite=3"
                     r".* the last checkpoint \(step 4\)"):
    toy.train(tmp_path, 10, nan_indices=nan, max_consecutive_nonfinite=3)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
  assert steps == [2, 4]  # Nothing saved after the stop (step 5).
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
      toy.init_params())
  at2 = checkpoints.load_params(tmp_path / "checkpoints" / "2", target)
  at4 = checkpoints.load_params(tmp_path / "checkpoints" / "4", target)
  for k in at2:  # Steps 3 and 4 were skipped: the parameters did not move.
    np.testing.assert_array_equal(at2[k], at4[k])
    assert np.isfinite(at4[k]).all()


@pytest.mark.parametrize("field,value", [("num_steps", 0),
                                         ("checkpoint_every_steps", 0),
                                         ("eval_every_steps", -1)])
def test_bad_loop_config_is_a_clear_error(field, value):
  with pytest.raises(ValueError, match=f"train.{field}={value}"):
    loop.validate_config(toy.loop_config(**{field: value}))
