"""Reading a PyTorch `torch.save` file into NumPy arrays, without torch and safely.

A `torch.save` file is a zip archive: `data.pkl` pickles the structure (an
OrderedDict of tensors), each tensor's bytes live in `data/<key>`. Unpickling
an arbitrary file can run any code, so we unpickle with an allow-list: an
OrderedDict, tensors and parameters (rebuilt as NumPy views of their storage),
and the storage types. Anything else in the pickle is refused with an error
naming it. With torch installed, `torch.load(..., weights_only=True)` applies
the same idea; this reader gives the same arrays (tested) and needs no torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from cnn_jax.errors import UserError

# torch storage class name -> NumPy dtype of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class StateDictError(UserError, ValueError):
  """A file that is not a readable torch state dict."""


class _Storage:
  """A storage reference, before its bytes are read."""

  def __init__(self, dtype, key: str):
    self.dtype, self.key = dtype, key


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  return ("tensor", storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
  del requires_grad, backward_hooks, unused
  return data


class _AllowListUnpickler(pickle.Unpickler):
  """Unpickles only the classes a state dict of tensors is made of."""

  def find_class(self, module: str, name: str):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    raise StateDictError(f"refusing to unpickle {module}.{name}: a state dict holds only "
                         "tensors (save model.state_dict(), not the model or other objects)")

  def persistent_load(self, pid):
    kind, storage_type, key, _, _ = pid
    if kind != "storage":
      raise StateDictError(f"unknown persistent record {kind!r}")
    return _Storage(storage_type, str(key))


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a file written by `torch.save(model.state_dict(), path)`.

  Args:
    path: the .pth / .pt file.

  Returns:
    {name: NumPy array} in the file's order (PyTorch layouts: OIHW kernels,
    (out, in) dense weights).

  Raises:
    StateDictError: for a file that is not a zip-format torch state dict, or
      whose pickle holds anything but tensors.
  """
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise StateDictError(f"{path} is not a torch.save zip archive ({e}); save it with "
                         "torch >= 1.6 (`torch.save(model.state_dict(), path)`)") from None
  with archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
      raise StateDictError(f"{path} has no data.pkl: not a torch.save archive")
    root = pickles[0][:-len("data.pkl")]
    try:
      structure = _AllowListUnpickler(io.BytesIO(archive.read(pickles[0]))).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
      if isinstance(e, StateDictError):
        raise
      raise StateDictError(f"{path}: unreadable pickle ({e})") from None
    if not isinstance(structure, dict):
      raise StateDictError(f"{path} holds a {type(structure).__name__}, not a state dict")
    blobs: dict[str, bytes] = {}
    copies: dict[tuple, np.ndarray] = {}
    # Bytes copied out so far may not exceed the bytes the file stores: a
    # forged stride of 0 (or views overlapping in one storage) would
    # otherwise make a small file expand into terabytes.
    budget = {"stored": 0, "copied": 0}

    def array(name: str, record: Any) -> np.ndarray:
      _, storage, offset, size, stride = record
      if storage.key not in blobs:
        blobs[storage.key] = archive.read(f"{root}data/{storage.key}")
        budget["stored"] += len(blobs[storage.key])
      flat = np.frombuffer(blobs[storage.key], dtype=storage.dtype)
      # The view must stay inside its storage: a forged size, stride or offset
      # would otherwise read memory beyond the file's bytes.
      last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
      if (offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride)
          or len(stride) != len(size) or (all(size) and last >= len(flat))):
        raise StateDictError(f"{path}: tensor {name!r} (size {size}, stride {stride}, offset "
                             f"{offset}) lies outside its {len(flat)}-element storage")
      identity = (storage.key, offset, tuple(size), tuple(stride))
      if identity in copies:  # tied weights: one copy
        return copies[identity]
      budget["copied"] += int(np.prod(size, dtype=np.int64)) * flat.itemsize
      if budget["copied"] > budget["stored"]:
        raise StateDictError(
            f"{path}: tensor {name!r} (size {size}, stride {stride}) would expand the "
            f"file's {budget['stored']:,} stored bytes into {budget['copied']:,}; a state dict "
            "saved by torch.save(model.state_dict()) never does: re-save it from the model")
      view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                             strides=[s * flat.itemsize for s in stride])
      copies[identity] = np.array(view)  # a copy: the file's buffer is not kept alive
      return copies[identity]

    tensors = {}
    for name, value in structure.items():
      if isinstance(value, tuple) and value and value[0] == "tensor":
        tensors[name] = array(name, value)
      elif isinstance(value, dict):
        raise StateDictError(f"{path} holds a dict of dicts: its entry {name!r} may be the "
                             f"state dict; save that entry alone")
      else:
        raise StateDictError(f"{path}: entry {name!r} is a {type(value).__name__}, not a "
                             "tensor; save model.state_dict() alone")
    return tensors
