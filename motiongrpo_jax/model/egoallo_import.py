"""EgoAllo's PyTorch checkpoints read into our Flax denoiser (no PyTorch).

`load_egoallo_checkpoint(EXP/checkpoints_N)` reads `EXP/model_config.yaml`
(EgoAllo's `yaml.dump(EgoDenoiserConfig)`, parsed safely: no Python objects
are constructed) and `EXP/checkpoints_N/model.safetensors` (read with NumPy).
The command line is `tools/convert_egoallo.py`.

State-dict name → Flax parameter path (kernels are the transposed torch
(out, in) weights; LayerNorm weight → scale; Embedding weight → embedding):

| EgoAllo | Flax |
|---|---|
| `encoders.<field>.{0,2,4}.{weight,bias}` | `encoders_<field>/linear_{0,2,4}/{kernel,bias}` |
| `decoders.<field>.{0,3,5}.{weight,bias}` | `decoders_<field>/linear_{0,3,5}/{kernel,bias}` |
| `decoders.<field>.1.{weight,bias}` | `decoders_<field>/layernorm_1/{scale,bias}` |
| `latent_from_cond.{weight,bias}` | `latent_from_cond/{kernel,bias}` |
| `noise_emb.weight` | `noise_emb/embedding` |
| `noise_emb_token_proj.weight` | `noise_emb_token_proj/kernel` |
| `{encoder,decoder}_layers.<i>.<proj>.weight` | `{encoder,decoder}_layers_<i>/<proj>/kernel` |
| `{…}_layers.<i>.<norm>.{weight,bias}` | `{…}_layers_<i>/<norm>/{scale,bias}` |
| `{…}_layers.<i>.rotary_emb.freqs` | checked against 10000^(−2i/dh), dropped |
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Mapping

from absl import logging
import flax
import numpy as np
import safetensors.numpy
import yaml

from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io

EGOALLO_CONFIG_TAG = "tag:yaml.org,2002:python/object:egoallo.network.EgoDenoiserConfig"
CONFIG_FILE = "model_config.yaml"
WEIGHTS_FILE = "model.safetensors"

# EgoAllo config fields that map one-to-one onto DenoiserConfig.
EGOALLO_FIELDS = (
    "max_t", "fourier_enc_freqs", "d_latent", "d_feedforward", "d_noise_emb",
    "num_heads", "encoder_layers", "decoder_layers", "dropout_p", "activation",
    "positional_encoding", "noise_conditioning", "xattn_mode",
    "include_canonicalized_cpf_rotation_in_cond", "cond_param",
    "include_hand_positions_cond", "include_hands")


class _ConfigLoader(yaml.SafeLoader):
  """SafeLoader that reads EgoAllo's config tag as a plain mapping."""


_ConfigLoader.add_constructor(
    EGOALLO_CONFIG_TAG,
    lambda loader, node: loader.construct_mapping(node, deep=True))


def read_egoallo_config(path: str | pathlib.Path) -> denoiser_lib.DenoiserConfig:
  """Parses EgoAllo's `model_config.yaml` into a validated DenoiserConfig.

  Unknown keys (e.g. `d_cond`, a cached property that can leak into dumps)
  are logged and ignored; missing keys take EgoAllo's defaults.

  Args:
    path: the yaml file.

  Returns:
    The config (raises ValueError naming the file and option when a value is
    unsupported).
  """
  path = pathlib.Path(path)
  try:
    values = yaml.load(path.read_text(), Loader=_ConfigLoader)
  except yaml.YAMLError as e:
    raise ValueError(f"{path}: not an EgoAllo model config: {e}") from e
  if not isinstance(values, dict):
    raise ValueError(f"{path}: expected a mapping of EgoDenoiserConfig fields")
  unknown = sorted(set(values) - set(EGOALLO_FIELDS))
  if unknown:
    logging.warning("%s: ignoring unknown config keys %s", path, unknown)
  missing = sorted(set(EGOALLO_FIELDS) - set(values))
  if missing:
    logging.info("%s: keys %s missing, using EgoAllo defaults", path, missing)
  kwargs = {k: values[k] for k in EGOALLO_FIELDS if k in values}
  try:
    return denoiser_lib.DenoiserConfig(**kwargs).validate()
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: {e}") from e


