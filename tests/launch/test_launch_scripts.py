"""The launch scripts: what their dry runs print, and the local launcher's
stop-all-on-failure (with a stand-in interpreter, no JAX)."""

import os
import pathlib
import shlex
import subprocess
import time

import pytest

_LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch"
_MAIN_ARGS = ["--config=configs/grpo.py:amass", "--workdir=/shared/runs/a b"]


def _run(script, *args, env=None, timeout=30):
  full_env = {k: v for k, v in os.environ.items() if not k.startswith(
      ("SLURM_", "MOTIONGRPO_", "DRY_RUN", "TPU_"))}
  full_env.update(env or {})
  return subprocess.run(["bash", str(_LAUNCH / script), *args], env=full_env,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def _env_of(words):
  """VAR=value words of an `env …` command."""
  return dict(w.split("=", 1) for w in words if "=" in w and not
              w.startswith("-"))


def test_local_dry_run():
  result = _run("local_multiprocess.sh", "--dry-run", "-n", "3", "-d", "2",
                "-p", "12345", "-l", "logs", "--", *_MAIN_ARGS)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    words = shlex.split(line)
    env = _env_of(words[:words.index("-m")])
    assert env["MOTIONGRPO_COORDINATOR"] == "localhost:12345"
    assert env["MOTIONGRPO_NUM_PROCESSES"] == "3"
    assert env["MOTIONGRPO_PROCESS_ID"] == str(i)
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    start = words.index("motiongrpo_jax.main") + 1
    tail = words[start:start + len(_MAIN_ARGS)]
    assert tail == _MAIN_ARGS  # Passed through unchanged (with the space).
    if i:
      assert words[-2:] == [f"logs/process_{i}.log", "2>&1"]


def test_local_dry_run_from_env_and_errors():
  result = _run("local_multiprocess.sh", "--", *_MAIN_ARGS,
                env={"DRY_RUN": "1", "NUM_PROCESSES": "2"})
  assert result.returncode == 0, result.stderr
  ids = [_env_of(shlex.split(l))["MOTIONGRPO_PROCESS_ID"]
         for l in result.stdout.splitlines()]
  assert ids == ["0", "1"]
  assert _run("local_multiprocess.sh", "--dry-run").returncode == 2
  bad = _run("local_multiprocess.sh", "--dry-run", "-n", "0", "--", "x")
  assert bad.returncode == 2 and "positive integers" in bad.stderr


def test_local_stops_all_when_one_fails(tmp_path):
  """Process 1 fails at once; process 0 (sleeping) is killed, status kept."""
  fake = tmp_path / "fake_python"
  marker = tmp_path / "survived"
  fake.write_text(
      "#!/bin/bash\n"
      "if [ \"$MOTIONGRPO_PROCESS_ID\" = 1 ]; then echo boom >&2; exit 7; fi\n"
      f"sleep 20; touch {marker}\n")
  fake.chmod(0o755)
  t0 = time.monotonic()
  result = _run("local_multiprocess.sh", "-n", "2", "-l", str(tmp_path / "l"),
                "--", "--config=x", env={"PYTHON": str(fake)})
  assert result.returncode == 7, result.stderr
  assert time.monotonic() - t0 < 10
  assert "a process failed (status 7)" in result.stderr
  assert "boom" in (tmp_path / "l" / "process_1.log").read_text()
  time.sleep(0.5)
  assert not marker.exists()


@pytest.fixture
def fake_scontrol(tmp_path):
  """A `scontrol show hostnames` that lists three nodes."""
  path = tmp_path / "bin"
  path.mkdir()
  script = path / "scontrol"
  script.write_text("#!/bin/sh\n[ \"$1 $2\" = \"show hostnames\" ] || exit 1\n"
                    "printf 'gpu-a07\\ngpu-a08\\ngpu-b01\\n'\n")
  script.chmod(0o755)
  return {"PATH": f"{path}:{os.environ['PATH']}",
          "SLURM_JOB_NODELIST": "gpu-a[07-08],gpu-b01", "SLURM_NTASKS": "3"}


def test_slurm_dry_run(fake_scontrol):
  result = _run("slurm_gpu.sh", "--dry-run", *_MAIN_ARGS,
                env={**fake_scontrol, "MOTIONGRPO_PORT": "4321"})
  assert result.returncode == 0, result.stderr
  srun, *tasks = result.stdout.strip().splitlines()
  words = shlex.split(srun)
  assert words[:4] == ["srun", "--kill-on-bad-exit=1", "--ntasks=3", "bash"]
  inner = shlex.split(words[-1].replace(";", " ;"))
  env = _env_of(inner[:inner.index("exec")])
  assert env["MOTIONGRPO_COORDINATOR"] == "gpu-a07:4321"  # The first node.
  assert env["MOTIONGRPO_NUM_PROCESSES"] == "3"
  assert env["MOTIONGRPO_PROCESS_ID"] == "$SLURM_PROCID"
  assert inner[inner.index("exec") + 1:] == [
      "python", "-m", "motiongrpo_jax.main", *_MAIN_ARGS]
  assert len(tasks) == 3
  for i, (task, node) in enumerate(zip(tasks, ["gpu-a07", "gpu-a08",
                                               "gpu-b01"])):
    assert task.startswith(f"# task {i} on {node}: ")
    assert f"MOTIONGRPO_PROCESS_ID={i};" in task
    assert "MOTIONGRPO_COORDINATOR=gpu-a07:4321" in task


def test_slurm_needs_an_allocation():
  result = _run("slurm_gpu.sh", "--dry-run", *_MAIN_ARGS)
  assert result.returncode == 2 and "SLURM_JOB_NODELIST" in result.stderr


def test_tpu_dry_run():
  result = _run("tpu_pod.sh", "--dry-run", "--name", "pod1", "--zone",
                "us-central2-b", "--create", "--accelerator-type", "v5p-64",
                "--", *_MAIN_ARGS)
  assert result.returncode == 0, result.stderr
  create, pack, scp, ssh = [shlex.split(l) for l in
                            result.stdout.strip().splitlines()]
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create",
                        "pod1"]
  assert create[create.index("--accelerator-type") + 1] == "v5p-64"
  assert pack[:2] == ["tar", "czf"]
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in scp
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1"]
  assert "--worker=all" in ssh
  assert ssh[ssh.index("--zone") + 1] == "us-central2-b"
  remote = ssh[ssh.index("--command") + 1]
  steps = [shlex.split(step) for step in remote.split(";")]
  assert ["python3", "-m", "pip", "install", "-q", "-U", "jax[tpu]"] in steps
  assert ["python3", "-m", "pip", "install", "-q", "-e", "."] in steps
  run = steps[-1]
  assert run == ["MOTIONGRPO_DISTRIBUTED=auto", "python3", "-m",
                 "motiongrpo_jax.main", *_MAIN_ARGS]


