"""Training metrics: `WORKDIR/metrics.jsonl`, TensorBoard events, progress line.

Only process 0 writes files; every process may call the writer. Each JSONL
line is one record `{"step": s, "split": "train" | "val" | …, name: value,
…}`; TensorBoard (tensorboardX, no TensorFlow) gets the same scalars under
`<split>/<name>` in `WORKDIR/tensorboard/`. A resumed run appends to both;
after a kill, the steps between the last checkpoint and the kill appear twice
(the later record is the one the final parameters went through).
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping

import jax
import numpy as np
import tensorboardX
from absl import logging

# File names inside the workdir.
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _to_float(value) -> float:
  return float(np.asarray(value))


def _format_duration(seconds: float) -> str:
  """`H:MM:SS` (hours may exceed 24), or "?" when unknown."""
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}"


class MetricsWriter:
  """Writes scalar metrics to JSONL and TensorBoard (process 0 only)."""

  def __init__(self, workdir: str | pathlib.Path, enabled: bool | None = None):
    """Opens the writers.

    Args:
      workdir: the run directory.
      enabled: write files; default: only on process 0.
    """
    self._enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = None
    self._tb = None
    if not self._enabled:
      return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(workdir / METRICS_FILE, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    self._tb = tensorboardX.SummaryWriter(str(workdir / TENSORBOARD_DIR))

  def write(self, step: int, metrics: Mapping[str, float], split: str = "train"
            ) -> None:
    """Records scalars of one step.

    Args:
      step: the train step the values belong to.
      metrics: name → scalar (numpy / jax scalars are converted; non-finite
        values are written as JSON strings "nan" / "inf" / "-inf").
      split: "train", "val", … (JSONL field and TensorBoard prefix).
    """
    if not self._enabled:
      return
    values = {k: _to_float(v) for k, v in metrics.items()}
    record = {"step": int(step), "split": split, "time": time.time()}
    record.update({k: v if math.isfinite(v) else str(v)
                   for k, v in values.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in values.items():
      self._tb.add_scalar(f"{split}/{name}", value, int(step))

  def flush(self) -> None:
    if self._enabled:
      self._jsonl.flush()
      self._tb.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tb.close()
      self._enabled = False


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
  """All records of `WORKDIR/metrics.jsonl`, in order.

  A last line cut short by a kill is left out; any other unreadable line is
  an error naming the file and line.
  """
  path = pathlib.Path(workdir) / METRICS_FILE
  lines = path.read_text(encoding="utf-8").splitlines()
  out = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number == len(lines):
        break
      raise ValueError(f"{path}:{number}: not a JSON record: {e}") from e
  return out


class Progress:
  """Logs `step s/N, r steps/s, ETA` via absl logging, at most every `every_s`.

  The rate is measured between consecutive `rate` calls (the loop calls it
  at each logged step), so it reflects recent speed, not compilation.
  """

  def __init__(self, total_steps: int, start_step: int, every_s: float = 10.0):
    self._total = total_steps
    self._every_s = every_s
    self._mark = (start_step, time.monotonic())
    self._rate = 0.0
    self._last_log = -math.inf

  def rate(self, step: int) -> float:
    """Steps per second since the previous call (or the start)."""
    mark_step, mark_time = self._mark
    now = time.monotonic()
    if step > mark_step and now > mark_time:
      self._rate = (step - mark_step) / (now - mark_time)
      self._mark = (step, now)
    return self._rate

  def line(self, step: int) -> str:
    """The progress line for `step`, with the last measured rate."""
    remaining = (self._total - step) / self._rate if self._rate > 0 else math.inf
    percent = 100.0 * step / max(self._total, 1)
    return (f"step {step}/{self._total} ({percent:.1f}%), "
            f"{self._rate:.2f} steps/s, ETA {_format_duration(remaining)}")

  def maybe_log(self, step: int, extra: str = "", force: bool = False) -> None:
    """Logs the progress line if `every_s` passed since the last one."""
    now = time.monotonic()
    if force or now - self._last_log >= self._every_s:
      self._last_log = now
      logging.info("%s%s", self.line(step), f", {extra}" if extra else "")
