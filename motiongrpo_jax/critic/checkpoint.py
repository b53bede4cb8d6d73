"""A trained critic on disk: `WORKDIR/critic_config.json` (the `CriticConfig`)
beside the training run's checkpoints, and loading both back."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax

from motiongrpo_jax import run_record
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.train import checkpoints

CONFIG_FILE = "critic_config.json"


def write_config(workdir: str, model_config: critic_lib.CriticConfig
                         ) -> None:
  """`WORKDIR/critic_config.json`; an error if the workdir has another one."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if path.exists():
    found = critic_lib.CriticConfig.from_dict(json.loads(path.read_text()))
    if found != model_config:
      raise ValueError(f"{path} describes another critic than config.model; "
                       "use a new --workdir or the critic it was trained with")
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  run_record.write_json(path, model_config.to_dict())

def load(path: str | pathlib.Path) -> tuple[critic_lib.Critic, Any]:
  """A trained critic and its parameters from a critic workdir.

  Args:
    path: a critic training workdir (holding `critic_config.json`) or one of
      its checkpoint step directories.

  Returns:
    (Critic, params) with params on the default device.
  """
  path = pathlib.Path(path).absolute()
  kind = checkpoints.checkpoint_kind(path)
  if kind not in ("workdir", "step"):
    raise ValueError(f"{path} is not a critic workdir or checkpoint step "
                     "directory")
  workdir = path if kind == "workdir" else path.parent.parent
  config_path = workdir / CONFIG_FILE
  if not config_path.is_file():
    raise FileNotFoundError(f"{config_path} not found: {workdir} is not a "
                            "critic workdir")
  model = critic_lib.Critic(critic_lib.CriticConfig.from_dict(
      json.loads(config_path.read_text())))
  # This process's own device (jax.devices()[0] belongs to process 0).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
      jax.eval_shape(lambda: critic_lib.init_params(model, jax.random.key(0))))
  return model, checkpoints.load_params(path, target)


def load_score_fn(path: str, fps: float, body: body_model.BodyModel,
                  include_hands: bool,
                  option: str = "config.critic_checkpoint"
                  ) -> tuple[Callable[..., jax.Array], Any]:
  """The reward's view of a trained critic: `score_fn(critic_params, samples
  (N, T, d) packed, condition, mask (N, T)) -> (N,)` and its parameters.

  Raises:
    ValueError: naming `option`, for a critic that does not load or was
      trained at another frame rate than `fps`.
  """
  try:
    model, params = load(path)
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"{option}={path!r}: {e}") from e
  if model.config.fps != fps:
    raise ValueError(f"{option}={path!r} was trained at {model.config.fps} "
                     f"fps but the data is {fps} fps (config.data.fps)")

  def score_fn(critic_params, samples, condition, mask):
    motion = critic_lib.motion_from_packed(samples, include_hands)
    return critic_lib.score(model, critic_params, body, motion,
                            condition.T_world_cpf, condition.T_cpf_tm1_cpf_t,
                            mask)

  return score_fn, params
