"""Diffusion: EgoAllo's noise schedule, the sampler as an MDP (step function,
windowed x̂0, `lax.scan` rollout with log-probs) and the training loss."""
