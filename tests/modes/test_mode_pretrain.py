"""Tests for the pretrain mode: end-to-end steps, fine-tuning, data
parallelism of the loss, conditioning dropout, bad input."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.configs import pretrain as pretrain_config
from motiongrpo_jax.data import records
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.modes import pretrain
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import denoiser_loss
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import metrics_writer

from conftest import REPO



def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _record(i, split, num_frames=40):
  """A valid record of random (not physically consistent) values: fast."""
  rng = np.random.default_rng(i)
  pose = lambda: np.concatenate(  # pylint: disable=unnecessary-lambda-assignment
      [_unit(rng.normal(size=(num_frames, 4))),
       rng.normal(size=(num_frames, 3)).astype(np.float32)], axis=-1)
  return records.SequenceRecord(
      betas=rng.normal(size=16).astype(np.float32), T_world_root=pose(),
      body_quats=_unit(rng.normal(size=(num_frames, 21, 4))), hand_quats=None,
      contacts=(rng.random((num_frames, 21)) > 0.5).astype(np.float32),
      T_world_cpf=pose(), T_cpf_tm1_cpf_t=pose(),
      height_from_floor=rng.random((num_frames, 1)).astype(np.float32),
      joints_wrt_cpf=rng.normal(size=(num_frames, 21, 3)).astype(np.float32),
      name=f"test/{i}", source="test", split=split)


# Train and val sequence lengths; those under seq_len (8) give padded windows,
# so that devices see different numbers of valid frames.
_LENGTHS = {"train": (40, 6, 40, 5), "val": (40, 7)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A tiny dataset: 4 train and 2 val sequences."""
  path = tmp_path_factory.mktemp("data")
  lengths = [(split, n) for split, ns in _LENGTHS.items() for n in ns]
  tfds_builder.build([_record(i, split, n) for i, (split, n) in enumerate(lengths)],
                     path)
  return path


def _tiny_config(data_dir, **train):
  config = pretrain_config.get_config("demo")
  config.model.update(d_latent=16, d_feedforward=32, d_noise_emb=16,
                      num_heads=2, encoder_layers=1, decoder_layers=1)
  config.data.update(data_dir=str(data_dir), build_synthetic_if_missing=False,
                     seq_len=8, batch_size=4, val_batch_size=4,
                     max_val_batches=2)
  config.loss.cond_dropout_prob = 0.3
  config.optimizer.warmup_steps = 1
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=0,
                      checkpoint_every_steps=2, progress_every_seconds=0.0)
  config.train.update(train)
  return config


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """Two pretrain steps of the tiny config: (workdir, result)."""
  workdir = tmp_path_factory.mktemp("pretrain")
  return workdir, pretrain.run(_tiny_config(data_dir), str(workdir))


def test_end_to_end_steps(trained):
  workdir, result = trained
  assert not result.preempted and int(result.state.step) == 2
  assert (workdir / "checkpoints" / "2" / "state").is_dir()
  config = json.loads((workdir / "model_config.json").read_text())
  assert (config["d_latent"], config["include_hands"]) == (16, False)
  logged = metrics_writer.read_metrics(workdir)
  train = [r for r in logged if r["split"] == "train"]
  val = [r for r in logged if r["split"] == "val"]
  assert [r["step"] for r in train] == [1, 2]
  assert [r["step"] for r in val] == [0, 2]
  for r in train + val:
    assert np.isfinite(r["loss"]) and r["loss"] > 0
    assert r["loss_hand_rotmats"] == 0.0  # No hands in this model.
    # EgoAllo's total from its terms.
    assert r["loss"] == pytest.approx(
        0.1 * r["loss_betas"] + r["loss_body_rotmats"] + 0.1 * r["loss_contacts"],
        rel=1e-5)
  assert train[1]["update_norm"] > 0 and train[0]["learning_rate"] == 0.0

  # The workdir loads as a model (config + latest params).
  model, params = checkpoints.load_denoiser(workdir)
  assert model.config.d_latent == 16
  jax.tree.map(np.testing.assert_array_equal, params,
               jax.device_get(result.state.params))


def test_fine_tuning_starts_from_init_checkpoint(trained, data_dir):
  source, result = trained
  config = _tiny_config(data_dir)
  model = pretrain.denoiser_lib.Denoiser(pretrain.denoiser_config(config))
  tx = pretrain.state_lib.make_optimizer(config.optimizer,
                                         config.train.num_steps)
  mesh = mesh_lib.make_mesh()
  config.init_checkpoint = str(source)
  init_fn, abstract_fn = pretrain.state_initializers(config, model, tx, mesh)
  state = init_fn()
  # The trained parameters, with a fresh optimiser state at step 0.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               jax.device_get(result.state.params))
  assert int(state.step) == 0
  assert jax.tree.structure(state) == jax.tree.structure(
      jax.eval_shape(abstract_fn))
  # A model of another size cannot start from it.
  config.model.d_latent = 32
  other = pretrain.denoiser_lib.Denoiser(pretrain.denoiser_config(config))
  with pytest.raises(ValueError, match="parameters do not match the configured model"):
    pretrain.state_initializers(config, other, tx, mesh)[0]()


