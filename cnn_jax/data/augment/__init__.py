"""On-device data augmentation: the classic CNN lecture's list, in JAX.

Every op is a pure function of one PRNG key and one float image (H, W, C),
so a whole pipeline runs inside the jitted training step instead of on the
host. `from_spec` turns a config string into a function of (key, NHWC batch) that
gives every example its own key, and so its own random transform.

    flip_lr(p=0.5)              mirror left-right with probability p
    flip_ud(p=0.5)              mirror top-bottom with probability p
    rotate(degrees=15)          angle uniform in [-degrees, degrees]
    scale(low=0.9, high=1.1)    zoom factor uniform in [low, high]
    translate(pixels=4, integer=1)
                                shift uniform in [-pixels, pixels] per axis
    crop(pad=4)                 zero-pad, then a random crop of the input size
    random_resized_crop(scale=(0.08, 1.0), ratio=(0.75, 1.3333))
                                Inception-style box, resized to the input size
    color_jitter(brightness=0, contrast=0, saturation=0)
    noise(std=0.05)             additive Gaussian noise

Spec strings join ops with "|", e.g.
"flip_lr|crop(pad=4)|color_jitter(0.4,0.4)|rotate(15)|noise(std=0.05)".

Targets. `from_spec_with_targets` returns augment(key, batch dict) instead:
each geometric op's random transform (a `Transform`, drawn by the op's entry
in TRANSFORMS) moves "image", "segmentation_mask" (nearest neighbour, 0 =
background outside the image) and "boxes" (normalized ymin, xmin, ymax,
xmax, with "box_valid") alike, so they stay aligned; color_jitter and noise
change the image only. The images are from_spec's for the same key (the same
function computes them). A box is dropped (box_valid False, coordinates 0)
when it leaves the image or keeps less than `min_visibility` of its area;
see from_spec_with_targets for the rule.

Conventions. Rotation, zoom and translation are one affine warp (`warp`) with
bilinear sampling and zero fill; a positive angle turns the picture
counter-clockwise as displayed (row 0 at the top), a positive shift moves it
down and right. Nothing is clipped to [0, 1]: clipping after brightness or
noise would bias the image mean (so the jitter would no longer be a pure
shift) and the network does not need values inside [0, 1].

ops.py           the ops, registered by name in OPS; the geometric ops' draws in TRANSFORMS
transform.py     Transform: one drawn geometric transform, applied to image, mask and boxes
spec.py          parse (spec string -> checked ops), from_spec and from_spec_with_targets
                 (ops -> one function)
preview_grid.py  original and augmented samples side by side (python -m cnn_jax.data.preview)
"""

from cnn_jax.data.augment.ops import (
    OPS,
    PHOTOMETRIC,
    TRANSFORMS,
    affine,
    color_jitter,
    crop,
    flip_lr,
    flip_ud,
    noise,
    random_resized_crop,
    rotate,
    scale,
    translate,
    warp,
    warp_transform,
)
from cnn_jax.data.augment.spec import OpSpec, from_spec, from_spec_with_targets, parse
from cnn_jax.data.augment.transform import Transform

__all__ = [
    "OPS",
    "OpSpec",
    "PHOTOMETRIC",
    "TRANSFORMS",
    "Transform",
    "affine",
    "from_spec",
    "from_spec_with_targets",
    "color_jitter",
    "crop",
    "flip_lr",
    "flip_ud",
    "noise",
    "parse",
    "random_resized_crop",
    "rotate",
    "scale",
    "translate",
    "warp",
    "warp_transform",
]
