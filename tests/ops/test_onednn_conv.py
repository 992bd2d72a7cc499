"""oneDNN's convolutions through jax.ffi: values and both gradients against XLA's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jax_core

from cnn_jax import layers
from cnn_jax.ops import onednn
from cnn_jax.ops.onednn import build
from cnn_jax.train import train_and_evaluate

from helpers import final_state, tiny_config

# (input NHWC, filter HWIO, stride, padding): LeNet's C1, a 3x3 "same" layer,
# a strided layer whose windows miss the last input row and column (dropped
# before oneDNN sees them), uneven padding, a 1x1 projection with stride 2.
GEOMETRIES = [
    ((2, 32, 32, 1), (5, 5, 1, 6), (1, 1), ((0, 0), (0, 0))),
    ((3, 8, 8, 16), (3, 3, 16, 32), (1, 1), ((1, 1), (1, 1))),
    ((2, 8, 8, 4), (3, 3, 4, 8), (2, 2), ((0, 0), (0, 0))),
    ((2, 7, 9, 3), (3, 2, 3, 5), (2, 3), ((1, 2), (0, 1))),
    ((4, 8, 8, 16), (1, 1, 16, 32), (2, 2), ((0, 0), (0, 0))),
]


def _xla_conv(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _value_and_grads(conv, x, w, g):
  y, pullback = jax.vjp(conv, x, w)
  return (y, *pullback(g))


def test_the_install_brings_onednn_and_builds_the_extension():
  # pyproject.toml installs the wheels on x86-64 Linux; the first use compiles.
  assert onednn.unavailable_reason() is None
  assert build.extension_path().is_file()


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", GEOMETRIES)
def test_values_and_gradients_equal_xla(x_shape, w_shape, stride, padding):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(x_shape, np.float32)
  w = rng.standard_normal(w_shape, np.float32)
  ours = jax.jit(functools.partial(onednn.onednn_conv2d, stride=stride, padding=padding))
  xla = jax.jit(functools.partial(_xla_conv, stride=stride, padding=padding))
  g = rng.standard_normal(jax.eval_shape(xla, x, w).shape, np.float32)
  for a, b in zip(_value_and_grads(ours, x, w, g), _value_and_grads(xla, x, w, g)):
    assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32
    # float32 sums in another order: within 1e-5 of the largest magnitude.
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, groups",
    [
        # EfficientNet-Lite0's depthwise layers: 3x3 and 5x5, stride 1 and 2.
        ((2, 9, 9, 8), (3, 3, 1, 8), (1, 1), ((1, 1), (1, 1)), 8),
        ((2, 9, 9, 6), (5, 5, 1, 6), (2, 2), ((2, 2), (2, 2)), 6),
        # Two groups of 3 channels, 4 filters each.
        ((2, 7, 7, 6), (3, 3, 3, 8), (2, 1), ((1, 0), (0, 1)), 2),
    ],
)
def test_grouped_and_depthwise_values_and_gradients_equal_xla(
    x_shape, w_shape, stride, padding, groups
):
  rng = np.random.default_rng(5)
  x = rng.standard_normal(x_shape, np.float32)
  w = rng.standard_normal(w_shape, np.float32)
  if groups == x_shape[3]:
    ours = functools.partial(onednn.onednn_depthwise_conv2d, stride=stride, padding=padding)
  else:
    ours = functools.partial(onednn.onednn_conv2d, stride=stride, padding=padding, groups=groups)
  xla = functools.partial(
      lax.conv_general_dilated,
      window_strides=stride,
      padding=padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups,
  )
  g = rng.standard_normal(jax.eval_shape(xla, x, w).shape, np.float32)
  for a, b in zip(_value_and_grads(jax.jit(ours), x, w, g), _value_and_grads(xla, x, w, g)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))


def _ffi_targets(jaxpr) -> set[str]:
  """The FFI targets a jaxpr calls, at any depth (platform_dependent's branches too)."""
  targets = set()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "ffi_call":
      targets.add(eqn.params["target_name"])
    for inner in jax_core.jaxprs_in_params(eqn.params):
      targets |= _ffi_targets(inner)
  return targets


def _drop_in_and_xla(**options):
  layout = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return (
      functools.partial(onednn.onednn_conv_general_dilated, **layout, **options),
      functools.partial(lax.conv_general_dilated, **layout, **options),
  )


def test_the_drop_in_runs_under_vmap_and_jit_as_xla_convolutions():
  # The vmap rule: each pass becomes XLA's convolution, vmapped, not one
  # custom call per element.
  rng = np.random.default_rng(1)
  x = rng.standard_normal((3, 2, 6, 6, 4), np.float32)
  w = rng.standard_normal((3, 3, 4, 6), np.float32)
  ours, xla = _drop_in_and_xla()
  for in_axes, ws in (((0, None), w), ((0, 0), np.stack([w, 2 * w, -w]))):
    batched = jax.jit(jax.vmap(ours, in_axes=in_axes))
    assert "custom-call" not in batched.lower(x, ws).compile().as_text()
    expected = jax.vmap(xla, in_axes=in_axes)(x, ws)
    np.testing.assert_allclose(
        batched(x, ws), expected, rtol=0, atol=1e-5 * float(np.abs(expected).max())
    )
  # Per-example gradients (vmap of grad) take the same rule for dX and dW.
  per_example = jax.jit(
      jax.vmap(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), (0, 1)), (0, None))
  )
  expected = jax.vmap(jax.grad(lambda x, w: jnp.sum(xla(x, w) ** 2), (0, 1)), (0, None))(x, w)
  for a, b in zip(per_example(x, w), expected):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))


