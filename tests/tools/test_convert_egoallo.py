"""Tests of the EgoAllo checkpoint importer (config parsing, tensor mapping, CLI)."""

import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy

from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io
from motiongrpo_jax.model import egoallo_import

REPO = pathlib.Path(__file__).resolve().parents[2]


def _copy_exp(reference, exp, tmp_path):
  dst = tmp_path / exp
  shutil.copytree(reference / exp, dst)
  return dst


def test_default_layout_converts_and_runs(egoallo_reference, tmp_path):
  # EgoAllo's default architecture: 222 tensors with these names and shapes.
  lines = (egoallo_reference / "egoallo_default_state_dict.txt").read_text()
  entries = [re.fullmatch(r"(\S+) \(([\d, ]*)\) float32", line)
             for line in lines.splitlines() if not line.startswith("#")]
  assert len(entries) == 222 and all(entries)
  config = egoallo_import.read_egoallo_config(
      egoallo_reference / "egoallo_default_model_config.yaml")
  assert config == denoiser_lib.DenoiserConfig()
  rng = np.random.default_rng(0)
  freqs = denoiser_lib.rope_frequencies(config.head_dim)
  # Random values, cheaply: a 1 M pool tiled into every tensor.
  pool = 0.02 * rng.standard_normal(1 << 20, np.float32)
  state = {}
  for m in entries:
    shape = tuple(int(s) for s in m.group(2).split(",") if s.strip())
    state[m.group(1)] = (freqs.copy() if m.group(1).endswith("rotary_emb.freqs")
                         else np.resize(pool, shape))
  exp = tmp_path / "exp"
  (exp / "checkpoints_0").mkdir(parents=True)
  shutil.copy(egoallo_reference / "egoallo_default_model_config.yaml",
              exp / "model_config.yaml")
  safetensors.numpy.save_file(state, str(exp / "checkpoints_0" / "model.safetensors"))
  del state

  model, params = egoallo_import.load_egoallo_checkpoint(exp / "checkpoints_0")
  assert sum(p.size for p in jax.tree.leaves(params)) == 50_446_320
  frames = 8
  poses = np.tile(np.array([1.0, 0, 0, 0, 0, 0, 1.6], np.float32),
                  (1, frames, 1))
  x = rng.standard_normal((1, frames, 496), np.float32)
  out = model.apply({"params": params}, x, np.array([500]), poses, poses)
  assert out.shape == (1, frames, 496) and np.all(np.isfinite(out))


def test_config_parsing_is_safe_and_lenient(egoallo_reference, tmp_path):
  text = (egoallo_reference / "small_exp" / "model_config.yaml").read_text()
  path = tmp_path / "model_config.yaml"
  # d_cond (a cached property that can leak into dumps) is ignored; a missing
  # key takes EgoAllo's default.
  path.write_text(text.replace("max_t: 1000\n", "") + "d_cond: 154\n")
  config = egoallo_import.read_egoallo_config(path)
  assert (config.d_latent, config.max_t, config.include_hands) == (32, 1000, True)
  path.write_text("!!python/object/apply:os.system ['true']\n")
  with pytest.raises(ValueError, match="model_config.yaml"):
    egoallo_import.read_egoallo_config(path)


def test_unsupported_option_is_named(egoallo_reference, tmp_path):
  exp = _copy_exp(egoallo_reference, "small_exp", tmp_path)
  yaml_path = exp / "model_config.yaml"
  yaml_path.write_text(yaml_path.read_text().replace(
      "positional_encoding: rope", "positional_encoding: transformer"))
  with pytest.raises(ValueError, match=r"model_config.yaml.*positional_encoding"):
    egoallo_import.load_egoallo_checkpoint(exp / "checkpoints_0")


def test_bad_tensors_are_all_listed(egoallo_reference):
  config = egoallo_import.read_egoallo_config(
      egoallo_reference / "small_exp" / "model_config.yaml")
  state = safetensors.numpy.load_file(
      str(egoallo_reference / "small_exp" / "checkpoints_0" / "model.safetensors"))
  assert egoallo_import.convert_state_dict(state, config)  # the original is fine
  bad = dict(state)
  for name in ("encoders.betas.2.bias", "decoder_layers.1.xattn_q_proj.weight"):
    del bad[name]
  bad["module.extra"] = np.zeros(3, np.float32)
  bad["encoder_layers.0.film.weight"] = np.zeros(3, np.float32)
  bad["latent_from_cond.weight"] = state["latent_from_cond.weight"].T
  bad["noise_emb.weight"] = state["noise_emb.weight"][:10]
  bad["decoder_layers.0.rotary_emb.freqs"] = 2 * state[
      "decoder_layers.0.rotary_emb.freqs"]
  with pytest.raises(ValueError) as info:
    egoallo_import.convert_state_dict(bad, config, source="ckpt")
  message = str(info.value)
  for name in ("encoders.betas.2.bias", "decoder_layers.1.xattn_q_proj.weight",
               "module.extra", "encoder_layers.0.film.weight",
               "latent_from_cond.weight: (154, 32) (expected (32, 154))",
               "noise_emb.weight: (10, 48)",
               "decoder_layers.0.rotary_emb.freqs"):
    assert name in message


def test_cli_output_reproduces_golden(egoallo_reference, tmp_path):
  out_dir = tmp_path / "converted"
  cmd = [sys.executable, "-m", "motiongrpo_jax.tools.convert_egoallo",
         f"--checkpoint_dir={egoallo_reference / 'small_exp' / 'checkpoints_0'}",
         f"--output_dir={out_dir}"]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr
  # The README's 150,176 elements include 4 blocks × 4 `rotary_emb.freqs`.
  assert "150160 parameters" in result.stdout
  model, params = params_io.load_model(out_dir)
  z = np.load(egoallo_reference / "golden_forward.npz")
  out = model.apply({"params": params}, z["x_t_packed"], z["t"],
                    z["T_world_cpf"], z["T_cpf_tm1_cpf_t"])
  assert np.max(np.abs(np.asarray(out) - z["out"])) <= 1e-5
