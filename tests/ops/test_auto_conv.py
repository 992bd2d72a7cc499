"""conv_impl="auto": oneDNN's kernels where they are here and measured faster, XLA's elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers, models
from cnn_jax.ops import auto_conv, auto_conv_general_dilated, col2im_conv_general_dilated, onednn
from cnn_jax.train import train_and_evaluate

from helpers import tiny_config

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


@pytest.fixture
def fresh_choice():
  """conv_impl="auto" decides once per process: decide again in this test."""
  auto_conv._unavailable.cache_clear()
  yield
  auto_conv._unavailable.cache_clear()


def test_auto_is_the_default_conv_impl():
  assert layers.CONV_IMPLS[0] == "auto"
  assert layers.conv_general_dilated_fn() is auto_conv_general_dilated


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, expected",
    [
        # experiments/benchmarks/onednn_layers.py: LeNet-5's C1 dX 0.85x with
        # oneDNN, EfficientNet-Lite0's stem dX 0.82x: they keep col2im's.
        ((128, 32, 32, 1), (5, 5, 1, 6), (1, 1), [(0, 0)] * 2, "col2im"),
        ((128, 64, 64, 3), (3, 3, 3, 32), (2, 2), [(1, 1)] * 2, "col2im"),
        # resnet20's stem (no col2im at stride 1, 3x3): oneDNN 2.0x on dX.
        ((128, 32, 32, 3), (3, 3, 3, 16), (1, 1), [(1, 1)] * 2, "onednn"),
        ((128, 14, 14, 6), (5, 5, 6, 16), (1, 1), [(0, 0)] * 2, "onednn"),
        ((128, 16, 16, 32), (3, 3, 32, 64), (2, 2), [(1, 1)] * 2, "onednn"),
        ((128, 16, 16, 96), (1, 1, 96, 24), (1, 1), [(0, 0)] * 2, "onednn"),
        # C5: one output position, a matrix product (oneDNN 0.71x forward, 0.23x dW).
        ((128, 5, 5, 16), (5, 5, 16, 120), (1, 1), [(0, 0)] * 2, None),
    ],
)
def test_the_per_layer_choice(x_shape, w_shape, stride, padding, expected):
  assert auto_conv.onednn_input_grad(x_shape, w_shape, stride, padding) == expected


def _traced_passes(monkeypatch) -> list[tuple[str, tuple[int, ...]]]:
  """Records (pass, operand a's shape) of every oneDNN call traced from now on."""
  traced = []
  call = onednn.conv._call

  def recording(target, shape, a, *rest):
    traced.append((target.rsplit("conv_", 1)[1], tuple(a.shape)))
    return call(target, shape, a, *rest)

  monkeypatch.setattr(onednn.conv, "_call", recording)
  return traced


def _lenet5_gradients(conv_impl: str):
  model = models.create("lenet5", conv_impl=conv_impl)
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 1))
  params = model.init(jax.random.key(1), x)

  def loss(params):
    return jnp.sum(model.apply(params, x) ** 2)

  return jax.jit(jax.value_and_grad(loss))(params)


def test_lenet5_runs_c1_and_c3_on_onednn_and_equals_xla(monkeypatch, fresh_choice):
  traced = _traced_passes(monkeypatch)
  (value, grads), (expected_value, expected_grads) = (
      _lenet5_gradients("auto"),
      _lenet5_gradients("xla"),
  )
  # C1 and C3 forward and dW; dX for C3 only (C1's is col2im's); C5 is XLA's.
  assert set(traced) == {
      ("forward", (4, 32, 32, 1)),
      ("forward", (4, 14, 14, 6)),
      ("weight_grad", (4, 32, 32, 1)),
      ("weight_grad", (4, 14, 14, 6)),
      ("input_grad", (4, 10, 10, 16)),
  }
  np.testing.assert_allclose(value, expected_value, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))


def _conv(x, w):
  return auto_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC_HWIO)


@pytest.mark.parametrize(
    "reason, devices, said",
    [
        ("oneDNN is not installed: pip install x", 1, "oneDNN is not installed: pip install x"),
        (
            None,
            8,
            "JAX has 8 devices and oneDNN's custom calls have no partitioning rule"
            " (conv_impl='onednn' forces them)",
        ),
    ],
)
def test_without_onednn_auto_is_col2im_and_the_run_can_say_why(
    monkeypatch, capsys, fresh_choice, reason, devices, said
):
  monkeypatch.setattr(auto_conv, "unavailable_reason", lambda: reason)
  monkeypatch.setattr(auto_conv.jax, "device_count", lambda: devices)
  traced = _traced_passes(monkeypatch)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 8))
  ours = jax.grad(lambda x, w: jnp.sum(_conv(x, w) ** 2), (0, 1))(x, w)
  assert not traced
  expected = jax.grad(
      lambda x, w: jnp.sum(
          col2im_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC_HWIO) ** 2
      ),
      (0, 1),
  )(x, w)
  jax.tree.map(np.testing.assert_array_equal, ours, expected)
  assert auto_conv.path_taken() == f"conv_impl='auto': XLA's convolutions ({said})"
  # The convolution itself prints nothing: a tool's output and a failed
  # command's one-line error stay as they are.
  assert capsys.readouterr() == ("", "")


def test_a_training_run_says_which_convolutions_auto_runs(tmp_path, capsys, fresh_choice):
  train_and_evaluate(tiny_config(num_train_steps=2, eval_every_steps=2), str(tmp_path / "run"))
  out, err = capsys.readouterr()
  assert "conv_impl='auto': oneDNN's convolution kernels on the CPU\n" in out, out
  assert "conv_impl" not in err


@pytest.mark.parametrize(
    "x_shape, w_shape, dtype, onednn_runs",
    [
        ((2, 8, 8, 6), (3, 3, 1, 6), jnp.float32, True),
        # A 5x5 kernel on a 2x2 map: oneDNN's dW measured 20x slower there.
        ((2, 2, 2, 6), (5, 5, 1, 6), jnp.float32, False),
        ((2, 8, 8, 6), (3, 3, 1, 6), jnp.bfloat16, False),
    ],
)
def test_depthwise_layers_take_onednn_where_it_pays(
    monkeypatch, x_shape, w_shape, dtype, onednn_runs
):
  traced = _traced_passes(monkeypatch)
  x = jax.random.normal(jax.random.key(0), x_shape, dtype)
  w = jax.random.normal(jax.random.key(1), w_shape, dtype)
  layout = dict(
      window_strides=(1, 1),
      padding="SAME",
      dimension_numbers=NHWC_HWIO,
      feature_group_count=x_shape[3],
  )

  def loss_and_grads(conv):
    loss = lambda x, w: jnp.sum(conv(x, w, **layout).astype(jnp.float32) ** 2)
    return jax.jit(jax.value_and_grad(loss, (0, 1)))(x, w)

  ours = loss_and_grads(layers.depthwise_conv_general_dilated_fn("auto"))
  assert bool(traced) == onednn_runs
  expected = loss_and_grads(layers.depthwise_conv_general_dilated_fn("col2im"))
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))
