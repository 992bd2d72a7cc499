"""torchvision weights: our models equal torchvision's number for number, and the
state-dict reader is exact and safe. (torch and torchvision are dev dependencies.)"""

import collections
import io
import pickle
import pickletools
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from cnn_jax import models
from cnn_jax.transfer.state_dict import StateDictError, load_state_dict
from cnn_jax.transfer.torchvision_weights import WeightMismatchError, from_torchvision
from cnn_jax.visualize import probe

# Our name, torchvision's constructor, an input size that exercises every
# layer quickly (the adaptive pools make smaller inputs valid in both).
TORCHVISION = {
    "resnet18": (torchvision.models.resnet18, 64),
    "resnet34": (torchvision.models.resnet34, 64),
    "resnet50": (torchvision.models.resnet50, 64),
    "resnet101": (torchvision.models.resnet101, 64),
    "resnet152": (torchvision.models.resnet152, 64),
    "vgg11": (torchvision.models.vgg11, 64),
    "vgg13": (torchvision.models.vgg13, 64),
    "vgg16": (torchvision.models.vgg16, 64),
    "vgg19": (torchvision.models.vgg19, 64),
    "alexnet_tv": (torchvision.models.alexnet, 127),
    "googlenet_tv": (
        lambda: torchvision.models.googlenet(
            init_weights=True, aux_logits=False, transform_input=False
        ),
        64,
    ),
}


def torch_model(name: str, seed: int = 0) -> torch.nn.Module:
  """torchvision's model in eval mode with random weights and batch-norm statistics."""
  torch.manual_seed(seed)
  model = TORCHVISION[name][0]().eval()
  with torch.no_grad():  # statistics that are not 0 and 1, so their conversion shows
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
  return model


def nhwc(x: torch.Tensor) -> jnp.ndarray:
  return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_logits_equal_torchvision(name):
  size = TORCHVISION[name][1]
  reference = torch_model(name)
  x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    expected = reference(x).numpy()
  ours = models.create(name, num_classes=1000)
  variables = from_torchvision(name, reference.state_dict())
  logits = np.asarray(jax.jit(lambda v, x: ours.apply(v, x, train=False))(variables, nhwc(x)))
  assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_resnet50_matches_stage_by_stage():
  reference = torch_model("resnet50")
  ours = models.create("resnet50", num_classes=1000)
  variables = from_torchvision("resnet50", reference.state_dict())
  x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    stages = {"maxpool": reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))}
    h = stages["maxpool"]
    for ours_name, theirs in [
        ("layer1_2", reference.layer1),
        ("layer2_3", reference.layer2),
        ("layer3_5", reference.layer3),
        ("layer4_2", reference.layer4),
    ]:
      h = theirs(h)
      stages[ours_name] = h
  for layer, expected in stages.items():
    _, activation = probe.apply_with_layer(ours, variables, nhwc(x), layer)
    expected = expected.numpy().transpose(0, 2, 3, 1)
    assert np.abs(np.asarray(activation) - expected).max() <= 1e-4 * np.abs(expected).max(), layer


def test_mismatched_weights_are_listed_never_loaded_in_part():
  state = torch_model("resnet18").state_dict()
  with pytest.raises(WeightMismatchError, match=r"not in the weights: .*layer1_2/"):
    from_torchvision("resnet34", state)
  state["extra.weight"] = torch.zeros(3, 3)
  with pytest.raises(WeightMismatchError, match=r"not in the model: .*extra/kernel"):
    from_torchvision("resnet18", state)
  with pytest.raises(ValueError, match="no torchvision weights map for 'lenet5'"):
    from_torchvision("lenet5", {})


def test_classes_follow_the_file_and_the_dense_layer_after_flatten_is_permuted():
  reference = torchvision.models.alexnet(num_classes=7).eval()
  variables = from_torchvision("alexnet_tv", reference.state_dict())
  assert variables["params"]["head"]["fc8"]["kernel"].shape == (4096, 7)
  fc6 = reference.state_dict()["classifier.1.weight"].numpy()  # (4096, 256 * 6 * 6), C-major
  # Our row for (h, w, c) is their column c * 36 + h * 6 + w.
  ours = variables["params"]["head"]["fc6"]["kernel"]
  h, w, c = 2, 5, 17
  np.testing.assert_array_equal(ours[(h * 6 + w) * 256 + c], fc6[:, c * 36 + h * 6 + w])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_state_dict_reader_equals_torch_load(tmp_path, zip_format):
  path = tmp_path / "weights.pth"
  state = torch_model("resnet18").state_dict()
  state["transposed"] = torch.arange(12.0).reshape(3, 4).t()  # a strided view
  state["half"] = torch.ones(3, dtype=torch.float16)
  state["bfloat16"] = torch.linspace(-2, 2, 5, dtype=torch.bfloat16)
  state["offset"] = torch.arange(10.0)[3:7]  # a view into shared storage
  state["int"] = torch.tensor(7, dtype=torch.int64)  # a 0-d tensor
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  assert zipfile.is_zipfile(path) == zip_format
  ours = load_state_dict(str(path))
  reference = torch.load(path, weights_only=True)
  assert list(ours) == list(reference)
  for key, value in reference.items():
    expected = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    np.testing.assert_array_equal(np.asarray(ours[key], expected.dtype), expected)
  assert str(ours["bfloat16"].dtype) == "bfloat16"


