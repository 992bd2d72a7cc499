"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C).

Each parameter k takes its own step

    eps_k = eta / (mu + h_kk),

eta the learning rate of the run's schedule, h_kk a Gauss-Newton estimate of
the loss's second derivative along parameter k, and mu (0.02 in the paper)
keeps the step bounded where h_kk is small. The paper re-estimates h before
each pass over the training set on 500 patterns; so does the loop here
(`EpochCurvature`). Between estimates h is a constant of the optimizer state,
so the step is a plain jitted optax update and a checkpoint holds all there
is to resume from.

The estimate (`gauss_newton_diagonal`) is the exact diagonal of the
Gauss-Newton matrix averaged over the examples,

    h = 1/N sum_n diag(J_n^T H_n J_n),

J_n the Jacobian of the model's outputs at the split point with respect to
the parameters and H_n the Hessian of the loss with respect to those outputs.
The paper's own estimate backpropagates second derivatives layer by layer and
drops the off-diagonal terms on the way; the exact diagonal is what that
recursion approximates, and what a test can hold against jax.hessian.
It costs one backward pass per example and output at the split (84 for
LeNet-5 split at F6); its measured time is in experiments/lecun1998/README.md.
With `probes` (`hessian_probes` in the optimizer config) the sum over those
outputs is estimated instead from a few Rademacher probes per example
(Hutchinson's estimator): unbiased, noisier, one backward pass per probe.

The model runs in eval mode (batch norm's running statistics, no dropout):
in training mode each example, alone in its batch, would be normalized by
itself.

Where the model is split matters. LeNet-5's output layer is a fixed RBF
(logits = -squared distances to constant codes) and the paper's loss is the
RBF output of the correct class: linear in the logits, so the split at the
logits would give h = 0. A parameter-free output layer therefore counts as
part of the loss (the paper backpropagates through it: its second derivative
is 2) and the split is at its input (`Split`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec

from cnn_jax.errors import ArgumentError
from cnn_jax.train import parallel, steps

# The paper's settings (Appendix C).
DEFAULT_MU = 0.02
DEFAULT_HESSIAN_SAMPLES = 500
# Examples whose per-column gradients one vmapped backward pass holds, per
# device: the memory is about this times (outputs at the split) x (params).
EXAMPLES_PER_DEVICE_CHUNK = 8
# fold_in data of an estimate's probe key under its number's key.
_PROBE_STREAM = 1


class ScaleBySDLMState(NamedTuple):
  """SDLM's optimizer state: the curvature estimate h, shaped like the params (float32)."""

  curvature: optax.Params


def scale_by_sdlm(mu: float) -> optax.GradientTransformation:
  """Divides each gradient by (mu + h_kk), h the curvature in the state.

  The curvature starts at zero; set it with `with_curvature` before the first
  update (the loop does, before each epoch), or the first steps are g / mu.
  A parameter with zero curvature and mu = 0 (a dead unit) takes no step
  rather than 0 / 0.

  Args:
    mu: the damping, >= 0.

  Returns:
    An optax GradientTransformation whose state is a ScaleBySDLMState.
  """

  def init_fn(params):
    return ScaleBySDLMState(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))

  def update_fn(updates, state, params=None):
    del params

    def scale(g, h):
      denominator = mu + h
      safe = jnp.where(denominator > 0, denominator, 1.0)
      return jnp.where(denominator > 0, g / safe, 0.0).astype(g.dtype)

    return jax.tree.map(scale, updates, state.curvature), state

  return optax.GradientTransformation(init_fn, update_fn)


def sdlm(learning_rate: optax.ScalarOrSchedule, mu: float = DEFAULT_MU):
  """SDLM: steps of -eta_t * g_k / (mu + h_kk), eta_t the learning rate (or schedule).

  Args:
    learning_rate: eta, a number or an optax schedule.
    mu: the damping, >= 0.

  Returns:
    An optax GradientTransformation.
  """
  return optax.chain(scale_by_sdlm(mu), optax.scale_by_learning_rate(learning_rate))


def with_curvature(opt_state: Any, curvature: Any) -> Any:
  """The optimizer state with every SDLM curvature in it replaced.

  optax.tree_utils.tree_set would put one value everywhere; under fine-tuning
  the SDLM state sits in masked branches whose trees hold optax.MaskedNode
  for the parameters they leave out, so each copy keeps its own mask here.

  Args:
    opt_state: a state holding one or more ScaleBySDLMState.
    curvature: the new h, shaped like the params.

  Returns:
    The new optimizer state.

  Raises:
    ArgumentError: if the state holds no SDLM state (the optimizer is not SDLM).
  """
  found = []

  def replace(node):
    if not isinstance(node, ScaleBySDLMState):
      return node
    found.append(node)
    kept = jax.tree.map(
        lambda old, new: old if isinstance(old, optax.MaskedNode) else new.astype(old.dtype),
        node.curvature,
        curvature,
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )
    return node._replace(curvature=kept)

  new_state = jax.tree.map(
      replace, opt_state, is_leaf=lambda x: isinstance(x, (ScaleBySDLMState, optax.MaskedNode))
  )
  if not found:
    raise ArgumentError("the optimizer state holds no SDLM curvature; the optimizer is not sdlm")
  return new_state


def _squares_summed_over_columns(pullback, cotangent, columns, zeros, columns_per_chunk):
  """sum_c (J^T f_c)^2 for the rows f_c of `columns`, a chunk of them per vmapped pass."""
  count = columns.shape[0]
  size = min(columns_per_chunk or count, count)
  # Zero columns add nothing: padding to whole chunks changes no sum.
  chunks = jnp.pad(columns, ((0, -count % size), (0, 0))).reshape(-1, size, columns.shape[1])

  def squares(column):
    (grads,) = pullback(cotangent(column))
    return jax.tree.map(lambda g: jnp.square(g.astype(jnp.float32)), grads)

  def add_chunk(total, chunk):
    chunk_squares = jax.vmap(squares)(chunk)
    return jax.tree.map(lambda t, s: t + jnp.sum(s, axis=0), total, chunk_squares), None

  total, _ = jax.lax.scan(add_chunk, zeros, chunks)
  return total


def _flat_float32(z):
  """(the outputs at the split flattened in float32, the inverse of that flattening)."""
  return ravel_pytree(jax.tree.map(lambda a: a.astype(jnp.float32), z))


def _loss_hessian(outputs_fn, loss_fn, params, x, y):
  """H: the Hessian of one example's loss with respect to its flattened outputs."""
  flat_z, unravel = _flat_float32(outputs_fn(params, x))
  hessian = jax.hessian(lambda v: loss_fn(unravel(v), y))(flat_z)
  return 0.5 * (hessian + hessian.T)


def _positive_factor(hessian):
  """F with F F^T = H's positive semi-definite part: F = V sqrt(max(lambda, 0)).

  A loss Hessian with negative eigenvalues (a loss that includes a nonlinear
  output layer) loses those directions, as Gauss-Newton must to stay >= 0.
  """
  eigenvalues, eigenvectors = jnp.linalg.eigh(hessian)
  return eigenvectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))


