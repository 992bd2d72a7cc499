"""Optimizers and schedules against hand-computed updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.train import optimizers


def _params():
  return {
      "conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones((4,))},
      "bn": {"scale": jnp.ones((4,)), "bias": jnp.ones((4,))},
  }


def test_step_schedule_in_steps_and_epochs():
  by_steps = optimizers.make_schedule({"name": "step", "boundaries": (32000, 48000)}, 0.1, 64000)
  by_epochs = optimizers.make_schedule(
      {"name": "step", "boundaries_epochs": (80, 120)}, 0.1, 64000, steps_per_epoch=400
  )
  for schedule in (by_steps, by_epochs):
    np.testing.assert_allclose(
        [schedule(s) for s in (0, 31999, 32000, 47999, 48000, 63999)],
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001],
        rtol=1e-6,
    )


def test_step_schedule_with_one_factor_per_boundary():
  # He et al.'s ResNet-110: 0.01 until step 400, then 0.1, /10 at 32k and 48k.
  schedule = optimizers.make_schedule(
      {"name": "step", "boundaries": (400, 32000, 48000), "factors": (10, 0.1, 0.1)}, 0.01, 64000
  )
  np.testing.assert_allclose(
      [schedule(s) for s in (0, 399, 400, 31999, 32000, 48000)],
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001],
      rtol=1e-6,
  )
  with pytest.raises(ValueError, match="one factor per boundary"):
    optimizers.make_schedule({"name": "step", "boundaries": (1, 2), "factors": (0.1,)}, 0.1, 9)


def test_cosine_with_warmup():
  schedule = optimizers.make_schedule(
      {"name": "cosine", "warmup_epochs": 5}, 0.4, 1000, steps_per_epoch=20
  )
  np.testing.assert_allclose(schedule(0), 0.0)
  np.testing.assert_allclose(schedule(50), 0.2, rtol=1e-6)  # half-way up the warm-up
  np.testing.assert_allclose(schedule(100), 0.4, rtol=1e-6)
  np.testing.assert_allclose(schedule(550), 0.2, rtol=1e-5)  # half-way down the cosine
  np.testing.assert_allclose(schedule(1000), 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="warm-up of 1000 steps"):
    optimizers.make_schedule({"name": "cosine", "warmup_steps": 1000}, 0.1, 1000)


def test_one_cycle_peaks_at_the_learning_rate():
  schedule = optimizers.make_schedule({"name": "one_cycle"}, 1.0, 100)
  values = np.array([schedule(s) for s in range(101)])
  assert values.argmax() == 30 and values.max() == pytest.approx(1.0)
  assert values[0] == pytest.approx(1.0 / 25) and values[-1] < 1e-4


def test_sgd_momentum_and_l2_decay_skip_biases_and_scales():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  tx, _ = optimizers.make_optimizer(
      {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.5},
      {"name": "constant"},
      10,
  )
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  # Step 1, by hand: kernels see g + wd * w = 1.5, biases and scales g = 1.
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.15)
  for leaf in (updates["conv"]["bias"], updates["bn"]["scale"], updates["bn"]["bias"]):
    np.testing.assert_allclose(leaf, -0.1)
  # Step 2 with the same w: momentum trace 0.9 * 1.5 + 1.5.
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * (0.9 * 1.5 + 1.5), rtol=1e-6)


def test_nesterov_differs_from_heavy_ball():
  params, grads = _params(), jax.tree.map(jnp.ones_like, _params())
  results = []
  for nesterov in (False, True):
    tx, _ = optimizers.make_optimizer(
        {"name": "sgd", "learning_rate": 1.0, "nesterov": nesterov}, {}, 10
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    results.append(float(updates["conv"]["bias"][0]))
  assert results == pytest.approx([-1.0, -1.9])  # Nesterov looks one momentum step ahead


def test_adamw_decay_is_decoupled_and_masked():
  params = _params()
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  tx, _ = optimizers.make_optimizer(
      {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.1}, {}, 10
  )
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.01 * 0.1, rtol=1e-6)
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)
  np.testing.assert_allclose(updates["bn"]["scale"], 0.0)


def test_gradient_clipping():
  params = {"w": jnp.zeros((2, 2))}
  grads = {"w": jnp.full((2, 2), 3.0)}  # global norm 6
  tx, _ = optimizers.make_optimizer(
      {"name": "sgd", "learning_rate": 1.0, "momentum": 0, "grad_clip_norm": 1.5}, {}, 10
  )
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(optax.tree.norm(updates)) == pytest.approx(1.5)


def test_config_errors():
  with pytest.raises(ValueError, match="optimizer.name='rmsprop'"):
    optimizers.make_optimizer({"name": "rmsprop"}, {}, 10)
  with pytest.raises(ValueError, match="schedule.name='linear'"):
    optimizers.make_schedule({"name": "linear"}, 0.1, 10)
  with pytest.raises(ValueError, match="learning_rate must be positive"):
    optimizers.make_optimizer({"name": "sgd", "learning_rate": 0}, {}, 10)
