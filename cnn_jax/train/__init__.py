"""Training: optimizers and schedules (the loop itself is being built)."""