def _torch_name(flax_path: tuple[str, ...]) -> tuple[str, bool]:
  """Flax param path → (EgoAllo state-dict name, whether to transpose)."""
  parts = []
  for segment in flax_path[:-1]:
    if m := re.fullmatch(r"(encoders|decoders)_(\w+)", segment):
      parts += [m.group(1), m.group(2)]
    elif m := re.fullmatch(r"(encoder_layers|decoder_layers)_(\d+)", segment):
      parts += [m.group(1), m.group(2)]
    elif m := re.fullmatch(r"(linear|layernorm)_(\d+)", segment):
      parts.append(m.group(2))
    else:
      parts.append(segment)
  leaf = flax_path[-1]
  parts.append({"kernel": "weight", "scale": "weight", "embedding": "weight",
                "bias": "bias"}[leaf])
  return ".".join(parts), leaf == "kernel"


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       config: denoiser_lib.DenoiserConfig,
                       source: str = "state dict") -> dict[str, Any]:
  """EgoAllo state dict → Flax params for `Denoiser(config)`.

  Args:
    state_dict: torch names → arrays (e.g. from `safetensors.numpy`).
    config: the model config.
    source: name of the origin, for error messages.

  Returns:
    The nested params dict (float32 NumPy arrays).

  Raises:
    ValueError listing every missing, unexpected or mis-shaped tensor, and
    any `rotary_emb.freqs` that differs from the standard frequencies.
  """
  expected: dict[str, tuple[tuple[str, ...], bool, tuple[int, ...]]] = {}
  shapes = flax.traverse_util.flatten_dict(params_io.abstract_params(config))
  for path, leaf in shapes.items():
    shape = tuple(leaf.shape)
    name, transpose = _torch_name(path)
    torch_shape = shape[::-1] if transpose else shape
    expected[name] = (path, transpose, torch_shape)
  freqs = denoiser_lib.rope_frequencies(config.head_dim)
  freq_names = [f"{stack}.{i}.rotary_emb.freqs"
                for stack, n in (("encoder_layers", config.encoder_layers),
                                 ("decoder_layers", config.decoder_layers))
                for i in range(n)]

  missing = sorted((set(expected) | set(freq_names)) - set(state_dict))
  extra = sorted(set(state_dict) - set(expected) - set(freq_names))
  bad_shapes = sorted(
      f"{name}: {tuple(state_dict[name].shape)} (expected {expected[name][2]})"
      for name in set(expected) & set(state_dict)
      if tuple(state_dict[name].shape) != expected[name][2])
  bad_freqs = sorted(
      name for name in set(freq_names) & set(state_dict)
      if state_dict[name].shape != freqs.shape
      or not np.allclose(state_dict[name], freqs, rtol=1e-6, atol=0.0))
  problems = []
  if missing:
    problems.append(f"missing tensors {missing}")
  if extra:
    problems.append(f"unexpected tensors {extra}")
  if bad_shapes:
    problems.append(f"wrong shapes {bad_shapes}")
  if bad_freqs:
    problems.append(
        f"rotary frequencies differ from 10000^(-2i/{config.head_dim}) in {bad_freqs}")
  if problems:
    raise ValueError(f"{source} does not match the model config: " +
                     "; ".join(problems))

  flat = {}
  for name, (path, transpose, _) in expected.items():
    value = np.asarray(state_dict[name], dtype=np.float32)
    flat[path] = np.ascontiguousarray(value.T) if transpose else value
  return flax.traverse_util.unflatten_dict(flat)


def load_egoallo_checkpoint(
    checkpoint_dir: str | pathlib.Path,
) -> tuple[denoiser_lib.Denoiser, dict[str, Any]]:
  """Loads `EXP/checkpoints_N` (with `EXP/model_config.yaml`) for Flax.

  `model.apply({"params": params}, x_t_packed, t, T_world_cpf,
  T_cpf_tm1_cpf_t)` then equals EgoAllo's `forward(...,
  project_output_rotmats=False, mask=None)`.

  Args:
    checkpoint_dir: the directory holding `model.safetensors`.

  Returns:
    (model, params).
  """
  checkpoint_dir = pathlib.Path(checkpoint_dir)
  config_path = checkpoint_dir.parent / CONFIG_FILE
  weights_path = checkpoint_dir / WEIGHTS_FILE
  for path in (config_path, weights_path):
    if not path.is_file():
      raise FileNotFoundError(f"EgoAllo checkpoint file not found: {path}")
  config = read_egoallo_config(config_path)
  state_dict = safetensors.numpy.load_file(str(weights_path))
  params = convert_state_dict(state_dict, config, source=str(weights_path))
  return denoiser_lib.Denoiser(config), params
