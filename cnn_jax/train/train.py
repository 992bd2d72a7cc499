"""`train_and_evaluate(config, workdir)`: the one training loop.

The loop is plain Python around two jitted functions (see steps.py). It
reads device values only every `log_every_steps` steps, before a checkpoint
and at evaluations; between those, steps are queued without waiting.
Re-running the same command in the same workdir resumes from the newest
readable checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from cnn_jax import interrupts, introspection, models, summary
from cnn_jax.data import augment, sources
from cnn_jax.errors import NonFiniteLossError
from cnn_jax.ops import auto_conv
from cnn_jax import tasks
from cnn_jax.train import inputs, parallel, run_record, sdlm, steps
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train import state as state_lib
from cnn_jax.train.checkpoints import Checkpoints
from cnn_jax.train.config import in_steps, input_mean_std, run_length, validate
from cnn_jax.train.optimizers import make_optimizer
from cnn_jax.train.reporting import Reporter
from cnn_jax.transfer import finetune, pretrained

# Steps between the multi-process agreement on whether SIGTERM arrived.
_PREEMPTION_CHECK_STEPS = 10


class Preempted(SystemExit):
  """SIGTERM arrived; a checkpoint was saved and the run stopped early.

  A SystemExit (status 143 = 128 + SIGTERM), so that a script stops the way a
  signalled process would; a program that trains several runs and wants to go
  on must catch it explicitly (`except Preempted`), not with `except Exception`.
  """


class _TerminationSignal:
  """Remembers a SIGTERM so the loop can save and stop between steps."""

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    # Signal handlers can only be set from the main thread (tests may call
    # the loop from others, where preemption is then not handled).
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def any_process(self, in_flight: Any) -> bool:
    """Whether any process got the signal (all processes must stop together).

    Args:
      in_flight: the outputs of the last dispatched step. They are waited for
        first: XLA:CPU would run the all-gather alongside that step, and the
        two computations' cross-process messages could then interleave
        differently on each process and deadlock.
    """
    if jax.process_count() == 1:
      return self.received
    jax.block_until_ready(in_flight)
    flags = multihost_utils.process_allgather(np.array(self.received))
    return bool(np.any(flags))

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _model_table(image_shape, calls, params) -> str:
  """The model's per-layer table, from the calls that creating the state traced."""
  try:
    return summary.tabulate(calls, params, tuple(image_shape)).table()
  except Exception as e:  # a custom layer may lack counts; training need not stop
    return f"(no model summary: {e})"


def _evaluate(eval_step, variables, eval_input, mesh, task) -> dict[str, float]:
  totals = parallel.put_replicated(task.empty_eval_sums(eval_input.num_examples), mesh)
  batches = eval_input.batches()
  for batch in batches:
    totals = eval_step(variables, batch, totals)
    interrupts.raise_if_requested()
  return task.eval_metrics(jax.device_get(totals))


