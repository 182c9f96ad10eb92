"""Evaluation of predictions against phantom (or any compatible) ground truth."""
