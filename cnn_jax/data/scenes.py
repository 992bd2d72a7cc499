"""Scenes of MNIST (or Fashion-MNIST) digits, for segmentation and detection.

`mnist_scenes` and `fashion_mnist_scenes` are TFDS datasets made offline
from the official idx files (see `idx`): each example is a 64x64 grey
canvas, black like MNIST, holding 1 to 4 digits (the count uniform). Each
digit is a real one, drawn by class (the class uniform, then a digit of
that class uniformly), resized from 28x28 to a random size of 20 to 36
pixels (bilinear, PIL) and pasted fully inside the canvas; the canvas keeps
the brighter pixel where digits meet. Training scenes use only training
digits, test scenes only test digits.

A digit's pixels of at least `SceneSource.ink_threshold` after resizing
(128 for MNIST; 32 for Fashion-MNIST, whose garments have large dark
regions) are its mask. Digits are placed so that their masks never
share a pixel and any two object boxes have an IoU of at most `MAX_IOU`
(placements are drawn again, a bounded number of times, until they do), so
every mask pixel belongs to exactly one digit and no drawing order decides
anything: a canvas pixel is in a mask exactly when it is at least the
threshold. The features follow TFDS's dense-task conventions (as coco, voc
and oxford_iiit_pet declare them):

    image              uint8 (64, 64, 1) PNG
    segmentation_mask  uint8 (64, 64, 1) PNG: 0 background, class c -> c + 1
    objects            Sequence of {bbox: normalized (ymin, xmin, ymax, xmax),
                       the tight box of the object's mask pixels, pixel edges
                       as coco's are; label: its class; source_index: the
                       digit's index in its split of the idx files}

Scene i of a split is drawn from its own generator, seeded by the split's
seed and i, so preparing is deterministic (records are written in scene
order, byte for byte the same each time with the same NumPy and Pillow:
see `DeterministicWriter`) and a smaller count prepares a prefix of the
full dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import writer as tfds_writer
from tensorflow_datasets.proto import tf_example_pb2

from cnn_jax.data import idx, png
from cnn_jax.data.quiet_builder import NoDownloadMessages
from cnn_jax.errors import DataError

CANVAS = 64
SIZES = (20, 36)  # a digit's side in pixels, both ends included
MAX_OBJECTS = 4
MAX_IOU = 0.3
# With 4 digits of up to 36 pixels on 64x64, a digit's position is redrawn
# until it fits and, if none of these fits, the scene's sizes and positions
# are redrawn (its classes and digits are kept, so placing does not bias
# them; it favours smaller sizes a little in crowded scenes). Of the 12,000
# scenes of version 1.0.0, MNIST's needed 1.02 draws of sizes on average (at
# most 3), Fashion-MNIST's, whose masks fill their boxes, 1.75 (at most 41).
POSITION_TRIES = 50
SCENE_TRIES = 100
SEEDS = {"train": 0, "test": 1}  # one per split: the splits draw different scenes
SCENES_PER_SPLIT = {"train": 10_000, "test": 2_000}


@dataclasses.dataclass(frozen=True)
class SceneSource:
  """What a scene dataset is drawn from.

  Attributes:
    idx_name: its key in `idx.DATASETS`.
    class_names: the label feature's names (TFDS's for the source dataset).
    ink_threshold: the pixel value from which a resized digit's pixel is in
      its mask.
    homepage: the source dataset's.
  """

  idx_name: str
  class_names: tuple[str, ...]
  ink_threshold: int
  homepage: str


SOURCES = {
    "mnist_scenes": SceneSource(
        "mnist", tuple(str(d) for d in range(10)), 128, "http://yann.lecun.com/exdb/mnist/"
    ),
    # TFDS's fashion_mnist class names. 37% of the garments' non-zero pixels
    # are under 128 (31% of MNIST's, at the edges of thin strokes), most of
    # them inside the garment: a threshold of 32 keeps them in its mask.
    "fashion_mnist_scenes": SceneSource(
        "fashion_mnist",
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        32,
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
}


@dataclasses.dataclass(frozen=True)
class Scene:
  """One scene of n objects.

  Attributes:
    image: uint8 (64, 64), the canvas.
    mask: uint8 (64, 64), 0 background, class c -> c + 1.
    instances: uint8 (64, 64), 0 background, object k -> k + 1.
    boxes: int64 (n, 4), each object's mask extent in pixels: ymin, xmin,
      ymax, xmax, the maxima exclusive.
    labels: int64 (n,), the objects' classes.
    sources: int64 (n,), the digits' indices in the split's images.
  """

  image: np.ndarray
  mask: np.ndarray
  instances: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  sources: np.ndarray


def box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over union of every box in `a` with every box in `b`.

  Args:
    a: (n, 4) boxes (ymin, xmin, ymax, xmax), the maxima exclusive.
    b: (m, 4) boxes, likewise.

  Returns:
    float64 (n, m).
  """
  a, b = a[:, None].astype(np.int64), b[None].astype(np.int64)
  height = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
  width = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
  inter = np.maximum(height, 0) * np.maximum(width, 0)
  area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
  return inter / (area(a) + area(b) - inter)


