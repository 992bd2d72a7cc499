"""SDLM (LeCun et al. 1998, Appendix C): the curvature estimate against the full
Gauss-Newton matrix, the step on a quadratic, exact resume, config checks."""

import os
import subprocess
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from cnn_jax import models
from cnn_jax.errors import ConfigError
from cnn_jax.models.lenet import EuclideanRBF, digit_rbf_centres
from cnn_jax.tasks import metrics
from cnn_jax.train import inputs, optimizers, parallel, sdlm, steps, train_and_evaluate
from cnn_jax.train.state import TrainState

from helpers import ROOT, python, tiny_config
from test_train import assert_trees_equal, final_state


class _Body(nn.Module):
  """A small conv net up to an 84-unit layer, as LeNet-5 up to F6."""

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Conv(2, (3, 3), padding="VALID", name="conv")(x))
    return jnp.tanh(nn.Dense(84, name="F6")(x.reshape(x.shape[0], -1)))


class _RBFNet(nn.Module):
  """_Body, then LeNet-5's fixed RBF output layer (no parameters)."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return EuclideanRBF(10, name="output")(_Body(name="body")(x))


class _MLP(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = jnp.tanh(nn.Dense(5, name="hidden")(x.reshape(x.shape[0], -1)))
    return nn.Dense(3, name="output")(x)


def _reference_diagonal(outputs_fn, loss_fn, params, inputs, labels):
  """Mean over examples of diag(J^T H+ J), J the full Jacobian (jacrev) of the outputs
  with respect to the flattened params, H+ the loss Hessian's positive part."""
  flat, unravel = ravel_pytree(params)
  total = 0.0
  for x, y in zip(inputs, labels):
    jacobian = jax.jacrev(lambda f: outputs_fn(unravel(f), x))(flat)
    outputs = outputs_fn(params, x)
    eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(jax.hessian(loss_fn)(outputs, y)))
    positive = (eigenvectors * np.maximum(eigenvalues, 0.0)) @ eigenvectors.T
    total = total + jnp.diag(jacobian.T @ positive @ jacobian)
  return np.asarray(total) / len(labels)


def _assert_close(estimate, reference):
  flat = np.asarray(ravel_pytree(estimate)[0])
  assert np.abs(reference).max() > 0
  np.testing.assert_allclose(flat, reference, rtol=2e-4, atol=2e-6 * np.abs(reference).max())


def _data(shape, classes, count=5):
  inputs = jax.random.normal(jax.random.key(0), (count, *shape))
  return inputs, jax.random.randint(jax.random.key(1), (count,), 0, classes)


def test_estimate_is_the_gauss_newton_diagonal_at_the_logits():
  model = _MLP()
  inputs, labels = _data((3, 2, 1), 3)
  params = model.init(jax.random.key(2), inputs[:1])["params"]
  split = sdlm.split_model(model, {"params": params}, (1, 3, 2, 1), ("output",))
  assert split.head_name is None  # the output layer has parameters

  def outputs_fn(p, x):
    return split.outputs({"params": p}, x[None])[0]

  def cross_entropy(z, y):
    return metrics.cross_entropy(z[None], y[None])

  # Padding 5 examples to chunks of 2, and 3 columns in chunks of 2, changes nothing.
  estimate = jax.jit(
      lambda p: sdlm.gauss_newton_diagonal(
          outputs_fn, cross_entropy, p, inputs, labels, examples_per_chunk=2, columns_per_chunk=2
      )
  )(params)
  _assert_close(estimate, _reference_diagonal(outputs_fn, cross_entropy, params, inputs, labels))

  def indefinite(z, y):  # cos: a Hessian with negative eigenvalues, which Gauss-Newton drops
    return cross_entropy(z, y) + jnp.sum(jnp.cos(3.0 * z))

  estimate = sdlm.gauss_newton_diagonal(outputs_fn, indefinite, params, inputs, labels)
  _assert_close(estimate, _reference_diagonal(outputs_fn, indefinite, params, inputs, labels))


