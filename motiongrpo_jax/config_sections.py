"""Config sections shared by several config files (`motiongrpo_jax/configs`).

A library's frozen options dataclass (`SamplerConfig`, `RewardConfig`, …) is
the one place where its settings are declared, defaulted and commented:
`from_dataclass` turns it into a config section and `to_dataclass` turns the
section back, so a field added to the dataclass is a setting of every config
that holds the section. The other sections are written here, with their
comments, once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import ml_collections

_T = TypeVar("_T")


def _settings(cls: type) -> list[dataclasses.Field]:
  """The fields of options dataclass `cls` that a config sets: not nested
  dataclasses, not fields marked `metadata={"setting": False}` (the code
  sets those, e.g. fps from the data)."""
  return [f for f in dataclasses.fields(cls)
          if f.metadata.get("setting", True)
          and not dataclasses.is_dataclass(f.default)]


def from_dataclass(options: Any) -> ml_collections.ConfigDict:
  """A section holding the settings of an options dataclass: a class (its
  defaults) or an instance (its values, e.g. GRPO's sampler)."""
  values = {f.name: (getattr(options, f.name) if not isinstance(options, type)
                     else f.default) for f in _settings(options)}
  return ml_collections.ConfigDict(values)


def to_dataclass(cls: type[_T], section: ml_collections.ConfigDict,
                 name: str, **code_set: Any) -> _T:
  """Options dataclass `cls` from config section `config.<name>` and the
  fields the code sets, validated when `cls` has `validate()`.

  Raises:
    ValueError: naming `config.<name>`, for a key that is not a setting of
      `cls` or a value its `validate()` rejects.
  """
  settings = {f.name: f for f in _settings(cls)}
  unknown = set(section) - set(settings)
  if unknown:
    raise ValueError(f"config.{name}: unknown key {sorted(unknown)}; expected "
                     f"the settings of {cls.__name__}: {sorted(settings)}")
  values = {k: tuple(v) if isinstance(settings[k].default, tuple) else v
            for k, v in section.items()}
  options = cls(**values, **code_set)
  if hasattr(options, "validate"):
    try:
      options.validate()
    except ValueError as e:
      # A message that names its option ("condition_noise.amplitude=…") names
      # it as this section does (the class may serve several sections).
      message = str(e)
      named = re.match(r"([a-z_]+)\.([a-z_]+)", message)
      if named and named[2] in settings:
        message = "config." + re.sub(rf"\b{named[1]}\.", f"{name}.", message)
      elif not message.startswith("config."):
        message = f"config.{name}: {message}"
      raise ValueError(message) from e
  return options


def base(mode: str, variant: str,
         variants: Sequence[str]) -> ml_collections.ConfigDict:
  """A new config with `mode` and `variant` set.

  Args:
    mode: the mode main.py runs; also the config file's name
      (`configs/<mode>.py`).
    variant: the experiment variant asked for.
    variants: the variants the config file defines.

  Returns:
    The config, holding `mode` and `variant` only.

  Raises:
    ValueError: `variant` is not one of `variants`.
  """
  if variant not in variants:
    raise ValueError(
        f"configs/{mode}.py: unknown variant {variant!r}; expected one of "
        f"{list(variants)}")
  config = ml_collections.ConfigDict()
  # Which mode main.py runs.
  config.mode = mode
  # Experiment variant (recorded for provenance).
  config.variant = variant
  return config


def body(model: str = "builtin",
         smplh_npz: str = "") -> ml_collections.ConfigDict:
  """The body-model section (which body poses the motions).

  Args:
    model: "builtin" or "smplh".
    smplh_npz: path of the SMPL-H `model.npz` ("" for the built-in body).

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict()
  # "builtin" (the SMPL tree with a built-in shape space) or "smplh".
  section.model = model
  # SMPL-H `model.npz` (body.model = "smplh" only).
  section.smplh_npz = smplh_npz
  return section


def optimizer(*, learning_rate: float, warmup_steps: int,
              weight_decay: float, grad_clip_norm: float = 1.0,
              b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8,
              ema_decay: float = 0.0,
              schedule: str = "constant",
              trainable: str = "") -> ml_collections.ConfigDict:
  """The optimiser section: AdamW after grad-norm clipping (`train/state.py`).

  Args:
    learning_rate: peak learning rate.
    warmup_steps: linear warm-up length, in applied updates.
    weight_decay: decoupled weight decay.
    grad_clip_norm: global-norm clip (<= 0: none).
    b1: Adam's first-moment decay rate.
    b2: Adam's second-moment decay rate.
    eps: Adam's epsilon.
    ema_decay: decay of the parameters' moving average (0: none).
    schedule: the learning rate after warm-up, "constant" or "cosine".
    trainable: regex of the parameters trained ("" = all).

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict()
  # Peak learning rate.
  section.learning_rate = learning_rate
  # Linear warm-up from 0 over this many applied updates.
  section.warmup_steps = warmup_steps
  # After warm-up: "constant", or "cosine" decay to 0 at the run's last update
  # (a noisy gradient at a constant rate keeps walking: README, "GRPO recipe").
  section.schedule = schedule
  # Decoupled weight decay (AdamW).
  section.weight_decay = weight_decay
  # Clip the gradient's global norm to this (<= 0: no clipping).
  section.grad_clip_norm = grad_clip_norm
  # Adam moment decay rates and epsilon (the defaults are PyTorch's).
  section.b1 = b1
  section.b2 = b2
  section.eps = eps
  # Keep an exponential moving average of the parameters with this decay
  # (0: none); evaluations that know of it (GRPO's) score the average.
  section.ema_decay = ema_decay
  # Train only the parameters whose path ("decoder_layers_0/mlp0/kernel")
  # matches this regex (re.search); the others stay as loaded. "" = all.
  section.trainable = trainable
  return section


def train_loop(*, num_steps: int, log_every_steps: int,
               eval_every_steps: int, checkpoint_every_steps: int,
               max_consecutive_nonfinite: int, keep_checkpoints: int = 3,
               async_checkpointing: bool = False,
               progress_every_seconds: float = 30.0
               ) -> ml_collections.ConfigDict:
  """The loop section: steps, checkpoints, logs (`train/loop.py`).

  A step is one optimiser step (pretrain, critic) or one GRPO iteration.

  Args:
    num_steps: total steps.
    log_every_steps: train-metrics period.
    eval_every_steps: validation period (0: start and end only).
    checkpoint_every_steps: checkpoint period.
    max_consecutive_nonfinite: non-finite steps in a row that stop the run.
    keep_checkpoints: checkpoints kept.
    async_checkpointing: write checkpoints in a background thread.
    progress_every_seconds: progress-line period.

  Returns:
    The section.
  """
  section = ml_collections.ConfigDict()
  # Total train steps (a resumed run continues up to this).
  section.num_steps = num_steps
  # Write train metrics (all diagnostics) every this many steps.
  section.log_every_steps = log_every_steps
  # Validation every this many steps (0: only at the start and end).
  section.eval_every_steps = eval_every_steps
  # Save a checkpoint every this many steps (and at the end, and on SIGTERM).
  section.checkpoint_every_steps = checkpoint_every_steps
  # Checkpoints kept (the most recent ones).
  section.keep_checkpoints = keep_checkpoints
  # Write checkpoints in a background thread.
  section.async_checkpointing = async_checkpointing
  # Stop after this many non-finite (skipped) steps in a row.
  section.max_consecutive_nonfinite = max_consecutive_nonfinite
  # Seconds between progress lines (rate, ETA) in the log.
  section.progress_every_seconds = progress_every_seconds
  return section

