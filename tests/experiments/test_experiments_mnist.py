"""The experiments' documented sweeps on MNIST and Fashion-MNIST, in smoke mode.

The other half of tests/experiments/test_experiments.py's smoke test, in its own file so
that the two pytest workers (one file each) share the smoke runs.
"""

import pytest

import test_experiments as experiments


@pytest.mark.parametrize(
    "name", [n for n in experiments.SWEPT if experiments.sweep_commands(n, mnist_like=True)]
)
def test_mnist_sweep_commands_run_in_smoke_mode(name, tmp_path):
  experiments.run_smoke(name, tmp_path, mnist_like=True)
