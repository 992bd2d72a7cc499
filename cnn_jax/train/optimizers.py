"""Optimizers and learning-rate schedules from a config.

    config.optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False,
                            weight_decay=1e-4, grad_clip_norm=0.0)
    config.schedule = dict(name="step", boundaries=(32000, 48000), factor=0.1)

    # LeCun et al. 1998's stochastic diagonal Levenberg-Marquardt (see sdlm.py) and
    # its rates: 0.0005 for 2 epochs, 0.0002 for 3, 0.0001 for 3, 0.00005 for 4, then 0.00001.
    config.optimizer = dict(name="sdlm", learning_rate=0.0005, mu=0.02, hessian_samples=500,
                            weight_decay=0.0, grad_clip_norm=0.0)
    config.schedule = dict(name="step", boundaries_epochs=(2, 5, 8, 12),
                           factors=(0.4, 0.5, 0.5, 0.2))

Schedules count optimizer steps; a schedule field ending in `_epochs` is
converted with the run's steps per epoch, so recipes can be written the way
the papers state them ("lr / 10 at epochs 30 and 60", "5 warm-up epochs").

Weight decay never touches biases or normalization scales (parameters with
fewer than 2 dimensions): decaying them only shrinks the network's freedom to
shift and scale, which is why the recipes we reproduce exclude them. With SGD
and Adam it is the papers' L2 term, added to the gradient before momentum
(PyTorch's `weight_decay`); with AdamW it is decoupled (Loshchilov & Hutter).
With SDLM it is added to the gradient too (the paper used none); the
curvature estimate covers the data loss only.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import optax

from cnn_jax.errors import ConfigError
from cnn_jax.train import sdlm
from cnn_jax.train.config import in_steps

OPTIMIZERS = ("sgd", "adam", "adamw", "sdlm")
SCHEDULES = ("constant", "step", "cosine", "one_cycle")


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
  value = cfg.get(key, default)
  return default if value is None else value


# Rules for the numbers of optimizer and schedule configs: (test, what it demands).
_POSITIVE = (lambda v: 0 < v < math.inf, "must be positive and finite")
_NON_NEGATIVE = (lambda v: 0 <= v < math.inf, "must be >= 0 and finite (0 disables)")
_FRACTION = (lambda v: 0 <= v < 1, "must be in [0, 1)")
_OPEN_FRACTION = (lambda v: 0 < v < 1, "must be in (0, 1)")
_NON_NEGATIVE_DAMPING = (lambda v: 0 <= v < math.inf, "must be >= 0 and finite")
_POSITIVE_INT = (lambda v: isinstance(v, int) and v > 0, "must be a positive integer")
_NON_NEGATIVE_INT = (
    lambda v: isinstance(v, int) and v >= 0,
    "must be an integer >= 0 (0: once per epoch)",
)
_PROBES = (
    lambda v: isinstance(v, int) and v >= 0,
    "must be an integer >= 0 (0: the exact curvature)",
)


def _number(
    cfg: Mapping[str, Any],
    where: str,
    key: str,
    default: float,
    rule: tuple[Callable[[float], bool], str],
) -> float:
  """cfg[key] (or its default), or ConfigError naming it if it breaks the rule (NaN too)."""
  value = _get(cfg, key, default)
  test, demand = rule
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not test(value):
    raise ConfigError(f"config.{where}.{key} {demand}, got {value!r}")
  return float(value)


def check_numbers(cfg: Mapping[str, Any], schedule_cfg: Mapping[str, Any]) -> None:
  """Refuses impossible optimizer and schedule numbers (negative, NaN, Inf, out of range).

  Args:
    cfg: the optimizer config (see `make_optimizer`).
    schedule_cfg: the schedule config (see `make_schedule`).

  Raises:
    ConfigError: naming the field, its value and the range it must be in.
  """
  _number(cfg, "optimizer", "learning_rate", 0.1, _POSITIVE)
  _number(cfg, "optimizer", "weight_decay", 0.0, _NON_NEGATIVE)
  _number(cfg, "optimizer", "grad_clip_norm", 0.0, _NON_NEGATIVE)
  _number(cfg, "optimizer", "momentum", 0.9, _FRACTION)
  for key, default in (("b1", 0.9), ("b2", 0.999)):
    _number(cfg, "optimizer", key, default, _FRACTION)
  _number(cfg, "optimizer", "eps", 1e-8, _POSITIVE)
  _number(cfg, "optimizer", "mu", sdlm.DEFAULT_MU, _NON_NEGATIVE_DAMPING)
  _number(cfg, "optimizer", "hessian_samples", sdlm.DEFAULT_HESSIAN_SAMPLES, _POSITIVE_INT)
  _number(cfg, "optimizer", "curvature_every_steps", 0, _NON_NEGATIVE_INT)
  _number(cfg, "optimizer", "hessian_probes", 0, _PROBES)
  for key in ("factor", "end_value", "warmup_steps", "warmup_epochs"):
    _number(schedule_cfg, "schedule", key, 0.0, _NON_NEGATIVE)
  for key, default in (("div_factor", 25.0), ("final_div_factor", 1e4)):
    _number(schedule_cfg, "schedule", key, default, _POSITIVE)
  _number(schedule_cfg, "schedule", "pct_start", 0.3, _OPEN_FRACTION)
  for key in ("factors", "boundaries", "boundaries_epochs"):
    values = schedule_cfg.get(key) or ()
    if not all(isinstance(v, (int, float)) and 0 <= v < math.inf for v in values):
      raise ConfigError(
          f"config.schedule.{key} must be numbers >= 0 and finite, got " f"{tuple(values)}"
      )


def make_schedule(
    cfg: Mapping[str, Any], learning_rate: float, total_steps: int, steps_per_epoch: int = 1
) -> optax.Schedule:
  """The learning rate as a function of the step.

  Args:
    cfg: the schedule config: `name` in SCHEDULES and its fields:
      step: `boundaries` (or `boundaries_epochs`) and `factor` (default 0.1),
        or `factors`, one per boundary (e.g. a warm-up: factors (10, 0.1)
        from a base rate of 0.01);
      cosine: `warmup_steps` (or `warmup_epochs`), `end_value` (default 0),
        linear warm-up from 0, then cosine decay to end_value at total_steps;
      one_cycle: `pct_start` (0.3), `div_factor` (25), `final_div_factor` (1e4).
    learning_rate: the base (peak) learning rate.
    total_steps: the run's length in steps.
    steps_per_epoch: for fields given in epochs.

  Returns:
    An optax schedule.

  Raises:
    ConfigError: for an unknown name or a warm-up longer than the run.
  """
  name = _get(cfg, "name", "constant")
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if name == "step":
    boundaries = in_steps(cfg, "boundaries", "boundaries_epochs", steps_per_epoch, default=())
    factors = cfg.get("factors") or [_get(cfg, "factor", 0.1)] * len(boundaries)
    if len(factors) != len(boundaries):
      raise ConfigError(
          f"schedule.factors has {len(factors)} values for {len(boundaries)} "
          "boundaries; give one factor per boundary"
      )
    return optax.piecewise_constant_schedule(
        learning_rate, {int(b): float(f) for b, f in zip(boundaries, factors)}
    )
  if name == "cosine":
    warmup = in_steps(cfg, "warmup_steps", "warmup_epochs", steps_per_epoch)
    if warmup >= total_steps:
      raise ConfigError(
          f"warm-up of {warmup} steps is not shorter than the run "
          f"({total_steps} steps); shorten schedule.warmup_steps/epochs"
      )
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup, total_steps, end_value=_get(cfg, "end_value", 0.0)
    )
  if name == "one_cycle":
    return optax.cosine_onecycle_schedule(
        total_steps,
        learning_rate,
        pct_start=_get(cfg, "pct_start", 0.3),
        div_factor=_get(cfg, "div_factor", 25.0),
        final_div_factor=_get(cfg, "final_div_factor", 1e4),
    )
  raise ConfigError(f"schedule.name={name!r}; choose one of {SCHEDULES}")


def decay_mask(params: Any) -> Any:
  """True for the parameters weight decay applies to: kernels (ndim >= 2).

  Args:
    params: the `params` pytree.

  Returns:
    A pytree of bools with the same structure.
  """
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    cfg: Mapping[str, Any],
    schedule_cfg: Mapping[str, Any],
    total_steps: int,
    steps_per_epoch: int = 1,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of a config, and its learning-rate schedule.

  Args:
    cfg: the optimizer config: `name` in OPTIMIZERS, `learning_rate`,
      `momentum` (sgd, default 0.9; 0 disables), `nesterov` (sgd), `b1`, `b2`,
      `eps` (adam/adamw), `mu` (sdlm's damping, default 0.02),
      `hessian_samples` (sdlm: training examples per curvature estimate, default
      500; the loop estimates before each epoch), `curvature_every_steps`
      (sdlm: steps between estimates instead; default 0, once per epoch),
      `hessian_probes` (sdlm: Rademacher probes per example for an unbiased
      estimate of the curvature; default 0, its exact value),
      `weight_decay` (default 0),
      `grad_clip_norm` (clip the global gradient norm; 0 disables).
    schedule_cfg: the schedule config (see `make_schedule`).
    total_steps: the run's length in steps.
    steps_per_epoch: for schedule fields given in epochs.

  Returns:
    (an optax GradientTransformation, the learning-rate schedule for logging).

  Raises:
    ConfigError: for an unknown optimizer, or a number out of its range
      (`check_numbers`).
  """
  name = _get(cfg, "name", "sgd")
  check_numbers(cfg, schedule_cfg)
  learning_rate = float(_get(cfg, "learning_rate", 0.1))
  schedule = make_schedule(schedule_cfg, learning_rate, total_steps, steps_per_epoch)
  weight_decay = float(_get(cfg, "weight_decay", 0.0))
  clip = float(_get(cfg, "grad_clip_norm", 0.0))

  chain = [optax.clip_by_global_norm(clip)] if clip > 0 else []
  if name in ("sgd", "adam", "sdlm") and weight_decay:
    chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  if name == "sgd":
    momentum = float(_get(cfg, "momentum", 0.9))
    chain.append(
        optax.sgd(schedule, momentum=momentum or None, nesterov=bool(_get(cfg, "nesterov", False)))
    )
  elif name == "adam":
    chain.append(
        optax.adam(
            schedule, b1=_get(cfg, "b1", 0.9), b2=_get(cfg, "b2", 0.999), eps=_get(cfg, "eps", 1e-8)
        )
    )
  elif name == "adamw":
    chain.append(
        optax.adamw(
            schedule,
            b1=_get(cfg, "b1", 0.9),
            b2=_get(cfg, "b2", 0.999),
            eps=_get(cfg, "eps", 1e-8),
            weight_decay=weight_decay,
            mask=decay_mask,
        )
    )
  elif name == "sdlm":
    chain.append(sdlm.sdlm(schedule, mu=float(_get(cfg, "mu", sdlm.DEFAULT_MU))))
  else:
    raise ConfigError(f"optimizer.name={name!r}; choose one of {OPTIMIZERS}")
  return optax.chain(*chain), schedule
