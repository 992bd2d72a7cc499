"""What a run tells its user: console progress, TensorBoard, JSON files.

Only process 0 writes or prints; the other processes get a `Reporter` that
does nothing, so the loop never asks who it is.

    WORKDIR/config.json        the config the run started with (never rewritten)
    WORKDIR/environment.json   package, JAX and git versions, devices, command, host
                               and pid of the invocation that started the run, and
                               "resumes": one entry per later invocation that trained
                               on (step, time, its own environment, and the config
                               fields it changed, see cnn_jax.train.run_record)
    WORKDIR/events.out.tfevents.*  TensorBoard scalars
    WORKDIR/metrics.jsonl      the same scalars, one JSON object per line
    WORKDIR/results.json       the final eval: accuracy, loss, step, wall_seconds,
                               and the model's num_params

`wall_seconds` is the time of the invocation that finished the run (a run
resumed after a kill counts from its restart). A results.json that was
missing or damaged when a finished run was re-run is written again from
that re-evaluation, with `"re_evaluated": true` (its wall_seconds are the
evaluation's). Every JSON file is written atomically (cnn_jax.records).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import socket
import subprocess
import sys
import time
from typing import Any

import jax
import ml_collections

from cnn_jax import records


def _import_tensorboardx():
  """tensorboardX, without the torch import it attempts when torch is installed.

  It imports torch only to accept torch tensors, which we never log; that
  import alone costs every training process 1.6 s of start-up here.
  """
  if "torch" in sys.modules:
    import tensorboardX

    return tensorboardX
  sys.modules["torch"] = None  # `import torch` raises ImportError: tensorboardX goes on
  try:
    import tensorboardX
  finally:
    del sys.modules["torch"]
  return tensorboardX


tensorboardX = _import_tensorboardx()


def _git_commit() -> str:
  """The commit of the checkout cnn_jax runs from ("unknown" if not a git checkout)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out + ("+uncommitted changes" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def _environment() -> dict[str, Any]:
  """This invocation's versions, devices, command, host and pid."""
  return {
      "cnn_jax_version": importlib.metadata.version("cnn_jax"),
      "git_commit": _git_commit(),
      "jax_version": jax.__version__,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "processes": jax.process_count(),
      "command": sys.argv,
      # Who runs in this workdir: a second run on it names them (see workdir.py).
      "host": socket.gethostname(),
      "pid": os.getpid(),
  }


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return (
      f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
      if seconds >= 3600
      else f"{seconds // 60}:{seconds % 60:02d}"
  )


class Reporter:
  """Console progress bar, TensorBoard events and JSON files of one run.

  Args:
    workdir: the run's folder.
    total_steps: the run's length, for the ETA.
    enabled: False on every process but 0.
  """

  def __init__(self, workdir: str, total_steps: int, enabled: bool = True):
    self.workdir, self.total_steps, self.enabled = workdir, total_steps, enabled
    self._start = time.time()
    self._writer = None  # created at the first scalar: a re-evaluation adds no event file
    self._tty = sys.stdout.isatty()
    self._repaired: set[str] = set()  # JSON-lines files checked for a torn last line

  def write_run_info(self, config: ml_collections.ConfigDict) -> None:
    """config.json and environment.json of a run that starts (from step 0)."""
    if not self.enabled:
      return
    records.write_json(os.path.join(self.workdir, "config.json"), config.to_dict())
    records.write_json(os.path.join(self.workdir, "environment.json"), _environment())

  def record_resume(self, step: int, changed: dict[str, dict[str, Any]]) -> None:
    """Adds this invocation to environment.json's "resumes"; config.json stays as it was.

    Args:
      step: the step the run goes on from.
      changed: {field: {"from": value in force until now, "to": this
        invocation's}} of the fields a resume may change (run_record.RESUMABLE).
    """
    if not self.enabled:
      return
    path = os.path.join(self.workdir, "environment.json")
    try:
      environment = records.read_json(path)
    except records.DamagedRecord as e:
      environment = {"damaged": f"the start of the run is not known: {e}"}
    if not isinstance(environment, dict):  # missing (a run from before environment.json)
      environment = {"damaged": "the start of the run is not known: no environment.json"}
    resume = {
        "step": step,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "changed": changed,
        **_environment(),
    }
    environment["resumes"] = [*environment.get("resumes", []), resume]
    records.write_json(path, environment)

  def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
    """Logs scalars under "<split>/<name>" to TensorBoard and metrics.jsonl."""
    if not self.enabled:
      return
    if self._writer is None:
      self._writer = tensorboardX.SummaryWriter(self.workdir)
    for name, value in values.items():
      self._writer.add_scalar(f"{split}/{name}", value, step)
    self._writer.flush()
    # A run killed mid-line left a torn last line: the first append drops it.
    records.append_line(
        os.path.join(self.workdir, "metrics.jsonl"),
        {"step": step, "split": split, **values},
        self._repaired,
    )

  def progress(
      self, step: int, values: dict[str, float], steps_per_s: float, images_per_s: float
  ) -> None:
    """One progress line: step, rates, loss and accuracy (for tasks that have one), time left."""
    if not self.enabled:
      return
    eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else 0.0
    width = 20
    done = int(width * step / max(self.total_steps, 1))
    bar = "#" * done + "." * (width - done)
    accuracy = f"acc {values['accuracy']:.4f}  " if "accuracy" in values else ""
    line = (
        f"[{bar}] step {step}/{self.total_steps}  {steps_per_s:.1f} steps/s  "
        f"{images_per_s:,.0f} img/s  loss {values['loss']:.4f}  "
        f"{accuracy}eta {_duration(eta)}"
    )
    # A terminal gets a bar updated in place; a log file gets one line per update.
    print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", flush=True)

  def message(self, text: str) -> None:
    """A line on the console (after the bar, if one is shown)."""
    if self.enabled:
      print(("\n" if self._tty else "") + text, flush=True)

  def has_results(self) -> bool:
    """Whether an intact results.json exists (a finished run; see records.read_results)."""
    return records.read_results(self.workdir) is not None

  def results(self, values: dict[str, Any], re_evaluated: bool = False) -> None:
    """results.json: the final eval and the wall time since this invocation started.

    Args:
      values: the final eval (accuracy, loss, step, ...).
      re_evaluated: this invocation only evaluated a finished run whose
        results.json was missing or damaged (recorded, so that its wall time
        is not taken for the run's).
    """
    if self.enabled:
      extra = {"re_evaluated": True} if re_evaluated else {}
      records.write_json(
          os.path.join(self.workdir, "results.json"),
          {**values, **extra, "wall_seconds": round(time.time() - self._start, 2)},
      )

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
