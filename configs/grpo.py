"""Config for the `grpo` mode: `--config=configs/grpo.py[:variant]`.

GRPO post-training of a base denoiser (MotionGRPO): G rollouts per head
trajectory with per-member condition noise, the hybrid reward (joint
constraints + optional perceptual critic), group-normalised advantages and
the clipped objective; then base vs post-trained on a held-out split
(`WORKDIR/summary.json`).

Variants (the default is `demo`):
  demo   built-in synthetic data. Without `init_checkpoint` it first
         pretrains a small base model (`configs/pretrain.py:demo`, in
         `WORKDIR/base`); then GRPO with the joint rewards; then the
         evaluation table with paired 95 % intervals. With
         `--config.reward.weight_vis=1` and no `critic_checkpoint` it also
         trains a critic (`configs/critic.py:demo`, in `WORKDIR/critic`).
  bvh    a BVH dataset (`--config.data.data_dir`, built with
         `tools/build_dataset --source=bvh`) and a base model from
         `configs/pretrain.py:bvh` (`--config.init_checkpoint`); evaluated on
         the `val` split (Bandai-Namco's held-out "normal" style).
  amass  paper scale: EgoAllo's base model (with hands), AMASS data, G = 8,
         B = 32 head trajectories per iteration, SMPL-H body.
Ablation switches (the paper's table): `condition_noise.kind`
(perlin / gaussian / none) and `reward.weight_vis` (0: no critic). Named
settings for `ablation.settings`:
  vanilla        joint rewards, no condition noise (vanilla GRPO);
  perceptual     + perceptual reward;
  full           + Perlin condition noise (MotionGRPO);
  full_gaussian  full, but i.i.d. Gaussian noise of equal RMS;
  noise_only     joint rewards + Perlin noise (isolates the noise);
  gaussian_only  joint rewards + i.i.d. Gaussian noise of equal RMS.
`--config.ablation.settings=vanilla,noise_only,…` runs each on the same base
checkpoint in `WORKDIR/ablation/<name>` and writes one comparison table
(`WORKDIR/ablation.json`).
Variants override only what differs from the defaults below.
"""

import ml_collections

from motiongrpo_jax import config_sections

VARIANTS = ("demo", "bvh", "amass")


