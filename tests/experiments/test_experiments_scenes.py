"""The experiments' documented sweeps on digit scenes, in smoke mode.

A part of tests/experiments/test_experiments.py's smoke test in its own file,
and detection's in another (test_experiments_detection.py): their networks
take minutes to compile, and pytest-xdist hands out whole files, so that
these run on whichever worker is free while that file runs on another.
"""

import test_experiments as experiments

# The experiments on scenes, each smoke-tested by one of the two files.
ON_SCENES = ("segmentation", "detection")


def test_every_experiment_on_scenes_is_smoke_tested():
  assert sorted(n for n in experiments.SWEPT if experiments.on_scenes(n)) == sorted(ON_SCENES)


def test_segmentation_commands_run_in_smoke_mode(tmp_path):
  experiments.run_smoke("segmentation", tmp_path, mnist_like=False)
