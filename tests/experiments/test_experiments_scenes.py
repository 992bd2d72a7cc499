"""The experiments' documented sweeps on digit scenes, in smoke mode.

A part of tests/experiments/test_experiments.py's smoke test in its own file:
their networks take minutes to compile, and pytest-xdist hands out whole
files, so this one runs on one worker while that file runs on another.
"""

import pytest

import test_experiments as experiments


@pytest.mark.parametrize("name", [n for n in experiments.SWEPT if experiments.on_scenes(n)])
def test_scene_experiment_commands_run_in_smoke_mode(name, tmp_path):
  experiments.run_smoke(name, tmp_path, mnist_like=False)
