"""GRPO post-training: group sampling, hybrid reward and group-normalised
advantages, the clipped objective, the data-parallel update step and its
diagnostics."""
