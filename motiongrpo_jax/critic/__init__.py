"""The perceptual critic: its model, its negatives and InfoNCE objective, its
checkpoints and its held-out evaluation."""
