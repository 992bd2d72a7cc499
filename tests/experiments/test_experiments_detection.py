"""The detection experiment's documented commands in smoke mode (see test_experiments_scenes.py,
whose other half this is: a file of its own, so that it may run on the other worker)."""

import test_experiments as experiments


def test_detection_commands_run_in_smoke_mode(tmp_path):
  experiments.run_smoke("detection", tmp_path, mnist_like=False)
