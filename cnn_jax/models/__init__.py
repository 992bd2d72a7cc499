"""The model zoo: `create(name, num_classes=..., **overrides)`, `from_config` and `names()`."""

import functools

from cnn_jax.models import alexnet, allcnn, efficientnet, googlenet, lenet, resnet, standard, vgg
from cnn_jax.models.registry import ModelSpec, create, from_config, names, register, spec

_LECUN = "LeCun et al. 1998, Gradient-based learning applied to document recognition"
_KRIZHEVSKY = "Krizhevsky et al. 2012, ImageNet classification with deep CNNs"
_VGG = "Simonyan & Zisserman 2015, Very deep convolutional networks, Table 1"
_GOOGLENET = "Szegedy et al. 2015, Going deeper with convolutions, Table 1"
_RESNET = "He et al. 2016, Deep residual learning for image recognition"
_EFFICIENTNET = "Tan & Le 2019, EfficientNet; the Lite variants (no SE, ReLU6, fixed stem/head)"

register("lenet5", lenet.lenet5, image_size=32, channels=1, num_classes=10, paper=_LECUN)
register(
    "lenet5_modern",
    lenet.lenet5_modern,
    image_size=32,
    channels=1,
    num_classes=10,
    paper=_LECUN + " (ReLU, max-pool, full C3)",
)
register(
    "standard",
    standard.standard,
    image_size=32,
    channels=3,
    num_classes=10,
    paper="the lecture's INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC",
)
register(
    "mlp",
    standard.mlp,
    image_size=32,
    channels=1,
    num_classes=10,
    paper=_LECUN + ", the 300-100 fully connected net",
)
register("alexnet", alexnet.alexnet, image_size=227, paper=_KRIZHEVSKY + " (two towers)")
register(
    "alexnet_tv",
    alexnet.alexnet_tv,
    image_size=224,
    paper="Krizhevsky 2014, One weird trick (torchvision's AlexNet)",
)
for _letter, _aliases in (
    ("a", ("vgg11",)),
    ("a_lrn", ()),
    ("b", ("vgg13",)),
    ("c", ()),
    ("d", ("vgg16",)),
    ("e", ("vgg19",)),
):
  register(
      f"vgg_{_letter}",
      getattr(vgg, f"vgg_{_letter}"),
      image_size=224,
      paper=f"{_VGG}, configuration {_letter.upper().replace('_', '-')}",
      aliases=_aliases,
  )
register("googlenet", googlenet.googlenet, image_size=224, paper=_GOOGLENET)
register(
    "googlenet_tv",
    googlenet.googlenet_tv,
    image_size=224,
    paper=_GOOGLENET + " (torchvision: batch norm, 3x3 in the 5x5 branch)",
)
for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
  register(_name, getattr(resnet, _name), image_size=224, paper=_RESNET + " (torchvision v1.5)")
for _depth in (20, 32, 44, 56, 110, 1202):
  register(
      f"resnet{_depth}",
      functools.partial(resnet.cifar_resnet, _depth),
      image_size=32,
      num_classes=10,
      paper=_RESNET + ", Section 4.2 (CIFAR-10, option A)",
  )
for _variant, _size in enumerate((224, 240, 260, 280, 300)):
  register(
      f"efficientnet_lite{_variant}",
      getattr(efficientnet, f"efficientnet_lite{_variant}"),
      image_size=_size,
      paper=_EFFICIENTNET,
  )
register(
    "allcnn_c",
    allcnn.allcnn_c,
    image_size=32,
    num_classes=10,
    paper="Springenberg et al. 2015, Striving for simplicity, All-CNN-C",
)

__all__ = ["ModelSpec", "create", "from_config", "names", "register", "spec"]
