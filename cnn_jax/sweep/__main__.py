"""`python -m cnn_jax.sweep` (also `python -m launch.sweep` from the repository)."""

from cnn_jax.sweep import cli

if __name__ == "__main__":
  cli.run()
