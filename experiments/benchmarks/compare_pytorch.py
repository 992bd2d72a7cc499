"""Training-step throughput of cnn_jax models next to the same networks in PyTorch.

    python experiments/benchmarks/compare_pytorch.py            # CPU: lenet5_modern, resnet20
    python experiments/benchmarks/compare_pytorch.py --models=resnet50,resnet18,vgg_d,googlenet_tv \
        --batch_size=256 --dtype=bfloat16                       # GPU
    python experiments/benchmarks/compare_pytorch.py --models=resnet18,resnet50 --check_params_only

For each model it measures, on the same machine and the same synthetic batch
shape, images per second of one full training step:

- cnn_jax: `cnn_jax.train.throughput.train_step_benchmark`, the jitted step
  that training runs (uint8 -> float and normalization, forward, softmax
  cross-entropy, backward, SGD with momentum 0.9, running loss/accuracy/
  gradient-norm totals), plus the backend's peak device memory when it
  reports one (GPU; null on CPU).
- PyTorch "eager" and "compile" (`torch.compile`, mode default): the same
  architecture, `zero_grad`, uint8 -> float and normalization, forward,
  `nn.CrossEntropyLoss`, `backward`, `torch.optim.SGD(lr=0.01, momentum=0.9)`
  `step`, on a batch already on the device; `channels_last` by default,
  bf16 autocast on CUDA for --dtype=bfloat16.

Each measurement runs in its own child process (this script with --worker):
peak memory is then that run's own, JAX and PyTorch never share a process
(nor the GPU's memory, nor CUDA libraries of different versions), and a
crash or an out-of-memory in one row does not stop the others. It prints the
versions, one JSON line per measurement (appended to --out if given) and a
markdown table with the ratio ours / PyTorch.

The parameter counts of both sides are compared for every model (a warning
if they differ by more than 1%), so that the table cannot silently compare
two different networks; --check_params_only does only that (cheap, no timing).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from absl import app, flags

_MODELS = flags.DEFINE_list(
    "models", ["lenet5_modern", "resnet20"], "cnn_jax model names (see TORCH_EQUIVALENTS)"
)
_BATCH = flags.DEFINE_integer("batch_size", 128, "batch size of both sides")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "input size for every listed model (default: each model's own)"
)
_DTYPE = flags.DEFINE_enum(
    "dtype",
    "float32",
    ["float32", "bfloat16"],
    "compute dtype; PyTorch uses bf16 autocast on CUDA only, " "float32 on CPU",
)
_STEPS = flags.DEFINE_integer("steps", 20, "timed steps per measurement")
_WARMUP = flags.DEFINE_integer("warmup_steps", 3, "untimed steps after compilation")
_TORCH_COMPILE = flags.DEFINE_bool(
    "torch_compile", True, "also time the PyTorch step under torch.compile"
)
_CHANNELS_LAST = flags.DEFINE_bool(
    "channels_last", True, "PyTorch model and batch in channels_last memory format"
)
_OUT = flags.DEFINE_string("out", None, "file to append the JSON lines to")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl",
    None,
    ["auto", "xla", "col2im", "lecture", "gemm", "onednn"],
    "cnn_jax's conv_impl (default: the model's)",
)
_CHECK_PARAMS = flags.DEFINE_bool(
    "check_params_only", False, "only build both models and compare parameter counts"
)
_TIMEOUT = flags.DEFINE_integer(
    "worker_timeout_s", 3600, "seconds one measurement may take before it is reported failed"
)
# Internal: what a child process measures (see `_run_worker`).
_WORKER = flags.DEFINE_enum(
    "worker",
    None,
    ["probe", "params", "cnn_jax", "torch_eager", "torch_compile"],
    "internal: run one measurement and print it",
)
_WORKER_SPEC = flags.DEFINE_string(
    "worker_spec", None, "internal: JSON of the model the worker builds"
)

RESULT_MARKER = "@@compare_pytorch@@ "
PARAM_TOLERANCE = 0.01
# The normalization both steps apply after uint8 -> [0, 1]: the benchmark's
# step standardizes with its defaults, mean 0 and std 1 (see
# cnn_jax.train.steps.make_train_step); the PyTorch step does the same ops.
MEAN, STD = 0.0, 1.0


# --------------------------------------------------------------------------
# PyTorch models. Built lazily so that the cnn_jax worker never imports torch
# (two frameworks in one process may load different CUDA libraries).
# --------------------------------------------------------------------------


def _torch_builders() -> dict[str, Callable[..., Any]]:
  """Our model name -> builder(num_classes, image_size, channels) of the PyTorch twin."""
  import functools

  import torch
  import torch.nn.functional as F
  import torchvision
  from torch import nn

  class LeNet5Modern(nn.Module):
    """cnn_jax `lenet5_modern`: conv 6@5x5 VALID, ReLU, max-pool 2, conv 16@5x5,
    ReLU, max-pool 2, conv 120@5x5, ReLU, flatten, dense 84, ReLU, dense."""

    def __init__(self, num_classes: int = 10, image_size: int = 32, channels: int = 1):
      super().__init__()
      side = ((image_size - 4) // 2 - 4) // 2 - 4  # C5's output size (1 at 32x32)
      self.net = nn.Sequential(
          nn.Conv2d(channels, 6, 5),
          nn.ReLU(),
          nn.MaxPool2d(2),
          nn.Conv2d(6, 16, 5),
          nn.ReLU(),
          nn.MaxPool2d(2),
          nn.Conv2d(16, 120, 5),
          nn.ReLU(),
          nn.Flatten(),
          nn.Linear(120 * side * side, 84),
          nn.ReLU(),
          nn.Linear(84, num_classes),
      )

    def forward(self, x):
      return self.net(x)

  class BasicBlockA(nn.Module):
    """CIFAR basic block with He et al.'s option-A shortcut: where the shape
    changes, subsample by the stride and zero-pad the new channels (as
    cnn_jax.models.resnet.BasicBlock._shortcut with shortcut="A")."""

    def __init__(self, in_planes: int, planes: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.stride, self.extra = stride, planes - in_planes

    def forward(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if self.stride != 1 or self.extra:
        x = x[:, :, :: self.stride, :: self.stride]
        x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # pads (W, H, C) from the last dim
      return F.relu(y + x)

  class CifarResNet(nn.Module):
    """cnn_jax `cifar_resnet(depth)`: 3x3 conv 16 + BN + ReLU, three stages of
    n basic blocks (16, 32, 64 filters), global average pool, dense."""

    def __init__(self, depth: int, num_classes: int = 10, image_size: int = 32, channels: int = 3):
      super().__init__()
      del image_size  # global average pooling takes any size
      n = (depth - 2) // 6
      self.stem = nn.Sequential(
          nn.Conv2d(channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
      )
      blocks, in_planes = [], 16
      for stage, planes in enumerate((16, 32, 64)):
        for i in range(n):
          blocks.append(BasicBlockA(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
          in_planes = planes
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
      x = self.blocks(self.stem(x))
      return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

  def torchvision_model(constructor, **fixed):
    def build(num_classes: int, image_size: int, channels: int):
      del image_size  # torchvision's models pool adaptively
      if channels != 3:
        raise ValueError(f"torchvision models take 3 channels, not {channels}")
      return constructor(weights=None, num_classes=num_classes, **fixed)

    return build

  tv = torchvision.models
  builders = {
      "lenet5_modern": LeNet5Modern,
      "alexnet_tv": torchvision_model(tv.alexnet),
      # The auxiliary classifiers are off on our side too (googlenet_tv's
      # default); torchvision's init is skipped as it does not change speed.
      "googlenet_tv": torchvision_model(tv.googlenet, aux_logits=False, init_weights=False),
  }
  for depth in (20, 32, 44, 56, 110, 1202):
    builders[f"resnet{depth}"] = functools.partial(CifarResNet, depth)
  for depth in (18, 34, 50, 101, 152):
    builders[f"resnet{depth}"] = torchvision_model(getattr(tv, f"resnet{depth}"))
  for letter, depth in (("a", 11), ("b", 13), ("d", 16), ("e", 19)):
    builders[f"vgg_{letter}"] = torchvision_model(getattr(tv, f"vgg{depth}"))
  for index in (0, 1, 2):
    builders[f"efficientnet_lite{index}"] = functools.partial(efficientnet_lite, index)
  return builders


def efficientnet_lite(index: int, num_classes: int, image_size: int, channels: int):
  """The EfficientNet reference implementation's Lite model (efficientnet-lite-pytorch)."""
  import efficientnet_lite_pytorch  # noqa: PLC0415 (a dev dependency, imported only here)

  del image_size  # it pools adaptively
  return efficientnet_lite_pytorch.EfficientNet.from_name(
      f"efficientnet-lite{index}", in_channels=channels, num_classes=num_classes
  )


