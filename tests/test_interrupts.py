"""Ctrl-C stops a run, whenever it lands, in one line, and the run resumes;
nothing a run started (Grain workers) outlives it.

Each test waits on events (a line, a file, a process ending), never on time:
a small wrapper around the training CLI marks the moments of interest with
files, and can hold orbax's background save until the test lets it go.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, TINY, cli, sweep_config

ONE_LINE = ["interrupted (Ctrl-C); re-run the same command to go on"]

# The training CLI with orbax's save finalization held (until MARKERS/release
# exists) and the moment the main thread waits for it marked (MARKERS/main_waits);
# GRACE overrides the Ctrl-C grace period.
WRAPPER = r"""
import os, pathlib, runpy, sys, time
import orbax.checkpoint as ocp
from cnn_jax import interrupts

markers = pathlib.Path(os.environ["MARKERS"])
finalize, wait = ocp.CheckpointManager._finalize, ocp.CheckpointManager.wait_until_finished

def held_finalize(self, step, steps_to_remove):
  if not (markers / "finalize_held").exists():
    (markers / "finalize_held").touch()
    while not (markers / "release").exists():
      time.sleep(0.01)
  return finalize(self, step, steps_to_remove)

def marked_wait(self):
  if (markers / "finalize_held").exists():
    (markers / "main_waits").touch()
  return wait(self)

ocp.CheckpointManager._finalize = held_finalize
ocp.CheckpointManager.wait_until_finished = marked_wait
if os.environ.get("GRACE"):
  install = interrupts.install
  interrupts.install = lambda grace_s=5.0: install(float(os.environ["GRACE"]))
