"""cpu_or_default: one trace where the CPU is JAX's only backend, both branches elsewhere."""

import jax
import jax.extend.backend
import jax.numpy as jnp
import numpy as np

from cnn_jax.ops import platforms


def _traced_branches(monkeypatch, backends):
  monkeypatch.setattr(jax.extend.backend, "backends", lambda: backends)
  traced = []

  def cpu(x):
    traced.append("cpu")
    return x * 2.0

  def default(x):
    traced.append("default")
    return x * 3.0

  f = lambda x: platforms.cpu_or_default(x, cpu=cpu, default=default)  # noqa: E731
  jaxpr = jax.make_jaxpr(jax.grad(lambda x: f(x).sum()))(jnp.ones(3))
  primitives = {e.primitive.name for e in jaxpr.eqns}
  value = jax.jit(f)(jnp.arange(3.0))
  return traced, primitives, np.asarray(value)


def test_a_cpu_only_jax_traces_the_cpu_branch_alone(monkeypatch):
  assert platforms.cpu_only()  # the suite's JAX (JAX_PLATFORMS=cpu)
  traced, primitives, value = _traced_branches(monkeypatch, {"cpu": None})
  assert set(traced) == {"cpu"} and "cond" not in primitives and "platform_index" not in primitives
  np.testing.assert_array_equal(value, [0.0, 2.0, 4.0])


def test_with_an_accelerator_both_branches_are_traced_and_the_cpu_runs_its_own(monkeypatch):
  traced, primitives, value = _traced_branches(monkeypatch, {"cpu": None, "cuda": None})
  assert not platforms.cpu_only()
  assert {"cpu", "default"} <= set(traced) and "cond" in primitives
  np.testing.assert_array_equal(value, [0.0, 2.0, 4.0])
