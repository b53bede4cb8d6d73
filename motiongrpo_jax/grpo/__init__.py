"""GRPO post-training: condition noise, group sampling, hybrid reward and
group-normalised advantages, the clipped objective, the data-parallel update
step and its diagnostics."""
