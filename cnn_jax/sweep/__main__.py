"""The sweep command: runs the sweep a config file defines, and tabulates it.

    python -m launch.sweep --config=configs/default.py --workdir_root=/tmp/lr_sweep
    python -m launch.sweep --config=configs/cifar10_resnet.py:20 --workdir_root=DIR \
        --parallel=2 --dry_run

A config file defines its sweep next to `get_config` (`h` is cnn_jax/sweep/hyper.py):

    def get_sweep(h):
      return h.product([h.sweep("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
                        h.sweep("seed", [0, 1])])

A config with an argument (FILE.py:ARG) may define `get_sweep(h, arg)`.

Each run is `python -m cnn_jax.main --config=FILE --workdir=ROOT/<name>
--config.key=value ...`, named from its overrides ("learning_rate=0.001,
seed=1"), with its output in ROOT/logs/<name>.txt. A run whose results.json
exists is not run again; an interrupted one resumes from its checkpoints (the
trainer does that), so re-running the sweep command finishes a sweep.
ROOT/sweep.csv and ROOT/sweep.md hold one row per run (overrides, accuracy,
loss, steps, wall time, status); ROOT/sweep.png plots the accuracy against
the first swept value, one line per group of runs that differ only in their
seed, with error bars over the seeds. A failed run is recorded with the end
of its log and the sweep goes on; the command then exits with status 1.

Learning curves (each run's metrics.jsonl, see cnn_jax/sweep/curves.py):

    --curves=eval.accuracy            curves_eval_accuracy.png, mean ± std over seeds
    --curves=train.accuracy,eval.accuracy --panels=train_split
                                      both curves, one panel per train_split
    --reach="eval.accuracy>=0.95"     a column: the first logged step that met it
    --last=train.accuracy             a column: the curve's last value
    --last=eval.iou_1,eval.iou_2      a column each
    --baseline=augment=               a table in sweep.md: each setting minus the one
                                      without augmentation, all else equal, ± its
                                      standard error over seeds

--results_dir=DIR writes the tables and plots there instead of ROOT (an
experiment's folder). --smoke checks that a sweep still runs: one seed of its first two
settings, 3 steps each at a constant rate, tables in ROOT only.
"""

from __future__ import annotations

import sys

from absl import flags

from cnn_jax import cli, errors
from cnn_jax.sweep import run_and_tabulate

_CONFIG = flags.DEFINE_string("config", None, "config file, FILE.py or FILE.py:ARG")
_ROOT = flags.DEFINE_string("workdir_root", None, "folder for the runs' workdirs and the tables")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "runs at a time")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "key=value set in every run (not part of run names), e.g. num_epochs=2"
)
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "folder for the tables and plots (default: workdir_root)"
)
_CURVES = flags.DEFINE_multi_string(
    "curves",
    [],
    "a learning-curve plot of these curves, e.g. eval.accuracy or "
    "train.accuracy,eval.accuracy (one plot per flag)",
)
_PANELS = flags.DEFINE_string("panels", None, "draw the curves in one panel per value of this key")
_REACH = flags.DEFINE_multi_string(
    "reach",
    [],
    "tabulate the first step at which a curve meets a target, e.g. " "eval.accuracy>=0.95",
)
_LAST = flags.DEFINE_multi_string(
    "last",
    [],
    "tabulate the last logged value of a curve, e.g. train.accuracy (several: "
    "comma-separated, e.g. eval.iou_1,eval.iou_2: a column each)",
)
_BASELINE = flags.DEFINE_multi_string(
    "baseline",
    [],
    "KEY=VALUE: a table of each other value of KEY minus this one "
    "(accuracy and the --reach/--last columns), with its standard error over seeds",
)
_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "check that the sweep runs: one seed of the first two settings, "
    f"{run_and_tabulate.SMOKE_STEPS} steps each, tables in workdir_root only",
)


flags.mark_flags_as_required(["config", "workdir_root"])


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  return run_and_tabulate.run_and_tabulate(
      _CONFIG.value,
      _ROOT.value,
      command=" ".join(["python -m launch.sweep", *sys.argv[1:]]),
      parallel=_PARALLEL.value,
      dry_run=_DRY_RUN.value,
      overrides=_OVERRIDE.value,
      results_dir=_RESULTS_DIR.value,
      curve_figures=_CURVES.value,
      panels=_PANELS.value,
      reach=_REACH.value,
      last=_LAST.value,
      baselines=_BASELINE.value,
      smoke=_SMOKE.value,
  )


if __name__ == "__main__":
  # At Ctrl-C the sweep waits for its runs, which stop within their own grace.
  cli.run(main, ctrl_c_grace_s=30.0)
