"""Semantic segmentation of digit scenes: FCN-8s on EfficientNet-Lite0 from scratch and
from ImageNet's weights, and U-Net from scratch.

    python -m launch.sweep --config=experiments/segmentation/config.py:fcn_scratch \
        --workdir_root=/tmp/segmentation/fcn_scratch \
        --results_dir=experiments/segmentation/fcn_scratch --curves=eval.mean_iou \
        --last=eval.mean_iou,eval.iou_0,eval.iou_1,eval.iou_2,eval.iou_3,eval.iou_4,eval.iou_5,eval.iou_6,eval.iou_7,eval.iou_8,eval.iou_9,eval.iou_10
    python -m launch.sweep --config=experiments/segmentation/config.py:fcn_imagenet \
        --workdir_root=/tmp/segmentation/fcn_imagenet \
        --results_dir=experiments/segmentation/fcn_imagenet --curves=eval.mean_iou \
        --last=eval.mean_iou,eval.iou_0,eval.iou_1,eval.iou_2,eval.iou_3,eval.iou_4,eval.iou_5,eval.iou_6,eval.iou_7,eval.iou_8,eval.iou_9,eval.iou_10
    python -m launch.sweep --config=experiments/segmentation/config.py:unet \
        --workdir_root=/tmp/segmentation/unet \
        --results_dir=experiments/segmentation/unet --curves=eval.mean_iou \
        --last=eval.mean_iou,eval.iou_0,eval.iou_1,eval.iou_2,eval.iou_3,eval.iou_4,eval.iou_5,eval.iou_6,eval.iou_7,eval.iou_8,eval.iou_9,eval.iou_10
    python experiments/segmentation/table.py --sweeps=experiments/segmentation \
        --table=experiments/segmentation/table.md
    python experiments/segmentation/errors.py --table=experiments/segmentation/errors.md \
        --workdir=/tmp/segmentation/fcn_scratch/seed=0 \
        --workdir=/tmp/segmentation/fcn_imagenet/seed=0 --workdir=/tmp/segmentation/unet/seed=0

mnist_scenes (`python -m cnn_jax.data.prepare --dataset=mnist_scenes`):
64x64 grey canvases of 1 to 4 MNIST digits, 10,000 training scenes from
MNIST's training digits and 2,000 test scenes from its test digits; 11
classes per pixel (background, then digit d as class d + 1). Three
settings, one command each, 3 seeds each: FCN-8s on EfficientNet-Lite0
(Long et al. 2015's skips at strides 32, 16 and 8, learned upsampling
initialized bilinear) from scratch (fcn_scratch) and from Lite0's ImageNet
weights (fcn_imagenet: `init_from="imagenet"`, the backbone only; the score
layers and upsampling are new), and `unet_small` (16 filters, 4 pools) from
scratch (unet). Every run: Adam 1e-3 with a cosine decay over STEPS steps of
32 scenes (about one pass over the training scenes), no augmentation, the
grey input replicated to 3 channels by Lite0's normalization (mean 0.5, std
0.5 per channel) so that the ImageNet stem applies; all 2,000 test scenes
scored every STEPS / 3 steps (a confusion matrix over every pixel:
cnn_jax.tasks.segmentation). table.py sets the three side by side, with
each difference ± its standard error; errors.py finds where seed 0 of each
errs (small digits, touching digits, confusions). Hardware: 2 CPU cores; about 15
minutes per command (experiments/segmentation/README.md).
"""

from cnn_jax.sweep import config_files
from cnn_jax.train.config import base_config

GROUPS = ("fcn_scratch", "fcn_imagenet", "unet")
BACKBONE = "efficientnet_lite0"
STEPS = 300


def get_config(group: str = "fcn_scratch"):
  config_files.check_group(group, GROUPS)
  config = base_config()
  config.task = "segmentation"
  config.model = "unet_small" if group == "unet" else f"fcn8s_{BACKBONE}"
  config.init_from = "imagenet" if group == "fcn_imagenet" else ""
  return config_files.on_digit_scenes(config, STEPS)


def get_sweep(h, group: str = "fcn_scratch"):
  config_files.check_group(group, GROUPS)
  return h.sweep("seed", [0, 1, 2])