# Documented here as well as in `_torch_builders`, for the flags' help and
# for checking --models without importing torch.
TORCH_EQUIVALENTS = {
    "lenet5_modern": "LeNet5Modern (this script)",
    "alexnet_tv": "torchvision.models.alexnet",
    "googlenet_tv": "torchvision.models.googlenet(aux_logits=False)",
    **{
        f"resnet{d}": f"CifarResNet({d}, option A) (this script)"
        for d in (20, 32, 44, 56, 110, 1202)
    },
    **{f"resnet{d}": f"torchvision.models.resnet{d}" for d in (18, 34, 50, 101, 152)},
    **{
        f"vgg_{letter}": f"torchvision.models.vgg{d}"
        for letter, d in (("a", 11), ("b", 13), ("d", 16), ("e", 19))
    },
    **{
        f"efficientnet_lite{i}": f"efficientnet_lite_pytorch.EfficientNet (lite{i})"
        for i in (0, 1, 2)
    },
}


# --------------------------------------------------------------------------
# Workers: each runs in its own process and prints one marked JSON line.
# --------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
  """Installed versions, read without importing the packages."""
  versions = {}
  for package in ("jax", "jaxlib", "flax", "optax", "torch", "torchvision"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return versions


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _cpu_count() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _peak_rss_bytes() -> int | None:
  try:
    import resource
  except ImportError:
    return None
  # Linux reports KiB; this is the whole process, framework runtimes included.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _probe() -> dict:
  """What each framework runs on (a child process, so no device stays held)."""
  info = {}
  import jax

  info["jax_backend"] = jax.default_backend()
  info["jax_devices"] = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  import torch

  info["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
  info["torch_threads"] = torch.get_num_threads()
  info["cpu"] = f"{_cpu_name()} ({_cpu_count()} cores)"
  return info


def _ours_params(name: str, size: int) -> int:
  from cnn_jax import models, summary

  spec = models.spec(name)
  return summary.summarize(models.create(name), (size, size, spec.channels)).total_params


def _torch_params(name: str, spec: dict) -> int:
  model = _torch_builders()[name](spec["num_classes"], spec["image_size"], spec["channels"])
  return sum(p.numel() for p in model.parameters())


def _params_worker(specs: list[dict]) -> dict:
  """Both parameter counts of every model, on the CPU (nothing is run)."""
  return {
      s["name"]: {
          "ours": _ours_params(s["name"], s["image_size"]),
          "torch": _torch_params(s["name"], s),
      }
      for s in specs
  }


def _ours_worker(spec: dict, batch_size: int, dtype: str, steps: int, warmup: int) -> dict:
  """cnn_jax's training step, timed by the library's own benchmark, with the
  XLA:CPU setting our entry points apply (see cnn_jax.cpu_flags)."""
  from cnn_jax import cpu_flags

  cpu_flags.apply(spec["name"])  # before JAX starts its backend

  import jax

  from cnn_jax.train import throughput

  conv_impl = spec.get("conv_impl")
  result = throughput.train_step_benchmark(
      spec["name"],
      batch_size,
      spec["image_size"],
      dtype,
      steps,
      warmup_steps=warmup,
      **({"conv_impl": conv_impl} if conv_impl else {}),
  )
  result["xla_flags"] = os.environ.get("XLA_FLAGS", "")
  # Read after the run: the allocator's high-water mark covers compilation,
  # state, batch and every step. The CPU backend reports no statistics.
  stats = jax.devices()[0].memory_stats()
  return {
      "images_per_s": result["images_per_s"],
      "ms_per_step": result["ms_per_step"],
      "compile_seconds": result["compile_seconds"],
      "first_step_seconds": None,
      "peak_memory_bytes": stats.get("peak_bytes_in_use") if stats else None,
      "devices": result["devices"],
      "threads": _cpu_count(),
      "params": _ours_params(spec["name"], spec["image_size"]),
      "model_tflops_per_step": result["model_tflops_per_step"],
      "conv_impl": conv_impl or "the model's",
  }


def _torch_worker(
    spec: dict,
    batch_size: int,
    dtype: str,
    steps: int,
    warmup: int,
    compile_step: bool,
    channels_last: bool,
) -> dict:
  """The PyTorch training step, eager or under torch.compile."""
  import contextlib

  import torch
  from torch import nn

  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  bf16 = dtype == "bfloat16" and cuda  # autocast only on CUDA; CPU stays float32
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  if cuda:
    # Fixed shapes: let cuDNN pick its fastest algorithms, as XLA autotunes ours.
    torch.backends.cudnn.benchmark = True
    torch.cuda.reset_peak_memory_stats()
  sync = torch.cuda.synchronize if cuda else (lambda: None)

  torch.manual_seed(0)
  model = _torch_builders()[spec["name"]](spec["num_classes"], spec["image_size"], spec["channels"])
  model = model.to(device, memory_format=memory_format).train()
  params = sum(p.numel() for p in model.parameters())
  criterion = nn.CrossEntropyLoss()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

  generator = torch.Generator().manual_seed(0)
  size, channels = spec["image_size"], spec["channels"]
  images = torch.randint(
      0, 256, (batch_size, channels, size, size), dtype=torch.uint8, generator=generator
  )
  images = images.to(device).contiguous(memory_format=memory_format)
  labels = torch.randint(0, spec["num_classes"], (batch_size,), generator=generator).to(device)

  def forward_loss(x, y):
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
      # uint8 -> [0, 1] -> standardized, inside the step as ours does.
      x = (x.float() / 255.0 - MEAN) / STD
      return criterion(model(x), y)

  # torch.compile covers forward, loss and (through AOTAutograd) backward;
  # zero_grad and the optimizer step stay eager.
  loss_fn = torch.compile(forward_loss) if compile_step else forward_loss

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(images, labels)
    loss.backward()
    optimizer.step()

  result = {
      "devices": f"1 x {torch.cuda.get_device_name(0) if cuda else 'cpu'}",
      "threads": torch.get_num_threads(),
      "params": params,
      "dtype": "bfloat16" if bf16 else "float32",
      "channels_last": channels_last,
      "compile_seconds": None,
      "first_step_seconds": None,
  }
  sync()
  start = time.perf_counter()
  try:
    step()  # compiles under torch.compile; eager: allocations, cuDNN autotuning
    sync()
  except Exception as e:  # noqa: BLE001 - report any compile failure as a table cell
    if not compile_step:
      raise
    result["compile_seconds"] = round(time.perf_counter() - start, 2)
    first_line = (str(e).strip().splitlines() or [""])[0]
    result["error"] = f"torch.compile failed: {type(e).__name__}: {first_line}"[:300]
    return result
  result["compile_seconds" if compile_step else "first_step_seconds"] = round(
      time.perf_counter() - start, 2
  )
  for _ in range(warmup):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  sync()
  seconds = (time.perf_counter() - start) / steps
  result.update(
      images_per_s=round(batch_size / seconds, 1),
      ms_per_step=round(1000 * seconds, 3),
      peak_memory_bytes=torch.cuda.max_memory_allocated() if cuda else None,
  )
  return result


def _run_worker(kind: str) -> None:
  """Child process: one measurement, printed as a marked JSON line."""
  spec = json.loads(_WORKER_SPEC.value) if _WORKER_SPEC.value else None
  args = (_BATCH.value, _DTYPE.value, _STEPS.value, _WARMUP.value)
  if kind == "probe":
    result = _probe()
  elif kind == "params":
    result = _params_worker(spec)
  elif kind == "cnn_jax":
    result = _ours_worker(spec, *args)
  else:
    result = _torch_worker(
        spec, *args, compile_step=kind == "torch_compile", channels_last=_CHANNELS_LAST.value
    )
  result["peak_rss_bytes"] = _peak_rss_bytes()
  print(RESULT_MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# The parent: spawns the workers, prints the JSON lines and the table.
# --------------------------------------------------------------------------


def _spawn(kind: str, spec: Any, env: dict[str, str] | None = None) -> dict:
  """Runs one worker; its result, or {"error": ...} if it failed."""
  command = [
      sys.executable,
      os.path.abspath(__file__),
      f"--worker={kind}",
      f"--batch_size={_BATCH.value}",
      f"--dtype={_DTYPE.value}",
      f"--steps={_STEPS.value}",
      f"--warmup_steps={_WARMUP.value}",
      f"--channels_last={_CHANNELS_LAST.value}",
  ]
  if spec is not None:
    command.append(f"--worker_spec={json.dumps(spec)}")
  start = time.perf_counter()
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT.value, env=env)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {_TIMEOUT.value} s"}
  for line in done.stdout.splitlines():
    if line.startswith(RESULT_MARKER):
      result = json.loads(line[len(RESULT_MARKER) :])
      result["wall_seconds"] = round(time.perf_counter() - start, 1)
      return result
  # No result: show the end of the child's log and report its last line.
  tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
  print("\n".join(tail[-20:]), file=sys.stderr)
  last = tail[-1] if tail else f"exit status {done.returncode}"
  return {"error": f"worker {kind} failed (exit {done.returncode}): {last}"[:300]}


def _model_spec(name: str) -> dict:
  import jax

  # The parent only reads the registry; should anything start a JAX backend
  # here, it must not be the GPU's (which would preallocate most of its
  # memory for the whole run). The workers do not inherit this setting.
  jax.config.update("jax_platforms", "cpu")
  from cnn_jax import models

  spec = models.spec(name)
  # The canonical name: aliases such as vgg16 share the ModelSpec of vgg_d.
  canonical = next(n for n in models.names() if models.spec(n) is spec)
  if canonical not in TORCH_EQUIVALENTS:
    raise app.UsageError(
        f"{name}: no PyTorch equivalent here; choose from " f"{', '.join(TORCH_EQUIVALENTS)}"
    )
  return {
      "name": canonical,
      "image_size": _IMAGE_SIZE.value or spec.image_size,
      "channels": spec.channels,
      "num_classes": spec.num_classes,
      "conv_impl": _CONV_IMPL.value,
  }


def _params_differ(ours: int | None, theirs: int | None) -> bool:
  if not ours or not theirs:
    return False
  return abs(ours - theirs) > PARAM_TOLERANCE * ours


def _fmt(value, digits: int = 1) -> str:
  if value is None:
    return "-"
  return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _fmt_memory(num_bytes: int | None) -> str:
  return "-" if num_bytes is None else f"{num_bytes / 2**20:,.0f} MiB"


def _table(rows: list[dict]) -> str:
  lines = [
      "| model | framework | mode | dtype | params | images/s | ms/step | "
      "compile s | first step s | peak device memory | ours / this |",
      "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
  ]
  ours = {r["model"]: r for r in rows if r["framework"] == "cnn_jax"}
  for r in rows:
    ratio = "-"
    mine = ours.get(r["model"], {}).get("images_per_s")
    if r["framework"] == "pytorch" and mine and r.get("images_per_s"):
      ratio = f"{mine / r['images_per_s']:.2f}x"
    speed = _fmt(r.get("images_per_s"))
    if r.get("error") and not r.get("images_per_s"):
      speed = r["error"].replace("|", "\\|")  # a bare | would split the cell
    params = _fmt(r.get("params"))
    if r["framework"] == "pytorch" and _params_differ(
        ours.get(r["model"], {}).get("params"), r.get("params")
    ):
      params += " (!)"
    lines.append(
        f"| {r['model']} | {r['framework']} | {r['mode']} | {r.get('dtype', '-')} | "
        f"{params} | {speed} | {_fmt(r.get('ms_per_step'), 2)} | "
        f"{_fmt(r.get('compile_seconds'), 2)} | {_fmt(r.get('first_step_seconds'), 2)} | "
        f"{_fmt_memory(r.get('peak_memory_bytes'))} | {ratio} |"
    )
  return "\n".join(lines)


def _emit(row: dict) -> None:
  line = json.dumps(row)
  print(line, flush=True)
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      f.write(line + "\n")


def _check_params(specs: list[dict]) -> None:
  # The CPU is enough to count parameters; keep both frameworks off any GPU.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
  counts = _spawn("params", specs, env=env)
  if "error" in counts:
    raise RuntimeError(counts["error"])
  print("| model | PyTorch equivalent | image size | ours | PyTorch | difference |")
  print("|---|---|--:|--:|--:|--:|")
  mismatched = []
  for s in specs:
    c = counts[s["name"]]
    difference = (c["torch"] - c["ours"]) / c["ours"]
    print(
        f"| {s['name']} | {TORCH_EQUIVALENTS[s['name']]} | {s['image_size']} | "
        f"{c['ours']:,} | {c['torch']:,} | {difference:+.2%} |"
    )
    if _params_differ(c["ours"], c["torch"]):
      mismatched.append(s["name"])
  if mismatched:
    print(
        f"\nWARNING: parameter counts differ by more than {PARAM_TOLERANCE:.0%}: "
        f"{', '.join(mismatched)}"
    )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKER.value:
    _run_worker(_WORKER.value)
    return
  specs = [_model_spec(name) for name in _MODELS.value]
  date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  versions = _versions()
  print(f"## cnn_jax vs PyTorch, training step ({date})\n")
  print("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
  if _CHECK_PARAMS.value:
    print()
    _check_params(specs)
    return

  probe = _spawn("probe", None)
  if "error" in probe:
    raise RuntimeError(f"could not start the frameworks: {probe['error']}")
  print(f"- cnn_jax: backend {probe['jax_backend']}, {probe['jax_devices']}")
  print(
      f"- PyTorch: {probe['torch_device']}, {probe['torch_threads']} threads "
      f"(torch.get_num_threads()), channels_last={_CHANNELS_LAST.value}"
  )
  print(f"- host CPU: {probe['cpu']}")
  print(
      f"- batch {_BATCH.value}, {_STEPS.value} timed steps after {_WARMUP.value} warm-up "
      f"steps, requested dtype {_DTYPE.value}"
  )
  print(f"- command: python {' '.join(sys.argv)}\n", flush=True)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  if load is not None and probe["jax_backend"] == "cpu" and load > 0.5:
    # Measured on 2 busy cores: PyTorch's OpenMP threads spin at barriers
    # waiting for a descheduled peer, and its step slowed 25-100x.
    print(
        f"WARNING: load average {load:.1f} before the runs: other processes use the "
        "CPU, so these timings are not reliable (PyTorch's OpenMP threads suffer most).\n"
    )
  if probe["jax_devices"].split(" x ")[0] != "1":
    print(
        "WARNING: cnn_jax shards the batch over every device, PyTorch uses one; "
        "set CUDA_VISIBLE_DEVICES to one GPU for a like-for-like comparison.\n"
    )

  common = {
      "date": date,
      "batch_size": _BATCH.value,
      "steps": _STEPS.value,
      "warmup_steps": _WARMUP.value,
      "load_average_at_start": load,
      "versions": versions,
  }
  modes = [("cnn_jax", "jit", "cnn_jax"), ("pytorch", "eager", "torch_eager")]
  if _TORCH_COMPILE.value:
    modes.append(("pytorch", "compile", "torch_compile"))
  rows = []
  for spec in specs:
    for framework, mode, kind in modes:
      print(
          f"# measuring {spec['name']} with {framework} ({mode}) ...", file=sys.stderr, flush=True
      )
      result = _spawn(kind, spec)
      row = {
          "model": spec["name"],
          "framework": framework,
          "mode": mode,
          "image_size": spec["image_size"],
          "dtype": _DTYPE.value,
          **common,
          **result,
      }
      if framework == "pytorch":
        row["torch_model"] = TORCH_EQUIVALENTS[spec["name"]]
      rows.append(row)
      _emit(row)

  print("\n" + _table(rows))
  notes = []
  ours = {r["model"]: r for r in rows if r["framework"] == "cnn_jax"}
  for r in rows:
    mine = ours[r["model"]].get("params")
    if r["framework"] == "pytorch" and _params_differ(mine, r.get("params")):
      notes.append(
          f"WARNING: {r['model']}: parameter counts differ by more than "
          f"{PARAM_TOLERANCE:.0%} (ours {mine:,}, PyTorch {r['params']:,}): "
          "the two networks are not the same."
      )
  if any(r.get("dtype") != _DTYPE.value for r in rows if "dtype" in r):
    notes.append("Note: PyTorch ran in float32 (bf16 autocast is used on CUDA only).")
  if all(r.get("peak_memory_bytes") is None for r in rows):
    notes.append("Peak device memory: not reported by the backends here (CPU).")
  if notes:
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
  app.run(main)
