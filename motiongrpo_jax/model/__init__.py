"""Networks: packed motion state, head-pose condition, EgoAllo's denoiser."""