def _example_diagonal(outputs_fn, params, x, factor, columns_per_chunk):
  """diag(J^T F F^T J) of one example: F its loss Hessian's factor (exact), or
  its probes S V / sqrt(K) (estimated)."""
  z, pullback = jax.vjp(lambda p: outputs_fn(p, x), params)
  _, unravel = _flat_float32(z)

  def cotangent(column):
    return jax.tree.map(lambda c, a: c.astype(a.dtype), unravel(column), z)

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  return _squares_summed_over_columns(pullback, cotangent, factor.T, zeros, columns_per_chunk)


def _positive_root(hessian):
  """S, the symmetric square root of H's positive semi-definite part: S S = H+.

  Unlike the factor F (whose columns are eigenvectors, of arbitrary sign and,
  for a repeated eigenvalue, of arbitrary basis), S is unique: probes through
  it do not depend on how the eigensolver happened to pick its vectors.
  """
  eigenvalues, eigenvectors = jnp.linalg.eigh(hessian)
  return (eigenvectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))) @ eigenvectors.T


def _probed(root, key, probes):
  """S V / sqrt(K) for K Rademacher columns V (C x K): E[that times its transpose] = S S."""
  signs = jax.random.rademacher(key, (root.shape[1], probes), root.dtype)
  return root @ signs / jnp.sqrt(jnp.asarray(probes, root.dtype))


