"""`train_and_evaluate(config, workdir)`: the one training loop.

The loop is plain Python around two jitted functions (see steps.py). It
reads device values only every `log_every_steps` steps, before a checkpoint
and at evaluations; between those, steps are queued without waiting.
Re-running the same command in the same workdir resumes from the newest
readable checkpoint.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from cnn_jax import interrupts, models, summary
from cnn_jax.data import augment, preprocess, sources
from cnn_jax.errors import UserError
from cnn_jax.train import inputs, metrics, parallel, run_record, steps
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train import state as state_lib
from cnn_jax.train.checkpoints import Checkpoints
from cnn_jax.train.config import check_batch_divides, in_steps, run_length, validate
from cnn_jax.train.optimizers import make_optimizer
from cnn_jax.train.reporting import Reporter
from cnn_jax.transfer import finetune, pretrained


# Steps between the multi-process agreement on whether SIGTERM arrived.
_PREEMPTION_CHECK_STEPS = 10


class NonFiniteLossError(UserError, FloatingPointError):
  """The run diverged: its loss, gradient norm, parameters or eval loss became NaN or Inf."""


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


def _model_table(model, image_shape) -> str:
  try:
    return summary.summarize(model, tuple(image_shape)).table()
  except Exception as e:  # a custom layer may lack counts; training need not stop
    return f"(no model summary: {e})"


def _evaluate(eval_step, variables, batches, mesh) -> dict[str, float]:
  totals = parallel.put_replicated(steps.empty_eval_totals(), mesh)
  for batch in batches:
    totals = eval_step(variables, batch, totals)
    interrupts.raise_if_requested()
  return metrics.from_eval_totals(jax.device_get(totals))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates a model; resumes if the workdir holds a checkpoint.

  Args:
    config: a training config (see cnn_jax.train.config and configs/).
    workdir: folder for checkpoints, TensorBoard events and results.json.

  Returns:
    The final evaluation: {"accuracy", "top5_accuracy", "loss", "step"}.

  Raises:
    ConfigError: for a config no run can use (named field and fix).
    DataError: if the dataset is missing (with the command that prepares it).
    NonFiniteLossError: if the loss became NaN or Inf (the step is named; the
      last good checkpoint is kept).
    Preempted: after saving a checkpoint on SIGTERM.
  """
  # Everything that can be checked is checked before the first byte goes
  # to the workdir: a rejected command leaves an existing run untouched.
  validate(config)
  workdir = workdir_lib.check_path(workdir)
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)
  train_input = inputs.training_input(config, mesh)
  steps_per_epoch = train_input.steps_per_epoch
  total_steps, eval_every = run_length(config, steps_per_epoch)

  model = models.from_config(config,
                             sources.num_classes(config.dataset, config.data_dir or None))
  mean, std = preprocess.normalization(config)
  tx, schedule = make_optimizer(config.optimizer, config.schedule, total_steps, steps_per_epoch)
  sample = jnp.zeros((1, *train_input.image_shape), jnp.float32)
  fine_tuning = finetune.setup(config, model, tx, sample, in_steps(
      config, "unfreeze_after_steps", "unfreeze_after_epochs", steps_per_epoch))
  use_ema = config.ema_decay > 0
  create_state = jax.jit(
      functools.partial(state_lib.create, model, fine_tuning.tx, (1, *train_input.image_shape),
                        config.seed, use_ema),
      out_shardings=replicated)
  abstract_state = jax.tree.map(  # traces the model: impossible geometries fail here
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
      jax.eval_shape(create_state))
  augment_fn = augment.build(config.augment) if config.augment else None
  check_batch_divides(config.eval_batch_size or config.batch_size, mesh.size, "eval_batch_size")
  sources.load(config.dataset, config.eval_split, config.data_dir or None,  # a missing split
               image_size=config.image_size)                              # fails here
  pretrained_weights = (pretrained.load(config.init_from, config.model)
                        if config.init_from else None)

  lock = workdir_lib.WorkdirLock(workdir)
  try:
    # A config that redefines the run recorded in the workdir (its batch size,
    # data, model, ...) is refused here, before anything is written.
    comparison = run_record.compare(config, workdir)
    run_record.check(comparison, run_record.newest_checkpoint(workdir), total_steps)
    return _train_locked(config, workdir, mesh, train_input, model, mean, std, fine_tuning,
                         schedule, use_ema, create_state, abstract_state, augment_fn,
                         pretrained_weights, total_steps, eval_every, comparison)
  finally:
    lock.release()