def test_estimate_splits_at_the_input_of_a_parameter_free_rbf_layer():
  model = _RBFNet()
  inputs, labels = _data((5, 5, 1), 10, count=3)
  params = model.init(jax.random.key(2), inputs[:1])["params"]
  split = sdlm.split_model(model, {"params": params}, (1, 5, 5, 1), ("output",))
  assert split.head_name == "output"

  def outputs_fn(p, x):
    return split.outputs({"params": p}, x[None])[0]

  def rbf_output_of_the_label(z, y):  # the paper's Eq. 8 loss: E = y_D
    return -split.logits(z[None])[0, y]

  estimate = sdlm.gauss_newton_diagonal(outputs_fn, rbf_output_of_the_label, params, inputs, labels)
  # The reference knows nothing of the split: F6's output and the squared
  # distance to the label's code, written out.
  codes = jnp.asarray(digit_rbf_centres())

  def f6(p, x):
    return _Body().apply({"params": p["body"]}, x[None])[0]

  def squared_distance(z, y):
    return jnp.sum(jnp.square(z - codes[y]))

  _assert_close(estimate, _reference_diagonal(f6, squared_distance, params, inputs, labels))
  # The same loss is linear in the logits: there, Gauss-Newton sees no curvature.
  at_logits = sdlm.gauss_newton_diagonal(
      lambda p, x: model.apply({"params": p}, x[None])[0],
      lambda logits, y: -logits[y],
      params,
      inputs,
      labels,
  )
  assert all(np.all(np.asarray(h) == 0) for h in jax.tree.leaves(at_logits))


def _rbf_case():
  """(outputs_fn at F6, the MAP loss through the RBF, params, inputs, labels) of _RBFNet."""
  model = _RBFNet()
  inputs, labels = _data((5, 5, 1), 10, count=3)
  params = model.init(jax.random.key(2), inputs[:1])["params"]
  split = sdlm.split_model(model, {"params": params}, (1, 5, 5, 1), ("output",))

  def outputs_fn(p, x):
    return split.outputs({"params": p}, x[None])[0]

  def map_loss(z, y):  # 84 outputs at the split, a full-rank loss Hessian
    return metrics.per_example_loss("rbf_map", split.logits(z[None]), y[None])[0]

  return outputs_fn, map_loss, params, inputs, labels


def _probed(case, probes, seed=0):
  return np.asarray(
      ravel_pytree(
          sdlm.gauss_newton_diagonal(
              *case, columns_per_chunk=8, probes=probes, probe_key=jax.random.key(seed)
          )
      )[0]
  )


def test_probed_estimate_is_unbiased_and_its_error_falls_as_one_over_root_probes():
  case = _rbf_case()
  exact = _reference_diagonal(*case)
  scale = np.abs(exact).max()

  def error(probes, seed):
    return np.abs(_probed(case, probes, seed) - exact).max() / scale

  # Hutchinson's estimator: its error falls as 1 / sqrt(probes). Over keys
  # 0-9 the largest error (relative to the largest h) was 0.25-0.52 with 16
  # probes and 0.017-0.033 with 2,048; the bounds sit outside both spreads.
  few, many = error(16, 0), error(2048, 0)
  assert few > 0.1, few
  assert many < 0.08, many
  assert not np.array_equal(_probed(case, 16, 0), _probed(case, 16, 1))  # the key is used


def test_probed_estimate_is_exact_for_a_single_output():
  # (v J^T f)^2 = (J^T f)^2 for v = +-1: one output at the split leaves no noise.
  outputs_fn, map_loss, params, inputs, labels = _rbf_case()
  case = (lambda p, x: outputs_fn(p, x)[:1], lambda z, y: jnp.sum(jnp.square(z - 0.3)))
  case = (*case, params, inputs, labels)
  _assert_close(
      sdlm.gauss_newton_diagonal(*case, probes=3, probe_key=jax.random.key(0)),
      _reference_diagonal(*case),
  )


def test_lenet5_splits_at_f6_and_lenet5_modern_at_the_logits():
  for name, head in (("lenet5", "output"), ("lenet5_modern", None)):
    model = models.create(name)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    split = sdlm.split_model(model, variables, (1, 32, 32, 1), ("output",))
    assert split.head_name == head
    outputs = jax.eval_shape(split.outputs, variables, jnp.zeros((2, 32, 32, 1)))
    assert outputs.shape == ((2, 84) if head else (2, 10))


def test_exact_curvature_reaches_a_quadratic_minimum_in_one_step():
  a = jnp.array([0.5, 2.0, 8.0, 100.0])
  c = jnp.array([1.0, -2.0, 3.0, 0.25])
  params = {"x": jnp.zeros(4)}

  def quadratic(z, y):
    del y
    return 0.5 * jnp.sum(a * jnp.square(z - c))

  def identity(p, x):
    del x
    return p["x"]

  curvature = sdlm.gauss_newton_diagonal(
      identity, quadratic, params, jnp.zeros((1, 1)), jnp.zeros(1)
  )
  np.testing.assert_allclose(curvature["x"], a, rtol=1e-6)
  tx, _ = optimizers.make_optimizer({"name": "sdlm", "learning_rate": 1.0, "mu": 0.0}, {}, 10)
  state = sdlm.with_curvature(tx.init(params), curvature)
  grads = jax.grad(lambda p: quadratic(p["x"], None))(params)
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_allclose(params["x"] + updates["x"], c, rtol=1e-6)


