"""The launch scripts run for real, with stand-ins for the commands they start
(python, gcloud's dry run, srun), and do what their usage text says."""

import os
import pathlib
import subprocess

from helpers import ROOT

LAUNCH = ROOT / "launch"


def _bash(script: str, *args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
      ["bash", str(LAUNCH / script), *args],
      capture_output=True,
      text=True,
      timeout=60,
      cwd=ROOT,
      env={**os.environ, **(env or {})},
  )


def _stand_in(folder: pathlib.Path, name: str, body: str) -> pathlib.Path:
  """An executable script `folder/name` that prints its arguments, then runs `body`."""
  path = folder / name
  path.write_text(f'#!/usr/bin/env bash\necho "{name} $*"\n{body}\n')
  path.chmod(0o755)
  return path


# ---------------------------------------------------------------------------
# local_multiprocess.sh: N processes, each told its place; a failure stops all.

FAKE_PYTHON = """echo "XLA_FLAGS=$XLA_FLAGS parent=$CNN_JAX_PARENT_PID"
if [[ "$*" == *--process_id=1* ]]; then exit "${PROCESS_1_STATUS:-0}"; fi"""


def _local(tmp_path, *args, status_of_process_1=0):
  python = _stand_in(tmp_path, "python", FAKE_PYTHON)
  env = {
      "PYTHON": str(python),
      "PORT": "23456",
      "LOG_DIR": str(tmp_path / "logs"),
      "DEVICES_PER_PROCESS": "2",
      "PROCESS_1_STATUS": str(status_of_process_1),
      "WAIT_SECONDS": "0",
      "GRACE_SECONDS": "0",
  }
  return _bash("local_multiprocess.sh", *args, env=env)


def test_the_local_launcher_starts_every_process_with_its_place(tmp_path):
  run = _local(tmp_path, "2", "--", "--config=configs/default.py", "--workdir=/tmp/w")
  assert run.returncode == 0, run.stderr
  assert "2 processes on localhost:23456" in run.stderr
  for i in range(2):
    python, flags = (tmp_path / "logs" / f"process_{i}.txt").read_text().splitlines()
    assert python == (
        f"python -m cnn_jax.main --config=configs/default.py --workdir=/tmp/w "
        f"--coordinator_address=localhost:23456 --num_processes=2 --process_id={i}"
    )
    assert flags.split()[-2:-1] == ["--xla_force_host_platform_device_count=2"]
    assert flags.split()[-1].removeprefix("parent=").isdigit(), flags


def test_the_local_launcher_returns_a_failed_process_s_status(tmp_path):
  run = _local(tmp_path, "2", "--", "--workdir=/tmp/w", status_of_process_1=3)
  assert run.returncode == 3
  assert "process 1 exited with status 3; stopping the others" in run.stderr


def test_the_local_launcher_prints_its_usage_without_a_count_and_dashes(tmp_path):
  for args in (("--", "--workdir=/tmp/w"), ("two", "--"), ("2", "--workdir=/tmp/w")):
    run = _local(tmp_path, *args)
    assert run.returncode == 2, args
    assert "Usage:" in run.stderr and "launch/local_multiprocess.sh N -- ARGS..." in run.stderr
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------------------
# tpu_pod.sh: --dry_run prints the gcloud commands and runs none.

POD = ("--name=pod", "--zone=us-central2-b", "--config=configs/default.py", "--bucket=b")


def _dry_run(tmp_path, *args) -> tuple[list[str], str]:
  """The commands a --dry_run prints ("+ ..." lines), and all it prints."""
  run = _bash(
      "tpu_pod.sh", *POD, "--workdir=runs/r", "--dry_run", *args, env={"TMPDIR": str(tmp_path)}
  )
  assert run.returncode == 0, run.stderr
  return [line for line in run.stdout.splitlines() if line.startswith("+ ")], run.stdout


