"""What several test modules share: the repository's paths, the tiny config, and
running a command-line entry point as a user would."""

import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys

from fork_server import python

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.py"
# What tests/conftest.py adds to XLA_FLAGS for quick compiles (why: there).
QUICK_COMPILE_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)


def xla_defaults_env() -> dict[str, str]:
  """The tests' environment without their quick-compile XLA flags: XLA's own settings.

  For runs that execute more than they compile. With the older fusion
  emitters at LLVM's usual optimization, initializing FCN-8s/Lite0's state
  alone compiled for 51-63 s, against 9 s with XLA's defaults.

  Returns:
    A copy of os.environ; XLA_FLAGS keeps only flags set outside the tests.
  """
  env = dict(os.environ)
  flags = [f for f in env.pop("XLA_FLAGS", "").split() if f not in QUICK_COMPILE_XLA_FLAGS]
  return {**env, **({"XLA_FLAGS": " ".join(flags)} if flags else {})}


def tiny_config(pipeline: str = "device", **overrides):
  """The tiny digits config (tests/configs/tiny.py) with flattened overrides."""
  spec = importlib.util.spec_from_file_location("tiny_config", TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(pipeline)
  config.update_from_flattened_dict(overrides)
  return config


def sweep_config(tmp_path, body: str) -> str:
  """A config file that reuses the tiny config and adds `body` (a get_sweep)."""
  path = tmp_path / "swept.py"
  path.write_text(
      f"import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('tiny', {str(TINY)!r})\n"
      f"tiny = importlib.util.module_from_spec(spec)\n"
      f"spec.loader.exec_module(tiny)\n"
      f"get_config = tiny.get_config\n\n{body}\n"
  )
  return str(path)


def snapshot(folder: pathlib.Path) -> dict[str, str]:
  """Every file and folder under `folder`, with a hash of each file's bytes."""
  tree = {}
  for path in sorted(folder.rglob("*")):
    key = str(path.relative_to(folder))
    tree[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
  return tree


def cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
  """`python -m *args` from the repository's root, its output captured (through the
  tests' fork server: tests/fork_server.py)."""
  return subprocess.run(
      [python(), "-m", *args],
      capture_output=True,
      text=True,
      timeout=timeout,
      cwd=ROOT,
      **kwargs,
  )


def assert_one_line_error(run: subprocess.CompletedProcess, expected: str) -> None:
  """The command failed with exactly one line on stderr, `error: ...expected...`."""
  assert run.returncode not in (0, None), run.stdout[-2000:]
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-3000:]
  assert expected in lines[0], lines[0]


def two_processes(args: list[str], folder: pathlib.Path, timeout: float = 240) -> list:
  """`python *args` as 2 processes of one JAX program, 2 CPU devices each.

  Args:
    args: the interpreter's arguments (e.g. ["-m", "cnn_jax.main", ...]);
      the coordinator's address and each process's id are added.
    folder: where their output goes (out0.txt, err1.txt, ...).
    timeout: seconds the two may take.

  Returns:
    [(stdout, stderr)] of process 0 and process 1, both of which exited with 0.
  """
  port = 20000 + os.getpid() % 20000
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
  # Output goes to files: with pipes, a process blocked on a full pipe that
  # nobody reads would stall the other one inside a collective.
  logs = [
      (open(folder / f"out{i}.txt", "w+"), open(folder / f"err{i}.txt", "w+")) for i in range(2)
  ]
  processes = [
      subprocess.Popen(
          [
              sys.executable,
              *args,
              f"--coordinator_address=localhost:{port}",
              "--num_processes=2",
              f"--process_id={i}",
          ],
          env=env,
          stdout=out,
          stderr=err,
          text=True,
      )
      for i, (out, err) in enumerate(logs)
  ]
  timed_out = False
  try:
    for p in processes:
      p.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    timed_out = True
  finally:
    for p in processes:
      p.kill()
  outputs = []
  for out, err in logs:
    out.seek(0), err.seek(0)
    outputs.append((out.read(), err.read()))
    out.close(), err.close()
  assert not timed_out, "the 2 processes hung; their last output:\n" + "\n".join(
      f"process {i}: {out[-800:]}{err[-800:]}" for i, (out, err) in enumerate(outputs)
  )
  for p, (out, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
  return outputs


def prepared_scenes(folder: str, counts: dict[str, int]) -> str:
  """mnist_scenes prepared in `folder` with its first `counts` scenes per split, as a first
  use prepares it (scene i does not depend on the count)."""
  # Imported here: conftest imports this module before JAX may start.
  from cnn_jax.data import scenes, sources

  original = scenes.SCENES_PER_SPLIT
  scenes.SCENES_PER_SPLIT = counts
  try:
    sources.load("mnist_scenes", "train", folder)
  finally:
    scenes.SCENES_PER_SPLIT = original
  return folder


def assert_resumed_run_equals(make_config, reference, reference_dir, split_dir) -> None:
  """A run stopped after 4 of 8 steps and resumed ends bit-equal to the uninterrupted one.

  Args:
    make_config: (**overrides) -> the run's config (8 steps, a constant learning rate:
      a 4-step run is the first half of an 8-step one).
    reference: the uninterrupted run's final eval.
    reference_dir: its workdir (a pathlib.Path).
    split_dir: a fresh workdir (a pathlib.Path) for the stopped and resumed run.
  """
  import jax
  import numpy as np

  from cnn_jax.train import train_and_evaluate

  train_and_evaluate(make_config(num_train_steps=4), str(split_dir))
  assert train_and_evaluate(make_config(), str(split_dir)) == reference
  leaves, tree = jax.tree.flatten(final_state(split_dir))
  expected, expected_tree = jax.tree.flatten(final_state(reference_dir))
  assert tree == expected_tree
  for a, b in zip(leaves, expected, strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def final_state(workdir: pathlib.Path):
  """The newest checkpoint's state of a workdir."""
  from cnn_jax.saved_runs import read_state

  checkpoints = workdir / "checkpoints"
  step = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  return read_state(str(checkpoints / str(step) / "state"))
