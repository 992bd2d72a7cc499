"""Object detection: boxes of classes, CenterNet's loss, COCO's AP.

The batch carries the objects as `cnn_jax.data.box_targets` pads them
("boxes", "box_labels", "box_valid"); the model's outputs are CenterNet's
maps (`cnn_jax.tasks.centernet`). Training renders the targets and takes
Eq. 3's loss inside the step. Evaluation keeps, per eval example, its top
100 detections and its objects in pixels, each written once at the
example's place in the split (batch["index"]; on every device and host the
same sums), so that `eval_metrics` scores the whole split with COCO's AP
(`coco_eval`, equal to pycocotools) after the last batch; the loss is
Eq. 3 over the whole split as one batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.box_targets import BOX_TARGETS, MAX_OBJECTS
from cnn_jax.tasks import centernet, coco_eval
from cnn_jax.tasks.base import Sums, Task

# A detection or an object per row: (ymin, xmin, ymax, xmax) in pixels,
# then the score (detections) or validity (objects), then the class.
ROW = 6
LOSS_PARTS = ("heatmap", "size", "offset")


@dataclasses.dataclass(frozen=True)
class Detection(Task):
  """Boxes and classes: CenterNet's outputs (B, h, w, C + 4) against the batch's objects.

  Attributes:
    num_classes: C, the object classes (no background).
  """

  num_classes: int
  targets = BOX_TARGETS
  headline = "AP"

  def _rendered(self, outputs: jax.Array, batch: dict[str, jax.Array], valid: jax.Array):
    return centernet.render_targets(
        batch["boxes"], batch["box_labels"], valid, outputs.shape[1:3], self.num_classes
    )

  def loss(self, outputs: jax.Array, aux_outputs: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """CenterNet's Eq. 3 over the batch."""
    del aux_outputs  # no detector has auxiliary heads
    targets = self._rendered(outputs, batch, batch["box_valid"])
    return centernet.total_loss(centernet.losses(centernet.loss_sums(outputs, targets)))

  def empty_train_sums(self) -> Sums:
    """Each loss term summed over the batches, and the batches."""
    zero = jnp.zeros((), jnp.float32)
    return {**{part: zero for part in LOSS_PARTS}, "batches": jnp.zeros((), jnp.int32)}

  def train_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The batch's three loss terms (unweighted)."""
    targets = self._rendered(outputs, batch, batch["box_valid"])
    return {**centernet.losses(centernet.loss_sums(outputs, targets)), "batches": 1}

  def train_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """{"heatmap_loss", "size_loss", "offset_loss"}: means over the batches since the last log."""
    batches = max(int(sums["batches"]), 1)
    return {f"{part}_loss": float(sums[part]) / batches for part in LOSS_PARTS}

  def empty_eval_sums(self, num_examples: int) -> Sums:
    """Per example its detections and objects (rows of `ROW`), and the loss's sums."""
    zero = jnp.zeros((), jnp.float32)
    return {
        "detections": jnp.zeros((num_examples, centernet.TOP_K, ROW), jnp.float32),
        "objects": jnp.zeros((num_examples, MAX_OBJECTS, ROW), jnp.float32),
        **{key: zero for key in ("heatmap", "centres", "size", "offset", "objects_counted")},
    }

  def eval_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The loss's sums over the batch's real examples (their rows: `add_eval_sums`)."""
    real = batch["mask"]
    targets = self._rendered(outputs, batch, batch["box_valid"] & real[:, None])
    sums = centernet.loss_sums(outputs, targets, real)
    counted = sums.pop("objects")  # not the per-example "objects" rows
    return {**sums, "objects_counted": counted}

  def add_eval_sums(self, totals: Sums, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The totals with the batch's loss sums added and its examples' rows written in."""
    scale = jnp.asarray(batch["image"].shape[1:3] * 2, jnp.float32)
    found = self.predict(outputs)
    detections = jnp.concatenate([found[..., :4] * scale, found[..., 4:]], -1)
    objects = jnp.concatenate(
        [
            batch["boxes"].astype(jnp.float32) * scale,
            batch["box_valid"][..., None].astype(jnp.float32),
            batch["box_labels"][..., None].astype(jnp.float32),
        ],
        -1,
    )
    # Each example is in one batch: its rows are written once. Padding's
    # index is past the end, where mode="drop" leaves it out.
    index = batch["index"]
    written = {
        "detections": totals["detections"].at[index].set(detections, mode="drop"),
        "objects": totals["objects"].at[index].set(objects, mode="drop"),
    }
    scalars = {key: value for key, value in totals.items() if key not in written}
    return {**jax.tree.map(jnp.add, scalars, self.eval_sums(outputs, batch)), **written}

  def eval_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """COCO's 12 numbers (coco_eval.STAT_NAMES) over the split, and "loss" (Eq. 3)."""
    parts = centernet.losses({**sums, "objects": sums["objects_counted"]})
    loss = float(centernet.total_loss(parts))
    ground_truth, detections = [], []
    for found, objects in zip(np.asarray(sums["detections"]), np.asarray(sums["objects"])):
      real = objects[:, 4] > 0
      ground_truth.append(coco_eval.GroundTruth(objects[real, :4], objects[real, 5]))
      peaks = found[:, 4] > 0  # the top k past the last peak score 0: no detections
      detections.append(coco_eval.Detections(found[peaks, :4], found[peaks, 4], found[peaks, 5]))
    return {**coco_eval.evaluate(ground_truth, detections), "loss": loss}

  def eval_line(self, metrics: dict[str, Any]) -> str:
    """E.g. "AP 0.512  AP50 0.853  AP75 0.561  loss 1.234"."""
    return "  ".join(
        [
            *(f"{name} {metrics[name]:.4f}" for name in ("AP", "AP50", "AP75")),
            f"loss {metrics['loss']:.4f}",
        ]
    )

  def predict(self, outputs: jax.Array) -> jax.Array:
    """Each image's top 100 detections: (B, 100, 6) of normalized box, score, class."""
    found = centernet.decode(outputs)
    return jnp.concatenate(
        [found.boxes, found.scores[..., None], found.labels[..., None].astype(jnp.float32)], -1
    )
