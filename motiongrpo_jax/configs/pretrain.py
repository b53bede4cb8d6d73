"""Config for the `pretrain` mode: `--config=configs/pretrain.py[:variant]`.

Variants (the default is `demo`):
  demo   built-in synthetic data (160 sequences), generated on the fly into
         `WORKDIR/data` (or `data.data_dir`) when absent; a tiny model
         (0.39 M parameters); a few minutes on 2 CPU cores.
  bvh    a dataset built from BVH mocap with
         `python -m motiongrpo_jax.tools.build_dataset --source=bvh
         --output_dir=DIR …`, given as `--config.data.data_dir=DIR`; a
         CPU-scale model (1.9 M parameters, about an hour on 2 CPU cores).
  amass  EgoAllo's setup: the 50.4 M-parameter denoiser with hands, batch
         256 of 128-frame subsequences, AdamW lr 1e-4 with 1,000 warm-up
         steps; `--config.data.data_dir` names an AMASS (or EgoAllo HDF5)
         dataset built with `build_dataset`.
Variants override only what differs from the defaults below (EgoAllo's).
"""

import ml_collections

from motiongrpo_jax import config_sections
from motiongrpo_jax.diffusion import loss as loss_lib

VARIANTS = ("demo", "bvh", "amass")


def get_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """Returns the config of a variant (locked by main.py)."""
  config = config_sections.base("pretrain", variant, VARIANTS)
  # Seed of every random stream in the run (data, init, sampling).
  config.seed = 0
  # Start from these parameters instead of a random init (fine-tuning): a
  # training workdir (its latest checkpoint), one checkpoint step directory,
  # a model directory (`model/params_io`, e.g. a converted EgoAllo model) or
  # an EgoAllo checkpoint directory. "" = random init. Ignored when the
  # workdir already has a checkpoint (the run resumes instead).
  config.init_checkpoint = ""

  # #### Model (the denoiser; `model/denoiser.DenoiserConfig`) ####
  config.model = ml_collections.ConfigDict()
  # Token width D.
  config.model.d_latent = 512
  # Hidden width of each block's MLP.
  config.model.d_feedforward = 2048
  # Width of the noise-level embedding table.
  config.model.d_noise_emb = 1024
  # Attention heads (D / heads must be even, for RoPE).
  config.model.num_heads = 4
  # Blocks over the condition stream.
  config.model.encoder_layers = 6
  # Blocks over the motion stream.
  config.model.decoder_layers = 6
  # Predict the 30 hand rotations too (packed state 496 instead of 226).
  config.model.include_hands = True
  # Matmul inputs: "float32" (exact) or "bfloat16" (fp32 accumulation).
  config.model.matmul_dtype = "float32"
  # Honour the frame mask in self-attention (False reproduces EgoAllo).
  config.model.mask_self_attention = True

  # #### Data ####
  config.data = ml_collections.ConfigDict()
  # Dataset directory (the `--output_dir` of build_dataset). "" = WORKDIR/data.
  config.data.data_dir = ""
  # Build a synthetic dataset there when it holds none (demo only; other
  # sources are built beforehand with `tools/build_dataset`).
  config.data.build_synthetic_if_missing = False
  # Synthetic build: number of sequences (all splits; ~80/10/10 %).
  config.data.synthetic_num_sequences = 160
  # Synthetic build: frames per sequence (one length builds fastest).
  config.data.synthetic_num_frames = 240
  # Split trained on.
  config.data.train_split = "train"
  # Split of the validation loss.
  config.data.val_split = "val"
  # Frames per training subsequence (EgoAllo: 128).
  config.data.seq_len = 128
  # Global batch size (all devices of all processes; EgoAllo: 256).
  config.data.batch_size = 256
  # Global batch size of validation batches.
  config.data.val_batch_size = 64
  # Validation uses at most this many batches of consecutive windows of
  # `seq_len` frames of the val split (always the same ones).
  config.data.max_val_batches = 8
  # Grain worker processes (0: read in the training process).
  config.data.num_workers = 0

  # #### Loss (EgoAllo's; `diffusion/loss.py`) ####
  config.loss = config_sections.from_dataclass(loss_lib.LossConfig)

  # #### Optimiser (AdamW after grad-norm clipping; `train/state.py`) ####
  config.optimizer = config_sections.optimizer(
      learning_rate=1e-4, warmup_steps=1000, weight_decay=1e-4)

  # #### Loop, checkpoints, logs (`train/loop.py`) ####
  config.train = config_sections.train_loop(
      num_steps=400_000, log_every_steps=100,
      eval_every_steps=5000, checkpoint_every_steps=5000,
      max_consecutive_nonfinite=20)

  if variant == "demo":
    config.model.d_latent = 64
    config.model.d_feedforward = 256
    config.model.d_noise_emb = 64
    config.model.encoder_layers = 2
    config.model.decoder_layers = 2
    config.model.include_hands = False  # Synthetic motion has no hands.
    config.data.build_synthetic_if_missing = True
    config.data.seq_len = 32
    config.data.batch_size = 32
    config.data.val_batch_size = 32
    config.data.max_val_batches = 4
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 100
    # Decayed to 0 by the last step: a base left at a constant rate is not
    # converged, and later training (GRPO) gains from the decay alone.
    config.optimizer.schedule = "cosine"
    config.train.num_steps = 2000
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
    config.train.progress_every_seconds = 10.0
  elif variant == "bvh":
    config.model.d_latent = 128
    config.model.d_feedforward = 512
    config.model.d_noise_emb = 256
    config.model.encoder_layers = 3
    config.model.decoder_layers = 3
    config.model.include_hands = False  # BVH skeletons carry no hands.
    config.data.seq_len = 64
    config.data.batch_size = 32
    config.data.val_batch_size = 32
    config.optimizer.learning_rate = 3e-4
    config.optimizer.warmup_steps = 300
    config.optimizer.schedule = "cosine"  # As the demo's.
    # ~0.6 s per step on 2 CPU cores: about an hour.
    config.train.num_steps = 6000
    config.train.log_every_steps = 50
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
  return config
