"""The detection task: its eval keeps each example's rows once, its metrics are coco_eval's."""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import box_targets
from cnn_jax.tasks import Detection, coco_eval

CLASSES = 3


def _batch(boxes, labels, index, mask):
  """A batch of 2 images of 16x16 with up to MAX_OBJECTS objects each (given ones first)."""
  k = box_targets.MAX_OBJECTS
  padded = np.zeros((2, k, 4), np.float32)
  padded_labels, valid = np.zeros((2, k), np.int32), np.zeros((2, k), bool)
  for i, (b, c) in enumerate(zip(boxes, labels)):
    padded[i, : len(b)], padded_labels[i, : len(c)], valid[i, : len(c)] = b, c, True
  return {
      "image": jnp.zeros((2, 16, 16, 1), jnp.uint8),
      "boxes": jnp.asarray(padded),
      "box_labels": jnp.asarray(padded_labels),
      "box_valid": jnp.asarray(valid),
      "index": jnp.asarray(index, jnp.int32),
      "mask": jnp.asarray(mask),
  }


def test_eval_sums_write_each_example_once_and_drop_padding():
  task = Detection(CLASSES)
  rng = np.random.default_rng(0)
  outputs = [jnp.asarray(rng.normal(0, 2, (2, 4, 4, CLASSES + 4)), jnp.float32) for _ in range(2)]
  batches = [
      _batch([[[0.1, 0.1, 0.6, 0.5]], [[0.2, 0.3, 0.9, 0.8]]], [[1], [2]], [2, 0], [True, True]),
      # The second batch's second example is padding: its index is the split's size.
      _batch([[[0.0, 0.5, 0.5, 1.0]], [[0.4, 0.4, 0.6, 0.6]]], [[0], [1]], [1, 3], [True, False]),
  ]
  totals = task.empty_eval_sums(3)
  step = jax.jit(task.add_eval_sums)
  for out, batch in zip(outputs, batches):
    totals = step(totals, out, batch)
  predicted = [np.asarray(task.predict(out)) for out in outputs]
  scale = np.array([16, 16, 16, 16, 1, 1], np.float32)
  for row, (b, i) in {0: (0, 1), 1: (1, 0), 2: (0, 0)}.items():
    np.testing.assert_allclose(totals["detections"][row], predicted[b][i] * scale, rtol=1e-6)
    objects = np.asarray(totals["objects"][row])
    assert objects[0, 4] == 1 and objects[0, 5] == int(batches[b]["box_labels"][i, 0])
    np.testing.assert_allclose(objects[0, :4], batches[b]["boxes"][i, 0] * 16, rtol=1e-6)
    assert not objects[1:].any()
  # The loss sums count the three real images' objects only.
  assert float(totals["objects_counted"]) == 3
  metrics = task.eval_metrics(jax.device_get(totals))
  rows = jax.device_get(totals)
  expected = coco_eval.evaluate(
      [coco_eval.GroundTruth(o[:1, :4], o[:1, 5]) for o in rows["objects"]],
      [
          coco_eval.Detections(d[d[:, 4] > 0, :4], d[d[:, 4] > 0, 4], d[d[:, 4] > 0, 5])
          for d in rows["detections"]
      ],
  )
  assert {k: metrics[k] for k in coco_eval.STAT_NAMES} == expected
  assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
  assert "AP " in task.eval_line(metrics) and "loss" in task.eval_line(metrics)