def _batch(num=8, frames=6):
  rng = np.random.default_rng(3)
  pose = np.concatenate([_unit(rng.normal(size=(num, frames, 4))),
                         rng.normal(size=(num, frames, 3)).astype(np.float32)], -1)
  return {
      "betas": rng.normal(size=(num, 16)).astype(np.float32),
      "body_quats": _unit(rng.normal(size=(num, frames, 21, 4))),
      "contacts": (rng.random((num, frames, 21)) > 0.5).astype(np.float32),
      "T_world_cpf": pose,
      "T_cpf_tm1_cpf_t": pose[:, ::-1].copy(),
      # Element i has min(i, frames − 1) + 1 valid frames: unequal per device.
      "mask": np.arange(frames)[None, :] <= np.arange(num)[:, None],
  }


def test_conditioning_dropout_removes_the_condition(trained, data_dir):
  model = pretrain.denoiser_lib.Denoiser(
      pretrain.denoiser_config(_tiny_config(data_dir)))
  batch = _batch()
  params = trained[1].state.params

  @jax.jit
  def predict(keep, T_world_cpf):
    with denoiser_loss.cond_dropout(keep):
      return model.apply({"params": params}, jnp.zeros((8, 6, 226)),
                         jnp.full((8,), 500), T_world_cpf,
                         batch["T_cpf_tm1_cpf_t"])

  other = batch["T_world_cpf"][::-1].copy()
  keep = jnp.arange(8) % 2 == 0  # Sequences 0, 2, 4, 6 keep the condition.
  changed = np.abs(predict(keep, batch["T_world_cpf"]) - predict(keep, other))
  per_sequence = changed.max(axis=(1, 2))
  assert (per_sequence[0::2] > 1e-4).all()  # The condition matters …
  assert (per_sequence[1::2] == 0).all()  # … unless it is dropped.


def _override_flags(config, prefix="config"):
  """`--config.a.b=v` flags reproducing `config`."""
  flags = []
  for key, value in config.items():
    if hasattr(value, "items"):
      flags += _override_flags(value, f"{prefix}.{key}")
    else:
      flags.append(f"--{prefix}.{key}={value}")
  return flags


def test_main_on_four_devices_matches_one_device(trained, data_dir, tmp_path):
  """The whole mode through main.py on 4 fake CPU devices, same global batch."""
  _, reference = trained
  workdir = tmp_path / "run"
  config = _tiny_config(data_dir)
  flags = [f for f in _override_flags(config)
           if not f.startswith(("--config.mode=", "--config.variant="))]
  env = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"] +
             " --xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.main",
       "--config=configs/pretrain.py:demo", f"--workdir={workdir}",
       *flags], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "4 devices" in proc.stderr
  assert json.loads((workdir / "config.json").read_text())["data"]["batch_size"] == 4
  _, params = checkpoints.load_denoiser(workdir)
  # Per-example keys and the frame-share weighting of the loss make the
  # update independent of the device count, up to float32 reduction order;
  # the first update alone moves parameters by ~1e-3 (lr 1e-3, Adam).
  diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                       jax.device_get(params),
                       jax.device_get(reference.state.params))
  assert max(jax.tree.leaves(diffs)) < 1e-6, diffs
  losses = [{(r["split"], r["step"]): r["loss"]
             for r in metrics_writer.read_metrics(w)}
            for w in (workdir, trained[0])]
  assert sorted(losses[0]) == [("train", 1), ("train", 2), ("val", 0), ("val", 2)]
  assert losses[0].keys() == losses[1].keys()
  for key, loss in losses[0].items():
    assert loss == pytest.approx(losses[1][key], rel=1e-5), key


def test_unknown_variant_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown variant 'nope'; expected one of "
                     r"\['demo', 'bvh', 'amass'\]"):
    pretrain_config.get_config("nope")


def test_variants_validate():
  for variant in pretrain_config.VARIANTS:
    config = pretrain_config.get_config(variant)
    pretrain.validate(config, num_devices=8)
  amass = pretrain_config.get_config("amass")
  assert (amass.data.batch_size, amass.data.seq_len) == (256, 128)
  assert (amass.optimizer.learning_rate, amass.optimizer.warmup_steps) == (1e-4, 1000)
  count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(
      pretrain.params_io.abstract_params(pretrain.denoiser_config(amass))))
  assert 50.0e6 < count < 50.8e6  # EgoAllo's 50.4 M.


@pytest.mark.parametrize("field,value,message", [
    ("data.batch_size", 18, r"config.data.batch_size=18 must be a positive "
     r"multiple of the number of devices \(4\)"),
    ("loss.cond_dropout_prob", 1.0, r"config.loss.cond_dropout_prob=1.0"),
    ("model.num_heads", 3, r"config.model: .*num_heads=3"),
    ("train.num_steps", 0, r"train.num_steps=0"),
])
def test_bad_config_is_a_clear_error(field, value, message):
  config = pretrain_config.get_config("demo")
  group, name = field.split(".")
  config[group][name] = value
  with pytest.raises(ValueError, match=message):
    pretrain.validate(config, num_devices=4)


def test_missing_dataset_split_and_checkpoint_are_clear_errors(data_dir, tmp_path):
  config = pretrain_config.get_config("bvh")
  config.data.data_dir = str(tmp_path / "none")
  with pytest.raises(FileNotFoundError, match="holds no dataset; build one with "
                     "`python -m motiongrpo_jax.tools.build_dataset"):
    pretrain.run(config, str(tmp_path / "a"))

  config = _tiny_config(data_dir)
  config.data.val_split = "test"
  with pytest.raises(ValueError, match="split 'test' not in the dataset"):
    pretrain.run(config, str(tmp_path / "b"))

  config = _tiny_config(data_dir)
  config.init_checkpoint = str(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="does not exist: .*missing"):
    pretrain.run(config, str(tmp_path / "c"))
