"""Smoke runs of the experiments on the ImageNet EfficientNet-Lite0 weights.

In a file of their own so that pytest-xdist (--dist loadfile) can run them
beside test_experiments.py: each starts Lite0, about a minute of fixed cost.
"""

import json

import test_experiments as experiments


def test_imagenet_transfer_runs_in_smoke_mode(tmp_path):
  commands = experiments.documented_commands(
      experiments.EXPERIMENTS / "transfer" / "imagenet_to_fashion_mnist.py"
  )
  assert [c.split(" ", 2)[2] for c in commands] == ["--shots=10", "--shots=100"] + [
      f"--shots=1000 --seeds={seed}" for seed in range(3)
  ]
  # An earlier command's result (seed 2) is kept when a later one adds seed 0.
  earlier = {
      "model": "efficientnet_lite0",
      "image_size": 64,
      "batch_size": 32,
      "test_images": 50,
      "accuracy": {"4": {"linear probe": {"2": 0.5}}},
  }
  (tmp_path / "results.json").write_text(json.dumps(earlier))
  output = experiments._run(
      commands[2].replace("--shots=1000", "--shots=4"),
      tmp_path,
      ["--steps=2", "--test_images=50", "--recipes=linear probe", f"--out={tmp_path}"],
  ).stdout
  assert "N=4 seed 0 linear probe:" in output
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["accuracy"]["4"]["linear probe"]) == {"0", "2"}
  assert "| linear probe |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "results.png").exists()


def test_imagenet_visualization_runs_in_smoke_mode(tmp_path):
  (command,) = experiments.documented_commands(
      experiments.EXPERIMENTS / "visualization" / "imagenet.py"
  )
  # The gallery is the visualize CLI, tested on this network in
  # test_imagenet_weights.py; here the sanity check alone.
  output = experiments._run(
      command,
      tmp_path,
      ["--photos=1", "--gallery_methods=", "--methods=Grad-CAM", "--seed=1", f"--out={tmp_path}"],
  ).stdout
  assert "| Grad-CAM |" in output
  assert (tmp_path / "sanity.md").exists() and (tmp_path / "sanity.png").exists()
