"""A gallery of a trained run: the chosen methods' PNGs, and OUT/index.html showing them.

`make_gallery` is what `python -m cnn_jax.visualize` does: it checks the
request, loads the run (a training workdir, or a zoo model with ImageNet
weights and image files), runs each method of `methods.RUNNERS` and adds its
pictures to the folder's index.
"""

from __future__ import annotations

import os
from typing import Sequence

from cnn_jax import cpu_flags, errors, folders
from cnn_jax.visualize import gallery, methods, trained


def make_gallery(
    method: str = "all",
    *,
    workdir: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    image_files: Sequence[str] = (),
    out: str | None = None,
    images: int = 8,
    options: methods.Options = methods.Options(),
) -> str:
  """Runs visualization methods on a trained run and adds their pictures to OUT/index.html.

  Each PNG's path is printed as it is written.

  Args:
    method: a name of `methods.METHODS`, or "all" (those the run's task can show).
    workdir: a training workdir (or give `model`).
    model: instead of `workdir`, a zoo model with ImageNet weights, shown on
      `image_files`.
    weights: with `model`, its .pth file (default: the installed package's).
    image_files: with `model`, the photos to explain.
    out: the output folder (default WORKDIR/visualize; required with `model`).
    images: how many eval images the methods show.
    options: the layer, channel and method settings.

  Returns:
    The path of the gallery's index.html.

  Raises:
    cnn_jax.errors.UserError: for an unknown method or one the run's task
      cannot show, a request that names both or neither of `workdir` and
      `model`, or an unusable folder.
  """
  if method != "all" and method not in methods.RUNNERS:
    raise errors.UserError(
        f"unknown --method={method}; use one of {', '.join(methods.METHODS)}, or all"
    )
  # (A request that mixes workdir, model and image files: _load_run says what to give.)
  known = workdir and not model and not image_files
  task = trained.run_config(workdir).get("task", "classification") if known else "classification"
  shown = methods.applicable(task)
  if method != "all" and method not in shown:
    raise errors.UserError(
        f"--method={method} cannot show a {task} run; use one of {', '.join(shown)}, or all"
    )
  chosen = shown if method == "all" else (method,)
  run, folder, entries = _load_run(workdir, model, weights, image_files, out)
  ctx = methods.Context(run, images, folder, options, every_method=method == "all")
  os.makedirs(folder, exist_ok=True)
  for name in chosen:
    for png, caption in methods.RUNNERS[name](ctx):
      entries = gallery.add(entries, name, png, caption)
      print(png)
  return gallery.write(folder, entries)


def _load_run(
    workdir: str | None,
    model: str | None,
    weights: str | None,
    image_files: Sequence[str],
    out: str | None,
) -> tuple[trained.TrainedModel, str, list[dict]]:
  """The run to show, its output folder and that folder's index entries so far.

  The folder and its index are checked before the run is loaded: a mistake
  there costs nothing and leaves the folder as it was.
  """
  if bool(workdir) == bool(model):
    raise errors.UserError(
        "give --workdir=DIR (a training run) or --model=NAME with image "
        "files (ImageNet weights), not both"
    )
  if workdir and image_files:
    raise errors.UserError(
        f"unexpected arguments: {' '.join(image_files)} (image files go " "with --model)"
    )
  if model and (not image_files or not out):
    raise errors.UserError(
        "--model needs image files and --out=DIR: python -m "
        "cnn_jax.visualize --model=efficientnet_lite0 --out=DIR photo.jpg"
    )
  folder = folders.writable_folder(out or os.path.join(workdir, "visualize"), "--out")
  entries = gallery.read(folder, methods.METHODS)
  if workdir:
    # Before JAX starts its backend: the measured XLA:CPU setting of the model's family.
    cpu_flags.apply(trained.run_config(workdir).model)
    return trained.load(workdir), folder, entries
  cpu_flags.apply(model)
  return trained.load_pretrained(model, weights, list(image_files)), folder, entries