def test_tpu_needs_name_and_zone():
  result = _run("tpu_pod.sh", "--dry-run", "--", *_MAIN_ARGS,
                env={"TPU_NAME": "pod1"})
  assert result.returncode == 2 and "--zone" in result.stderr
  ok = _run("tpu_pod.sh", "--", *_MAIN_ARGS,
            env={"TPU_NAME": "pod1", "TPU_ZONE": "z", "DRY_RUN": "1"})
  assert ok.returncode == 0 and "create" not in ok.stdout


def test_gpu_bench_dry_run(tmp_path):
  result = _run("gpu_bench.sh", str(tmp_path / "out"), env={"DRY_RUN": "1"})
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  # Sampler: batches 1, 8, 64 × (fp32, TF32, bf16); GRPO: fp32, TF32.
  assert len(lines) == 11
  sampler = [l for l in lines if " sampler " in l]
  assert [l.split("--batch=")[1].split()[0] for l in sampler] == (
      ["1"] * 3 + ["8"] * 3 + ["64"] * 3)
  assert sum("--mode=bf16" in l for l in sampler) == 3
  assert sum(l.startswith("JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32")
             for l in lines) == 4
  grpo = [l for l in lines if " grpo_step " in l]
  assert len(grpo) == 2 and all("--batch=32" in l for l in grpo)
  assert all("--size=default" in l for l in lines)
