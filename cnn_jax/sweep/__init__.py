"""Hyper-parameter sweeps: the runs a config file defines, run locally, then tabulated.

hyper.py         sweep / fixed / product / zip: the runs' overrides
config_files.py  importing config files; helpers the experiments' configs share
runner.py        one `python -m cnn_jax.main` per run, in parallel, resumable
tables.py        sweep.csv, sweep.md (differences with standard errors), plots
curves.py        learning curves from each run's metrics.jsonl
cli.py           the command: python -m launch.sweep (or python -m cnn_jax.sweep)
"""