def _weighted_sum(outputs_fn, loss_fn, params, chunks, columns_per_chunk, probes):
  """sum_n w_n diag(J_n^T H_n J_n) over (inputs, labels, weights, probe keys) chunked
  (chunks, size, ...): exactly, or estimated with `probes` Rademacher probes per example."""
  hessian = functools.partial(_loss_hessian, outputs_fn, loss_fn, params)
  example = functools.partial(_example_diagonal, outputs_fn, params)

  def add_chunk(sums, chunk):
    x, y, w, keys = chunk
    # One matrix per eigh call, not a vmapped batch: jaxlib 0.10's CPU LAPACK
    # kernels split a batch over the intra-op thread pool and block until it
    # is done, which deadlocks when several CPU devices do so at once; a
    # single matrix runs inline. (The forward pass is then done twice; the C,
    # or K, backward passes per example outweigh it.)
    hessians = jax.vmap(hessian)(x, y)
    if probes:
      roots = jax.lax.map(_positive_root, hessians)
      factors = jax.vmap(_probed, in_axes=(0, 0, None))(roots, keys, probes)
    else:
      factors = jax.lax.map(_positive_factor, hessians)
    diagonals = jax.vmap(example, in_axes=(0, 0, None))(x, factors, columns_per_chunk)
    return jax.tree.map(lambda s, d: s + jnp.tensordot(w, d, axes=1), sums, diagonals), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  sums, _ = jax.lax.scan(add_chunk, zeros, chunks)
  return sums


