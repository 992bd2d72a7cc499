"""Datasets and pipelines: the digits builder, Grain sharding and resume, eval
padding, image folders with bad files, clear errors, on-device batches."""

import functools
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnn_jax import data
from cnn_jax.data import fingerprints, on_device, pipeline, preparation, preprocess, sources
from helpers import python


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def test_digits_prepares_offline_with_a_fixed_stratified_split(digits_dir, tmp_path):
  train = data.as_numpy("digits", "train", data_dir=digits_dir)
  test = data.as_numpy("digits", "test", data_dir=digits_dir)
  assert len(train["label"]) + len(test["label"]) == 1_797
  assert train["image"].shape[1:] == (8, 8, 1) and train["image"].dtype == np.uint8
  # Stratified: every class is 20% test, to within one example.
  per_class = np.bincount(test["label"]) / (
      np.bincount(test["label"]) + np.bincount(train["label"])
  )
  assert np.all(np.abs(per_class - 0.2) < 0.02)
  # The same split, in the same order, when prepared again from scratch.
  again = data.as_numpy("digits", "test", data_dir=str(tmp_path))
  np.testing.assert_array_equal(again["image"], test["image"])
  np.testing.assert_array_equal(again["label"], test["label"])
  # The pixels are scikit-learn's, scaled from 0..16 to 0..255.
  from sklearn.datasets import load_digits

  reference = np.round(load_digits().images * 255 / 16).astype(np.uint8)
  assert {im.tobytes() for im in test["image"][..., 0]} <= {im.tobytes() for im in reference}


def test_as_numpy_resizes(digits_dir):
  test = data.as_numpy("digits", "test", image_size=32, data_dir=digits_dir)
  assert test["image"].shape == (359, 32, 32, 1)


def test_training_path_does_not_import_tensorflow(digits_dir):
  code = (
      "import sys; from cnn_jax import data; "
      f"data.as_numpy('digits', 'train', data_dir={digits_dir!r}); "
      "print('tensorflow' in sys.modules)"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_channel_stats_match_numpy_and_are_cached(digits_dir, tmp_path):
  images = data.as_numpy("digits", "train", data_dir=digits_dir)["image"]
  x = images.astype(np.float64) / 255
  calls = []

  def compute():
    calls.append(1)
    return preprocess.channel_stats(images)

  for _ in range(2):
    mean, std = preprocess.cached_channel_stats(str(tmp_path), "digits-train", compute)
    np.testing.assert_allclose(mean, [x.mean()], rtol=1e-12)
    np.testing.assert_allclose(std, [x.std()], rtol=1e-12)
  assert len(calls) == 1
  normalized = np.asarray(preprocess.standardize_uint8(images, mean, std))
  assert abs(normalized.mean()) < 1e-4 and abs(normalized.std() - 1) < 1e-4
  # RGB: each channel its own statistics (a wrong axis would mix them).
  rgb = np.random.default_rng(0).integers(0, 80, (5, 4, 4, 3)).astype(np.uint8)
  rgb[..., 1] += 100
  rgb[..., 2] //= 4
  mean, std = preprocess.channel_stats(rgb)
  np.testing.assert_allclose(mean, [(rgb[..., c] / 255).mean() for c in range(3)])
  np.testing.assert_allclose(std, [(rgb[..., c] / 255).std() for c in range(3)])
  normalized = np.asarray(preprocess.standardize_uint8(rgb, mean, std))
  np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0, atol=1e-5)