sys.argv[0] = "cnn_jax.main"
runpy.run_module("cnn_jax.main", run_name="__main__", alter_sys=True)
"""

LONG_RUN = (
    "--config.num_train_steps=100000",
    "--config.checkpoint_every_steps=10",
    "--config.eval_every_steps=20",
)


_started = []


@pytest.fixture(autouse=True)
def kill_leftovers():
  """A failing test leaves no run behind (it would hold the CPU for the rest)."""
  yield
  while _started:
    process = _started.pop()
    if process.poll() is None:
      process.kill()
      process.wait()


def start(tmp_path, *args, config=TINY, wrapped=False, env=None, **kwargs) -> subprocess.Popen:
  """The training CLI on the tiny config in tmp_path/w, output in tmp_path/{out,err}."""
  command = [sys.executable, "-c", WRAPPER] if wrapped else [sys.executable, "-m", "cnn_jax.main"]
  (tmp_path / "markers").mkdir(exist_ok=True)
  _started.append(
      subprocess.Popen(
          [*command, f"--config={config}", f"--workdir={tmp_path / 'w'}", *args],
          stdout=open(tmp_path / "out", "w"),
          stderr=open(tmp_path / "err", "w"),
          cwd=ROOT,
          env={**os.environ, "MARKERS": str(tmp_path / "markers"), **(env or {})},
          **kwargs,
      )
  )
  return _started[-1]


def wait_for(condition, what: str, process: subprocess.Popen, limit_s: float = 240) -> None:
  """Waits until condition() holds; fails early if the process ended first."""
  deadline = time.monotonic() + limit_s
  while not condition():
    assert process.poll() is None, f"the run ended before {what}"
    assert time.monotonic() < deadline, f"no {what} within {limit_s} s"
    time.sleep(0.02)


def sigint_pending(process: subprocess.Popen) -> bool:
  """Whether a SIGINT sent to the process is still waiting to be delivered."""
  status = pathlib.Path(f"/proc/{process.pid}/status").read_text()
  pending = int(status.split("ShdPnd:")[1].split()[0], 16)
  return bool(pending & (1 << (signal.SIGINT - 1)))


def stopped_in_one_line(process: subprocess.Popen, tmp_path) -> None:
  assert process.wait(timeout=120) == 130
  assert (tmp_path / "err").read_text().strip().splitlines() == ONE_LINE, (
      tmp_path / "err"
  ).read_text()


def test_ctrl_c_while_orbax_waits_for_a_save_stops_and_the_run_resumes(tmp_path):
  # Orbax's CheckpointManager catches every BaseException while the main
  # thread waits for the previous save: a Ctrl-C landing there was logged as
  # "Save Finalize thread failed" and training went on.
  process = start(tmp_path, *LONG_RUN, wrapped=True)
  markers = tmp_path / "markers"
  wait_for((markers / "main_waits").exists, "wait for the held save", process)
  process.send_signal(signal.SIGINT)
  (markers / "release").touch()
  stopped_in_one_line(process, tmp_path)
  assert sorted(os.listdir(tmp_path / "w" / "checkpoints")) == ["10", "20"]
  resumed = cli(
      "cnn_jax.main",
      f"--config={TINY}",
      f"--workdir={tmp_path / 'w'}",
      "--config.num_train_steps=30",
      "--config.checkpoint_every_steps=10",
      "--config.eval_every_steps=20",
  )
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resumed from" in resumed.stdout and "at step 20" in resumed.stdout


def test_a_second_ctrl_c_stops_at_once(tmp_path):
  # The save never finishes and the grace period is long: only the second
  # Ctrl-C can end the process.
  process = start(tmp_path, *LONG_RUN, wrapped=True, env={"GRACE": "600"})
  wait_for((tmp_path / "markers" / "main_waits").exists, "wait for the held save", process)
  process.send_signal(signal.SIGINT)
  # Two SIGINTs sent while the first is pending would merge into one (the
  # kernel does not queue standard signals); a person's two Ctrl-Cs do not.
  wait_for(lambda: not sigint_pending(process), "the first Ctrl-C delivered", process)
  process.send_signal(signal.SIGINT)
  stopped_in_one_line(process, tmp_path)


def test_a_run_stuck_after_ctrl_c_is_ended_after_the_grace_period(tmp_path):
  process = start(tmp_path, *LONG_RUN, wrapped=True, env={"GRACE": "1"})
  wait_for((tmp_path / "markers" / "main_waits").exists, "wait for the held save", process)
  process.send_signal(signal.SIGINT)
  stopped_in_one_line(process, tmp_path)


def test_ctrl_c_before_the_first_step_is_one_line(tmp_path):
  # The parameter count is printed just before the first step compiles.
  process = start(tmp_path, *LONG_RUN)
  wait_for(lambda: "steps/epoch" in (tmp_path / "out").read_text(), "first step", process)
  process.send_signal(signal.SIGINT)
  stopped_in_one_line(process, tmp_path)


def test_ctrl_c_as_the_first_checkpoint_appears_is_one_line(tmp_path):
  # The reproduction: the save of step 10 is then in flight.
  process = start(tmp_path, *LONG_RUN)
  wait_for((tmp_path / "w" / "checkpoints").exists, "a checkpoint", process)
  process.send_signal(signal.SIGINT)
  stopped_in_one_line(process, tmp_path)


def children(pid: int) -> list[int]:
  """The pids of a process's living children (Grain's workers, for a trainer)."""
  found = []
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process ended while we looked
      continue
    if int(fields[1]) == pid and fields[0] != "Z":
      found.append(int(stat.parent.name))
  return found


def alive(pid: int) -> bool:
  try:
    state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except OSError:
    return False
  return state != "Z"


def assert_all_end(pids: list[int], limit_s: float = 120) -> None:
  """Waits for the processes to end; fails if any is alive after limit_s.

  They check their parent every half second (cnn_jax.interrupts.watch_parent),
  and a training run saves a checkpoint first: the limit is far beyond that.
  """
  deadline = time.monotonic() + limit_s
  while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not [pid for pid in pids if alive(pid)]


GRAIN_RUN = (*LONG_RUN, "--config.grain_workers=2")


def test_grain_workers_die_with_a_killed_trainer(tmp_path):
  process = start(tmp_path, *GRAIN_RUN, config=f"{TINY}:grain")
  wait_for((tmp_path / "w" / "checkpoints").exists, "a checkpoint", process)
  workers = children(process.pid)
  assert len(workers) >= 2, workers
  process.kill()
  process.wait()
  assert_all_end(workers)


def test_ctrl_c_to_a_grain_run_and_its_workers_is_one_line(tmp_path):
  # A terminal sends Ctrl-C to the whole foreground process group.
  process = start(tmp_path, *GRAIN_RUN, config=f"{TINY}:grain", start_new_session=True)
  wait_for((tmp_path / "w" / "checkpoints").exists, "a checkpoint", process)
  workers = children(process.pid)
  assert len(workers) >= 2, workers
  os.killpg(process.pid, signal.SIGINT)
  stopped_in_one_line(process, tmp_path)
  assert_all_end(workers)


def sweep(config, root, *extra, **kwargs) -> subprocess.Popen:
  return subprocess.Popen(
      [
          sys.executable,
          "-m",
          "cnn_jax.sweep",
          f"--config={config}",
          f"--workdir_root={root}",
          "--override=checkpoint_every_steps=10",
          "--override=eval_every_steps=20",
          *extra,
      ],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      **kwargs,
  )


def test_a_killed_sweep_stops_its_runs_and_a_rerun_finishes_them(tmp_path):
  config = sweep_config(
      tmp_path, "def get_sweep(h):\n" "  return h.sweep('optimizer.learning_rate', [0.1, 0.05])"
  )
  root = tmp_path / "sweep"
  parent = sweep(config, root, "--parallel=2", "--override=num_train_steps=100000")
  _started.append(parent)
  for name in ("learning_rate=0.1", "learning_rate=0.05"):
    wait_for((root / name / "checkpoints").exists, f"a checkpoint of {name}", parent)
  runs = children(parent.pid)
  assert len(runs) == 2, runs
  parent.kill()
  parent.wait()
  assert_all_end(runs)
  rerun = sweep(config, root, "--parallel=2", "--override=num_train_steps=30")
  output, _ = rerun.communicate(timeout=400)
  assert rerun.returncode == 0, output[-3000:]
  assert "[2/2]" in output and "failed" not in output


def test_a_sweep_waits_for_a_run_that_still_holds_its_workdir(tmp_path):
  config = sweep_config(
      tmp_path, "def get_sweep(h):\n" "  return h.sweep('optimizer.learning_rate', [0.1])"
  )
  workdir = tmp_path / "sweep" / "learning_rate=0.1"
  holder = subprocess.Popen(
      [
          sys.executable,
          "-c",
          "import sys, time; from cnn_jax.train import workdir; "
          "workdir.WorkdirLock(sys.argv[1]); print('locked', flush=True); time.sleep(600)",
          str(workdir),
      ],
      stdout=subprocess.PIPE,
      text=True,
      cwd=ROOT,
  )
  _started.append(holder)
  assert holder.stdout.readline().strip() == "locked"
  waiting = sweep(config, tmp_path / "sweep", "--override=num_train_steps=20")
  _started.append(waiting)
  line = waiting.stdout.readline()
  while line and "waiting" not in line:  # the sweep's header lines
    line = waiting.stdout.readline()
  assert line.startswith(f"learning_rate=0.1: waiting for the process that holds {workdir}"), line
  holder.kill()
  output, _ = waiting.communicate(timeout=400)
  assert waiting.returncode == 0, output[-3000:]
  assert "learning_rate=0.1: ok" in output


def test_a_killed_local_launcher_leaves_no_process_behind(tmp_path):
  launcher = subprocess.Popen(
      [
          "bash",
          str(ROOT / "launch" / "local_multiprocess.sh"),
          "2",
          "--",
          f"--config={TINY}",
          f"--workdir={tmp_path / 'w'}",
          *LONG_RUN,
      ],
      cwd=ROOT,
      env={**os.environ, "LOG_DIR": str(tmp_path / "logs")},
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
  )
  _started.append(launcher)
  wait_for((tmp_path / "w" / "checkpoints").exists, "a checkpoint", launcher)
  trainers = [
      pid
      for pid in children(launcher.pid)
      if b"cnn_jax.main" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
  ]
  assert len(trainers) == 2, trainers
  launcher.kill()
  launcher.wait()
  assert_all_end(trainers)
