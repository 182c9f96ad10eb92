"""Training of the models DeepDiag ships (seeded, reproducible, CPU-feasible)."""