@dataclasses.dataclass
class _Setup:
  """Everything a run is built from, made and checked before the workdir is touched."""

  config: ml_collections.ConfigDict
  workdir: str
  mesh: Any
  task: tasks.Task
  train_input: Any
  eval_input: inputs.EvalInput
  model: Any
  mean: Any
  std: Any
  input_shape: tuple[int, ...]  # (H, W, C) of the model's input: see model_input_shape
  fine_tuning: Any
  schedule: Any
  create_state: Any
  abstract_state: Any
  model_table: str  # the per-layer table a run prints
  augment_fn: Any
  pretrained_weights: Any
  total_steps: int
  eval_every: int

  @property
  def use_ema(self) -> bool:
    return self.config.ema_decay > 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates a model; resumes if the workdir holds a checkpoint.

  Everything that can be checked is checked before the first byte goes to
  the workdir, so a rejected command leaves an existing run untouched: the
  config and everything built from it (`_set_up`), then, holding the
  workdir, whether the config fits the run recorded there.

  Args:
    config: a training config (see cnn_jax.train.config and configs/).
    workdir: folder for checkpoints, TensorBoard events and results.json.

  Returns:
    The final evaluation: the task's eval metrics and "step" (classification:
    {"accuracy", "top5_accuracy", "loss", "step"}).

  Raises:
    ConfigError: for a config no run can use (named field and fix), or one
      that redefines the run recorded in the workdir.
    DataError: if the dataset is missing (with the command that prepares it).
    NonFiniteLossError: if the loss became NaN or Inf (the step is named; the
      last good checkpoint is kept).
    Preempted: after saving a checkpoint on SIGTERM.
  """
  setup = _set_up(config, workdir)
  with workdir_lib.WorkdirLock(setup.workdir):
    comparison = run_record.compare(config, setup.workdir)
    run_record.check(comparison, run_record.newest_checkpoint(setup.workdir), setup.total_steps)
    return _run(setup, comparison)


def _set_up(config: ml_collections.ConfigDict, workdir: str) -> _Setup:
  """Checks the config and builds the run's parts; nothing is written.

  Each part checks what it is given as it is built (the data exist, the
  batches divide, the model's geometry holds, the weights fit), so a
  command that cannot run fails here, before the workdir is opened.
  """
  validate(config)
  workdir = workdir_lib.check_path(workdir)
  mesh = parallel.make_mesh()
  dataset_classes = sources.num_classes(config.dataset, config.data_dir or None)
  task = tasks.from_config(config, dataset_classes)
  train_input = inputs.training_input(config, mesh, task.targets)
  eval_input = inputs.EvalInput(config, mesh, task.targets)
  steps_per_epoch = train_input.steps_per_epoch
  total_steps, eval_every = run_length(config, steps_per_epoch)
  model = models.from_config(config, tasks.num_outputs(task, dataset_classes))
  tx, schedule = make_optimizer(config.optimizer, config.schedule, total_steps, steps_per_epoch)
  mean, std = input_mean_std(config)
  input_shape = model_input_shape(train_input.image_shape, mean, std)
  fine_tuning = finetune.from_config(
      config,
      model,
      tx,
      jnp.zeros((1, *input_shape), jnp.float32),
      in_steps(config, "unfreeze_after_steps", "unfreeze_after_epochs", steps_per_epoch),
  )
  create_state, abstract_state, model_table = _state_factory(
      config, model, fine_tuning.tx, input_shape, mesh
  )
  return _Setup(
      config=config,
      workdir=workdir,
      mesh=mesh,
      task=task,
      train_input=train_input,
      eval_input=eval_input,
      model=model,
      mean=mean,
      std=std,
      input_shape=input_shape,
      fine_tuning=fine_tuning,
      schedule=schedule,
      create_state=create_state,
      abstract_state=abstract_state,
      model_table=model_table,
      augment_fn=_augment_fn(config),
      pretrained_weights=(
          pretrained.load(config.init_from, config.model) if config.init_from else None
      ),
      total_steps=total_steps,
      eval_every=eval_every,
  )


def _augment_fn(config: ml_collections.ConfigDict):
  """The run's augmentation: of the images, or of the batch when the task has dense targets."""
  if not config.augment:
    return None
  if config.task == "classification":
    return augment.from_spec(config.augment)
  return augment.from_spec_with_targets(config.augment)


def model_input_shape(
    image_shape: tuple[int, ...], mean: Sequence[float], std: Sequence[float]
) -> tuple[int, ...]:
  """(H, W, C) of what the model sees: grey images normalized per RGB channel become RGB.

  Args:
    image_shape: (H, W, C) of the dataset's images.
    mean, std: the per-channel normalization (one value, or one per channel).

  Returns:
    The shape after normalization broadcasts the channels: grey images
    with ImageNet's per-channel statistics feed an ImageNet network's
    3-channel stem.
  """
  channels = max(image_shape[-1], len(mean), len(std))
  return (*image_shape[:-1], channels)


def _state_factory(config, model, tx, image_shape, mesh):
  """(new-state function, its abstract output, the model's table): traces the model once.

  Tracing is where an impossible geometry (a layer that shrinks the image
  below one pixel) fails, before anything is written. The one trace gives
  the state's shapes, the program that creates it (compiled only if no
  checkpoint is restored) and the per-layer table (the layer calls that
  init made); each used to trace the model again.
  """
  replicated = parallel.replicated(mesh)
  create = jax.jit(
      functools.partial(
          state_lib.create, model, tx, (1, *image_shape), config.seed, config.ema_decay > 0
      ),
      out_shardings=replicated,
  )
  with introspection.recording_calls() as calls:
    traced = create.trace()
  abstract_state = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), traced.out_info
  )
  table = _model_table(image_shape, calls, abstract_state.params)
  return (lambda: traced.lower().compile()()), abstract_state, table