def test_curvature_is_set_inside_masked_fine_tuning_states():
  params = {"body": jnp.ones(3), "head": jnp.ones(2)}
  tx = optax.masked(sdlm.sdlm(1.0), {"body": False, "head": True})
  state = sdlm.with_curvature(tx.init(params), jax.tree.map(lambda p: 2.0 * p, params))
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  np.testing.assert_allclose(updates["head"], -1.0 / (sdlm.DEFAULT_MU + 2.0), rtol=1e-6)
  np.testing.assert_allclose(updates["body"], 1.0)  # masked out: the gradient passes


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("mu", -0.1, "config.optimizer.mu must be >= 0 and finite, got -0.1"),
        ("mu", float("nan"), "config.optimizer.mu must be >= 0 and finite, got nan"),
        ("hessian_samples", 0, "config.optimizer.hessian_samples must be a positive integer"),
        ("hessian_samples", 2.5, "config.optimizer.hessian_samples must be a positive integer"),
        ("hessian_samples", True, "config.optimizer.hessian_samples must be a positive integer"),
        ("curvature_every_steps", -1, "config.optimizer.curvature_every_steps must be an integer"),
        ("curvature_every_steps", 2.5, "config.optimizer.curvature_every_steps must be an integer"),
        ("hessian_probes", -1, "config.optimizer.hessian_probes must be an integer >= 0 \\(0: the"),
        ("hessian_probes", True, "config.optimizer.hessian_probes must be an integer"),
    ],
)
def test_bad_sdlm_numbers_are_one_line_config_errors(field, value, message):
  with pytest.raises(ConfigError, match=message) as error:
    optimizers.make_optimizer({"name": "sdlm", field: value}, {}, 10)
  assert "\n" not in str(error.value)


def _lenet5_sdlm_config(**overrides):
  settings = dict(
      model="lenet5",
      # gemm: the curvature estimate compiles in a fraction of XLA's conv time
      # (experiments/lecun1998's commands use it for that reason).
      model_kwargs={"conv_impl": "gemm"},
      image_size=32,
      augment="",
      batch_size=64,  # 22 steps per epoch of the 1,438 training digits
      num_train_steps=30,
      eval_every_steps=30,
  )
  config = tiny_config(**{**settings, **overrides})
  config.optimizer = dict(
      name="sdlm", learning_rate=0.0005, mu=0.02, hessian_samples=16, weight_decay=0.0
  )
  return config


def test_stopped_sdlm_run_resumes_bit_exactly(tmp_path):
  reference = train_and_evaluate(_lenet5_sdlm_config(), str(tmp_path / "reference"))
  # Stopped within the first epoch (the curvature comes from the checkpoint),
  # then at the second epoch's start (the resumed run estimates it first).
  for stop_at in (10, 22):
    train_and_evaluate(_lenet5_sdlm_config(num_train_steps=stop_at), str(tmp_path / "split"))
  resumed = train_and_evaluate(_lenet5_sdlm_config(), str(tmp_path / "split"))
  assert resumed == reference
  state = final_state(tmp_path / "split")
  assert_trees_equal(state, final_state(tmp_path / "reference"))
  curvature = [np.asarray(h) for h in jax.tree.leaves(state["opt_state"])]
  assert any(np.any(h > 0) for h in curvature)  # estimated, not the initial zeros


def test_both_pipelines_give_the_curvature_the_same_examples():
  mesh = parallel.make_mesh()
  indices = jnp.array([5, 0, 1400, 77])
  device, grain = (
      inputs.training_input(tiny_config(pipeline, image_size=32), mesh).examples(indices)
      for pipeline in ("device", "grain")
  )
  for a, b in zip(device, grain):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert device[0].shape == (4, 32, 32, 1) and device[0].dtype == jnp.uint8