def _resized(digit: np.ndarray, size: int, ink_threshold: int) -> tuple[np.ndarray, np.ndarray]:
  """(the digit at size x size, its mask's box in its own pixels)."""
  glyph = np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR))
  rows = np.flatnonzero((glyph >= ink_threshold).any(axis=1))
  cols = np.flatnonzero((glyph >= ink_threshold).any(axis=0))
  if not len(rows):  # every official digit has pixels of 254 or 255
    raise DataError(f"a digit has no pixel of at least {ink_threshold} at {size}x{size}")
  return glyph, np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.int64)


def _placed(
    rng: np.random.Generator, glyphs: list, ink_threshold: int
) -> list[tuple[int, int]] | None:
  """Top-left corners that keep masks apart and box IoUs bounded, or None if none were found."""
  taken = np.zeros((CANVAS, CANVAS), bool)
  corners, boxes = [], np.zeros((0, 4), np.int64)
  for glyph, box in glyphs:
    size = len(glyph)
    ink = glyph >= ink_threshold
    # All tries at once: the IoUs are one array operation, not a loop.
    tries = rng.integers(0, CANVAS - size + 1, size=(POSITION_TRIES, 2))
    moved = box + np.tile(tries, 2)
    apart = (box_ious(moved, boxes) <= MAX_IOU).all(axis=1)
    for (y, x), candidate in zip(tries[apart].tolist(), moved[apart]):
      if not taken[y : y + size, x : x + size][ink].any():
        break
    else:
      return None
    taken[y : y + size, x : x + size] |= ink
    corners.append((y, x))
    boxes = np.concatenate([boxes, candidate[None]])
  return corners


def draw_scene(
    rng: np.random.Generator,
    images: np.ndarray,
    members: list[np.ndarray],
    ink_threshold: int = 128,
) -> Scene:
  """One scene of digits drawn from a split (see the module docstring).

  Args:
    rng: the scene's own generator.
    images: the split's uint8 (N, 28, 28) digits.
    members: for each class, the indices of its digits in `images`.
    ink_threshold: the pixel value from which a resized digit's pixel is in its mask.

  Returns:
    The scene.

  Raises:
    RuntimeError: if no placement was found in `SCENE_TRIES` tries (never
      seen: see `POSITION_TRIES`).
  """
  count = int(rng.integers(1, MAX_OBJECTS + 1))
  labels = rng.integers(0, len(members), size=count)
  sources = np.array([members[c][rng.integers(len(members[c]))] for c in labels], np.int64)
  for _ in range(SCENE_TRIES):
    sizes = rng.integers(SIZES[0], SIZES[1] + 1, size=count)
    glyphs = [_resized(images[i], int(s), ink_threshold) for i, s in zip(sources, sizes)]
    corners = _placed(rng, glyphs, ink_threshold)
    if corners is not None:
      return _composed(glyphs, corners, labels.astype(np.int64), sources, ink_threshold)
  raise RuntimeError(f"no placement of {count} digits in {SCENE_TRIES} tries")


def _composed(glyphs, corners, labels, sources, ink_threshold) -> Scene:
  image = np.zeros((CANVAS, CANVAS), np.uint8)
  mask = np.zeros_like(image)
  instances = np.zeros_like(image)
  boxes = []
  for k, ((glyph, box), (y, x)) in enumerate(zip(glyphs, corners)):
    window = np.s_[y : y + len(glyph), x : x + len(glyph)]
    ink = glyph >= ink_threshold
    np.maximum(image[window], glyph, out=image[window])
    mask[window][ink] = labels[k] + 1
    instances[window][ink] = k + 1
    boxes.append(box + np.array([y, x, y, x]))
  return Scene(image, mask, instances, np.array(boxes, np.int64), labels, sources)


def class_members(labels: np.ndarray, num_classes: int = 10) -> list[np.ndarray]:
  """For each class, the indices of its examples.

  Args:
    labels: the split's labels.
    num_classes: how many classes.

  Returns:
    `num_classes` sorted int64 arrays.
  """
  return [np.flatnonzero(labels == c) for c in range(num_classes)]


def draw_scenes(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    count: int,
    ink_threshold: int = 128,
) -> Iterator[Scene]:
  """The first `count` scenes of a split, scene i seeded by (seed, i).

  Args:
    images: the split's uint8 (N, 28, 28) digits.
    labels: their classes.
    seed: the split's seed (see `SEEDS`).
    count: how many scenes.
    ink_threshold: see `draw_scene`.

  Yields:
    Scenes, in order.
  """
  members = class_members(labels)
  for i in range(count):
    yield draw_scene(np.random.default_rng([seed, i]), images, members, ink_threshold)


