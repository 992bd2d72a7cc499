"""What a run learns to predict: each task owns its targets, loss and metrics."""
