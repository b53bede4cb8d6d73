"""MotionGRPO in JAX/Flax: EgoAllo's head-conditioned motion diffusion model,
post-trained with GRPO."""
