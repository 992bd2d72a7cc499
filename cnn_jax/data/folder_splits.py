"""The split folders of an image-folder dataset ("folder:/path"), checked."""

from __future__ import annotations

import os

from absl import logging

from cnn_jax.data.image_folder import ImageFolderSource
from cnn_jax.errors import DataError

IMAGE_FOLDER_PREFIX = "folder:"


def folder_root(name: str) -> str | None:
  """The root folder of an image-folder dataset name, None for any other name.

  Args:
    name: a dataset name as `cnn_jax.data.sources.load` takes it.

  Returns:
    "/path" for "folder:/path"; None for a TFDS name.
  """
  return name[len(IMAGE_FOLDER_PREFIX) :] if name.startswith(IMAGE_FOLDER_PREFIX) else None


def split_folder(root: str, split: str) -> str:
  """root/split of an image folder dataset, with a clear error if it is missing."""
  folder = os.path.join(root, split)
  if os.path.isdir(folder) or not os.path.isdir(root):
    return folder  # a missing root is reported by ImageFolderSource
  found = ImageFolderSource.class_names(root)
  raise DataError(
      f"image folder {root!r} has no split folder {split!r} (it has "
      f"{found or 'no subfolder'}); create {folder}/<class>/<image> files "
      "or set the split (config.train_split / config.eval_split) to one it has"
  )


def check_split_classes(folder: str, train_root: str, train_classes: list[str]) -> None:
  """Refuses a split with a class folder the training split lacks.

  Its images could have no label: they would be left out, and the accuracy
  reported over the other classes ("test/dogs" beside "train/dog"). A split
  that only lacks some training classes (a small test set) uses every image
  it has, with a warning.

  Raises:
    DataError: naming the classes only one side has, and the fix.
  """
  found = ImageFolderSource.class_names(folder)
  extra = [c for c in found if c not in train_classes]
  missing = [c for c in train_classes if c not in found]
  if extra:
    lacks = f"; {train_root} has {missing} that it lacks" if missing else ""
    raise DataError(
        f"image folder {folder!r} has classes {extra} that the training split "
        f"{train_root} lacks{lacks}; rename or move the class folders so that "
        "every split uses the training split's class names"
    )
  if missing:
    logging.warning(
        "image folder %s has no class folder for %s of the training split's "
        "classes; its accuracy covers the other classes",
        folder,
        missing,
    )