def test_gradients_of_gradients_equal_xla():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((2, 9, 9, 3), np.float32)
  w = rng.standard_normal((3, 3, 3, 4), np.float32)
  ours, xla = _drop_in_and_xla()

  def gradient_norm(conv, w):
    return jnp.sum(jax.grad(lambda x: jnp.sum(conv(x, w) ** 2))(x) ** 2)

  expected = jax.grad(functools.partial(gradient_norm, xla))(w)
  np.testing.assert_allclose(
      jax.jit(jax.grad(functools.partial(gradient_norm, ours)))(w),
      expected,
      rtol=0,
      atol=1e-5 * float(np.abs(expected).max()),
  )


@pytest.mark.parametrize(
    "dtype, options",
    [
        (jnp.bfloat16, {}),
        (jnp.float32, dict(feature_group_count=2)),
        (jnp.float32, dict(rhs_dilation=(2, 2))),
    ],
)
def test_calls_onednn_does_not_take_go_to_the_col2im_convolution(dtype, options):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), dtype)
  groups = options.get("feature_group_count", 1)
  w = jnp.asarray(rng.standard_normal((3, 3, 4 // groups, 6)), dtype)
  ours, _ = _drop_in_and_xla(**options)
  auto = functools.partial(
      layers.conv_general_dilated_fn("col2im"),
      window_strides=(1, 1),
      padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      **options,
  )
  assert not _ffi_targets(jax.make_jaxpr(ours)(x, w).jaxpr)
  np.testing.assert_array_equal(jax.jit(ours)(x, w), jax.jit(auto)(x, w))


def test_other_dtypes_are_refused_in_one_line():
  x = jnp.zeros((1, 4, 4, 2), jnp.bfloat16)
  w = jnp.zeros((3, 3, 2, 2), jnp.bfloat16)
  with pytest.raises(ValueError, match="onednn_conv2d computes float32 only"):
    onednn.onednn_conv2d(x, w)


def test_a_missing_onednn_or_another_platform_is_one_line(monkeypatch, tmp_path):
  monkeypatch.setattr(build, "_prefixes", lambda: [tmp_path])
  with pytest.raises(build.OnednnUnavailable, match="pip install onednn-cpu-gomp==2023.2.0"):
    build.find_onednn()
  monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")
  with pytest.raises(build.OnednnUnavailable, match="x86-64 Linux only.*use conv_impl='auto'"):
    build.find_onednn()


def test_torch_and_onednn_share_a_process_and_agree():
  # PyTorch brings its own libgomp and its own oneDNN; both load beside ours.
  import torch  # noqa: PLC0415 (a dev dependency, imported only here)

  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 12, 12, 8), np.float32)
  w = rng.standard_normal((3, 3, 8, 12), np.float32)
  ours = jax.jit(functools.partial(onednn.onednn_conv2d, stride=(2, 2), padding=((1, 1), (1, 1))))
  theirs = torch.nn.functional.conv2d(
      torch.from_numpy(x).permute(0, 3, 1, 2),
      torch.from_numpy(w).permute(3, 2, 0, 1),
      stride=2,
      padding=1,
  )
  expected = theirs.permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(
      ours(x, w), expected, rtol=0, atol=1e-5 * float(np.abs(expected).max())
  )


def _onednn_tiny_config(**overrides):
  config = tiny_config(**{"num_train_steps": 20, "eval_every_steps": 20, **overrides})
  config.model_kwargs = {**config.model_kwargs, "conv_impl": "onednn"}
  return config


def test_a_stopped_onednn_run_resumes_bit_exactly(tmp_path, monkeypatch):
  # The tiny config's convolutions (with batch norm) on oneDNN's kernels:
  # stopped at a checkpoint and resumed, the run ends where an unstopped one
  # does, to the bit.
  traced = []
  call = onednn.conv._call
  monkeypatch.setattr(
      onednn.conv, "_call", lambda target, *a: traced.append(target) or call(target, *a)
  )
  reference = train_and_evaluate(_onednn_tiny_config(), str(tmp_path / "reference"))
  # Its training step runs all three passes on oneDNN (no silent fallback).
  assert {"forward", "input_grad", "weight_grad"} == {t.rsplit("conv_", 1)[1] for t in traced}
  train_and_evaluate(_onednn_tiny_config(num_train_steps=10), str(tmp_path / "split"))
  resumed = train_and_evaluate(_onednn_tiny_config(), str(tmp_path / "split"))
  assert resumed == reference
  jax.tree.map(
      np.testing.assert_array_equal,
      final_state(tmp_path / "split"),
      final_state(tmp_path / "reference"),
  )