def _update_record(
    reporter: Reporter,
    config: ml_collections.ConfigDict,
    comparison: run_record.Comparison | None,
    step: int,
    finished: bool,
) -> None:
  """Starts the run's record, or adds this invocation to it; a re-evaluation writes nothing.

  Args:
    reporter: the run's Reporter.
    config: the command's config.
    comparison: the config against the workdir's record (None: no record yet).
    step: the step the run goes on from.
    finished: the run is finished and is only re-evaluated.
  """
  if finished:
    if comparison is not None and (comparison.redefined or comparison.changed):
      fields = [f for f, _, _ in comparison.redefined] + list(comparison.changed)
      reporter.message(
          f"the config differs from the run's record in {', '.join(fields)}; "
          "the finished run is only re-evaluated"
      )
  elif comparison is None:
    reporter.write_run_info(config)
  else:  # config.json keeps the config the run started with
    reporter.record_resume(step, comparison.changed)


def _restore_or_initialize(
    setup: _Setup, checkpoints: Checkpoints, comparison: run_record.Comparison | None
):
  """(state, whether it was restored): the newest readable checkpoint, or a new state.

  Raises CheckpointError (before anything is written) if the config does not
  fit the checkpoints.
  """
  config = setup.config
  try:
    restored = checkpoints.restore_latest(
        setup.abstract_state, with_data=config.input_pipeline == "grain"
    )
    if restored is None:
      state = setup.create_state()
      if setup.pretrained_weights is not None:
        state = pretrained.initialize(
            state,
            setup.pretrained_weights,
            setup.fine_tuning.tx,
            functools.partial(parallel.put_replicated, mesh=setup.mesh),
            config.init_skip,
            config.model,
        )
    else:
      state, data_state = restored
      setup.train_input.restore(data_state)
    # The newest checkpoint may not have restored (moved aside): check at the step restored.
    run_record.check(comparison, None if restored is None else int(state.step), setup.total_steps)
  except BaseException:
    checkpoints.close()  # orbax's background threads would complain at exit
    raise
  return state, restored is not None


def _compile_steps(setup: _Setup):
  """({batch norm frozen: train step}, eval step, hook before each step or None).

  Each is compiled at its first call.
  """
  config = setup.config
  input_transform = steps.InputTransform(
      batch_fn=setup.train_input.batch_fn,
      augment_fn=setup.augment_fn,
      moves_targets=config.task != "classification",
      mean=setup.mean,
      std=setup.std,
      dtype=jnp.dtype(config.dtype),
  )
  make_step = functools.partial(
      steps.make_train_step,
      setup.model,
      setup.fine_tuning.tx,
      setup.mesh,
      input_transform=input_transform,
      task=setup.task,
      ema_decay=config.ema_decay,
  )
  # While layers are frozen their batch norms use running statistics; a
  # second step (compiled on its first call) takes over when they are released.
  train_steps = {
      frozen: make_step(interceptor=setup.fine_tuning.interceptor(frozen))
      for frozen in (False, True)
  }
  unaugmented = dataclasses.replace(input_transform, augment_fn=None)
  eval_step = steps.make_eval_step(
      setup.model, setup.mesh, input_transform=unaugmented, task=setup.task
  )
  return train_steps, eval_step, _before_step(setup, unaugmented)


def _before_step(setup: _Setup, unaugmented: steps.InputTransform):
  """What changes the state before a step, (state, step) -> state: SDLM's curvature
  estimate at each epoch's start; None for the other optimizers."""
  config = setup.config
  if config.optimizer.get("name") != "sdlm":
    return None
  split = sdlm.split_model(
      setup.model,
      setup.abstract_state.variables(),
      (1, *setup.input_shape),
      models.family(config.model).head_layers,
  )
  return sdlm.EpochCurvature(
      split,
      # auxiliary heads left out
      lambda logits, labels: setup.task.loss(logits, {}, {"label": labels}),
      unaugmented.model_input,
      setup.train_input.examples,
      setup.mesh,
      num_examples=setup.train_input.num_examples,
      hessian_samples=config.optimizer.get("hessian_samples") or sdlm.DEFAULT_HESSIAN_SAMPLES,
      steps_per_epoch=setup.train_input.steps_per_epoch,
      every_steps=config.optimizer.get("curvature_every_steps") or 0,
      hessian_probes=config.optimizer.get("hessian_probes") or 0,
  )


