"""`python -m launch.sweep --config=FILE --workdir_root=DIR`: runs a config file's sweep.

The sweep code lives in `cnn_jax.sweep` (see its cli.py for the flags); this
is the launcher's thin entry point, run from the repository.
"""

from cnn_jax.sweep import cli

if __name__ == "__main__":
  cli.run()
