"""EgoAllo's test-time guidance: a Levenberg–Marquardt optimisation of the
sampled body against priors, smoothness, foot skating and wrist estimates."""
