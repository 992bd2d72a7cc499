"""The model zoo: `create(name, num_classes=..., **overrides)`, `from_config` and `names()`.

Each family's module registers its variants and its `Family` record on import;
the order below is the order of `names()`.
"""

# Imported to register them, in this order.
from cnn_jax.models import lenet, standard, alexnet, vgg, googlenet, resnet  # noqa: F401
from cnn_jax.models import efficientnet, allcnn  # noqa: F401
from cnn_jax.models import fcn, unet  # noqa: F401  (segmentation: per-pixel logits)
from cnn_jax.models import centernet  # noqa: F401  (detection: CenterNet's maps)
from cnn_jax.models.registry import (
    Family,
    ModelSpec,
    PretrainedWeights,
    backbone,
    body_pattern,
    create,
    families,
    family,
    from_config,
    has_rbf_output,
    head_pattern,
    names,
    register,
    spec,
)

__all__ = [
    "Family",
    "ModelSpec",
    "PretrainedWeights",
    "backbone",
    "body_pattern",
    "create",
    "families",
    "family",
    "from_config",
    "has_rbf_output",
    "head_pattern",
    "names",
    "register",
    "spec",
]