def _announce(
    setup: _Setup, reporter: Reporter, state, restored: bool, checkpoints: Checkpoints
) -> int:
  """Prints where the run starts from and what it trains; returns the parameter count."""
  config = setup.config
  if not restored and setup.pretrained_weights is not None:
    reporter.message(
        f"initialized from {config.init_from} (re-initialized: "
        f"{pretrained.skip_pattern(config.init_skip, config.model, setup.pretrained_weights)})"
    )
  elif restored:
    reporter.message(f"resumed from {checkpoints.directory} at step {int(state.step)}")
  if reporter.enabled:
    reporter.message(setup.model_table)
  param_count = sum(p.size for p in jax.tree.leaves(state.params))
  reporter.message(
      f"{config.model}: {param_count:,} parameters; {config.dataset} "
      f"{setup.train_input.num_examples:,} training examples, "
      f"{setup.train_input.steps_per_epoch} steps/epoch, {setup.total_steps} "
      f"steps on {jax.device_count()} device(s)"
  )
  if config.model_kwargs.get("conv_impl", "auto") == "auto":
    reporter.message(auto_conv.path_taken())
  return param_count


def _run(setup: _Setup, comparison: run_record.Comparison | None) -> dict[str, Any]:
  """The run itself, once every check passed and this process holds the workdir."""
  config = setup.config
  checkpoints = Checkpoints(
      setup.workdir,
      keep=config.keep_checkpoints,
      keep_best=config.keep_best,
      async_save=config.async_checkpoints,
  )
  state, restored = _restore_or_initialize(setup, checkpoints, comparison)
  train_steps, eval_step, before_step = _compile_steps(setup)

  def evaluate(state):
    return _evaluate(
        eval_step,
        state.variables(setup.use_ema),
        setup.eval_input,
        setup.mesh,
        setup.task,
    )

  reporter = Reporter(setup.workdir, setup.total_steps, enabled=jax.process_index() == 0)
  _update_record(
      reporter, config, comparison, int(state.step), finished=int(state.step) >= setup.total_steps
  )
  param_count = _announce(setup, reporter, state, restored, checkpoints)
  loop = _Loop(setup, train_steps, evaluate, checkpoints, reporter, before_step)
  try:
    state, result = loop.run(state)
  except Exception:
    try:
      checkpoints.close()  # a failing background save raises here too
    except Exception:  # the first error is the one to report
      pass
    if jax.process_index() == 0:
      checkpoints.remove_partial()
    raise
  finally:
    checkpoints.close()
    reporter.close()
  if result is not None:
    reporter.results({**result, "num_params": param_count}, re_evaluated=False)
    return result
  return _re_evaluate(state, evaluate, reporter, comparison, param_count, setup.task)


def _re_evaluate(state, evaluate, reporter: Reporter, comparison, param_count: int, task):
  """A resumed finished run: evaluates what it left; rewrites a missing or damaged results.json."""
  step = int(state.step)
  result = {**evaluate(state), "step": step}
  reporter.message(f"the run had finished at step {step}; eval: {task.eval_line(result)}")
  if reporter.has_results():
    return result  # keep the finished run's results.json and its wall time
  reporter.message("its results.json was missing or damaged: wrote it again from this eval")
  if comparison is not None and comparison.changed:  # e.g. a shorter run ended it here
    reporter.record_resume(step, comparison.changed)
  reporter.results({**result, "num_params": param_count}, re_evaluated=True)
  return result


