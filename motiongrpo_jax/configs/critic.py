"""Config for the `critic` mode: `--config=configs/critic.py[:variant]`.

Trains the perceptual critic (`critic/model.py`) with InfoNCE against the
base policy's own samples and perturbed ground truth, then evaluates it on a
held-out split (`WORKDIR/critic_eval.json`). `base_checkpoint` must name the
base denoiser: a pretrain workdir, a model directory or an EgoAllo
checkpoint directory.

Variants (the default is `demo`):
  demo   synthetic data and a tiny critic; minutes on 2 CPU cores. Set
         `--config.base_checkpoint` to a `configs/pretrain.py:demo` workdir;
         its synthetic dataset (`BASE/data`) is reused when `data.data_dir`
         is empty.
  bvh    a BVH dataset (`--config.data.data_dir`, built with
         `tools/build_dataset --source=bvh`) and a base model from
         `configs/pretrain.py:bvh`; evaluated on the `val` split (the held-out
         "normal" style of Bandai-Namco).
  amass  paper scale: AMASS (or EgoAllo HDF5) data, EgoAllo's base model
         with hands, SMPL-H body (`--config.body.smplh_npz`).
Variants override only what differs from the defaults below.
"""

import ml_collections

from motiongrpo_jax import config_sections
from motiongrpo_jax.diffusion import sampler as sampler_lib

VARIANTS = ("demo", "bvh", "amass")
PERTURBATION_KINDS = ("time_shift", "joint_noise", "foot_sliding",
                      "mirrored_limbs", "other_motion")