def test_curvature_every_so_many_steps_is_estimated_at_those_steps_on_fresh_examples():
  model, mesh = models.create("lenet5"), parallel.make_mesh(jax.devices()[:1])
  images = jax.random.randint(jax.random.key(0), (20, 32, 32, 1), 0, 256).astype(jnp.uint8)
  labels = jax.random.randint(jax.random.key(1), (20,), 0, 10)
  params = parallel.put_replicated(
      jax.device_get(model.init(jax.random.key(2), jnp.zeros((1, 32, 32, 1)))["params"]), mesh
  )
  tx = sdlm.sdlm(1.0)
  state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats={},
      opt_state=tx.init(params),
      ema_params={},
      rng=jax.random.key_data(jax.random.key(3)),
  )
  split = sdlm.split_model(model, {"params": params}, (1, 32, 32, 1), ("output",))
  to_input = lambda u: u.astype(jnp.float32) / 255.0
  hook_args = (split, metrics.cross_entropy, to_input, lambda i: (images[i], labels[i]), mesh)
  hook_kwargs = dict(num_examples=20, hessian_samples=6, steps_per_epoch=10, every_steps=3)
  hook = sdlm.EpochCurvature(*hook_args, **hook_kwargs)
  assert hook(state, 4) is state and hook(state, 5) is state  # between estimates
  # Step 6 is the third estimate (0, 3, 6), on its own examples, within an epoch.
  estimated = jax.tree.leaves(hook(state, 6).opt_state[0].curvature)
  indices = sdlm.sample_indices(steps.curvature_key(state.rng), 2, 20, 6)
  estimate_args = (
      lambda p, x: split.outputs({"params": p}, x[None])[0],
      lambda z, y: metrics.cross_entropy(split.logits(z[None]), y[None]),
      jax.device_get(params),
      to_input(images[indices]),
      labels[indices],
  )
  expected = sdlm.gauss_newton_diagonal(*estimate_args)
  for a, b in zip(estimated, jax.tree.leaves(expected)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
  other = sdlm.sample_indices(steps.curvature_key(state.rng), 1, 20, 6)
  assert not np.array_equal(np.asarray(indices), np.asarray(other))
  # Probes are drawn from the state's key and the estimate's number, as the
  # examples are (on a stream of their own): a resumed run draws the ones the
  # uninterrupted run drew.
  probed_hook = sdlm.EpochCurvature(*hook_args, **hook_kwargs, hessian_probes=2)
  probed = jax.tree.leaves(probed_hook(state, 6).opt_state[0].curvature)
  expected = sdlm.gauss_newton_diagonal(
      *estimate_args,
      probes=2,
      probe_key=sdlm.probe_key(steps.curvature_probe_key(state.rng), 2),
  )
  # Rounding differs between the hook's program and this one, and the square
  # root of the loss Hessian's near-zero eigenvalues amplifies it: 5.6e-4
  # relative measured.
  for a, b in zip(probed, jax.tree.leaves(expected)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=3e-3, atol=1e-5 * np.abs(b).max())
  assert not np.allclose(np.asarray(probed[0]), np.asarray(estimated[0]))  # not the exact one


_EIGHT_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from cnn_jax import models
    from cnn_jax.tasks import metrics
    from cnn_jax.train import parallel, sdlm, steps
    from cnn_jax.train.state import TrainState
    assert jax.device_count() == 8
    model, mesh = models.create("lenet5"), parallel.make_mesh()
    images = jax.random.randint(jax.random.key(0), (20, 32, 32, 1), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(jax.random.key(1), (20,), 0, 10)
    params = parallel.put_replicated(
        jax.device_get(model.init(jax.random.key(2), jnp.zeros((1, 32, 32, 1)))["params"]), mesh)
    tx = sdlm.sdlm(1.0)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                       opt_state=tx.init(params), ema_params={},
                       rng=jax.random.key_data(jax.random.key(3)))
    split = sdlm.split_model(model, {"params": params}, (1, 32, 32, 1), ("output",))
    to_input = lambda u: u.astype(jnp.float32) / 255.0
    hook = sdlm.EpochCurvature(
        split, metrics.cross_entropy, to_input, lambda i: (images[i], labels[i]), mesh,
        num_examples=20, hessian_samples=12, steps_per_epoch=5)
    assert hook(state, 3) is state  # within an epoch: nothing to do
    sharded = hook(state, 5).opt_state[0].curvature
    indices = sdlm.sample_indices(steps.curvature_key(state.rng), 1, 20, 12)
    one_device = sdlm.gauss_newton_diagonal(
        lambda p, x: split.outputs({"params": p}, x[None])[0],
        lambda z, y: metrics.cross_entropy(split.logits(z[None]), y[None]),
        jax.device_get(params), to_input(images[indices]), labels[indices], examples_per_chunk=4)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(one_device)):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
    print("ok")
    """)


def test_eight_devices_estimate_what_one_device_does():
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  run = subprocess.run(
      [python(), "-c", _EIGHT_DEVICES],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      cwd=ROOT,
  )
  assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
