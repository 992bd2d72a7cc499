"""`python -m launch.sweep ...` from the repository: the command `python -m cnn_jax.sweep`."""

import runpy

if __name__ == "__main__":
  runpy.run_module("cnn_jax.sweep", run_name="__main__", alter_sys=True)