class IndexedSource:
  """A tiny in-memory source whose label is the example's index."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((4, 4, 1), i % 256, np.uint8), "label": i}


def _labels(loader):
  return [label for batch in loader for label in batch["label"].tolist()]


class RandomImages(IndexedSource):
  """23 random 28x28 examples in memory, read one by one or in batches.

  (TFDS's mock_data would be the obvious source, but in TFDS 4.9.10 it
  replaces `__getitems__` by a function that lacks `self`. Real MNIST
  through the pipeline is in test_mnist.py.)
  """

  def __getitem__(self, i):
    image = np.random.default_rng(i).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    return {"image": image, "label": i % 10}

  def __getitems__(self, indices):
    return [self[i] for i in indices]


@pytest.fixture
def mock_mnist():
  return RandomImages(23)


def _ids(loader, batches=None):
  """Example identities (hashes of the image bytes) in loader order."""
  out = []
  for i, batch in enumerate(loader):
    if batches is not None and i == batches:
      break
    out.extend(hash(image.tobytes()) for image in batch["image"])
  return out


def test_grain_sharding_covers_every_example_once_per_epoch(mock_mnist):
  everything = [hash(np.asarray(mock_mnist[i]["image"]).tobytes()) for i in range(23)]
  assert len(set(everything)) == 23
  seen = []
  for shard in range(2):
    loader = pipeline.train_loader(
        mock_mnist, batch_size=1, seed=3, shard_index=shard, shard_count=2, num_epochs=1
    )
    seen.append(_ids(loader))
  assert sorted(seen[0] + seen[1]) == sorted(everything)  # each example exactly once
  # Shuffled, and reproducibly so from the seed.
  again = pipeline.train_loader(
      mock_mnist, batch_size=1, seed=3, shard_index=0, shard_count=2, num_epochs=1
  )
  assert _ids(again) == seen[0]
  assert seen[0] != [h for h in everything if h in set(seen[0])]


def test_grain_iterator_state_restores_the_remaining_order(mock_mnist):
  loader = pipeline.train_loader(mock_mnist, batch_size=4, seed=7)
  iterator = iter(loader)
  for _ in range(3):  # mid-epoch (5 batches per epoch)
    next(iterator)
  state = iterator.get_state()
  expected = [_ids([next(iterator)]) for _ in range(8)]  # crosses epochs
  restored = iter(pipeline.train_loader(mock_mnist, batch_size=4, seed=7))
  restored.set_state(state)
  assert [_ids([next(restored)]) for _ in range(8)] == expected


def test_prefetch_to_device_keeps_order_and_shards():
  batches = [
      {"image": np.full((4, 2, 2, 1), i, np.uint8), "label": np.arange(4) + i} for i in range(5)
  ]
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  out = list(pipeline.prefetch_to_device(iter(batches), size=2, sharding=sharding))
  assert len(out) == 5 and all(isinstance(b["image"], jax.Array) for b in out)
  assert [int(b["label"][0]) for b in out] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n", [10, 9, 3, 1])
def test_eval_batches_see_every_example_exactly_once(n):
  seen, counts = [], []
  for shard in range(2):
    batches = list(
        pipeline.eval_batches(IndexedSource(n), batch_size=4, shard_index=shard, shard_count=2)
    )
    counts.append(len(batches))
    for batch in batches:
      assert batch["image"].shape == (4, 4, 4, 1)
      seen.extend(batch["label"][batch["mask"]].tolist())
      # Each example's place in the split (its label here); padding out of range.
      assert np.array_equal(batch["index"][batch["mask"]], batch["label"][batch["mask"]])
      assert np.all(batch["index"][~batch["mask"]] == n)
  assert counts[0] == counts[1]  # hosts stay in lockstep
  assert sorted(seen) == list(range(n))


def _write_image_folder(root):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for cls in ("cat", "dog"):
      folder = root / split / cls
      folder.mkdir(parents=True)
      for i in range(3):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(folder / f"{i}.png")
  (root / "train" / "cat" / "corrupt.jpg").write_bytes(b"not a jpeg at all")
  good = (root / "train" / "dog" / "0.png").read_bytes()
  (root / "train" / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
  (root / "train" / "dog" / "notes.txt").write_text("ignored: not an image")


def test_image_folder_reports_and_skips_bad_files(tmp_path, caplog):
  _write_image_folder(tmp_path)
  with caplog.at_level(logging.WARNING):
    source = sources.load(f"folder:{tmp_path}", "train", image_size=16)
  assert len(source) == 6
  skipped = sorted(os.path.basename(path) for path, _ in source.skipped)
  assert skipped == ["corrupt.jpg", "truncated.png"]
  assert "corrupt.jpg" in caplog.text and "skipped 2 unreadable image(s) of 8" in caplog.text
  # A whole epoch runs through the pipeline without a crash.
  labels = _labels(pipeline.train_loader(source, batch_size=2, seed=0, num_epochs=1))
  assert sorted(labels) == [0, 0, 0, 1, 1, 1]
  # Resume in a new process: a rebuilt source restores the saved iterator state.
  iterator = iter(pipeline.train_loader(source, batch_size=2, seed=0))
  next(iterator)
  state = iterator.get_state()
  expected = [next(iterator)["label"].tolist() for _ in range(4)]
  rebuilt = sources.load(f"folder:{tmp_path}", "train", image_size=16)
  restored = iter(pipeline.train_loader(rebuilt, batch_size=2, seed=0))
  restored.set_state(state)
  assert [next(restored)["label"].tolist() for _ in range(4)] == expected
  test = data.as_numpy(f"folder:{tmp_path}", "test", image_size=16)
  assert test["image"].shape == (6, 16, 16, 3)
  assert sources.num_classes(f"folder:{tmp_path}") == 2


def test_missing_datasets_are_clear_errors(tmp_path):
  # (mnist and fashion_mnist prepare themselves offline: see test_mnist.py)
  with pytest.raises(
      data.DataError, match=r"'cifar10' is not prepared in .*cnn_jax\.data\.prepare"
  ):
    data.as_numpy("cifar10", "train", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="unknown dataset 'no_such_set'"):
    data.as_numpy("no_such_set", "train", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="image folder .* does not exist"):
    data.as_numpy(f"folder:{tmp_path}/nothing", "train")
  with pytest.raises(data.DataError, match="image folder .* does not exist"):
    sources.num_classes(f"folder:{tmp_path}/nothing")


def test_on_device_batches_are_epoch_permutations():
  key = jax.random.key(0)
  # Each example's label is its index, so a batch shows which it took.
  examples = jnp.arange(10, dtype=jnp.int32)

  @functools.partial(jax.jit, static_argnums=(1,))
  def indices(step, batch_size):
    order = on_device.epoch_order(key, step // (10 // batch_size), 10)
    return on_device.take_batch({"label": examples}, order, step, batch_size)["label"]

  epoch0 = np.concatenate([indices(s, 4) for s in range(2)])
  assert len(set(epoch0.tolist())) == 8  # no repeats within an epoch
  epoch1 = np.concatenate([indices(s, 4) for s in range(2, 4)])
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(indices(3, 4), indices(3, 4))
  with pytest.raises(ValueError, match="exceeds the 10 training examples"):
    on_device.take_batch({"label": examples}, examples, 0, 11)


def test_preview_cli_writes_a_grid(digits_dir, tmp_path):
  out = tmp_path / "grid.png"
  subprocess.run(
      [
          sys.executable,
          "-m",
          "cnn_jax.data.preview",
          "--dataset=digits",
          f"--data_dir={digits_dir}",
          "--augment=flip_lr|rotate(15)|crop(pad=2)",
          "--examples=3",
          "--copies=4",
          f"--out={out}",
      ],
      check=True,
      capture_output=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  with Image.open(out) as grid:
    assert grid.size[0] > grid.size[1] > 100


def test_preview_grid_rows_start_with_the_original():
  from cnn_jax.data.augment import preview_grid

  images = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 1), np.uint8)
  grid = preview_grid.augmented_grid(images, "noise(std=0.1)", copies=3, seed=0)
  assert grid.shape == (2, 4, 8, 8, 1)
  np.testing.assert_allclose(grid[:, 0], images / 255.0, rtol=1e-6)
  assert not np.allclose(grid[:, 1], grid[:, 2])


def test_processes_preparing_the_digits_at_once_all_get_them(tmp_path):
  # A sweep's runs (or a run's hosts) may all find the dataset missing.
  code = (
      "import sys; from cnn_jax.data import sources; "
      "print(len(sources.load('digits', 'train', data_dir=sys.argv[1])))"
  )
  processes = [
      subprocess.Popen(
          [python(), "-c", code, str(tmp_path)],
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for _ in range(3)
  ]
  results = [p.communicate(timeout=300) for p in processes]
  for p, (out, err) in zip(processes, results):
    assert p.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == "1438"
  # Only the process that prepared says so.
  assert sum(out.count("preparing the digits dataset") for out, _ in results) == 1


def _write_uniform_folder(root, value, mtime=None):
  """root/train/{a,b}/{0,1}.png, every pixel `value`; mtime (s) set if given."""
  for cls in ("a", "b"):
    (root / "train" / cls).mkdir(parents=True, exist_ok=True)
    for i in range(2):
      path = root / "train" / cls / f"{i}.png"
      Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)
      if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_cached_statistics_follow_replaced_images(tmp_path, monkeypatch):
  # The stale cache this guards against: statistics keyed by the folder's
  # name only kept a mean of 0.02 after the images became bright (0.98).
  root = tmp_path / "images"
  _write_uniform_folder(root, 5, mtime=1_000_000_000)
  split = preprocess.ImageSplit(f"folder:{root}", "train", str(tmp_path / "tfds"), image_size=6)
  computed = []
  channel_stats = preprocess.channel_stats
  monkeypatch.setattr(
      preprocess, "channel_stats", lambda images: computed.append(1) or channel_stats(images)
  )
  mean, _ = preprocess.split_mean_std(split)
  np.testing.assert_allclose(mean, [5 / 255] * 3)
  assert preprocess.split_mean_std(split)[0] == mean and len(computed) == 1  # cached
  # The same file names with other content; the mtime surely differs.
  before = fingerprints.fingerprint(split.dataset, "train")
  _write_uniform_folder(root, 250, mtime=1_000_000_100)
  assert fingerprints.fingerprint(split.dataset, "train") != before
  mean, _ = preprocess.split_mean_std(split)
  np.testing.assert_allclose(mean, [250 / 255] * 3)
  assert len(computed) == 2
  # A file added or removed changes the key as well.
  after = fingerprints.fingerprint(split.dataset, "train")
  (root / "train" / "a" / "1.png").unlink()
  assert fingerprints.fingerprint(split.dataset, "train") != after


def test_tfds_fingerprint_changes_when_the_prepared_files_do(digits_dir):
  first = fingerprints.fingerprint("digits", "train", digits_dir)
  assert fingerprints.fingerprint("digits", "train", digits_dir) == first  # cheap and stable
  version_dir = preparation.builder("digits", digits_dir).data_path
  shard = next(p for p in version_dir.iterdir() if "train.array_record" in p.name)
  stat = os.stat(shard)
  try:
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "regenerated"
    assert fingerprints.fingerprint("digits", "train", digits_dir) != first
  finally:
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert fingerprints.fingerprint("digits", "train", digits_dir) == first


def test_empty_or_unreadable_class_folders_are_named(tmp_path):
  _write_uniform_folder(tmp_path, 100)
  (tmp_path / "train" / "c").mkdir()
  (tmp_path / "train" / "c" / "README.txt").write_text("not an image")
  with pytest.raises(
      data.DataError,
      match=r"class folder '.*/train/c' has no images "
      r"\(files ending in .*\); add its images or "
      "delete the folder",
  ):
    sources.load(f"folder:{tmp_path}", "train", image_size=6)
  (tmp_path / "train" / "c" / "0.png").write_bytes(b"not a png")
  with pytest.raises(
      data.DataError,
      match=r"class folder '.*/train/c' has no readable "
      r"image \(all 1 unreadable, e\.g\. .*/c/0\.png: "
      r".*\); replace its images or delete the folder",
  ):
    sources.load(f"folder:{tmp_path}", "train", image_size=6)
  # Images directly in the split folder, without class subfolders.
  flat = tmp_path / "flat" / "train"
  flat.mkdir(parents=True)
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / "0.png")
  with pytest.raises(
      data.DataError, match="has no class subfolders; put the images in " "one subfolder per class"
  ):
    sources.load(f"folder:{tmp_path / 'flat'}", "train")


def test_missing_split_folder_names_the_splits_there_are(tmp_path):
  _write_uniform_folder(tmp_path, 100)
  message = (
      r"image folder '.*' has no split folder 'validation' \(it has \['train'\]\); "
      r"create .*/validation/<class>/<image> files or set the split"
  )
  with pytest.raises(data.DataError, match=message):
    sources.load(f"folder:{tmp_path}", "validation")
  with pytest.raises(data.DataError, match=message):
    fingerprints.fingerprint(f"folder:{tmp_path}", "validation")


def test_an_image_broken_after_opening_is_a_data_error_naming_it(tmp_path):
  # Bad files found when the folder is opened are skipped (see above); one
  # replaced or deleted while a run reads the folder must name the file,
  # wherever it is decoded: the device read, the eval and training pipelines.
  _write_uniform_folder(tmp_path, 100)
  source = sources.load(f"folder:{tmp_path}", "train", image_size=6)
  (tmp_path / "train" / "b" / "1.png").write_bytes(b"garbage")
  message = (
      r"cannot read image .*/train/b/1\.png \(UnidentifiedImageError: .*\); it "
      "changed after the dataset was opened: restore or delete the file and re-run"
  )
  reads = {
      "item": lambda: source[3],
      "device": lambda: sources.read_all(source),
      "eval": lambda: list(pipeline.eval_batches(source, batch_size=2, image_size=6)),
      "train": lambda: list(pipeline.train_loader(source, batch_size=2, seed=0, num_epochs=1)),
  }
  for read in reads.values():
    with pytest.raises(data.DataError, match=message) as error:
      read()
    assert "\n" not in str(error.value)
  (tmp_path / "train" / "b" / "1.png").unlink()
  with pytest.raises(data.DataError, match=r"cannot read image .*/b/1\.png \(FileNotFound"):
    source[3]


def test_preparing_the_digits_prints_one_line_of_our_own(tmp_path):
  # TFDS's own output ("Downloading and preparing dataset Unknown size",
  # "Variant folder ... has no dataset_info.json", progress bars) reads as a
  # network download; the first use prints one line instead, the next none.
  code = (
      "import sys; from cnn_jax.data import sources; "
      "from tensorflow_datasets.core.utils import tqdm_utils; "
      "sources.load('digits', 'train', data_dir=sys.argv[1]); "
      "assert tqdm_utils._active, 'progress bars left off'"
  )  # hidden only while we prepare
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  outputs = [
      subprocess.run(
          [python(), "-c", code, str(tmp_path)],
          capture_output=True,
          text=True,
          check=True,
          env=env,
      )
      for _ in range(2)
  ]
  first = outputs[0].stdout + outputs[0].stderr
  assert first.splitlines() == [
      "preparing the digits dataset (1,797 images from scikit-learn, no download) in "
      f"{tmp_path}/digits/1.0.0"
  ]
  for noise in ("Downloading", "Variant folder", "Unknown size", "\r"):
    assert noise not in first
  assert outputs[1].stdout + outputs[1].stderr == ""


def test_prepare_cli_prepares_the_digits_quietly_and_reports_user_errors(tmp_path):
  command = [python(), "-m", "cnn_jax.data.prepare", f"--data_dir={tmp_path}"]
  out = subprocess.run(command + ["--dataset=digits"], capture_output=True, text=True, check=True)
  version_dir = tmp_path / "digits" / "1.0.0"
  assert out.stdout.splitlines() == [
      "preparing the digits dataset (1,797 images from scikit-learn, no download) in "
      f"{version_dir}",
      f"prepared digits in {version_dir}",
  ]
  assert "Downloading" not in out.stderr and "Variant folder" not in out.stderr
  bad = subprocess.run(command + ["--dataset=no_such_set"], capture_output=True, text=True)
  assert bad.returncode != 0
  assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]  # one line, no traceback
  assert bad.stderr.startswith("error: unknown dataset 'no_such_set'")
