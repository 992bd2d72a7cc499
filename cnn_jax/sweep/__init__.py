"""Hyper-parameter sweeps: the runs a config file defines, run locally, then tabulated.

hyper.py             sweep / fixed / product / zip: the runs' overrides
config_files.py      importing config files; helpers the experiments' configs share
runner.py            one `python -m cnn_jax.main` per run, in parallel, resumable
tables.py            sweep.csv, sweep.md (differences with standard errors), plots
curves.py            learning curves from each run's metrics.jsonl
run_and_tabulate.py  a sweep from start to end: runs, then tables and plots
__main__.py          the command: python -m cnn_jax.sweep (or python -m launch.sweep)
"""