def get_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """Returns the config of a variant (locked by main.py)."""
  config = config_sections.base("critic", variant, VARIANTS)
  # Seed of every random stream in the run (data, init, sampling).
  config.seed = 0
  # The frozen base policy whose samples are the hard negatives: a pretrain
  # workdir (its latest checkpoint), a checkpoint step directory, a model
  # directory or an EgoAllo checkpoint directory. Required.
  config.base_checkpoint = ""
  # Start the critic from these parameters (a critic workdir or step
  # directory) instead of a random init; "" = random. Ignored on resume.
  config.init_checkpoint = ""

  # #### Critic model (`critic/model.py` CriticConfig) ####
  config.model = ml_collections.ConfigDict()
  # Token width D.
  config.model.d_model = 128
  # Attention heads (D / heads must be even, for RoPE).
  config.model.num_heads = 4
  # Hidden width of every MLP.
  config.model.d_feedforward = 512
  # [spatial attention, temporal attention, MLP] blocks.
  config.model.num_blocks = 4
  # Temporal self-attention blocks over the trajectory tokens.
  config.model.trajectory_layers = 1
  # Per-joint inputs: positions and velocities in the CPF heading frame,
  # rotations (local; pelvis in the heading frame).
  config.model.use_positions = True
  config.model.use_velocities = True
  config.model.use_rotations = True

  # #### Body model the motions are posed with ####
  config.body = config_sections.body()

  # #### Data (as configs/pretrain.py) ####
  config.data = ml_collections.ConfigDict()
  # Dataset directory (`build_dataset --output_dir`). "" = the base
  # checkpoint's `data/` when it holds a dataset (the pretrain demo's), else
  # WORKDIR/data.
  config.data.data_dir = ""
  # Build a synthetic dataset there when it holds none (demo only).
  config.data.build_synthetic_if_missing = False
  # Synthetic build: number of sequences and frames per sequence (as
  # configs/grpo.py's, so that a GRPO demo's critic sees its dataset).
  config.data.synthetic_num_sequences = 48
  config.data.synthetic_num_frames = 240
  # Split trained on.
  config.data.train_split = "train"
  # Split of the validation loss during training.
  config.data.val_split = "val"
  # Frames per subsequence (training, validation and evaluation windows).
  config.data.seq_len = 128
  # Global batch size (trajectories per step; each brings its candidates).
  config.data.batch_size = 64
  # Global batch size of validation batches.
  config.data.val_batch_size = 32
  # Validation uses at most this many batches of val windows (fixed ones,
  # with negatives drawn once).
  config.data.max_val_batches = 4
  # Grain worker processes (0: read in the training process).
  config.data.num_workers = 0

  # #### Negatives and the InfoNCE objective (`critic/objective.py`) ####
  config.objective = ml_collections.ConfigDict()
  # InfoNCE temperature τ.
  config.objective.temperature = 0.07
  # Hard negatives: G rollouts of the base policy per trajectory, generated
  # on the fly every step by the compiled sampler (no cache) ...
  config.objective.base_samples = 2
  # ... each contributing the x̂0 of its last K sampling steps.
  config.objective.base_last_steps = 2
  # Graded hard negatives: each rollout sees the head trajectory shaken by
  # GRPO's smooth condition noise (Perlin, 0.5 Hz, 3 octaves) of RMS
  # λ ~ U[0, condition_noise_max] metres; the critic judges the sample against
  # the clean trajectory. 0 = plain samples only. (Demo, 300 steps: the
  # within-group rank correlation of score and MPJPE under eval condition
  # noise 0.2 m was −0.26 with 0.3 here, −0.14 with 0.)
  config.objective.condition_noise_max = 0.3
  # Perturbed ground truth, one negative per kind (a subset of
  # time_shift, joint_noise, foot_sliding, mirrored_limbs, other_motion).
  config.objective.perturbations = PERTURBATION_KINDS
  # time_shift: |shift| in frames, uniform in [min_shift, max_shift].
  config.objective.min_shift = 4
  config.objective.max_shift = 15
  # joint_noise: std (rad) of a per-joint constant and a per-frame rotation.
  config.objective.noise_offset_std = 0.15
  config.objective.noise_jitter_std = 0.05
  # foot_sliding: legs replayed at rate α ~ U[0, slide_rate_max].
  config.objective.slide_rate_max = 0.5

  # #### The base policy's sampler (`diffusion/sampler.py` SamplerConfig:
  # its fields, EgoAllo's defaults and their comments) ####
  config.sampler = config_sections.from_dataclass(sampler_lib.SamplerConfig)

  # #### Held-out evaluation (`critic/evaluation.py`, critic_eval.json) ####
  config.eval = ml_collections.ConfigDict()
  # Held-out split evaluated after training.
  config.eval.split = "test"
  # Base-policy samples per trajectory (>= 2: rank correlation with MPJPE).
  config.eval.num_samples = 8
  # Also evaluate samples whose rollouts saw condition noise of this RMS
  # (metres; GRPO's group setting, keys `noisy_…`); 0 = plain samples only.
  config.eval.condition_noise = 0.2
  # Global batch size of evaluation windows.
  config.eval.batch_size = 16
  # Frames between the starts of consecutive windows of a sequence (0: the
  # window length, i.e. back to back; larger than every sequence: one window
  # per sequence).
  config.eval.stride = 0
  # Evaluate at most this many batches (0: the whole split).
  config.eval.max_batches = 0

  # #### Optimiser (AdamW after grad-norm clipping; `train/state.py`) ####
  config.optimizer = config_sections.optimizer(
      learning_rate=1e-4, warmup_steps=1000, weight_decay=1e-4)

  # #### Loop, checkpoints, logs (`train/loop.py`) ####
  config.train = config_sections.train_loop(
      num_steps=50_000, log_every_steps=100,
      eval_every_steps=2000, checkpoint_every_steps=2000,
      max_consecutive_nonfinite=20)

  if variant == "demo":
    config.model.d_model = 32
    config.model.num_heads = 2
    config.model.d_feedforward = 64
    config.model.num_blocks = 2
    config.data.build_synthetic_if_missing = True
    config.data.seq_len = 32
    config.data.batch_size = 8
    config.data.val_batch_size = 16
    config.data.max_val_batches = 2
    config.objective.base_samples = 1
    config.eval.batch_size = 16
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 30
    config.train.num_steps = 300
    config.train.log_every_steps = 25
    config.train.eval_every_steps = 100
    config.train.checkpoint_every_steps = 100
    config.train.progress_every_seconds = 10.0
  elif variant == "bvh":
    config.data.seq_len = 64
    config.data.batch_size = 32
    config.eval.split = "val"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.warmup_steps = 200
    config.train.num_steps = 5000
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
  elif variant == "amass":
    config.model.d_model = 256
    config.model.num_heads = 8
    config.model.d_feedforward = 1024
    config.body.model = "smplh"
  return config