def test_the_tpu_pod_dry_run_ships_installs_and_trains_on_every_worker(tmp_path):
  commands, printed = _dry_run(tmp_path, "--", "--config.num_epochs=1")
  tpu = "+ gcloud compute tpus tpu-vm"
  assert commands[0] == f"+ git archive --format=tar.gz --output={tmp_path}/cnn_jax-pod.tar.gz HEAD"
  assert commands[1] == (
      f"{tpu} scp {tmp_path}/cnn_jax-pod.tar.gz pod:cnn_jax.tar.gz --zone=us-central2-b "
      "--worker=all"
  )
  assert commands[2].startswith(f"{tpu} ssh pod --zone=us-central2-b --worker=all '--command=")
  assert "gcsfuse --implicit-dirs b ~/bucket" in printed
  assert commands[3] == (
      f"{tpu} ssh pod --zone=us-central2-b --worker=all '--command=cd cnn_jax && "
      "../cnn_jax_venv/bin/python -m cnn_jax.main --config=configs/default.py "
      "--workdir=../bucket/runs/r --config.num_epochs=1'"
  )
  assert len(commands) == 4  # no --create, no --delete_after
  assert not (tmp_path / "cnn_jax-pod.tar.gz").exists()  # nothing ran


def test_the_tpu_pod_dry_run_creates_first_and_deletes_last(tmp_path):
  commands, _ = _dry_run(tmp_path, "--create", "--delete_after", "--accelerator=v4-8")
  assert commands[0] == (
      "+ gcloud compute tpus tpu-vm create pod --zone=us-central2-b --accelerator-type=v4-8 "
      "--version=tpu-ubuntu2204-base"
  )
  assert commands[-1] == "+ gcloud compute tpus tpu-vm delete pod --zone=us-central2-b --quiet"
  assert len(commands) == 6


def test_the_tpu_pod_script_names_a_missing_or_wrong_argument():
  missing = _bash("tpu_pod.sh", *POD, "--dry_run")
  assert missing.returncode == 2
  assert missing.stderr.strip() == "tpu_pod.sh: --workdir is required (see --help)"
  url = _bash("tpu_pod.sh", *POD[:3], "--bucket=gs://b", "--workdir=r", "--dry_run")
  assert url.returncode == 2 and "no gs://" in url.stderr
  unknown = _bash("tpu_pod.sh", "--nmae=pod")
  assert unknown.returncode == 2
  assert unknown.stderr.strip() == "tpu_pod.sh: unknown argument '--nmae=pod' (see --help)"
  usage = _bash("tpu_pod.sh", "--help")
  assert usage.returncode == 0 and usage.stdout.startswith("Trains cnn_jax on a Cloud TPU VM")


# ---------------------------------------------------------------------------
# slurm.sbatch: one srun of the training CLI with the job's settings.


def test_the_slurm_script_runs_the_training_cli_with_the_job_s_settings(tmp_path):
  _stand_in(tmp_path, "srun", "")
  run = _bash(
      "slurm.sbatch",
      env={
          "PATH": f"{tmp_path}:{os.environ['PATH']}",
          "SLURM_SUBMIT_DIR": str(ROOT),
          "SLURM_JOB_NAME": "cnn_jax",
          "SLURM_JOB_ID": "42",
          "SLURM_JOB_NUM_NODES": "2",
          "SLURM_NTASKS": "16",
          "SLURM_CPUS_PER_TASK": "8",
          "DATA_DIR": "/data/tfds",
          "EXTRA_ARGS": "--config.num_epochs=1 --config.grain_workers=4",
      },
  )
  assert run.returncode == 0, run.stderr
  assert run.stdout.splitlines() == [
      f"2 node(s), 16 processes; workdir {ROOT}/workdirs/cnn_jax-42",
      "srun --kill-on-bad-exit=1 --cpus-per-task=8 python -m cnn_jax.main "
      f"--config=configs/default.py --workdir={ROOT}/workdirs/cnn_jax-42 "
      "--config.data_dir=/data/tfds --config.num_epochs=1 --config.grain_workers=4",
  ]