def _forged_state_dict(path, tensors):
  """A zip-format .pth whose tensors {name: (size, stride)} all view one 4-float storage."""
  marker = object()

  class Pickler(pickle.Pickler):

    def persistent_id(self, obj):
      return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is marker else None

  class Forged:

    def __init__(self, size, stride):
      self.size, self.stride = size, stride

    def __reduce__(self):
      return (
          torch._utils._rebuild_tensor_v2,
          (marker, 0, self.size, self.stride, False, collections.OrderedDict()),
      )

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(
      collections.OrderedDict((name, Forged(*layout)) for name, layout in tensors.items())
  )
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("forged/data.pkl", buffer.getvalue())
    archive.writestr("forged/data/0", np.zeros(4, np.float32).tobytes())
  return str(path)


def test_state_dict_reader_refuses_views_outside_their_storage(tmp_path):
  path = _forged_state_dict(tmp_path / "forged.pth", {"w": ((5_000_000,), (1,))})
  with pytest.raises(StateDictError, match="'w'.*lies outside its 4-element storage"):
    load_state_dict(path)


def test_state_dict_reader_never_allocates_more_than_the_file_holds(tmp_path):
  # A stride-0 (expanded) view: 2**45 floats = 128 TiB from 16 stored bytes.
  expanded = _forged_state_dict(
      tmp_path / "expanded.pth", {"w": ((2**15, 2**15, 2**15), (0, 0, 0))}
  )
  with pytest.raises(StateDictError, match=r"'w'.*would expand the file's 16 stored bytes"):
    load_state_dict(expanded)
  # Many views of one storage, each within it, add up beyond it too.
  overlapping = _forged_state_dict(
      tmp_path / "overlapping.pth", {"w0": ((3,), (1,)), "w1": ((2,), (2,))}
  )
  with pytest.raises(StateDictError, match="'w1'.*would expand"):
    load_state_dict(overlapping)
  # The same view twice (tied weights) is one copy and reads.
  tied = _forged_state_dict(tmp_path / "tied.pth", {"a": ((4,), (1,)), "b": ((4,), (1,))})
  weights = load_state_dict(tied)
  assert weights["a"] is weights["b"] and weights["a"].shape == (4,)


def _legacy_file(path, tensors=None, edit=lambda parts: parts):
  """A legacy-format .pth of `tensors`, its five pickles and raw records passed through edit."""
  torch.save(tensors or {"w": torch.arange(4.0)}, path, _use_new_zipfile_serialization=False)
  data, parts, start = path.read_bytes(), [], 0
  for _ in range(5):  # magic, protocol, system info, the state dict, the storage keys
    end = _pickle_end(data, start)
    parts.append(data[start:end])
    start = end
  parts.append(data[start:])  # the raw records
  path.write_bytes(b"".join(edit(parts)))
  return str(path)


def _pickle_end(data: bytes, start: int) -> int:
  """Where the pickle that starts at `start` ends (after its STOP opcode), read, not run."""
  for opcode, _, position in pickletools.genops(io.BytesIO(data[start:])):
    if opcode.name == "STOP":
      return start + position + 1
  raise ValueError("no STOP opcode")


def test_legacy_state_dict_reader_refuses_damaged_and_hostile_files(tmp_path):
  class Exploit:

    def __reduce__(self):
      import os

      return (os.system, ("echo pwned",))

  def swap(index, payload):
    return lambda parts: parts[:index] + [payload] + parts[index + 1 :]

  record = np.int64(4).tobytes() + np.arange(4, dtype=np.float32).tobytes()
  cases = {
      # code in the state dict's pickle, or in a header pickle
      "code": (
          swap(3, pickle.dumps({"w": Exploit()}, protocol=2)),
          r"refusing to unpickle (posix|os)\.system",
      ),
      "code in the header": (
          swap(2, pickle.dumps(Exploit(), protocol=2)),
          r"refusing to unpickle (posix|os)\.system in a legacy header",
      ),
      # a record claiming 2**40 floats: refused before anything is allocated
      "forged count": (
          swap(5, np.int64(2**40).tobytes() + record[8:]),
          "claims 1,099,511,627,776 elements",
      ),
      "truncated": (swap(5, record[:20]), "the file is truncated or damaged"),
      "keys": (swap(4, pickle.dumps(["0", "1"], protocol=2)), "storage list does not match"),
      "big-endian": (swap(2, pickle.dumps({"little_endian": False}, protocol=2)), "big-endian"),
      "protocol": (swap(1, pickle.dumps(999, protocol=2)), "its protocol is 999, not 1001"),
  }
  for name, (edit, message) in cases.items():
    path = _legacy_file(tmp_path / f"{name}.pth", edit=edit)
    with pytest.raises(StateDictError, match=message):
      load_state_dict(path)
  intact = _legacy_file(tmp_path / "intact.pth")
  np.testing.assert_array_equal(load_state_dict(intact)["w"], np.arange(4.0))


def test_state_dict_reader_refuses_code_and_non_archives(tmp_path):
  class Exploit:

    def __reduce__(self):
      import os

      return (os.system, ("echo pwned",))

  path = tmp_path / "evil.pth"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("evil/data.pkl", pickle.dumps({"w": Exploit()}, protocol=2))
  with pytest.raises(StateDictError, match=r"refusing to unpickle (posix|os)\.system"):
    load_state_dict(str(path))
  not_zip = tmp_path / "old.pth"
  not_zip.write_bytes(b"\x80\x02}q\x00.")
  with pytest.raises(StateDictError, match="not a torch.save zip archive"):
    load_state_dict(str(not_zip))
  nested = tmp_path / "nested.pth"
  torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, nested)
  with pytest.raises(StateDictError, match="entry 'model' may be the state dict"):
    load_state_dict(str(nested))
  whole_model = tmp_path / "model.pth"
  torch.save(torch.nn.Linear(2, 2), whole_model)
  with pytest.raises(StateDictError, match="save model.state_dict"):
    load_state_dict(str(whole_model))