def get_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """Returns the config of a variant (locked by main.py)."""
  config = config_sections.base("grpo", variant, VARIANTS)
  # Seed of every random stream in the run (data, sampling, minibatches).
  config.seed = 0
  # The base policy GRPO starts from (and the KL reference): a pretrain
  # workdir (its latest checkpoint), a checkpoint step directory, a model
  # directory or an EgoAllo checkpoint directory. "" = demo: pretrain one
  # first in WORKDIR/base. Ignored on resume (the run's checkpoint wins).
  config.init_checkpoint = ""
  # The perceptual critic (a `critic` mode workdir), needed when
  # reward.weight_vis > 0. "" = demo: train one first in WORKDIR/critic.
  config.critic_checkpoint = ""

  # #### Bootstrapping the demo (only when the checkpoints above are "") ####
  config.bootstrap = ml_collections.ConfigDict()
  # Pretrain / critic first when init_checkpoint / critic_checkpoint is "".
  config.bootstrap.enabled = False
  # Train steps of the bootstrap pretraining (0: configs/pretrain.py:demo's).
  config.bootstrap.pretrain_steps = 0
  # Train steps of the bootstrap critic (0: configs/critic.py:demo's).
  config.bootstrap.critic_steps = 0

  # #### Body model (rewards, metrics) ####
  config.body = config_sections.body()

  # #### Data ####
  config.data = ml_collections.ConfigDict()
  # Dataset directory (`build_dataset --output_dir`). "" = the base
  # checkpoint's `data/` when it holds a dataset, else WORKDIR/data.
  config.data.data_dir = ""
  # Build a synthetic dataset when there is none (demo only).
  config.data.build_synthetic_if_missing = False
  # Synthetic build: sequences and frames per sequence (as the pretrain demo).
  config.data.synthetic_num_sequences = 160
  config.data.synthetic_num_frames = 240
  # Split trained on.
  config.data.train_split = "train"
  # Output frames L per trajectory (windows of L + 1 CPF poses).
  config.data.seq_len = 128
  # Head trajectories per iteration, all devices (each brings G rollouts).
  config.data.batch_size = 32
  # Frames per second of the data.
  config.data.fps = 30.0
  # Grain worker processes (0: read in the training process).
  config.data.num_workers = 0

  # #### Group sampling (`grpo/group_sampler.py`) ####
  config.group = ml_collections.ConfigDict()
  # G, rollouts per head trajectory (>= 2).
  config.group.group_size = 8
  # One initial noise x_T per group (True) or one per member (False).
  config.group.shared_initial_noise = True
  # K members share each condition-noise draw, and with K >= 2 the
  # advantages' baselines are within those sub-groups (1: one per member).
  config.group.rollouts_per_condition = 1
  # Sampling steps (EgoAllo's schedule: 30; its update needs >= 26).
  config.group.sampler_steps = 30
  # Sampler update: "egoallo" (EgoAllo's exactly) or "ddim" (DDIM-η).
  config.group.sampler_update = "egoallo"
  # Training-only exploration: the first N rollout steps take DDIM-η's larger
  # σ (EgoAllo's σ after step 0 is 0.005–0.09); log-probs follow it, and
  # evaluation keeps the exact sampler. 0: off. 3 (the trained window) keeps
  # groups diverse: Bandai-Namco MPJPE −11.8 % vs +5.4 % without (README).
  config.group.explore_steps = 3
  # η of those steps (1: the DDPM posterior's σ).
  config.group.explore_eta = 1.0
  # x̂0's body rotations projected by "svd" (EgoAllo's U·Vᵀ) or "polar" (the
  # same matrix to ~1e-6 by a Newton iteration; 3× faster demo rollouts on CPU).
  config.group.rotation_projection = "polar"
  # log π reduced by "mean" over valid frames and state dims (DDPO's: the
  # clip acts on per-scalar ratios) or "sum" (the exact density; the
  # learning rate must then be about 1/(L·d) as large).
  config.group.log_prob_reduction = "mean"

  # #### Condition noise (`grpo/condition_noise.py`) ####
  config.condition_noise = ml_collections.ConfigDict()
  # "perlin" (MotionGRPO's), "gaussian" (i.i.d., equal RMS) or "none" (the
  # recipe's measurements; the ablation table compares them: README).
  config.condition_noise.kind = "none"
  # λ, RMS displacement of the CPF translation per axis, metres.
  config.condition_noise.amplitude = 0.05
  # Frequency of the first Perlin octave, Hz.
  config.condition_noise.base_frequency = 0.5
  # Perlin octaves (each doubles the frequency).
  config.condition_noise.octaves = 3
  # Amplitude ratio between octaves.
  config.condition_noise.persistence = 0.5
  # World axes perturbed ("xyz", "xy", …).
  config.condition_noise.axes = "xyz"

  # #### Hybrid reward (`grpo/rewards.py`) ####
  config.reward = ml_collections.ConfigDict()
  # Weight of each group-normalised sub-reward in the advantage (0: off).
  config.reward.weight_rot = 1.0
  config.reward.weight_pos = 1.0
  config.reward.weight_pa_pos = 1.0
  config.reward.weight_vel = 1.0
  # Foot skating of the sample, EgoAllo's metric per frame (`grpo/rewards.py`).
  config.reward.weight_skate = 0.0
  # Perceptual reward R_vis = exp(ω·s) (0: no critic needed).
  config.reward.weight_vis = 0.0
  # ω of exp(−ω·err): rotation L1 (sum of |ΔR| entries), position (m),
  # Procrustes-aligned position (m), velocity (m/s), foot skating (m/s);
  # and of exp(ω·s).
  config.reward.omega_rot = 1.0
  config.reward.omega_pos = 5.0
  config.reward.omega_pa_pos = 10.0
  config.reward.omega_vel = 1.0
  config.reward.omega_skate = 5.0
  config.reward.omega_vis = 1.0
  # Local rotation error: "l1" (the paper's) or "geodesic".
  config.reward.rotation_error = "l1"
  # Advantages: "sum" normalises the weighted raw sum once; "per_reward"
  # normalises each sub-reward (a near-constant one is blown up to full
  # weight). Chosen by measurement: README, "GRPO recipe".
  config.reward.normalisation = "sum"
  # Scale of the normalisation: the group's std, or the "batch" std of the
  # group-centred rewards (flat groups then get small advantages).
  config.reward.std_scope = "batch"
  # Lower bound of that scale (bounds the amplification of noise).
  config.reward.std_floor = 1e-3
  # Advantages are clipped to [−A_max, A_max].
  config.reward.advantage_clip = 5.0

  # #### Objective and update (`grpo/objective.py`, `grpo/update.py`) ####
  config.objective = ml_collections.ConfigDict()
  # ε of the ratio clip [1 − ε, 1 + ε].
  config.objective.clip_range = 0.2
  # β of the exact Gaussian KL to the frozen base policy (0: off).
  config.objective.kl_beta = 0.0
  # Steps eligible for training: the first N with σ > 0, the noisiest (0: all).
  # On EgoAllo's schedule steps 0–2 cause ~97 % of the sample's variance
  # given x_T (tools/grpo_probe; README, "GRPO recipe").
  config.objective.train_window = 3
  # Steps trained per iteration: 0 = all eligible, else a random subset.
  config.objective.num_train_steps = 0
  # Rematerialise each step's network call (memory flat in trained steps).
  config.objective.remat = True
  # Per-step log-ratio weights: "none" (the exact ratio) or "score" (w_k ∝
  # σ_k/a_k: every step's score on the same scale; `grpo/objective.py`).
  config.objective.step_weighting = "score"
  # Passes over an iteration's samples (2 × 2 updates per batch: MPJPE −4.1 %
  # vs −3.1 % with one update on the demo base; README, "GRPO recipe").
  config.objective.num_epochs = 2
  # Optimiser updates per epoch.
  config.objective.num_minibatches = 2
  # Gradient-accumulation chunks per update (memory only).
  config.objective.num_microbatches = 1
  # A group whose raw hybrid reward (Σ w·r / Σ w, in [0, 1]) varies less than
  # this (std over members) is a "zero-advantage" group: normalisation would
  # only amplify its noise.
  config.objective.zero_advantage_threshold = 0.01

  # #### Optimiser (AdamW after grad-norm clipping; `train/state.py`) ####
  config.optimizer = config_sections.optimizer(
      learning_rate=2e-5, warmup_steps=0, weight_decay=0.0)

  # #### Held-out evaluation (validation during training, and the final
  # base-vs-GRPO table in summary.json) ####
  config.eval = ml_collections.ConfigDict()
  # Split of the validation metrics and the final table.
  config.eval.split = "test"
  # Global batch size of evaluation windows.
  config.eval.batch_size = 16
  # Validation during training uses this many fixed batches.
  config.eval.val_batches = 1
  # The final table uses at most this many batches (0: the whole split).
  config.eval.max_batches = 0
  # Samples per window (metrics averaged over them; the same keys for the
  # base and the post-trained policy, so their windows are paired).
  config.eval.num_samples = 4
  # Bootstrap resamples of the paired 95 % intervals of the final table.
  config.eval.bootstrap_resamples = 2000

  # #### Loop, checkpoints, logs (`train/loop.py`); a step is an iteration ####
  config.train = config_sections.train_loop(
      num_steps=2000, log_every_steps=1,
      eval_every_steps=100, checkpoint_every_steps=100,
      max_consecutive_nonfinite=5)

  # #### Ablation set (one base checkpoint, one comparison table) ####
  config.ablation = ml_collections.ConfigDict()
  # Comma-separated settings to run instead of a single GRPO run, e.g.
  # "vanilla,noise_only,gaussian_only" (see the module docstring); "" = off.
  config.ablation.settings = ""

  if variant == "demo":
    config.bootstrap.enabled = True
    config.data.build_synthetic_if_missing = True
    config.data.seq_len = 32
    config.data.batch_size = 8
    config.eval.batch_size = 16
    config.eval.val_batches = 4
    config.train.num_steps = 60
    config.train.eval_every_steps = 20
    config.train.checkpoint_every_steps = 20
    config.train.progress_every_seconds = 10.0
  elif variant == "bvh":
    config.data.seq_len = 64
    config.data.batch_size = 8
    # 2e-5 drifted within 25 iterations on the 1.95 M-parameter bvh base.
    config.optimizer.learning_rate = 5e-6
    config.eval.split = "val"
    config.eval.val_batches = 4
    config.eval.max_batches = 20
    config.train.num_steps = 100
    config.train.eval_every_steps = 25
    config.train.checkpoint_every_steps = 25
  elif variant == "amass":
    config.body.model = "smplh"
    config.eval.batch_size = 32
  return config
