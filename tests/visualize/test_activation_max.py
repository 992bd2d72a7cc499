"""Activation maximization: the ascent raises its objective, penalties act, errors are one line.

Compiles dominate on the CPU. Every run shares one tiny model and the same
number of steps, and the ascent takes its numbers (penalties, seed, learning
rate) as traced arguments, so the penalty and seed checks reuse the compiled
ascent of the logit check: three compiles in all.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.visualize import activation_max, probe
from cnn_jax.visualize.activation_max import activation_maximization, total_variation

MODEL = models.create("standard", num_classes=10, widths=(4, 8), fc_widths=(16,))
SHAPE = (16, 16, 3)
STEPS = 48
CLASS = 3
LAYER, CHANNEL = "conv1_1_act", 2  # the layer has 4 channels
# lucid's rate of 0.05 is meant for hundreds of steps; this many need more.
FAST = {"steps": STEPS, "learning_rate": 0.3}
# A randomly initialized net has no shift-invariant class features, so random
# shifts and turns would wash out a short logit ascent: the logit checks
# measure the ascent itself, the channel check (a conv channel's mean barely
# cares where a pattern sits) runs with the default transformations.
STILL = {"jitter": 0, "rotate_degrees": 0.0, "scale": (1.0, 1.0)}
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


@pytest.fixture(scope="module")
def variables():
  return MODEL.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))


@pytest.fixture(scope="module")
def logits(variables):
  """Logits of a batch of [0, 1] images (default normalization: none)."""
  return jax.jit(lambda images: MODEL.apply(variables, images, train=False))


def ascend(variables, objective, **overrides):
  return activation_maximization(MODEL, variables, SHAPE, objective, **{**FAST, **overrides})


def logit_ascent(variables, parameterization, **overrides):
  return ascend(
      variables, ("logit", CLASS), parameterization=parameterization, **{**STILL, **overrides}
  )


def random_images(count=64, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(count, *SHAPE)), jnp.float32)


def gray_image():
  # sigmoid(0): what both parameterizations start from, up to 1% noise.
  return jnp.full((1, *SHAPE), 0.5)


def assert_image(image):
  assert image.shape == SHAPE and image.dtype == jnp.float32
  assert 0 <= image.min() and image.max() <= 1


# ----------------------------------------------------------------------------
# The ascent.


@pytest.mark.parametrize("parameterization", activation_max.PARAMETERIZATIONS)
def test_logit_ascent_beats_its_start_and_random_images(variables, logits, parameterization):
  result = logit_ascent(variables, parameterization)
  image, values = result["image"], result["objective"]
  assert_image(image)
  assert values.shape == (STEPS,) and values.dtype == jnp.float32

  batch = jnp.concatenate([image[None], gray_image(), random_images()])
  final, gray, random = np.split(np.asarray(logits(batch)[:, CLASS]), [1, 2])
  # The first value is measured on the nearly gray starting image.
  np.testing.assert_allclose(values[0], gray[0], atol=0.1 * random.std())
  # "Clearly" is in units of how much the logit varies over random images.
  assert values[-8:].mean() > values[0] + 4 * random.std()
  assert final[0] > random.max() + random.std()


def test_channel_ascent_raises_that_channels_mean(variables):
  result = ascend(variables, ("channel", LAYER, CHANNEL), mean=MEAN, std=STD)
  assert_image(result["image"])
  values = result["objective"]

  def channel_means(images):
    _, output = probe.apply_with_layer(
        MODEL, variables, (images - jnp.asarray(MEAN)) / jnp.asarray(STD), LAYER
    )
    return np.asarray(output[..., CHANNEL].mean(axis=(1, 2)))

  found = channel_means(result["image"][None])[0]
  gray = channel_means(gray_image())[0]
  random = channel_means(random_images())
  # Gray is gray after any shift, zoom or turn (the fill is gray too), so the
  # first value is the gray image's, which tells the normalization was used.
  np.testing.assert_allclose(values[0], gray, rtol=0.02)
  assert values[-8:].mean() > 3 * values[0]
  assert found > 2 * random.max() and found > 3 * gray


@pytest.mark.parametrize("parameterization", activation_max.PARAMETERIZATIONS)
def test_same_seed_same_image_other_seed_other_image(variables, parameterization):
  first = logit_ascent(variables, parameterization)
  again = logit_ascent(variables, parameterization)
  other = logit_ascent(variables, parameterization, seed=1)
  np.testing.assert_array_equal(first["image"], again["image"])
  np.testing.assert_array_equal(first["objective"], again["objective"])
  assert np.abs(first["image"] - other["image"]).max() > 0.05


def lucid_fourier_image(real, imag):
  """lucid's fft_image followed by to_valid_rgb, written out in NumPy."""
  height, width = SHAPE[:2]
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[: width // 2 + 1]
  freqs = np.sqrt(fx * fx + fy * fy)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(width, height)) * np.sqrt(width * height)
  pixels = np.fft.irfft2(scale * (real + 1j * imag), s=(height, width)).transpose(1, 2, 0) / 4
  svd_sqrt = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
  correlation = svd_sqrt / np.linalg.norm(svd_sqrt, axis=0).max()
  return 1 / (1 + np.exp(-pixels @ correlation.T))


