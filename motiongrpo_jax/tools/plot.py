"""Training plots from a workdir's `metrics.jsonl`.

    python -m motiongrpo_jax.tools.plot --workdir=W --output=plots.png
    python -m motiongrpo_jax.tools.plot --workdir=W --output=plots/

Drawn with matplotlib (the Agg backend when run as a program; in a
notebook `figure` draws inline). One PNG with a grid of panels, or (an output without `.png`) a folder with
one PNG per panel. Each panel plots metrics against the step (the GRPO
iteration, or the training step of pretraining and the critic); a panel
whose metrics a run does not log is left out, so the same panels serve every
mode:

- loss and its terms (pretrain / critic; GRPO's surrogate loss);
- GRPO rewards: each sub-reward's group mean and within-group std;
- GRPO diversity: zero-advantage fraction (groups whose rewards tie, which
  give no signal) and sample diversity (mean joint distance between samples
  of a group);
- GRPO update: clip fraction, approximate KL to the old and the reference
  policy;
- validation: rewards, joint errors, physical plausibility;
- critic accuracies and scores; gradient / update norms; learning rate.

Records follow `train.metrics_writer`: `{"step", "split", name: value}`,
non-finite values as the strings "nan" / "inf" (plotted as gaps). A step
logged twice (a run resumed after a kill) keeps its later record.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import pathlib
import re
from collections.abc import Sequence

from absl import app
from absl import flags
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from motiongrpo_jax import cli
from motiongrpo_jax.train import metrics_writer

FLAGS = flags.FLAGS
COLUMNS = 4
PANEL_SIZE = (4.2, 3.0)  # inches


@dataclasses.dataclass(frozen=True)
class Panel:
  """One plot: the metrics matching `series` versus the step.

  Attributes:
    title: panel title (also the PNG name in folder output).
    series: (split, key pattern) pairs; patterns are `fnmatch` globs.
    log_y: logarithmic y axis (positive values only).
  """

  title: str
  series: tuple[tuple[str, str], ...]
  log_y: bool = False


PANELS: tuple[Panel, ...] = (
    Panel("loss", (("train", "loss"), ("val", "loss"))),
    Panel("loss terms (train)", (("train", "loss_*"),), log_y=True),
    Panel("loss terms (val)", (("val", "loss_*"),), log_y=True),
    Panel("reward: group mean", (("train", "reward/*_mean"),)),
    Panel("reward: within-group std", (("train", "reward/*_group_std"),)),
    Panel("zero-advantage fraction", (("train", "zero_advantage_fraction"),)),
    Panel("sample diversity (m)", (("train", "diversity_*"),)),
    Panel("clip fraction", (("train", "clip_fraction"),)),
    Panel("KL", (("train", "approx_kl"), ("train", "kl"))),
    Panel("policy ratio", (("train", "ratio_min"), ("train", "ratio_mean"),
                           ("train", "ratio_max"))),
    Panel("advantages", (("train", "advantage_*"),)),
    Panel("validation rewards", (("val", "reward/*"),)),
    Panel("validation joint errors (mm)",
          (("val", "mpjpe"), ("val", "pampjpe"),
           ("val", "pampjpe_egoallo_compat"))),
    Panel("validation physics",
          (("val", "foot_skate"), ("val", "foot_contact"),
           ("val", "ground_penetration"))),
    Panel("critic accuracy", (("train", "acc_*"), ("val", "acc_*"))),
    Panel("critic scores", (("train", "score_*"), ("val", "score_*"))),
    Panel("norms", (("train", "grad_norm"), ("train", "update_norm")),
          log_y=True),
    Panel("learning rate", (("train", "learning_rate"),)),
)


@dataclasses.dataclass(frozen=True)
class Series:
  """One plotted line: `values` at `steps`, with a 95 % band (±1.96·stderr)
  where the records log `<key>_stderr` (held-out metrics over windows)."""

  label: str
  steps: np.ndarray
  values: np.ndarray
  stderr: np.ndarray | None = None


def read_records(workdir: str | pathlib.Path) -> list[dict]:
  """The records of `WORKDIR/metrics.jsonl` (or of that file itself).

  Raises:
    FileNotFoundError: no metrics file (named).
    ValueError: a file without any record.
  """
  path = pathlib.Path(workdir)
  if path.is_dir():
    path = path / metrics_writer.METRICS_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f"--workdir={workdir}: no {metrics_writer.METRICS_FILE} at {path} "
        "(expected a training workdir)")
  records = metrics_writer.read_metrics(path.parent) if (
      path.name == metrics_writer.METRICS_FILE) else _read_file(path)
  records = [r for r in records if isinstance(r, dict) and "step" in r]
  if not records:
    raise ValueError(f"{path}: no metric records (empty file?)")
  return records


def _read_file(path: pathlib.Path) -> list[dict]:
  out = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if line.strip():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{number}: not a JSON record: {e}") from e
  return out


def _to_float(value) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def series(records: Sequence[dict], split: str, key: str) -> Series:
  """Values of `key` in records of `split`, one per step (the last logged).

  Returns:
    The series sorted by step; empty when the key is never logged.
  """
  by_step = {}
  for record in records:
    if record.get("split", "train") == split and key in record:
      by_step[int(record["step"])] = _to_float(record[key])
  steps = np.array(sorted(by_step), np.int64)
  values = np.array([by_step[s] for s in steps], np.float64)
  return Series(key, steps, values)


def panel_series(records: Sequence[dict], panel: Panel) -> list[Series]:
  """The lines of one panel that the records have (may be empty)."""
  splits = {split for split, _ in panel.series}
  out = []
  seen = set()
  for split, pattern in panel.series:
    keys = sorted({k for r in records if r.get("split", "train") == split
                   for k in r if k not in ("step", "split", "time")
                   and not k.endswith("_stderr")
                   and fnmatch.fnmatchcase(k, pattern)})
    for key in keys:
      if (split, key) in seen:
        continue
      seen.add((split, key))
      line = series(records, split, key)
      if line.steps.size and np.isfinite(line.values).any():
        label = f"{split}/{key}" if len(splits) > 1 else key
        band = series(records, split, f"{key}_stderr")
        stderr = (band.values if np.array_equal(band.steps, line.steps)
                  else None)
        out.append(dataclasses.replace(line, label=label, stderr=stderr))
  return out


def _draw(ax, panel: Panel, lines: list[Series]) -> None:
  for line in lines:
    marker = "o" if line.steps.size < 30 else None
    drawn, = ax.plot(line.steps, line.values, label=line.label,
                     marker=marker, markersize=3, linewidth=1.2)
    if line.stderr is not None:
      ax.fill_between(line.steps, line.values - 1.96 * line.stderr,
                      line.values + 1.96 * line.stderr,
                      color=drawn.get_color(), alpha=0.2, linewidth=0)
  if panel.log_y and all((ln.values[np.isfinite(ln.values)] > 0).all()
                         for ln in lines):
    ax.set_yscale("log")
  ax.set_title(panel.title, fontsize=10)
  ax.set_xlabel("step", fontsize=8)
  ax.tick_params(labelsize=7)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="best")


def figure(records: Sequence[dict], panels: Sequence[Panel] = PANELS):
  """A grid of every panel that has data.

  Args:
    records: metric records.
    panels: candidate panels.

  Returns:
    (matplotlib Figure, titles of the drawn panels in order).

  Raises:
    ValueError: no panel has data (the keys found are listed).
  """
  drawn = [(p, lines) for p in panels
           if (lines := panel_series(records, p))]
  if not drawn:
    keys = sorted({k for r in records for k in r} - {"step", "split", "time"})
    raise ValueError(f"no plottable metrics; the records have keys {keys}")
  rows = math.ceil(len(drawn) / COLUMNS)
  columns = min(COLUMNS, len(drawn))
  fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(
      PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
  for ax, (panel, lines) in zip(axes.flat, drawn):
    _draw(ax, panel, lines)
  for ax in list(axes.flat)[len(drawn):]:
    ax.set_visible(False)
  fig.tight_layout()
  return fig, [p.title for p, _ in drawn]


def _slug(title: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def plot_workdir(workdir: str | pathlib.Path,
                 output: str | pathlib.Path) -> list[pathlib.Path]:
  """Plots a workdir's metrics.

  Args:
    workdir: training workdir (or its metrics.jsonl).
    output: `*.png` for one grid; otherwise a folder for one PNG per panel.

  Returns:
    The PNG files written.
  """
  records = read_records(workdir)
  output = pathlib.Path(output)
  if output.suffix.lower() == ".png":
    fig, _ = figure(records)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return [output]
  output.mkdir(parents=True, exist_ok=True)
  written = []
  for panel in PANELS:
    lines = panel_series(records, panel)
    if not lines:
      continue
    fig, ax = plt.subplots(figsize=PANEL_SIZE)
    _draw(ax, panel, lines)
    fig.tight_layout()
    path = output / f"{_slug(panel.title)}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
  if not written:
    figure(records)  # raises with the keys found
  return written


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  matplotlib.use("Agg")  # files only, no display needed
  paths = plot_workdir(FLAGS.workdir, FLAGS.output)
  print(f"wrote {len(paths)} file(s): " + ", ".join(map(str, paths)))


def _define_flags() -> None:
  # Defined only when run as a program, so that importing this module as a
  # library registers no global flags.
  flags.DEFINE_string("workdir", None,
                      "Training workdir (with metrics.jsonl).", required=True)
  flags.DEFINE_string("output", "plots.png",
                      "A .png (one grid) or a folder (one PNG per panel).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
