"""Joining a multi-process run: `jax.distributed.initialize` from env or flags.

Every process of a run calls `initialize` once, before anything touches a
device (`main.py` does it first thing). What it does depends on the settings:

  * single process (nothing set): nothing; JAX runs as usual.
  * explicit (GPU clusters, local multi-process runs): the coordinator
    address, the number of processes and this process's id are given, by
    flags of `main.py` or by these environment variables:
      MOTIONGRPO_COORDINATOR     "host:port" of process 0 (every process
                                 gives the same; process 0 listens there)
      MOTIONGRPO_NUM_PROCESSES   M, the number of processes
      MOTIONGRPO_PROCESS_ID      this process's id, 0 … M − 1
      MOTIONGRPO_INIT_TIMEOUT    seconds to wait for all processes to join
                                 (default 300)
  * auto (`MOTIONGRPO_DISTRIBUTED=auto`, or `--distributed=auto`): plain
    `jax.distributed.initialize()`, which reads the cluster itself on Cloud
    TPU pods, SLURM and Open MPI. Chosen by default inside a SLURM step or an
    Open MPI job with more than one task.
  `MOTIONGRPO_DISTRIBUTED=off` forces a single process.

On CPU, collectives across processes go through gloo
(`jax_cpu_collectives_implementation`), set here before initialising.

After `initialize`, `jax.devices()` lists the devices of every process;
`jax.process_index()` / `jax.process_count()` say who this process is. The
training code builds one mesh over all devices, each process reads its own
shard of the data (`data/pipeline.py`), only process 0 writes logs, metrics
and run records, and every process takes part in checkpoint saves (Orbax),
which therefore need a workdir all processes see (a shared file system:
NFS, Filestore, a gcsfuse mount).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Mapping

import jax
from absl import logging

ENV_MODE = "MOTIONGRPO_DISTRIBUTED"
ENV_COORDINATOR = "MOTIONGRPO_COORDINATOR"
ENV_NUM_PROCESSES = "MOTIONGRPO_NUM_PROCESSES"
ENV_PROCESS_ID = "MOTIONGRPO_PROCESS_ID"
ENV_INIT_TIMEOUT = "MOTIONGRPO_INIT_TIMEOUT"
MODES = ("off", "auto", "explicit")
DEFAULT_INIT_TIMEOUT_S = 300
# Exit status of a process whose peers did not join in time.
JOIN_TIMEOUT_EXIT_CODE = 3
# JAX's own join deadline is this much later than ours (see `initialize`).
_JAX_TIMEOUT_MARGIN_S = 30


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """How this process joins the run (module docstring).

  Attributes:
    mode: "off" (one process), "auto" (JAX detects the cluster) or
      "explicit" (the three fields below).
    coordinator_address: "host:port" of process 0 (explicit only).
    num_processes: M (explicit only).
    process_id: this process, 0 … M − 1 (explicit only).
    initialization_timeout: seconds to wait for every process to join.
  """
  mode: str = "off"
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  initialization_timeout: int = DEFAULT_INIT_TIMEOUT_S


def _int(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}={value!r}: expected an integer") from None


def _cluster_tasks(env: Mapping[str, str]) -> int:
  """Tasks of the SLURM step / Open MPI job this process is in (1 if none)."""
  for name in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
    tasks = _int(env.get(name), name)
    if tasks is not None:
      return tasks
  return 1


def settings(env: Mapping[str, str] | None = None, *,
             mode: str | None = None,
             coordinator_address: str | None = None,
             num_processes: int | None = None,
             process_id: int | None = None,
             initialization_timeout: int | None = None) -> DistributedConfig:
  """The checked `DistributedConfig` of `env` with explicit values on top.

  Args:
    env: environment variables (default `os.environ`).
    mode: "off" / "auto" / "explicit"; default `MOTIONGRPO_DISTRIBUTED`, else
      "explicit" when a coordinator or a process count is given, else "auto"
      inside a multi-task SLURM step or Open MPI job, else "off".
    coordinator_address: overrides `MOTIONGRPO_COORDINATOR`.
    num_processes: overrides `MOTIONGRPO_NUM_PROCESSES`.
    process_id: overrides `MOTIONGRPO_PROCESS_ID`.
    initialization_timeout: overrides `MOTIONGRPO_INIT_TIMEOUT`.

  Returns:
    The settings.

  Raises:
    ValueError naming the variable (or flag) on a missing or bad value.
  """
  env = os.environ if env is None else env
  coordinator = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = (num_processes if num_processes is not None else
           _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES))
  index = (process_id if process_id is not None else
           _int(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID))
  timeout = (initialization_timeout if initialization_timeout is not None else
             _int(env.get(ENV_INIT_TIMEOUT), ENV_INIT_TIMEOUT))
  timeout = DEFAULT_INIT_TIMEOUT_S if timeout is None else timeout
  mode = mode or env.get(ENV_MODE) or None
  if mode is None:
    if coordinator is not None or (count is not None and count > 1):
      mode = "explicit"
    elif _cluster_tasks(env) > 1:
      mode = "auto"
    else:
      mode = "off"
  if mode not in MODES:
    raise ValueError(f"{ENV_MODE}={mode!r}: expected one of {list(MODES)}")
  if timeout < 1:
    raise ValueError(f"{ENV_INIT_TIMEOUT}={timeout}: expected >= 1 (seconds)")
  if mode == "explicit":
    missing = [name for name, value in ((ENV_COORDINATOR, coordinator),
                                        (ENV_NUM_PROCESSES, count),
                                        (ENV_PROCESS_ID, index))
               if value is None]
    if missing:
      raise ValueError(
          f"a multi-process run needs {', '.join(missing)} (or the flags "
          "--coordinator_address / --num_processes / --process_id); set all "
          f"three, or {ENV_MODE}=auto on a TPU pod / SLURM / Open MPI")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(f"{ENV_COORDINATOR}={coordinator!r}: expected "
                       "'host:port' of process 0")
    if count < 1:
      raise ValueError(f"{ENV_NUM_PROCESSES}={count}: expected >= 1")
    if not 0 <= index < count:
      raise ValueError(f"{ENV_PROCESS_ID}={index}: expected 0 <= id < "
                       f"{ENV_NUM_PROCESSES}={count}")
  return DistributedConfig(mode=mode, coordinator_address=coordinator,
                           num_processes=count, process_id=index,
                           initialization_timeout=timeout)


def _give_up(message: str) -> None:
  """Ends the process from the watchdog thread (the main thread is blocked
  inside JAX's connect call, so no exception can reach it)."""
  sys.stderr.write(f"\nERROR: {message}\n")
  sys.stderr.flush()
  os._exit(JOIN_TIMEOUT_EXIT_CODE)  # pylint: disable=protected-access


def initialize(config_or_env: DistributedConfig | Mapping[str, str] | None
               = None) -> DistributedConfig:
  """Joins the multi-process run described by settings or an environment.

  A no-op for a single process and when JAX's distributed runtime is
  already initialised. Call before anything touches a device.

  When the processes do not all join within `initialization_timeout` (a
  peer never started, a wrong address or port), the process prints why on
  stderr and exits with status `JOIN_TIMEOUT_EXIT_CODE`: JAX's connect call
  cannot be interrupted, and JAX itself would abort the process.

  Args:
    config_or_env: a `DistributedConfig`, an environment mapping (read with
      `settings`), or None for `os.environ`.

  Returns:
    The settings used.

  Raises:
    RuntimeError: when JAX refuses to initialise (e.g. a device was used
      before this call).
  """
  config = (config_or_env if isinstance(config_or_env, DistributedConfig)
            else settings(config_or_env))
  if config.mode == "off" or (config.mode == "explicit"
                              and config.num_processes == 1):
    return config
  if jax.distributed.is_initialized():
    return config
  # Cross-process collectives on CPU devices (no effect on GPU / TPU).
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if config.mode == "auto":
    where = "the cluster's auto-detected coordinator"
    kwargs = {}
  else:
    where = (f"coordinator {config.coordinator_address} as process "
             f"{config.process_id} of {config.num_processes}")
    kwargs = dict(coordinator_address=config.coordinator_address,
                  num_processes=config.num_processes,
                  process_id=config.process_id)
  logging.info("joining the distributed run: %s", where)
  message = (
      f"could not join the distributed run ({where}) within "
      f"{config.initialization_timeout} s. Check that every process was "
      "started, all with the same coordinator address and process count and "
      "each with its own process id, and that the coordinator's port is "
      f"reachable ({ENV_INIT_TIMEOUT} sets the wait)")
  # JAX aborts the whole process (C++ fatal error) when the peers do not
  # join in time; this watchdog fires first and exits with a clear message.
  watchdog = threading.Timer(config.initialization_timeout,
                             _give_up, args=(message,))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
        **kwargs, initialization_timeout=(config.initialization_timeout
                                          + _JAX_TIMEOUT_MARGIN_S))
  except Exception as e:  # jaxlib raises its own runtime error types.
    raise RuntimeError(f"{message}: {type(e).__name__}: {e}") from e
  finally:
    watchdog.cancel()
  logging.info("process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return config
