"""Finds oneDNN and builds the small FFI extension (conv.cc) on first use, cached.

oneDNN comes from the `onednn-cpu-gomp` and `onednn-devel-cpu-gomp` wheels
(oneDNN 3.2 with the OpenMP CPU runtime: the library under
``<prefix>/lib``, its headers under ``<prefix>/include``); the extension is
compiled with the system's C++ compiler against them and JAX's FFI headers
(`jax.ffi.include_dir()`). The shared object is kept in a cache folder under
a name that hashes everything it was built from, so a changed source, JAX or
oneDNN builds a new one, and concurrent first uses (pytest workers, the
processes of a sweep) each write their own file and rename it into place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import jax

SOURCE = pathlib.Path(__file__).with_name("conv.cc")
# The wheel's soname: the extension links this exact library.
LIBRARY_NAME = "libdnnl.so.3"


class OnednnUnavailable(RuntimeError):
  """Why the oneDNN extension cannot be used here (one line: the problem and the fix)."""


def _prefixes() -> list[pathlib.Path]:
  # pip installs a wheel's data files under the environment's prefix; a
  # `pip install --user` puts them under the user base.
  found = [pathlib.Path(sys.prefix), pathlib.Path(sysconfig.get_config_var("userbase") or "")]
  return [p for p in found if str(p)]


def find_onednn() -> tuple[pathlib.Path, pathlib.Path]:
  """(the folder of oneDNN's headers, the folder of libdnnl.so.3).

  Returns:
    The include and library folders of the installed oneDNN wheels.

  Raises:
    OnednnUnavailable: not x86-64 Linux, or the wheels are not installed.
  """
  if sys.platform != "linux" or platform.machine() != "x86_64":
    raise OnednnUnavailable(
        f"oneDNN's convolutions are built for x86-64 Linux only, not {sys.platform} "
        f"{platform.machine()}; use conv_impl='auto'"
    )
  for prefix in _prefixes():
    include, lib = prefix / "include", prefix / "lib"
    if (include / "oneapi" / "dnnl" / "dnnl.hpp").is_file() and (lib / LIBRARY_NAME).is_file():
      return include, lib
  raise OnednnUnavailable(
      "oneDNN is not installed: pip install onednn-cpu-gomp==2023.2.0 "
      "onednn-devel-cpu-gomp==2023.2.0 (or pip install -e .)"
  )


def cache_folder() -> pathlib.Path:
  """Where built extensions are kept: $XDG_CACHE_HOME/cnn_jax, else ~/.cache/cnn_jax."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "cnn_jax"


def _compiler() -> str:
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not compiler:
    raise OnednnUnavailable(
        "no C++ compiler to build oneDNN's convolutions: install g++ (apt-get install g++)"
    )
  return compiler


def _command(compiler: str, include: pathlib.Path, lib: pathlib.Path, output: str) -> list[str]:
  return [
      compiler,
      "-O2",
      "-std=c++17",
      "-shared",
      "-fPIC",
      f"-I{jax.ffi.include_dir()}",
      f"-I{include}",
      str(SOURCE),
      f"-L{lib}",
      f"-l:{LIBRARY_NAME}",
      f"-Wl,-rpath,{lib}",
      "-o",
      output,
  ]


@functools.cache
def extension_path() -> pathlib.Path:
  """The built extension, compiled now if no cached build matches.

  Returns:
    The path of the shared object that defines the FFI handlers.

  Raises:
    OnednnUnavailable: no oneDNN, no compiler, or the build failed (with
      the compiler's first error).
  """
  include, lib = find_onednn()
  compiler = _compiler()
  recipe = _command(compiler, include, lib, "OUTPUT")
  digest = hashlib.sha256()
  for part in (SOURCE.read_bytes(), " ".join(recipe).encode(), jax.__version__.encode()):
    digest.update(part)
  target = cache_folder() / f"cnn_jax_onednn_{digest.hexdigest()[:16]}.so"
  if target.is_file():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(handle)
  try:
    built = subprocess.run(
        _command(compiler, include, lib, partial), capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
      first = next((line for line in built.stderr.splitlines() if "error" in line), "")
      raise OnednnUnavailable(f"building oneDNN's convolutions failed: {first.strip()}")
    os.replace(partial, target)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return target