class _Loop:
  """The training loop: steps, and at their intervals logs, evals and checkpoints.

  Device values are read only at log, eval and checkpoint steps; between
  those, steps are queued without waiting.
  """

  def __init__(
      self,
      setup: _Setup,
      train_steps,
      evaluate,
      checkpoints: Checkpoints,
      reporter: Reporter,
      before_step=None,
  ):
    self.setup, self.config = setup, setup.config
    self.train_steps, self.evaluate = train_steps, evaluate
    self.before_step = before_step
    self.checkpoints, self.reporter = checkpoints, reporter
    self.checkpoint_every = in_steps(
        self.config,
        "checkpoint_every_steps",
        "checkpoint_every_epochs",
        setup.train_input.steps_per_epoch,
    )
    saved = checkpoints.steps()
    self.last_saved = saved[-1] if saved else None

  def run(self, state):
    """Trains to the run's last step; returns (state, last eval or None if none ran)."""
    setup, config = self.setup, self.config
    step = int(state.step)
    data_key = steps.data_key(state.rng)  # a new array: the step donates the state's
    self.totals = parallel.put_replicated(steps.empty_totals(setup.task), setup.mesh)
    self.interval_start, self.interval_step = time.time(), step
    result = None
    with _TerminationSignal() as termination:
      while step < setup.total_steps:
        if self.before_step is not None:
          state = self.before_step(state, step)
        train_step = self.train_steps[setup.fine_tuning.batch_norm_frozen(step)]
        state, self.totals = train_step(state, self.totals, setup.train_input.next(step, data_key))
        step += 1
        # A Ctrl-C that a library caught (orbax, a gc callback) stops the run here.
        interrupts.raise_if_requested()
        at_log = step % config.log_every_steps == 0 or step == setup.total_steps
        at_eval = step % setup.eval_every == 0 or step == setup.total_steps
        at_checkpoint = at_eval or (self.checkpoint_every > 0 and step % self.checkpoint_every == 0)
        if at_log or at_checkpoint:
          fetched = jax.device_get(self.totals)
          self._check_finite(fetched)
        if at_log:
          self._log(step, fetched)
        if at_eval:
          eval_start = time.time()
          result = self._evaluate(state, step)
        if at_checkpoint:
          self.checkpoints.save(state, setup.train_input.state())
          self.last_saved = step
        if at_eval:  # the eval's (and its checkpoint's) time is not training throughput
          self.interval_start += time.time() - eval_start
        self._stop_if_terminated(termination, state, step)
    return state, result

  def _diverged(self, what: str, step: int) -> NonFiniteLossError:
    kept = (
        f"the last good checkpoint (step {self.last_saved}) is kept in "
        f"{self.checkpoints.directory}"
        if self.last_saved is not None
        else "no checkpoint was saved"
    )
    # The run's record keeps its optimizer (run_record): a new setting is a new run.
    return NonFiniteLossError(
        f"training diverged: {what} became NaN or Inf at step {step}; {kept}; lower "
        "config.optimizer.learning_rate or set config.optimizer.grad_clip_norm, in a new "
        "--workdir"
    )

  def _check_finite(self, totals) -> None:
    bad_step = int(totals["first_nonfinite_step"])
    if bad_step != int(steps.NO_NONFINITE_STEP):
      kinds = int(totals["nonfinite"])
      what = " and ".join(name for bit, name in steps.NONFINITE_NAMES.items() if kinds & bit)
      raise self._diverged(what, bad_step)

  def _log(self, step: int, fetched) -> None:
    """Reports the interval's training metrics and starts a new interval."""
    elapsed = max(time.time() - self.interval_start, 1e-9)
    done = step - self.interval_step
    steps_done = max(int(fetched["steps"]), 1)
    values = {
        "loss": float(fetched["loss"]) / steps_done,
        **self.setup.task.train_metrics(fetched["task"]),
        "grad_norm": float(fetched["grad_norm"]) / steps_done,
        "learning_rate": float(self.setup.schedule(step - 1)),
        "images_per_s": done * self.config.batch_size / elapsed,
    }
    self.reporter.scalars(step, "train", values)
    self.reporter.progress(step, values, done / elapsed, values["images_per_s"])
    self.totals = parallel.put_replicated(steps.empty_totals(self.setup.task), self.setup.mesh)
    self.interval_start, self.interval_step = time.time(), step

  def _evaluate(self, state, step: int) -> dict[str, Any]:
    """Evaluates, reports and offers the state as the best checkpoint."""
    # Steps run asynchronously: wait for them here, so that their time
    # counts as training and only the eval's own time is left out.
    jax.block_until_ready(state)
    result = {**self.evaluate(state), "step": step}
    if not np.isfinite(result["loss"]):  # finite weights, overflowing logits
      raise self._diverged("the eval loss", step)
    self.reporter.scalars(step, "eval", {k: v for k, v in result.items() if k != "step"})
    task = self.setup.task
    self.reporter.message(f"eval at step {step}: {task.eval_line(result)}")
    self.checkpoints.save_best(state, result[task.headline])
    return result

  def _stop_if_terminated(self, termination: _TerminationSignal, state, step: int) -> None:
    """Saves a checkpoint and raises Preempted if any process got SIGTERM."""
    # Only one process may have been signalled, so all processes must agree
    # to stop; that costs a collective, hence every few steps only (cloud
    # preemption notices give about 30 s).
    check_now = jax.process_count() == 1 or step % _PREEMPTION_CHECK_STEPS == 0
    if not (
        check_now
        and termination.any_process((state, self.totals))
        and step < self.setup.total_steps
    ):
      return
    self._check_finite(jax.device_get(self.totals))
    self.checkpoints.save(state, self.setup.train_input.state())
    self.checkpoints.wait()
    self.reporter.message(
        f"SIGTERM: saved a checkpoint at step {step} in "
        f"{self.checkpoints.directory}; re-run the same command to resume"
    )
    raise Preempted(143)
