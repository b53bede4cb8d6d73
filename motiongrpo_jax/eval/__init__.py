"""Evaluation: body-motion metrics and the evaluation driver."""
