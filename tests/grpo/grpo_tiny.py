"""A tiny GRPO problem shared by the grpo tests (and their subprocesses).

A denoiser of a few thousand parameters, a 3-step DDIM sampler, 4 head
trajectories of 5 poses (4 frames) whose ground truth is posed with the
built-in body (so the CPF and the body agree), groups of 3.

Sizes stay this small also because of a jaxlib limitation: a batched LAPACK
call (the SVD of the rotation projection) of more than roughly a thousand
3×3 matrices splits its batch over XLA's CPU thread pool and waits inside a
pool thread; with as many fake CPU devices as pool threads (cores) running
such calls at once, every pool thread waits and the program deadlocks.
Here each device projects 2·3·4·21 = 504 matrices per call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxlie
import ml_collections
import numpy as np

from motiongrpo_jax import body as body_lib
from motiongrpo_jax.data import condition_noise
from motiongrpo_jax.diffusion import loss
from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.grpo import update
from motiongrpo_jax.model.denoiser import Denoiser, DenoiserConfig
from motiongrpo_jax.train import denoiser_loss
from motiongrpo_jax.train import state as state_lib

MODEL = Denoiser(DenoiserConfig(
    d_latent=16, d_feedforward=32, d_noise_emb=16, num_heads=2,
    encoder_layers=0, decoder_layers=1, include_hands=False))
DIM = MODEL.config.packed_dim
NUM_SEQUENCES, NUM_POSES = 4, 5

CONFIG = update.UpdateConfig(
    group=group_sampler.GroupConfig(
        group_size=3, shared_initial_noise=False,
        noise=condition_noise.ConditionNoiseConfig(
            kind="perlin", amplitude=0.05)),
    sampler=sampler.SamplerConfig(num_steps=3, update="ddim",
                                  log_prob_reduction="mean"),
    objective=objective.ObjectiveConfig(clip_range=0.2, kl_beta=0.1),
    num_epochs=2, num_minibatches=2, num_microbatches=3)


def optimizer():
  """AdamW with a large ε, so that round-off in tiny gradients stays tiny."""
  return state_lib.make_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=1e-3, warmup_steps=0, weight_decay=0.0,
      grad_clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-3,
      ema_decay=0.0, schedule="constant", trainable="")))


def params():
  """Initial parameters, tamed: the body-rotation decoder's output is close to
  identity rotations, so the SVD projection is well conditioned and the
  rollouts depend smoothly (not chaotically) on round-off."""
  pose = jnp.zeros((1, 2, 7)).at[..., 0].set(1.0)
  p = jax.jit(MODEL.init)(jax.random.key(0), jnp.zeros((1, 2, DIM)),
                          jnp.ones((1,), jnp.int32), pose, pose)["params"]
  out = p["decoders_body_rotmats"]["linear_5"]
  p["decoders_body_rotmats"]["linear_5"] = {
      "kernel": 0.5 * out["kernel"],
      "bias": out["bias"] + jnp.tile(jnp.eye(3).reshape(-1), 21)}
  return p


def batch(seed: int = 0) -> dict[str, np.ndarray]:
  """Ground-truth motion walking along +x and its CPF trajectory."""
  rng = np.random.default_rng(seed)
  body = body_lib.builtin_body()
  betas = rng.normal(0, 0.5, (NUM_SEQUENCES, 16)).astype(np.float32)
  quats = jaxlie.SO3.exp(jnp.asarray(
      rng.normal(0, 0.2, (NUM_SEQUENCES, NUM_POSES, 21, 3)), jnp.float32)).wxyz
  t = 0.04 * np.arange(NUM_POSES)
  root_t = np.stack([np.broadcast_to(t, (NUM_SEQUENCES, NUM_POSES)),
                     np.zeros((NUM_SEQUENCES, NUM_POSES)),
                     np.full((NUM_SEQUENCES, NUM_POSES), 0.95)], -1)
  T_world_root = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_x_radians(jnp.full((NUM_SEQUENCES, NUM_POSES),
                                         np.pi / 2)),
      jnp.asarray(root_t, jnp.float32)).wxyz_xyz
  T_world_cpf = body.T_world_cpf(jnp.asarray(betas)[:, None], T_world_root,
                                 quats)
  contacts = (rng.uniform(size=(NUM_SEQUENCES, NUM_POSES, 21)) < 0.5)
  return jax.device_get(dict(
      T_world_cpf=T_world_cpf, mask=np.ones((NUM_SEQUENCES, NUM_POSES), bool),
      betas=betas, T_world_root=T_world_root, body_quats=quats,
      contacts=contacts.astype(np.float32)))


def make_step(mesh, config=CONFIG, tx=None):
  return update.make_train_step(
      sampler.model_apply_fn(MODEL), tx or optimizer(), mesh, config,
      body_lib.builtin_body(), DIM,
      data_loss_fn=denoiser_loss.make_loss_fn(MODEL, loss.LossConfig()))
