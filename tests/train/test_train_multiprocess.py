"""A real multi-process run: two CPU processes (gloo collectives) against one.

Two processes with one CPU device each (`jax.distributed` over a local port)
run the pretrain mode for a few steps and then the grpo mode from that
pretrain workdir; one process with two CPU devices runs the same configs.
Both see the same global batches (the pipeline shards by process), so the
final parameters must agree; the data-parallel programs differ only in where
the all-reduce happens, so they agree to round-off (tolerance below).

Also checked: only process 0 writes the metrics; every process writes its
share of the checkpoint (grain's per-process iterator state); a process
whose peer never starts exits with a clear message instead of hanging; the
distributed settings reject incomplete or bad values.

All children run with a time limit and are killed in a `finally`.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from motiongrpo_jax import configs
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import distributed

from conftest import random_record

_REPO = pathlib.Path(__file__).resolve().parents[2]
# Parameters of the one- and two-process runs agree to this (absolute).
TOLERANCE = 1e-5
# Wall-clock limit of each child process (seconds).
_CHILD_TIMEOUT_S = 300


def pretrain_config(data_dir: str) -> ml_collections.ConfigDict:
  """2 steps of a tiny denoiser; global batch 2 (one window per device)."""
  config = configs.get("pretrain", "demo")
  config.model.update(d_latent=16, d_feedforward=32, d_noise_emb=16,
                      num_heads=2, encoder_layers=0, decoder_layers=1,
                      include_hands=False)
  config.data.update(data_dir=data_dir, build_synthetic_if_missing=False,
                     seq_len=6, batch_size=2, val_batch_size=2,
                     max_val_batches=1)
  config.loss.cond_dropout_prob = 0.3
  config.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=0,
                      checkpoint_every_steps=2, progress_every_seconds=0.0)
  return config


def grpo_config(data_dir: str, base: str) -> ml_collections.ConfigDict:
  """2 GRPO iterations from `base`: 2 trajectories × G = 2, 3 DDIM steps."""
  config = configs.get("grpo", "demo")
  config.init_checkpoint = base
  config.bootstrap.enabled = False
  config.reward.weight_vis = 0.0  # joint rewards: no critic
  config.data.update(data_dir=data_dir, build_synthetic_if_missing=False,
                     seq_len=6, batch_size=2)
  config.group.group_size = 2
  config.sampler.update(num_steps=3, update="ddim")
  # Two optimiser updates per iteration (minibatches split by global index);
  # no KL, remat or Procrustes reward: smaller programs, faster compiles.
  config.iteration.num_minibatches = 2
  config.objective.update(kl_beta=0.0, num_train_steps=1, remat=False)
  config.reward.weight_pa_pos = 0.0
  config.optimizer.learning_rate = 1e-3
  config.eval.update(batch_size=2, num_samples=1, val_batches=1,
                     max_batches=1)
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=0,
                      checkpoint_every_steps=2, progress_every_seconds=0.0)
  return config


# One worker: joins the run described by MOTIONGRPO_* (none: one process),
# pretrains, then runs GRPO from the pretrain workdir.
_WORKER = r"""
import os, sys
from motiongrpo_jax.train import distributed
distributed.initialize()
import jax
# The test module and `tests/` (its conftest).
sys.path[:0] = [sys.argv[3], os.path.dirname(sys.argv[3])]
import test_train_multiprocess as t
from motiongrpo_jax.modes import grpo, pretrain
data_dir, out = sys.argv[1], sys.argv[2]
pretrain.run(t.pretrain_config(data_dir), out + "/pretrain")
grpo.run(t.grpo_config(data_dir, out + "/pretrain"), out + "/grpo")
print(f"WORKER process {jax.process_index()} of {jax.process_count()}, "
      f"{jax.device_count()} devices", flush=True)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra: str) -> dict[str, str]:
  """A child's environment: CPU, `devices` fake devices (conftest's flags)."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("MOTIONGRPO_")}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"
      # About 40 % less compile time for these programs.
      " --xla_cpu_use_fusion_emitters=false"))
  env.update(extra)
  return env


def _wait_all(procs: list[subprocess.Popen], timeout_s: float
              ) -> list[tuple[int, str, str]]:
  """(returncode, stdout, stderr) of each; kills every child in the end."""
  deadline = time.monotonic() + timeout_s
  results = []
  try:
    for proc in procs:
      out, err = proc.communicate(
          timeout=max(1.0, deadline - time.monotonic()))
      results.append((proc.returncode, out, err))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """One process × 2 devices (`one`) and 2 processes × 1 device (`two`)."""
  root = tmp_path_factory.mktemp("multiprocess")
  splits = ["train"] * 4 + ["val"] * 2 + ["test"] * 2
  tfds_builder.build(
      [random_record(i, s, num_frames=12, translation_scale=0.3)
       for i, s in enumerate(splits)], root / "data")
  test_dir = str(pathlib.Path(__file__).parent)
  port = _free_port()

  def spawn(name, env):
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(root / "data"), str(root / name),
         test_dir], env=env, cwd=str(root), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)

  t0 = time.monotonic()
  procs = []
  try:
    procs.append(spawn("one", _env(2)))
    for rank in range(2):
      procs.append(spawn("two", _env(
          1, MOTIONGRPO_COORDINATOR=f"localhost:{port}",
          MOTIONGRPO_NUM_PROCESSES="2", MOTIONGRPO_PROCESS_ID=str(rank),
          MOTIONGRPO_INIT_TIMEOUT="60")))
    results = _wait_all(procs, _CHILD_TIMEOUT_S)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for name, (code, _, err) in zip(("one", "two[0]", "two[1]"), results):
    assert code == 0, f"{name} failed (status {code}):\n{err[-4000:]}"
  return root, [out for _, out, _ in results], time.monotonic() - t0


def _max_diff(a, b) -> float:
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
      a, b)))


def test_workers_saw_the_run(runs):
  _, outputs, _ = runs
  assert "WORKER process 0 of 1, 2 devices" in outputs[0]
  assert "WORKER process 0 of 2, 2 devices" in outputs[1]
  assert "WORKER process 1 of 2, 2 devices" in outputs[2]


@pytest.mark.parametrize("mode", ["pretrain", "grpo"])
def test_two_processes_match_one(runs, mode):
  root, _, seconds = runs
  print(f"one- and two-process runs: {seconds:.1f} s")
  params = {name: checkpoints.load_denoiser(root / name / mode)[1]
            for name in ("one", "two")}
  diff = _max_diff(params["one"], params["two"])
  print(f"{mode}: max |one - two| = {diff:.3g}")
  assert diff <= TOLERANCE
  if mode == "grpo":  # GRPO moved the parameters: the match is not vacuous.
    base = checkpoints.load_denoiser(root / "two" / "pretrain")[1]
    assert _max_diff(params["two"], base) > 100 * TOLERANCE


@pytest.mark.parametrize("mode", ["pretrain", "grpo"])
def test_process_zero_writes_metrics_all_write_checkpoints(runs, mode):
  root, _, _ = runs
  rows = {name: [json.loads(line) for line in
                 (root / name / mode / "metrics.jsonl").read_text().splitlines()]
          for name in ("one", "two")}
  # One writer: each step once, as in the one-process run.
  steps = lambda r: [(x["split"], x["step"]) for x in r]  # pylint: disable=unnecessary-lambda-assignment
  assert steps(rows["two"]) == steps(rows["one"])
  assert [x["step"] for x in rows["two"] if x["split"] == "train"] == [1, 2]
  one_loss = [x["loss"] for x in rows["one"] if x["split"] == "train"]
  two_loss = [x["loss"] for x in rows["two"] if x["split"] == "train"]
  np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5, atol=1e-6)
  # Each process saved its own input-iterator state in the checkpoint.
  data_item = root / "two" / mode / "checkpoints" / "2" / checkpoints.DATA_ITEM
  assert sorted(p.name for p in data_item.glob("process_*")) == [
      "process_0-of-2.json", "process_1-of-2.json"]


def test_missing_peer_fails_clearly(tmp_path):
  """Process 0 of 2 alone: a clear error within the join timeout."""
  workdir = tmp_path / "run"
  t0 = time.monotonic()
  proc = subprocess.Popen(
      [sys.executable, "-m", "motiongrpo_jax.main",
       "--config=configs/pretrain.py:demo", f"--workdir={workdir}",
       f"--coordinator_address=localhost:{_free_port()}",
       "--num_processes=2", "--process_id=0"],
      env=_env(1, MOTIONGRPO_INIT_TIMEOUT="3"), cwd=str(_REPO),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  [(code, _, err)] = _wait_all([proc], 90)
  seconds = time.monotonic() - t0
  assert code == distributed.JOIN_TIMEOUT_EXIT_CODE, err[-3000:]
  assert "could not join the distributed run" in err
  assert "process 0 of 2" in err and "within 3 s" in err
  assert seconds < 60
  assert not workdir.exists()  # Failed before writing anything.


def test_settings():
  env = {"MOTIONGRPO_COORDINATOR": "10.0.0.1:1234",
         "MOTIONGRPO_NUM_PROCESSES": "4", "MOTIONGRPO_PROCESS_ID": "3"}
  got = distributed.settings(env)
  assert (got.mode, got.coordinator_address, got.num_processes,
          got.process_id, got.initialization_timeout) == (
              "explicit", "10.0.0.1:1234", 4, 3,
              distributed.DEFAULT_INIT_TIMEOUT_S)
  assert distributed.settings(env, process_id=0).process_id == 0  # Flags win.
  assert distributed.settings({}).mode == "off"
  assert distributed.settings({"SLURM_STEP_NUM_TASKS": "8"}).mode == "auto"
  assert distributed.settings({"SLURM_STEP_NUM_TASKS": "1"}).mode == "off"
  assert distributed.settings(
      {**env, "MOTIONGRPO_DISTRIBUTED": "off"}).mode == "off"
  # A single process is a no-op (no JAX runtime started).
  assert distributed.initialize({}).mode == "off"
  with pytest.raises(ValueError, match="MOTIONGRPO_PROCESS_ID"):
    distributed.settings({k: v for k, v in env.items()
                          if k != "MOTIONGRPO_PROCESS_ID"})
  with pytest.raises(ValueError, match=r"MOTIONGRPO_PROCESS_ID=4: expected"):
    distributed.settings({**env, "MOTIONGRPO_PROCESS_ID": "4"})
  with pytest.raises(ValueError, match="host:port"):
    distributed.settings({**env, "MOTIONGRPO_COORDINATOR": "10.0.0.1"})
  with pytest.raises(ValueError, match="MOTIONGRPO_NUM_PROCESSES='two'"):
    distributed.settings({**env, "MOTIONGRPO_NUM_PROCESSES": "two"})
  with pytest.raises(ValueError, match="MOTIONGRPO_DISTRIBUTED='mpi'"):
    distributed.settings({"MOTIONGRPO_DISTRIBUTED": "mpi"})