def test_fourier_parameterization_is_lucids():
  # No public call sets the spectrum, so this one check reads the private
  # mapping from parameters to image.
  rng = np.random.default_rng(2)
  spectrum_shape = (SHAPE[2], SHAPE[0], SHAPE[1] // 2 + 1)
  real, imag = (rng.normal(scale=0.5, size=spectrum_shape) for _ in range(2))
  params = {"real": jnp.asarray(real, jnp.float32), "imag": jnp.asarray(imag, jnp.float32)}
  image = activation_max._to_image(params, SHAPE, "fourier")
  expected = lucid_fourier_image(real, imag)
  assert expected.std() > 0.05  # a picture, not a flat gray that anything would match
  np.testing.assert_allclose(image, expected, atol=1e-5)


# ----------------------------------------------------------------------------
# Penalties.


def test_total_variation_matches_a_loop_over_neighbours():
  image = np.random.default_rng(1).uniform(size=(3, 4, 2)).astype(np.float32)
  height, width = image.shape[:2]
  differences = [
      np.abs(image[row, col] - image[row + down, col + right])
      for row, col in itertools.product(range(height), range(width))
      for down, right in ((1, 0), (0, 1))
      if row + down < height and col + right < width
  ]
  expected = np.mean(np.concatenate(differences))
  np.testing.assert_allclose(total_variation(jnp.asarray(image)), expected, rtol=1e-6)
  np.testing.assert_allclose(
      total_variation(jnp.asarray(image[..., 0])), np.mean([d[0] for d in differences]), rtol=1e-6
  )


def test_total_variation_of_constant_and_checkerboard():
  assert total_variation(jnp.full((5, 4, 3), 0.7)) == 0
  checkerboard = (np.indices((4, 6)).sum(axis=0) % 2).astype(np.float32)
  assert total_variation(jnp.asarray(checkerboard)) == 1
  with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\).*\(2, 4, 4, 3\)"):
    total_variation(jnp.zeros((2, 4, 4, 3)))


@pytest.mark.parametrize("parameterization", activation_max.PARAMETERIZATIONS)
@pytest.mark.parametrize(
    "penalty, measure",
    [
        pytest.param("tv", total_variation, id="tv"),
        pytest.param("l2", lambda image: jnp.mean(image**2), id="l2"),
    ],
)
def test_penalty_lowers_what_it_penalizes(variables, logits, parameterization, penalty, measure):
  plain = logit_ascent(variables, parameterization)
  penalized = logit_ascent(variables, parameterization, **{penalty: 1.0})
  assert_image(penalized["image"])
  assert measure(penalized["image"]) < 0.75 * measure(plain["image"])
  # The recorded objective is the logit alone: close to the final image's
  # logit, not that minus the penalty.
  final = logits(penalized["image"][None])[0, CLASS]
  gap = abs(float(penalized["objective"][-1]) - float(final))
  assert gap < 0.25 * float(measure(penalized["image"]))


# ----------------------------------------------------------------------------
# Errors: one line, naming what is valid.


@pytest.mark.parametrize(
    "objective, match",
    [
        (("logit", 10), r"class index .*10 classes.*\[0, 9\], got 10"),
        (("logit", -1), r"class index .*\[0, 9\], got -1"),
        (("logit", 1.0), r"class index .*\[0, 9\], got 1.0"),
        (("channel", LAYER, 4), r"channel index .*'conv1_1_act' has 4 channels.*\[0, 3\], got 4"),
        (("neuron", LAYER, 0), r"\('logit', class_index\) or \('channel', layer_name, "),
        (("logit",), r"\('logit', class_index\) or"),
        ("logit", r"\('logit', class_index\) or"),
    ],
)
def test_bad_objective_is_a_one_line_error_with_the_valid_range(variables, objective, match):
  with pytest.raises(ValueError, match=match) as raised:
    ascend(variables, objective)
  assert "\n" not in str(raised.value)
  assert not isinstance(raised.value, probe.UnknownLayerError)


def test_unknown_layer_names_the_layers_there_are(variables):
  with pytest.raises(probe.UnknownLayerError, match=r"no layer 'conv9_act'.*conv1_1_act"):
    ascend(variables, ("channel", "conv9_act", 0))


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"parameterization": "wavelet"}, r"one of \('pixel', 'fourier'\)"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"jitter": 1.5}, "jitter must be a whole number"),
        ({"scale": (1.1, 0.9)}, "0 < low <= high"),
        ({"std": (1.0, 0.0, 1.0)}, "std must be > 0"),
        ({"mean": (0.5, 0.5)}, "1 or 3 values"),
    ],
)
def test_bad_setting_is_a_one_line_error(variables, setting, match):
  with pytest.raises(ValueError, match=match):
    ascend(variables, ("logit", CLASS), **setting)
