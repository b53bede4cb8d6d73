"""Config for the `eval` mode: `--config=configs/eval.py[:variant]`.

    python -m motiongrpo_jax.main --config=configs/eval.py:demo \\
        --config.checkpoint=runs/pretrain_demo --workdir=runs/eval_demo

Variants (the default is `default`):
  demo     the held-out test split of the built-in synthetic dataset (the one
           `configs/pretrain.py:demo` trains on, regenerated into
           `WORKDIR/data` when `data.data_dir` holds none), L = 32.
  default  EgoAllo's protocol on a dataset built with `build_dataset`
           (`--config.data.data_dir=DIR`): the test split cut into
           consecutive subsequences of L + 1 = 129 CPF poses.
Both sample with EgoAllo's 30-step sampler and write
`WORKDIR/eval_metrics.json` and `WORKDIR/eval_per_sequence.csv`.
`--config.guidance.mode=no_hands` adds EgoAllo's post-sampling guidance
(`--config.guidance.inner=True` also its guidance inside the sampler).
"""

import ml_collections

from motiongrpo_jax import config_sections
from motiongrpo_jax.data import condition_noise
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.guidance import residuals as guidance

VARIANTS = ("demo", "default")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config of a variant (locked by main.py)."""
  config = config_sections.base("eval", variant, VARIANTS)
  # Seed of every random stream in the run (the sampler's noise).
  config.seed = 0
  # The model to evaluate (required): a training workdir (its latest
  # checkpoint), one checkpoint step directory, a model directory
  # (`model/params_io`) or an imported EgoAllo checkpoint directory.
  config.checkpoint = ""
  # Samples drawn per evaluation window (each scored on its own).
  config.num_samples = 1
  # Body model (use the body the dataset was built with).
  config.body = config_sections.body()

  # #### Data ####
  config.data = ml_collections.ConfigDict()
  # Dataset directory (the `--output_dir` of build_dataset). "" = WORKDIR/data.
  config.data.data_dir = ""
  # Split evaluated.
  config.data.split = "test"
  # Frames per second of the data (velocities, jitter).
  config.data.fps = 30.0
  # L, output frames per subsequence: each window holds L + 1 CPF poses
  # (EgoAllo reports L = 32 and L = 128).
  config.data.seq_len = 128
  # Poses between consecutive window starts; 0 = L + 1 (non-overlapping).
  config.data.stride = 0
  # A last window shorter than L + 1 poses: "drop" (EgoAllo) or "pad" (kept,
  # masked; windows with fewer than 4 valid frames are still left out,
  # since jitter needs 4).
  config.data.partial = "drop"
  # Windows per sampler call (all devices together; a multiple of the device
  # count). The last batch is completed with masked filler.
  config.data.batch_size = 16
  # Evaluate at most this many windows (the first ones); 0 = all.
  config.data.max_windows = 0
  # Generate the built-in synthetic dataset into `data_dir` when it holds
  # none (demo only; other datasets are built with `tools/build_dataset`).
  config.data.build_synthetic_if_missing = False
  # Synthetic build (as configs/pretrain.py:demo, so that its test split is
  # the one held out from that training): number of sequences, frames per
  # sequence, and the dataset seed.
  config.data.synthetic_num_sequences = 160
  config.data.synthetic_num_frames = 240
  config.data.synthetic_seed = 0

  # #### Sampler (`diffusion/sampler.py` SamplerConfig: its fields,
  # EgoAllo's defaults and their comments) ####
  config.sampler = config_sections.from_dataclass(sampler_lib.SamplerConfig)

  # #### Guidance (`guidance/residuals.py` GuidanceConfig: EgoAllo's
  # "post" guidance after sampling, and with `inner` its guidance of each
  # step's x̂0 in the sampler; mode "off" by default). With it on, the
  # unguided samples are scored too and eval_metrics.json gains the paired
  # change guided vs unguided ####
  config.guidance = config_sections.from_dataclass(guidance.GuidanceConfig)
  # With guidance.mode="aria_wrist_only": the wrist targets are the ground
  # truth's wrist positions plus this noise, a stand-in for Aria's wrist
  # estimates (`data/condition_noise.py` ConditionNoiseConfig: "gaussian",
  # i.i.d. per frame; "perlin", smooth in time; "none"; amplitude = RMS per
  # axis, metres; one draw per window and wrist, fixed by the seed). Their
  # orientation is left free, as with Aria's.
  config.wrist_target_noise = config_sections.from_dataclass(
      condition_noise.ConditionNoiseConfig(kind="gaussian", amplitude=0.015))

  if variant == "demo":
    config.data.seq_len = 32
    config.data.batch_size = 32
    config.data.build_synthetic_if_missing = True
  return config
