"""A training run's inputs: its dataset directory (built first when the config
asks for synthetic data) and this process's shard of random windows."""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import synthetic
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.train import mesh as mesh_lib


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """The dataset directory, generating synthetic data first if so configured.

  Returns:
    `config.data.data_dir` (default `WORKDIR/data`), holding a dataset.
  """
  data_dir = pathlib.Path(config.data.data_dir or pathlib.Path(workdir) / "data")
  try:
    tfds_builder.dataset_dir(data_dir)
    return data_dir
  except FileNotFoundError:
    if not config.data.build_synthetic_if_missing:
      raise FileNotFoundError(
          f"config.data.data_dir={str(data_dir)!r} holds no dataset; build one "
          "with `python -m motiongrpo_jax.tools.build_dataset "
          f"--source=<synthetic|bvh|amass|egoallo_hdf5> --output_dir={data_dir}`"
          ) from None
  if jax.process_index() == 0:
    length = config.data.synthetic_num_frames
    logging.info("generating %d synthetic sequences of %d frames into %s",
                 config.data.synthetic_num_sequences, length, data_dir)
    summary = tfds_builder.build(
        lambda: synthetic.synthetic_records(
            config.data.synthetic_num_sequences, seed=config.seed,
            num_frames=(length, length)), data_dir)
    logging.info("wrote %s: %s in %.1f s", summary.path, summary.splits,
                 summary.seconds)
  multihost_utils.sync_global_devices("inputs: dataset ready")
  return data_dir


def train_iterator(config: ml_collections.ConfigDict, data_dir: str,
                   mesh: jax.sharding.Mesh,
                   hands: bool, seq_len: int | None = None):
  """This process's shard of random training windows (`config.data`).

  Args:
    config: a training config (`data.*` and `seed`).
    data_dir: the dataset directory.
    mesh: the device mesh (the local batch is this process's share).
    hands: whether batches carry hand rotations.
    seq_len: frames per window (default `config.data.seq_len`).

  Returns:
    A checkpointable iterator of local batches.
  """
  return iter(pipeline.train_dataset(
      data_dir, split=config.data.train_split,
      seq_len=seq_len or config.data.seq_len,
      batch_size=mesh_lib.local_batch_size(config.data.batch_size, mesh,
                                           "config.data.batch_size"),
      seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count(), num_workers=config.data.num_workers,
      hands=hands))


def data_dir_of(config: ml_collections.ConfigDict, workdir: str,
                checkpoint: str) -> pathlib.Path:
  """`data.data_dir`, else the dataset in `checkpoint`'s `data/` (a demo base
  trained on data it built), else `prepare_data`'s."""
  if not config.data.data_dir and checkpoint:
    candidate = pathlib.Path(checkpoint) / "data"
    try:
      tfds_builder.dataset_dir(candidate)
      return candidate
    except FileNotFoundError:
      pass
  return prepare_data(config, workdir)
