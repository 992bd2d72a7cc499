"""One training step on 1 device and on all devices, same global batch.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8; prints one JSON
line of relative differences (tests/train/test_train.py reads it).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax import models
from cnn_jax.data.preprocess import to_unit
from cnn_jax.tasks import metrics
from cnn_jax.train import parallel, steps
from cnn_jax.train import state as state_lib


def max_rel_diff(a, b):
  diffs = jax.tree.map(
      lambda x, y: float(
          np.max(np.abs(np.asarray(x) - np.asarray(y))) / (np.max(np.abs(np.asarray(y))) + 1e-12)
      ),
      a,
      b,
  )
  return max(jax.tree.leaves(diffs))


def main():
  devices = jax.devices()
  model = models.create("standard", num_classes=10, widths=(4, 8), batch_norm=True)
  tx = optax.sgd(0.1, momentum=0.9)
  state = jax.device_get(state_lib.create(model, tx, (1, 8, 8, 3), seed=0, use_ema=False))
  rng = np.random.default_rng(0)
  batch = {
      "image": rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
      "label": rng.integers(0, 10, 16).astype(np.int32),
  }

  outputs = {}
  for count in (1, len(devices)):
    mesh = parallel.make_mesh(devices[:count])
    placed = jax.device_put(batch, parallel.batch_sharding(mesh))
    step = steps.make_train_step(model, tx, mesh, donate=False)
    new_state, totals = step(
        parallel.put_replicated(state, mesh),
        parallel.put_replicated(steps.empty_totals(), mesh),
        placed,
    )
    outputs[count] = jax.device_get((new_state, totals))

  one, many = outputs[1], outputs[len(devices)]

  # What a per-device batch norm would give: statistics over each device's 2 examples.
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  chunks = to_unit(batch["image"]).reshape(len(devices), -1, 8, 8, 3)
  labels = batch["label"].reshape(len(devices), -1)
  per_device = jnp.mean(
      jnp.stack(
          [
              metrics.cross_entropy(
                  model.apply(variables, x, train=True, mutable=["batch_stats"])[0], y
              )
              for x, y in zip(chunks, labels)
          ]
      )
  )

  loss_one = float(one[1]["loss"])
  print(
      json.dumps(
          {
              "devices": len(devices),
              "loss_rel_diff": abs(float(many[1]["loss"]) - loss_one) / loss_one,
              # The update (new - old params) is -lr x the gradient (with momentum's
              # first step), so comparing updates compares the gradients.
              "update_max_rel_diff": max_rel_diff(
                  jax.tree.map(lambda new, old: new - old, many[0].params, state.params),
                  jax.tree.map(lambda new, old: new - old, one[0].params, state.params),
              ),
              "batch_stats_max_rel_diff": max_rel_diff(many[0].batch_stats, one[0].batch_stats),
              "per_device_bn_loss_rel_diff": abs(float(per_device) - loss_one) / loss_one,
          }
      )
  )


if __name__ == "__main__":
  main()