def _update_record(reporter: Reporter, config: ml_collections.ConfigDict,
                   comparison: run_record.Comparison | None, step: int, finished: bool) -> None:
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
      reporter.message(f"the config differs from the run's record in {', '.join(fields)}; "
                       "the finished run is only re-evaluated")
  elif comparison is None:
    reporter.write_run_info(config)
  else:  # config.json keeps the config the run started with
    reporter.record_resume(step, comparison.changed)


def _train_locked(config, workdir, mesh, train_input, model, mean, std, fine_tuning, schedule,
                  use_ema, create_state, abstract_state, augment_fn, pretrained_weights,
                  total_steps, eval_every, comparison):
  """The run itself, once every check passed and this process holds the workdir."""
  steps_per_epoch = train_input.steps_per_epoch
  checkpoint_every = in_steps(config, "checkpoint_every_steps", "checkpoint_every_epochs",
                              steps_per_epoch)
  checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints, keep_best=config.keep_best,
                            async_save=config.async_checkpoints)
  grain_input = config.input_pipeline == "grain"
  try:
    # CheckpointError (before anything is written) if the config does not fit them.
    restored = checkpoints.restore_latest(abstract_state, with_data=grain_input)
    if restored is None:
      state = create_state()
      if pretrained_weights is not None:
        state = pretrained.initialize(state, pretrained_weights, fine_tuning.tx,
                                      functools.partial(parallel.put_replicated, mesh=mesh),
                                      config.init_skip)
    else:
      state, data_state = restored
      train_input.restore(data_state)
    # The newest checkpoint may not have restored (moved aside): check at the step restored.
    run_record.check(comparison, None if restored is None else int(state.step), total_steps)
  except BaseException:
    checkpoints.close()  # orbax's background threads would complain at exit
    raise
  make_step = functools.partial(
      steps.make_train_step, model, fine_tuning.tx, mesh, batch_fn=train_input.batch_fn,
      augment_fn=augment_fn,
      mean=mean, std=std, dtype=jnp.dtype(config.dtype),
      label_smoothing=config.label_smoothing, aux_loss_weight=config.aux_loss_weight,
      ema_decay=config.ema_decay)
  # While layers are frozen their batch norms use running statistics; a
  # second step (compiled on its first call) takes over when they are released.
  train_steps = {frozen: make_step(interceptor=fine_tuning.interceptor(frozen))
                 for frozen in (False, True)}
  eval_step = steps.make_eval_step(model, mesh, mean=mean, std=std, dtype=jnp.dtype(config.dtype))
  # A small eval split is put on the devices once, for every evaluation.
  cached_eval = (list(inputs.eval_batches(config, mesh))
                 if config.input_pipeline == "device" else None)

  finished = int(state.step) >= total_steps
  reporter = Reporter(workdir, total_steps, enabled=jax.process_index() == 0)
  _update_record(reporter, config, comparison, int(state.step), finished)
  if restored is None and pretrained_weights is not None:
    reporter.message(f"initialized from {config.init_from} (re-initialized: "
                     f"{pretrained.skip_pattern(config.init_skip)})")
  elif restored is not None:
    reporter.message(f"resumed from {checkpoints.directory} at step {int(state.step)}")
  if reporter.enabled:
    reporter.message(_model_table(model, train_input.image_shape))
  param_count = sum(p.size for p in jax.tree.leaves(state.params))
  reporter.message(f"{config.model}: {param_count:,} parameters; {config.dataset} "
                   f"{train_input.num_examples:,} training examples, {steps_per_epoch} "
                   f"steps/epoch, {total_steps} steps on {jax.device_count()} device(s)")

  def evaluate(state):
    batches = cached_eval if cached_eval is not None else inputs.eval_batches(config, mesh)
    return _evaluate(eval_step, state.variables(use_ema), batches, mesh)

  def diverged(what: str, step: int, last_saved):
    kept = (f"the last good checkpoint (step {last_saved}) is kept in "
            f"{checkpoints.directory}" if last_saved is not None else "no checkpoint was saved")
    # The run's record keeps its optimizer (run_record): a new setting is a new run.
    return NonFiniteLossError(
        f"training diverged: {what} became NaN or Inf at step {step}; {kept}; lower "
        "config.optimizer.learning_rate or set config.optimizer.grad_clip_norm, in a new "
        "--workdir")

  def check_finite(totals, last_saved):
    bad_step = int(totals["first_nonfinite_step"])
    if bad_step != int(steps.NO_NONFINITE_STEP):
      kinds = int(totals["nonfinite"])
      what = " and ".join(name for bit, name in steps.NONFINITE_NAMES.items() if kinds & bit)
      raise diverged(what, bad_step, last_saved)

  step = int(state.step)
  data_key = steps.data_key(state.rng)  # a new array: the step donates the state's
  last_saved = checkpoints.steps()[-1] if checkpoints.steps() else None
  totals = parallel.put_replicated(steps.empty_totals(), mesh)
  interval_start, interval_step = time.time(), step
  result = None
  try:
    with _TerminationSignal() as termination:
      while step < total_steps:
        train_step = train_steps[fine_tuning.batch_norm_frozen(step)]
        state, totals = train_step(state, totals, train_input.next(step, data_key))
        step += 1
        # A Ctrl-C that a library caught (orbax, a gc callback) stops the run here.
        interrupts.raise_if_requested()
        at_log = step % config.log_every_steps == 0 or step == total_steps
        at_eval = step % eval_every == 0 or step == total_steps
        at_checkpoint = at_eval or (checkpoint_every > 0 and step % checkpoint_every == 0)

        if at_log or at_checkpoint:
          fetched = jax.device_get(totals)
          check_finite(fetched, last_saved)
        if at_log:
          elapsed = time.time() - interval_start
          done = step - interval_step
          values = {**metrics.from_train_totals(fetched),
                    "learning_rate": float(schedule(step - 1)),
                    "images_per_s": done * config.batch_size / max(elapsed, 1e-9)}
          reporter.scalars(step, "train", values)
          reporter.progress(step, values, done / max(elapsed, 1e-9), values["images_per_s"])
          totals = parallel.put_replicated(steps.empty_totals(), mesh)
          interval_start, interval_step = time.time(), step

        if at_eval:
          # Steps run asynchronously: wait for them here, so that their time
          # counts as training and only the eval's own time is left out.
          jax.block_until_ready(state)
          eval_start = time.time()
          result = {**evaluate(state), "step": step}
          if not np.isfinite(result["loss"]):  # finite weights, overflowing logits
            raise diverged("the eval loss", step, last_saved)
          reporter.scalars(step, "eval", {k: v for k, v in result.items() if k != "step"})
          reporter.message(f"eval at step {step}: accuracy {result['accuracy']:.4f}  "
                           f"top-5 {result['top5_accuracy']:.4f}  loss {result['loss']:.4f}")
          checkpoints.save_best(state, result["accuracy"])
        if at_checkpoint:
          checkpoints.save(state, train_input.state())
          last_saved = step

        if at_eval:  # the eval's (and its checkpoint's) time is not training throughput
          interval_start += time.time() - eval_start
        # Only one process may have been signalled, so all processes must agree
        # to stop; that costs a collective, hence every few steps only (cloud
        # preemption notices give about 30 s).
        check_now = jax.process_count() == 1 or step % _PREEMPTION_CHECK_STEPS == 0
        if check_now and termination.any_process((state, totals)) and step < total_steps:
          check_finite(jax.device_get(totals), last_saved)
          checkpoints.save(state, train_input.state())
          checkpoints.wait()
          reporter.message(f"SIGTERM: saved a checkpoint at step {step} in "
                           f"{checkpoints.directory}; re-run the same command to resume")
          raise Preempted(143)
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

  re_evaluated = result is None
  if re_evaluated:  # resumed a finished run: evaluate what it left
    result = {**evaluate(state), "step": step}
    reporter.message(f"the run had finished at step {step}; eval: accuracy "
                     f"{result['accuracy']:.4f}  loss {result['loss']:.4f}")
    if reporter.has_results():
      return result  # keep the finished run's results.json and its wall time
    reporter.message("its results.json was missing or damaged: wrote it again from this eval")
    if comparison is not None and comparison.changed:  # e.g. a shorter run ended it here
      reporter.record_resume(step, comparison.changed)
  # A finished run whose results.json was missing or damaged gets it back.
  reporter.results({**result, "num_params": param_count}, re_evaluated=re_evaluated)
  return result
