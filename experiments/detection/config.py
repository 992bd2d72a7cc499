"""Object detection on digit scenes: CenterNet on EfficientNet-Lite0 from scratch and from
ImageNet's weights, and on a ResNet-18 from scratch.

    python -m launch.sweep --config=experiments/detection/config.py:lite0_scratch \
        --workdir_root=/tmp/detection/lite0_scratch \
        --results_dir=experiments/detection/lite0_scratch --curves=eval.AP50 \
        --last=eval.AP,eval.AP50,eval.AP75,eval.AP_small,eval.AR100
    python -m launch.sweep --config=experiments/detection/config.py:lite0_imagenet \
        --workdir_root=/tmp/detection/lite0_imagenet \
        --results_dir=experiments/detection/lite0_imagenet --curves=eval.AP50 \
        --last=eval.AP,eval.AP50,eval.AP75,eval.AP_small,eval.AR100
    python -m launch.sweep --config=experiments/detection/config.py:resnet18 \
        --workdir_root=/tmp/detection/resnet18 \
        --results_dir=experiments/detection/resnet18 --curves=eval.AP50 \
        --last=eval.AP,eval.AP50,eval.AP75,eval.AP_small,eval.AR100
    python experiments/detection/table.py --sweeps=experiments/detection \
        --table=experiments/detection/table.md
    python experiments/detection/errors.py --table=experiments/detection/errors.md \
        --workdir=/tmp/detection/lite0_scratch/seed=0 \
        --workdir=/tmp/detection/lite0_imagenet/seed=0 --workdir=/tmp/detection/resnet18/seed=0

mnist_scenes (`python -m cnn_jax.data.prepare --dataset=mnist_scenes`):
64x64 grey canvases of 1 to 4 MNIST digits, 10,000 training scenes from
MNIST's training digits and 2,000 test scenes from its test digits; each
digit's box is the tight box of its ink. Three settings, one command each,
3 seeds each: CenterNet (Zhou et al. 2019; `cnn_jax.models.centernet`: an
FPN-style neck at stride 4, heatmap, size and offset heads) on
EfficientNet-Lite0 from scratch (lite0_scratch) and from Lite0's ImageNet
weights (lite0_imagenet: `init_from="imagenet"`, the backbone only; neck
and heads are new), and on a ResNet-18 of half width (32 filters in its
first stage) from scratch (resnet18). Every run: Adam 3e-3 with a cosine
decay over STEPS steps of 32 scenes, no augmentation, the grey input
replicated to 3 channels by Lite0's normalization (mean 0.5, std 0.5 per
channel) so that the ImageNet stem applies; all 2,000 test scenes scored
every STEPS / 3 steps with COCO's AP (`cnn_jax.tasks.coco_eval`, equal to
pycocotools). table.py sets the three side by side, with each difference ±
its standard error; errors.py finds where seed 0 of each misses (small
digits, touching digits) and which digits it takes for which. Hardware: 2
CPU cores; 19 min 13 s (lite0_imagenet), 17 min 41 s (lite0_scratch) and
12 min 9 s (resnet18) per command (experiments/detection/README.md).
"""

from cnn_jax.sweep import config_files
from cnn_jax.train.config import base_config

GROUPS = ("lite0_scratch", "lite0_imagenet", "resnet18")
STEPS = 192
# ResNet-18's filters halved (32, 64, 128, 256): at full width its steps
# took 3.4 times as long as Lite0's on 2 cores.
RESNET_WIDTH = 32


def get_config(group: str = "lite0_scratch"):
  config_files.check_group(group, GROUPS)
  config = base_config()
  config.task = "detection"
  if group == "resnet18":
    config.model = "centernet_resnet18"
    config.model_kwargs = {"backbone_kwargs": (("width", RESNET_WIDTH),)}
  else:
    config.model = "centernet_efficientnet_lite0"
    # Batch norm's running statistics at 0.9, not TensorFlow's 0.99: with 0.99,
    # 15% of their start (ImageNet's, or 0 and 1) remains after 192 steps, and
    # the eval, which normalizes with them, found nothing (AP50 0.03% from
    # ImageNet at 3e-3, while the training loss fell).
    config.model_kwargs = {"backbone_kwargs": (("bn_momentum", 0.9),)}
  config.init_from = "imagenet" if group == "lite0_imagenet" else ""
  config_files.on_digit_scenes(config, STEPS)
  # The README's detection command's rate: at 1e-3 (the segmentation
  # experiment's) Lite0 from ImageNet reached AP50 0.7% in these 192 steps.
  config.optimizer.learning_rate = 3e-3
  return config


def get_sweep(h, group: str = "lite0_scratch"):
  config_files.check_group(group, GROUPS)
  return h.sweep("seed", [0, 1, 2])