def to_example(scene: Scene) -> dict:
  """A scene as the TFDS example of the features in the module docstring.

  Args:
    scene: from `draw_scene`.

  Returns:
    {"image": PNG bytes, "segmentation_mask": PNG bytes, "objects": {"bbox":
    float32 (n, 4) normalized, "label": int64 (n,), "source_index": int64 (n,)}}.
  """
  return {
      "image": png.encode(scene.image),
      "segmentation_mask": png.encode(scene.mask),
      "objects": {
          # Multiples of 1/64: exact in float32.
          "bbox": list(scene.boxes.astype(np.float32) / np.float32(CANVAS)),
          "label": scene.labels,
          "source_index": scene.sources,
      },
  }


def source_folder(name: str, from_dir: str | None = None) -> str:
  """The folder of the idx files a scene dataset is drawn from.

  Args:
    name: a key of `SOURCES`.
    from_dir: a folder given by the user; otherwise the offline installs'.

  Returns:
    The folder (its files are verified when the dataset is prepared).

  Raises:
    DataError: when the files are not there, with the command that installs them.
  """
  dataset = idx.DATASETS[SOURCES[name].idx_name]
  try:
    return idx.find(SOURCES[name].idx_name, from_dir)
  except DataError:
    where = f"--from={from_dir} lacks some of them" if from_dir else "they are not installed"
    raise DataError(
        f"{name} is drawn from {dataset.title}'s idx files ({where}); install them "
        f"offline with `{dataset.how_to_install}`, or give a folder that has them: "
        f"`python -m cnn_jax.data.prepare --dataset={name} --from=DIR`"
    ) from None


class DeterministicWriter(tfds_writer.ExampleWriter):
  """TFDS's writer, each tf.train.Example's features written in the order of their names.

  protobuf writes a map (an Example's features) in the order of its hash
  table, which is seeded anew in every process: two preparations would hold
  the same examples in different bytes.
  """

  def write(self, path, examples):
    return super().write(
        path,
        (
            (key, tf_example_pb2.Example.FromString(data).SerializeToString(deterministic=True))
            for key, data in examples
        ),
    )


class _SceneBuilder(NoDownloadMessages):
  """Builds a scene dataset's splits from the idx files (a mixin; see the module docstring)."""

  name: str
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "64x64 scenes of 1 to 4 digits of 20 to 36 pixels, masks apart, box IoU <= 0.3; "
      "10,000 train scenes from the training digits, 2,000 test scenes from the test digits."
  }

  def __init__(
      self,
      *,
      source_dir: str | None = None,
      scenes_per_split: Mapping[str, int] | None = None,
      **kwargs,
  ):
    # Reading a prepared dataset needs neither: TFDS constructs it with data_dir only.
    self.source_dir = source_dir
    self.scenes_per_split = dict(scenes_per_split or SCENES_PER_SPLIT)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    source = SOURCES[self.name]
    shape = (CANVAS, CANVAS, 1)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            f"{CANVAS}x{CANVAS} scenes of 1 to {MAX_OBJECTS} {idx.DATASETS[source.idx_name].title} "
            f"images for semantic segmentation (mask: 0 background, class c -> c + 1; pixels "
            f"of at least {source.ink_threshold}) and detection (tight boxes of the masks)."
        ),
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=shape),
                "segmentation_mask": tfds.features.Image(shape=shape, use_colormap=True),
                "objects": tfds.features.Sequence(
                    {
                        "bbox": tfds.features.BBoxFeature(),
                        "label": tfds.features.ClassLabel(names=source.class_names),
                        "source_index": np.int64,
                    }
                ),
            }
        ),
        homepage=source.homepage,
        # Scenes are independent draws already; in scene order, a split's
        # first n records are the scenes a smaller count prepares.
        disable_shuffling=True,
    )

  def _example_writer(self) -> tfds_writer.ExampleWriter:
    return DeterministicWriter(file_format=self.info.file_format)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    source = SOURCES[self.name]
    folder = self.source_dir or source_folder(self.name)
    paths = idx.verified_paths(source.idx_name, folder)
    return {split: self._generate_examples(split, *paths[split]) for split in SEEDS}

  def _generate_examples(self, split: str, images_path: str, labels_path: str):
    scenes = draw_scenes(
        idx.read(images_path),
        idx.read(labels_path),
        SEEDS[split],
        self.scenes_per_split[split],
        SOURCES[self.name].ink_threshold,
    )
    for i, scene in enumerate(scenes):
      yield i, to_example(scene)


class MnistScenes(_SceneBuilder, tfds.core.GeneratorBasedBuilder):
  """Scenes of MNIST digits (`mnist_scenes`)."""

  name = "mnist_scenes"


class FashionMnistScenes(_SceneBuilder, tfds.core.GeneratorBasedBuilder):
  """Scenes of Fashion-MNIST images (`fashion_mnist_scenes`)."""

  name = "fashion_mnist_scenes"


BUILDERS = {"mnist_scenes": MnistScenes, "fashion_mnist_scenes": FashionMnistScenes}