def _padded(count, examples_per_chunk, devices, probe_key):
  """(examples per chunk, each padded slot's example, its weight, its probe key)."""
  examples_per_chunk = min(examples_per_chunk, -(-count // devices))  # no chunk of padding
  total = count + (-count % (examples_per_chunk * devices))
  # Padding repeats the last example with weight 0: finite values, no effect.
  index = jnp.minimum(jnp.arange(total), count - 1)
  weights = jnp.where(jnp.arange(total) < count, 1.0 / count, 0.0)
  key = jax.random.key(0) if probe_key is None else probe_key  # unused when exact
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(total))
  return examples_per_chunk, index, weights, keys


def gauss_newton_diagonal(
    outputs_fn: Callable[[Any, jax.Array], Any],
    loss_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    inputs: jax.Array,
    labels: jax.Array,
    *,
    examples_per_chunk: int = EXAMPLES_PER_DEVICE_CHUNK,
    columns_per_chunk: int = 0,
    probes: int = 0,
    probe_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> Any:
  """The diagonal of the Gauss-Newton matrix, averaged over examples (jit-able).

  For each example n, with z_n = outputs_fn(params, x_n) the model's outputs
  at the split point (C numbers), J_n = dz_n/dparams and H_n = d^2 loss /
  dz_n^2 (C x C, from jax.hessian), H_n is factored as F F^T by its
  eigen-decomposition (negative eigenvalues clipped to 0) and

      diag(J_n^T H_n J_n) = sum_c (J_n^T f_c)^2,

  each J_n^T f_c one vector-Jacobian product. The result is the mean over
  the examples. The work is C backward passes per example; a scan over
  chunks of examples (vmapped, and over chunks of columns) bounds the memory
  to about examples_per_chunk x columns_per_chunk (or C) x params floats.

  With `probes` = K > 0 the sum over the C columns is estimated instead
  (Hutchinson's estimator of a diagonal): each example draws K Rademacher
  vectors v_k (entries +-1) and takes 1/K sum_k (J_n^T S v_k)^2, S = S^T
  the square root of H_n (its positive part), whose expectation is
  diag(J_n^T S S J_n) since E[v v^T] = I. Unbiased, noisy, and K backward
  passes per example instead of C.

  Args:
    outputs_fn: (params, one example's input) -> the outputs at the split (a pytree).
    loss_fn: (outputs at the split, one label) -> the example's scalar loss.
    params: the parameters (a pytree of float arrays).
    inputs: (N, ...) the examples' model inputs.
    labels: (N, ...) their labels.
    examples_per_chunk: examples per vmapped pass (per device).
    columns_per_chunk: columns of F (or probes) per vmapped pass (0: all
      C, or all K, at once).
    probes: Rademacher probes per example; 0: the exact diagonal.
    probe_key: the PRNG key of the probes (needed when probes > 0); example
      n draws from fold_in(probe_key, n).
    mesh: if given, each device of its data axis takes its share of the
      examples (params replicated) and the sums meet in one psum.

  Returns:
    float32 h shaped like params: h_k = 1/N sum_n diag(J_n^T H_n J_n)_k,
    or its estimate when probes > 0.
  """
  if probes and probe_key is None:
    raise ArgumentError("gauss_newton_diagonal with probes > 0 needs a probe_key")
  devices = 1 if mesh is None else mesh.shape[parallel.DATA_AXIS]
  examples_per_chunk, index, weights, keys = _padded(
      labels.shape[0], examples_per_chunk, devices, probe_key
  )

  def local_sum(params, inputs, labels, weights, keys):
    chunks = jax.tree.map(
        lambda a: a.reshape(-1, examples_per_chunk, *a.shape[1:]),
        (inputs, labels, weights, keys),
    )
    return _weighted_sum(outputs_fn, loss_fn, params, chunks, columns_per_chunk, probes)

  args = (params, inputs[index], labels[index], weights, keys)
  return local_sum(*args) if mesh is None else _summed_over_devices(local_sum, mesh, args)


def _summed_over_devices(local_sum, mesh, args):
  """psum of local_sum over the mesh's data axis, each device on its share of the
  examples (args: params, then per-example arrays)."""
  # shard_map, not a sharding constraint on the vmapped examples: XLA's SPMD
  # partitioner got the per-example conv kernel gradients wrong that way
  # (8 CPU devices, jax 0.10.2), while each device's own program is plain.
  # No varying-axes checks: jax.linear_transpose (the CPU conv's col2im
  # backward pass) does not accept the per-device values they type.
  by_example = PartitionSpec(parallel.DATA_AXIS)

  def device_sum(*device_args):
    return jax.lax.psum(local_sum(*device_args), parallel.DATA_AXIS)

  return jax.shard_map(
      device_sum,
      mesh=mesh,
      in_specs=(PartitionSpec(), *[by_example] * (len(args) - 1)),
      out_specs=PartitionSpec(),
      check_vma=False,
  )(*args)


@dataclasses.dataclass(frozen=True)
class Split:
  """Where the Gauss-Newton estimate cuts a model into outputs and loss.

  Attributes:
    model: the flax model.
    head_name: the top-level parameter-free output layer whose input is the
      split point, or None: the split is at the model's output (the logits).
    head: that layer, unbound; applied to the split's outputs inside the loss.
  """

  model: nn.Module
  head_name: str | None = None
  head: nn.Module | None = None

  def _skip_head(self, next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.path == (self.head_name,):
      return args[0]  # the head's input: the outputs at the split
    return next_fun(*args, **kwargs)

  def outputs(self, variables: Any, x: jax.Array) -> jax.Array:
    """The model's outputs at the split for a batch x (eval mode)."""
    if self.head_name is None:
      return self.model.apply(variables, x, train=False)
    with nn.intercept_methods(self._skip_head):
      return self.model.apply(variables, x, train=False)

  def logits(self, outputs: jax.Array) -> jax.Array:
    """The model's logits from its outputs at the split."""
    return outputs if self.head is None else self.head.apply({}, outputs)


def split_model(
    model: nn.Module, variables: Any, input_shape: Sequence[int], head_layers: Sequence[str]
) -> Split:
  """The split of a model: at the input of its output layer if that has no parameters.

  Args:
    model: the flax model.
    variables: its variables (arrays or jax.ShapeDtypeStruct).
    input_shape: (1, H, W, C) of one example batch.
    head_layers: top-level names of the layers that output the classes
      (the family's `head_layers`).

  Returns:
    A Split: at the logits unless the one head layer has no parameters and
    is called once, at the top level. The model must return that layer's
    output as it is (a cast aside), since the split replaces it by its input.
  """
  if len(head_layers) != 1 or head_layers[0] in variables.get("params", {}):
    return Split(model)
  name, called = head_layers[0], []

  def find(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.path == (name,):
      called.append(context.module.clone(parent=None))
    return next_fun(*args, **kwargs)

  def forward(variables):
    with nn.intercept_methods(find):
      return model.apply(variables, jnp.zeros(input_shape, jnp.float32), train=False)

  jax.eval_shape(forward, variables)
  return Split(model, name, called[0]) if len(called) == 1 else Split(model)


def sample_indices(key: jax.Array, estimate, num_examples: int, count: int) -> jax.Array:
  """The training examples the run's estimate number `estimate` uses (jit-able).

  Args:
    key: the curvature PRNG key (`steps.curvature_key`).
    estimate: the estimate's number (the epoch's, when estimates are once per epoch).
    num_examples: size of the training split.
    count: how many (at most num_examples).

  Returns:
    int32 (count,): the first `count` of a permutation drawn from fold_in(key, estimate).
  """
  order = jax.random.permutation(jax.random.fold_in(key, estimate), num_examples)
  return order[:count]


def probe_key(key: jax.Array, estimate) -> jax.Array:
  """The key of the Rademacher probes of the run's estimate number `estimate` (jit-able).

  Args:
    key: a key that nothing but the probes derives from: in the loop
      `steps.curvature_probe_key`, not `steps.curvature_key`, whose
      fold_in(., estimate) the examples' permutation splits into keys of
      exactly this form.
    estimate: the estimate's number.

  Returns:
    The probes' key of that estimate.
  """
  return jax.random.fold_in(jax.random.fold_in(key, estimate), _PROBE_STREAM)


class EpochCurvature:
  """The loop's SDLM hook: a new curvature estimate before each epoch's first
  step (the paper), or every `every_steps` steps.

  Called before every step; acts at the steps that start an interval. A run
  resumed within an interval keeps the curvature its checkpoint holds; one
  resumed at an interval's start estimates it as the uninterrupted run did,
  from the same params and examples, so resumed runs stay bit-exact.
  (Early in training, when activations grow fast, an estimate can go stale
  within an epoch: experiments/lecun1998/README.md.)
  """

  def __init__(
      self,
      split: Split,
      loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
      model_input: Callable[[jax.Array], jax.Array],
      examples: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
      mesh: Mesh,
      *,
      num_examples: int,
      hessian_samples: int,
      steps_per_epoch: int,
      every_steps: int = 0,
      hessian_probes: int = 0,
  ):
    """Builds the jitted estimate.

    Args:
      split: the model's split (`split_model`).
      loss_fn: (logits, labels) -> the mean training loss of a batch.
      model_input: uint8 NHWC images -> the model's input (no augmentation).
      examples: int indices -> (uint8 images, labels) of those training examples.
      mesh: the data-parallel mesh; each device estimates on its share of the examples.
      num_examples: size of the training split.
      hessian_samples: examples per estimate (all of the split if it has fewer).
      steps_per_epoch: training steps in one epoch.
      every_steps: steps between estimates; 0: once per epoch.
      hessian_probes: Rademacher probes per example (`gauss_newton_diagonal`);
        0: the exact diagonal.
    """
    self.examples, self.every_steps = examples, every_steps or steps_per_epoch
    replicated = parallel.replicated(mesh)
    self._indices = jax.jit(
        functools.partial(
            sample_indices, num_examples=num_examples, count=min(hessian_samples, num_examples)
        ),
        out_shardings=replicated,
    )

    def estimate(variables, opt_state, images, labels, key, number):
      def outputs_fn(params, x):
        return split.outputs({**variables, "params": params}, x[None])[0]

      def example_loss(outputs, label):
        return loss_fn(split.logits(outputs[None]), label[None])

      curvature = gauss_newton_diagonal(
          outputs_fn,
          example_loss,
          variables["params"],
          model_input(images),
          labels,
          probes=hessian_probes,
          probe_key=probe_key(key, number),
          mesh=mesh,
      )
      return with_curvature(opt_state, curvature)

    self._estimate = jax.jit(estimate, out_shardings=replicated)

  def __call__(self, state: Any, step: int) -> Any:
    """The TrainState to take step `step` from: a new curvature if the step starts an interval."""
    if step % self.every_steps:
      return state
    estimate = step // self.every_steps
    images, labels = self.examples(self._indices(steps.curvature_key(state.rng), estimate))
    probes = steps.curvature_probe_key(state.rng)
    return state.replace(
        opt_state=self._estimate(
            state.variables(), state.opt_state, images, labels, probes, estimate
        )
    )
