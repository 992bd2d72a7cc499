"""The model zoo: exact parameter counts from the papers, forward and gradient."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from cnn_jax import layers, models, summary
from cnn_jax.models import alexnet, lenet
from cnn_jax.ops import lecture_conv

from conftest import abstract_variables, random_variables
from helpers import ROOT

# Parameters with the paper's classes and input size (see the issue and README).
EXPECTED_PARAMS = {
    # LeNet-1: C1 4 * (25 + 1), S2 4 * 2, C3 20 kernels * 25 + 12, S4 12 * 2,
    # output 192 * 10 + 10: LeCun et al. 1990's "2,578 independent parameters".
    "lenet1": 2_578,
    # LeNet-4: C1 4 * 26, S2 8 * 2, C3 64 * 25 + 16, S4 16 * 2, C5 600 * 25 + 120,
    # output 120 * 10 + 10 (the paper: "about 17,000"; see lenet.py).
    "lenet4": 18_098,
    "lenet5": 60_000,
    "lenet5_modern": 61_706,
    # 32*32*300 + 300 + 300*100 + 100 + 100*10 + 10
    "mlp": 338_610,
    "alexnet": 60_965_224,
    "alexnet_tv": 61_100_840,
    "vgg_a": 132_863_336,
    "vgg_a_lrn": 132_863_336,
    "vgg_b": 133_047_848,
    "vgg_c": 133_638_952,
    "vgg_d": 138_357_544,
    "vgg_e": 143_667_240,
    "googlenet_tv": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    "allcnn_c": 1_369_738,
    # The reference implementation's counts (efficientnet-lite-pytorch 0.1.0;
    # lite0's is also the weights file's: its 296 tensors less the statistics).
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096,
    "efficientnet_lite4": 13_006_568,
}

DESIGN_NAMES = [
    "lenet1",
    "lenet4",
    "lenet5",
    "lenet5_modern",
    "mlp",
    "standard",
    "alexnet",
    "alexnet_tv",
    "vgg_a",
    "vgg_a_lrn",
    "vgg_b",
    "vgg_c",
    "vgg_d",
    "vgg_e",
    "googlenet",
    "googlenet_tv",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "allcnn_c",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_lite3",
    "efficientnet_lite4",
    "fcn32s_vgg16",
    "fcn16s_vgg16",
    "fcn8s_vgg16",
    "fcn8s_resnet18",
    "fcn8s_efficientnet_lite0",
    "unet",
    "unet_small",
    "centernet_resnet18",
    "centernet_efficientnet_lite0",
]


def test_registry_names_and_aliases():
  assert sorted(models.names()) == sorted(DESIGN_NAMES)
  for alias, name in [
      ("vgg11", "vgg_a"),
      ("vgg13", "vgg_b"),
      ("vgg16", "vgg_d"),
      ("vgg19", "vgg_e"),
  ]:
    assert models.create(alias) == models.create(name)
  with pytest.raises(KeyError, match="unknown model 'resnet9'.*resnet18"):
    models.create("resnet9")
  with pytest.raises(KeyError) as error:
    models.spec("resnet9")
  assert str(error.value).startswith("unknown model 'resnet9'")  # not a quoted repr


@functools.cache
def paper_summary(name: str) -> summary.Summary:
  """A model's summary at its paper's input size, traced once per process.

  The parameter counts below and the README's model table share it: tracing
  every model (resnet1202 alone takes 10 s) was this file's and
  test_readme.py's largest cost.
  """
  spec = models.spec(name)
  return summary.summarize(models.create(name), (spec.image_size, spec.image_size, spec.channels))


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count_matches_paper(name):
  assert paper_summary(name).total_params == EXPECTED_PARAMS[name]


def test_readme_model_table_lists_every_model_with_its_counts():
  rows = re.findall(
      r"^\| `(\w+)`[^|]*\|[^|]*\|[^|]*\| ([\d,]+)[^|]*\| ([\d.]+) ([MG])",
      (ROOT / "README.md").read_text(),
      re.MULTILINE,
  )
  assert sorted(row[0] for row in rows) == sorted(models.names())
  for name, count, macs, unit in rows:
    s = paper_summary(name)
    assert s.total_params == int(count.replace(",", "")), name
    scale = 1e9 if unit == "G" else 1e6
    assert round(s.total_macs / scale, 3 if unit == "G" else 2) == float(macs), name


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_cifar_resnet_projection_shortcuts_add_2752(depth):
  name = f"resnet{depth}"
  a = paper_summary(name).total_params
  b = layers.num_params(abstract_variables(name, shortcut="B")["params"])
  assert b - a == 2_752
  if depth == 20:
    assert b == 272_474


def googlenet_table1_params(branch3_kernel=5):
  """An independent count from the columns of the paper's Table 1 (conv + bias)."""

  def conv(k, cin, cout):
    return k * k * cin * cout + cout

  total = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192)
  table1 = [  # depth in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
      (192, 64, 96, 128, 16, 32, 32),
      (256, 128, 128, 192, 32, 96, 64),
      (480, 192, 96, 208, 16, 48, 64),
      (512, 160, 112, 224, 24, 64, 64),
      (512, 128, 128, 256, 24, 64, 64),
      (512, 112, 144, 288, 32, 64, 64),
      (528, 256, 160, 320, 32, 128, 128),
      (832, 256, 160, 320, 32, 128, 128),
      (832, 384, 192, 384, 48, 128, 128),
  ]
  for cin, n1, r3, n3, r5, n5, pp in table1:
    total += (
        conv(1, cin, n1)
        + conv(1, cin, r3)
        + conv(3, r3, n3)
        + conv(1, cin, r5)
        + conv(branch3_kernel, r5, n5)
        + conv(1, cin, pp)
    )
  return total + 1024 * 1000 + 1000


def test_googlenet_matches_table1_count():
  counted = paper_summary("googlenet").total_params
  assert counted == googlenet_table1_params() == 6_998_552


def test_googlenet_aux_classifiers():
  model = models.create("googlenet", num_classes=7, aux_logits=True)
  x = jnp.zeros((2, 224, 224, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  logits, state = jax.eval_shape(
      lambda v: model.apply(
          v, x, train=True, mutable=["aux_logits"], rngs={"dropout": jax.random.key(1)}
      ),
      variables,
  )
  assert logits.shape == (2, 7)
  assert {k: v[0].shape for k, v in state["aux_logits"].items()} == {"4a": (2, 7), "4d": (2, 7)}

  # Each aux head: 1x1 conv to 128, FC 2048 -> 1024, FC 1024 -> classes.
  def head(cin):
    return cin * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 7 + 7

  base = layers.num_params(abstract_variables("googlenet", num_classes=7)["params"])
  assert layers.num_params(variables["params"]) == base + head(512) + head(528)


# Real forward and backward passes at reduced sizes, one or more per family.
SMALL = {
    "lenet1": 28,
    "lenet4": 32,
    "lenet5": 32,
    "lenet5_modern": 32,
    "mlp": 32,
    "standard": 32,
    "alexnet": 227,
    "alexnet_tv": 64,
    "vgg_a": 32,
    "googlenet": 64,
    "resnet18": 32,
    "resnet50": 32,
    "resnet20": 32,
    "allcnn_c": 32,
    "efficientnet_lite0": 32,
}
# The rest are the same code with other widths or more blocks (or VGG's
# 100M-parameter classifier); they are checked abstractly: shapes and dtypes
# of the logits and of every gradient.
ABSTRACT = {
    "vgg_a_lrn": 32,
    "vgg_b": 32,
    "vgg_c": 32,
    "vgg_d": 32,
    "vgg_e": 32,
    "googlenet_tv": 64,
    "resnet34": 32,
    "resnet101": 32,
    "resnet152": 32,
    "resnet32": 32,
    "resnet44": 32,
    "resnet56": 32,
    "resnet110": 32,
    "efficientnet_lite1": 32,
    "efficientnet_lite2": 32,
    "efficientnet_lite3": 32,
    "efficientnet_lite4": 32,
}
# resnet1202 is resnet110's code with n = 200 instead of 18; tracing its
# backward pass alone takes 40 s, so it gets the abstract forward pass (and its
# exact count above) while resnet110 covers the gradient of those blocks.
FORWARD_ONLY = {"resnet1202": 32}


def _loss_and_grad(model, variables, x, labels):
  def loss_fn(params):
    logits, _ = model.apply(
        {**variables, "params": params},
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.key(2)},
    )
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1)), logits

  return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])


# Per-pixel logits: their forward checks are in test_segmentation_models.py.
SEGMENTATION = [n for n in DESIGN_NAMES if n.startswith(("fcn", "unet"))]
# Detection maps: test_centernet.py.
DETECTION = [n for n in DESIGN_NAMES if n.startswith("centernet")]


def test_every_model_is_covered_by_a_forward_check():
  covered = {**SMALL, **ABSTRACT, **FORWARD_ONLY}
  assert sorted([*covered, *SEGMENTATION, *DETECTION]) == sorted(DESIGN_NAMES)


def test_resnet1202_forward_shape():
  # Its abstract forward pass is the summary's trace, shared with its counts
  # (a trace of its own took 10 s); resnet110, the same code, checks dtypes.
  head = paper_summary("resnet1202").rows[-1]
  assert (head.name, head.kind, head.output_shape) == ("fc", "Dense", (10,))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_and_gradient(name):
  spec = models.spec(name)
  model = models.create(name, num_classes=5)
  size = SMALL[name]
  x = np.random.default_rng(0).standard_normal((2, size, size, spec.channels), np.float32)
  variables = random_variables(abstract_variables(name, size, num_classes=5))
  labels = jnp.array([1, 3])
  (loss, logits), grads = jax.jit(functools.partial(_loss_and_grad, model))(variables, x, labels)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert np.isfinite(float(loss))
  assert jax.tree.structure(grads) == jax.tree.structure(variables["params"])
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  # The loss reaches every layer: a gradient that is zero everywhere would mean
  # a disconnected parameter.
  assert sum(float(np.abs(g).sum()) > 0 for g in leaves) == len(leaves)


@pytest.mark.parametrize("name", ["lenet5_modern", "resnet20", "googlenet_tv"])
def test_bfloat16_compute_keeps_float32_params_and_stats(name):
  spec = models.spec(name)
  model = models.create(name, dtype=jnp.bfloat16)
  x = jnp.ones((2, spec.image_size, spec.image_size, spec.channels))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert logits.dtype == jnp.float32
  # The convolutions themselves run in bfloat16.
  jaxpr = str(
      jax.make_jaxpr(lambda v: model.apply(v, x))(
          jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables)
      )
  )
  assert "conv_general_dilated" in jaxpr and "bf16[2," in jaxpr


def test_named_intermediates_can_be_captured():
  model = models.create("resnet18")
  x = jnp.zeros((1, 32, 32, 3))
  _, state = jax.eval_shape(
      lambda v: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
      abstract_variables("resnet18", 32),
  )
  inter = state["intermediates"]
  assert inter["conv1"]["__call__"][0].shape == (1, 16, 16, 64)
  assert inter["layer4_1"]["__call__"][0].shape == (1, 1, 1, 512)
  assert inter["layer4_1"]["act_out"]["__call__"][0].shape == (1, 1, 1, 512)


def test_batch_norm_updates_statistics_only_in_training():
  model = models.create("standard", widths=(4,), convs_per_stage=1, fc_widths=(), batch_norm=True)
  x = np.random.default_rng(0).standard_normal((4, 8, 8, 3), np.float32) * 3 + 1
  variables = model.init(jax.random.key(1), x)
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  conv = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])[1][
      "intermediates"
  ]["conv1_1"]["__call__"][0]
  # The running mean moves 10% of the way to the batch mean (PyTorch's momentum 0.1).
  np.testing.assert_allclose(
      updated["batch_stats"]["conv1_1_bn"]["mean"],
      0.1 * np.asarray(conv).mean(axis=(0, 1, 2)),
      rtol=1e-5,
  )
  # Evaluation uses the running statistics and changes nothing.
  logits, state = model.apply(variables, x, mutable=["batch_stats"])
  assert jax.tree.all(jax.tree.map(np.array_equal, state["batch_stats"], variables["batch_stats"]))


def test_dropout_is_active_only_in_training():
  model = models.create("standard", widths=(4,), convs_per_stage=1, dropout=0.5)
  x = np.random.default_rng(0).standard_normal((2, 8, 8, 3), np.float32)
  variables = model.init(jax.random.key(1), x)
  apply = jax.jit(model.apply, static_argnames="train")
  train_a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  train_b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(train_a, train_b)
  np.testing.assert_array_equal(apply(variables, x), apply(variables, x))


def test_lenet5_rbf_output_is_negative_squared_distance():
  centres = lenet.digit_rbf_centres()
  assert centres.shape == (10, 84) and set(np.unique(centres)) == {-1.0, 1.0}
  assert len({c.tobytes() for c in centres}) == 10
  model = models.create("lenet5")
  x = jax.random.normal(jax.random.key(0), (3, 32, 32, 1))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  assert "output" not in variables["params"]  # the centres are fixed constants
  logits, state = jax.jit(
      functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"])
  )(variables, x)
  f6 = np.asarray(state["intermediates"]["F6_act"]["__call__"][0])
  expected = -((f6[:, None, :] - centres[None]) ** 2).sum(-1)
  np.testing.assert_allclose(logits, expected, rtol=1e-5)


def test_lenet5_rbf_codes_are_distinct_7x12_digit_bitmaps():
  centres = lenet.digit_rbf_centres()
  assert centres.shape == (10, 84) and set(np.unique(centres)) == {-1.0, 1.0}
  bitmaps = centres.reshape(10, 12, 7)  # 12 rows of 7 pixels
  picture = "\n".join(
      " ".join("".join("#" if v > 0 else "." for v in bitmaps[d, row]) for d in range(10))
      for row in range(12)
  )
  print(picture)  # pytest -s: the digits 0 to 9, side by side
  # The codes are exactly the bitmaps drawn in lenet.py, read row by row.
  assert picture == lenet._DIGIT_BITMAPS.strip()
  # Pairwise distinct; the closest pair, 3 and 8, differs in 9 of 84 pixels.
  hamming = (bitmaps.reshape(10, 1, 84) != bitmaps.reshape(1, 10, 84)).sum(-1)
  off_diagonal = hamming[~np.eye(10, dtype=bool)]
  assert off_diagonal.min() == 9 and hamming[3, 8] == 9
  # Every digit has ink and background, and no code is another's negative.
  assert all(0 < (bitmaps[d] > 0).sum() < 84 for d in range(10))
  assert off_diagonal.max() < 84


def test_the_family_says_which_models_have_rbf_outputs():
  # What the paper's losses (config.loss "rbf_mse", "rbf_map") need.
  assert [n for n in models.names() if models.has_rbf_output(n, models.create(n))] == ["lenet5"]
  assert not models.has_rbf_output("lenet5", models.create("lenet5", output="dense", f6=84))


def test_lenet5_c3_follows_the_connection_table():
  assert sum(len(c) for c in lenet.C3_CONNECTIONS) == 60
  conv = lenet.PartialConv()
  x = jax.random.normal(jax.random.key(0), (1, 14, 14, 6))
  params = conv.init(jax.random.key(1), x)
  assert params["params"]["kernel"].shape == (5, 5, 60)
  for j, inputs in enumerate(lenet.C3_CONNECTIONS):
    grad = jax.grad(lambda x: conv.apply(params, x)[..., j].sum())(x)
    reads = [i for i in range(6) if float(jnp.abs(grad[..., i]).sum()) > 0]
    assert tuple(reads) == tuple(sorted(inputs)), j


def test_lenet1_and_lenet4_read_the_maps_of_their_tables():
  # Kernels per table: LeNet-1's C3 20 (4 maps read one S2 map, 8 read two),
  # LeNet-4's C3 64 (4 of 8 S2 maps each) and C5 600 (5 of 16 S4 maps each).
  assert [len(t) for t in lenet.LENET1_C3_CONNECTIONS] == [1] * 4 + [2] * 8
  assert all(len(t) == 4 for t in lenet.LENET4_C3_CONNECTIONS)
  assert len(lenet.LENET4_C3_CONNECTIONS) == 16 and len(lenet.LENET4_C5_CONNECTIONS) == 120
  assert lenet.LENET4_C5_CONNECTIONS[14] == (0, 1, 2, 14, 15)  # 14, ..., 18 mod 16
  # LeNet-4's S2 has two maps per C1 map, each with its own coefficient and bias:
  # S2 map m reads C1 map m // 2 only.
  s2 = lenet.Subsampling(maps_per_input=2)
  x = jax.random.normal(jax.random.key(0), (1, 28, 28, 4))
  variables = s2.init(jax.random.key(1), x)
  assert variables["params"]["coefficient"].shape == (8,)
  for m in range(8):
    grad = jax.grad(lambda x: s2.apply(variables, x)[..., m].sum())(x)
    assert [i for i in range(4) if float(jnp.abs(grad[..., i]).sum()) > 0] == [m // 2]


@pytest.mark.parametrize(
    "conv_impl,dtype,tolerance",
    [
        ("lecture", "float32", 1e-4),
        # im2col + GEMM adds up in another order than XLA's convolution. With
        # batch norm over two examples the float32 gradients are ill-conditioned
        # enough for that alone to move them by 3e-4, so the math is compared in
        # float64, where the two agree to 4e-12.
        ("gemm", "float64", 1e-9),
        # conv_impl="auto" (the default) computes some input gradients as
        # matrix product + col2im: other sums again, so float64 too.
        ("auto", "float64", 1e-9),
        # oneDNN computes float32 only, its sums in its own order: measured up
        # to 2.8e-4 here (the batch-norm net; gemm's float32 sums: 3.6e-4).
        ("onednn", "float32", 1e-3),
    ],
)
def test_every_conv_impl_trains_every_model_family_the_same(conv_impl, dtype, tolerance):
  # Same parameters, same batch: gradients under conv_impl="lecture" (the
  # lecture's backward pass), "gemm" (im2col + matrix product), "auto"
  # (col2im input gradients) and "onednn" (oneDNN's kernels) equal XLA's.
  small_cnn = dict(widths=(4, 8), fc_widths=(16,), batch_norm=True, downsampling="stride")
  # A two-tower AlexNet in miniature: grouped convs and per-tower LRN.
  small_alexnet = dict(
      convs=(
          alexnet.ConvSpec(8, 3, stride=2, lrn=True, pool=True),
          alexnet.ConvSpec(8, 3, padding=1, groups=2, lrn=True),
      ),
      check_geometry=False,
      fc_width=16,
  )
  with jax.enable_x64(dtype == "float64"):
    for name, size, options in [
        ("lenet5", 32, {}),
        ("standard", 8, small_cnn),
        ("alexnet", 15, small_alexnet),
    ]:
      spec = models.spec(name)
      x = np.random.default_rng(0).standard_normal((2, size, size, spec.channels)).astype(dtype)
      xla = models.create(name, num_classes=4, conv_impl="xla", dtype=jnp.dtype(dtype), **options)
      other = models.create(
          name, num_classes=4, conv_impl=conv_impl, dtype=jnp.dtype(dtype), **options
      )
      variables = jax.tree.map(
          lambda v: np.asarray(v, dtype),
          random_variables(abstract_variables(name, size, num_classes=4, **options)),
      )
      labels = jnp.array([0, 3])
      (_, logits_a), grads_a = jax.jit(functools.partial(_loss_and_grad, xla))(variables, x, labels)
      (_, logits_b), grads_b = jax.jit(functools.partial(_loss_and_grad, other))(
          variables, x, labels
      )
      np.testing.assert_allclose(logits_a, logits_b, rtol=tolerance / 10, atol=tolerance / 10)
      for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        assert a.dtype == jnp.dtype(dtype)
        a, b = np.asarray(a), np.asarray(b)  # host math: no compile per leaf shape
        scale = float(np.abs(a).max()) or 1.0
        assert float(np.abs(a - b).max()) / scale < tolerance, name


# The MLP has no convolution to replace. Of the segmentation nets, one FCN
# (its convolutions are its backbone's, each checked here) and one U-Net;
# CenterNet's are its backbone's and 1x1/3x3 ones like FCN's.
@pytest.mark.parametrize(
    "name",
    [n for n in DESIGN_NAMES if n not in [*FORWARD_ONLY, *SEGMENTATION, *DETECTION, "mlp"]]
    + ["fcn8s_resnet18", "unet_small"],
)
def test_every_model_accepts_the_lecture_conv(name):
  spec = models.spec(name)
  size = ABSTRACT.get(name) or SMALL.get(name) or 64
  model = models.create(name, conv_impl="lecture", num_classes=5)
  x = jnp.zeros((2, size, size, spec.channels))
  # The default convolution's variables (traced once for this file's tests):
  # the lecture's convolution is a drop-in with the same parameters.
  variables = abstract_variables(name, size, num_classes=5)
  # A training step's loss and gradients, traced once: for the ABSTRACT
  # models (SMALL's with other widths or more blocks) this is their check of
  # the logits' and every gradient's shape and dtype; SMALL's representative
  # of each family computes them for real with the default convolution.
  if name in SEGMENTATION:  # per-pixel logits: the gradient of their sum
    traced, grads = jax.make_jaxpr(
        lambda v: jax.grad(lambda p: model.apply({**v, "params": p}, x).sum())(v["params"]),
        return_shape=True,
    )(variables)
  else:
    traced, ((loss, logits), grads) = jax.make_jaxpr(
        functools.partial(_loss_and_grad, model), return_shape=True
    )(variables, x, jnp.array([1, 3]))
    assert logits.shape == (2, 5) and loss.shape == ()
  assert jax.tree.map(lambda g: (g.shape, g.dtype), grads) == jax.tree.map(
      lambda p: (p.shape, p.dtype), variables["params"]
  )
  # The convolutions really go through the lecture's custom VJP: the traced
  # step calls its backward pass (found in the step itself; a second,
  # forward-only trace cost a fifth of this test's time).
  assert lecture_conv._lecture_conv_bwd.__name__ in _custom_vjp_backward_names(traced.jaxpr)


def _custom_vjp_backward_names(jaxpr) -> set[str]:
  """Names of the backward functions of the custom VJPs a jaxpr calls, at any depth."""
  names = set()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "custom_vjp_call":
      names.add(eqn.params["bwd"].__name__)
    for inner in jax_core.jaxprs_in_params(eqn.params):
      names |= _custom_vjp_backward_names(inner)
  return names


def test_lenet5_uses_the_papers_initialization():
  params = jax.jit(models.create("lenet5").init)(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  params = params["params"]
  # Uniform in +-2.4 / F_i: C1 F_i = 25, C5 F_i = 400, F6 F_i = 120; C3 per map.
  for layer, fan_in in [("C1", 25), ("C5", 400), ("F6", 120)]:
    kernel = np.abs(np.asarray(params[layer]["kernel"]))
    assert kernel.max() <= 2.4 / fan_in and kernel.max() > 0.9 * 2.4 / fan_in, layer
  c3 = np.abs(np.asarray(params["C3"]["kernel"]))
  assert c3.max() <= 2.4 / 75 and c3[..., :18].max() > 0.9 * 2.4 / 75
  # Subsampling units: 4 inputs (the 2x2 window) share their map's coefficient,
  # F_i = 4: coefficients uniform in +-0.6, one per map, biases 0.
  coefficients = np.concatenate([params[s]["coefficient"] for s in ("S2", "S4")])
  assert coefficients.shape == (22,) and len(set(coefficients.tolist())) == 22
  assert np.abs(coefficients).max() <= 0.6 and np.abs(coefficients).max() > 0.8 * 0.6
  assert (coefficients < 0).any() and (coefficients > 0).any()
  assert not np.any(params["S2"]["bias"]) and not np.any(params["S4"]["bias"])


def test_unshared_convs_have_a_filter_per_position_and_equal_a_conv_when_tied():
  # widths (4,), one 3x3 conv at 8x8 "same", 2x2 max pool, output from 4*4*4.
  kwargs = dict(widths=(4,), convs_per_stage=1, fc_widths=(), num_classes=3)
  x = np.random.default_rng(0).standard_normal((2, 8, 8, 2), np.float32)
  shared = models.create("standard", **kwargs)
  local = models.create("standard", shared_weights=False, **kwargs)
  conv_vars = shared.init(jax.random.key(0), x)
  local_vars = local.init(jax.random.key(0), x)
  local_params = local_vars["params"]["conv1_1"]
  assert local_params["kernel"].shape == (8, 8, 3 * 3 * 2, 4)  # one filter per position
  assert local_params["bias"].shape == (8, 8, 4)
  output_params = 4 * 4 * 4 * 3 + 3
  assert layers.num_params(local_vars["params"]) == 64 * (18 * 4 + 4) + output_params
  assert layers.num_params(conv_vars["params"]) == 18 * 4 + 4 + output_params
  # Every position given the conv's filter: the two networks are the same function.
  # ConvLocal flattens a patch channel-first: (C, kh, kw), not HWIO's (kh, kw, C).
  kernel = conv_vars["params"]["conv1_1"]["kernel"].transpose(2, 0, 1, 3).reshape(1, 1, 18, 4)
  tied = {
      "params": {
          **conv_vars["params"],
          "conv1_1": {
              "kernel": jnp.broadcast_to(kernel, (8, 8, 18, 4)),
              "bias": jnp.broadcast_to(conv_vars["params"]["conv1_1"]["bias"], (8, 8, 4)),
          },
      }
  }
  np.testing.assert_allclose(local.apply(tied, x), shared.apply(conv_vars, x), atol=1e-5)
  # The same receptive fields: as many multiply-accumulates as the conv.
  assert (
      summary.summarize(local, (8, 8, 2)).total_macs
      == summary.summarize(shared, (8, 8, 2)).total_macs
      == 8 * 8 * 18 * 4 + 4 * 4 * 4 * 3
  )
  with pytest.raises(ValueError, match="no locally connected form"):
    models.create("standard", shared_weights=False, conv_impl="lecture", **kwargs).init(
        jax.random.key(0), x
    )


def test_plain_resnet_block_is_the_residual_block_without_its_identity():
  conv = functools.partial(nn.Conv, use_bias=False)
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  x = np.random.default_rng(0).standard_normal((2, 6, 6, 4), np.float32)
  block = functools.partial(models.resnet.BasicBlock, 4, 1, conv=conv, norm=norm)
  variables = block(shortcut="A").init(jax.random.key(0), x)
  params, stats = variables["params"], variables["batch_stats"]

  def conv_bn(y, i):  # running mean 0 and variance 1 at init
    y = jax.lax.conv_general_dilated(
        y,
        params[f"conv{i}"]["kernel"],
        (1, 1),
        [(1, 1)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    scale = params[f"bn{i}"]["scale"] / jnp.sqrt(stats[f"bn{i}"]["var"] + 1e-5)
    return (y - stats[f"bn{i}"]["mean"]) * scale + params[f"bn{i}"]["bias"]

  residual = conv_bn(jax.nn.relu(conv_bn(x, 1)), 2)
  np.testing.assert_allclose(
      block(shortcut="none").apply(variables, x), jax.nn.relu(residual), atol=1e-5
  )
  np.testing.assert_allclose(
      block(shortcut="A").apply(variables, x), jax.nn.relu(residual + x), atol=1e-5
  )
  # Option A shortcuts have no parameters: a plain net has as many.
  assert layers.num_params(abstract_variables("resnet56", shortcut="none")["params"]) == (
      EXPECTED_PARAMS["resnet56"]
  )


def test_unknown_options_are_clear_errors():
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match=r"expects images as \(N, H, W, C\).*x\[\.\.\., None\]"):
    models.create("resnet20").init(jax.random.key(0), jnp.zeros((2, 32, 32)))
  with pytest.raises(ValueError, match="kernel_size >= 3"):
    models.create("standard", kernel_size=1, downsampling="stride").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="unknown conv_impl 'fft'"):
    models.create("resnet20", conv_impl="fft").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="shortcut='C'"):
    models.create("resnet20", shortcut="C").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="6n\\+2"):
    models.resnet.cifar_resnet(21)
  with pytest.raises(ValueError, match="unknown activation 'swish'"):
    models.create("standard", activation="swish").init(jax.random.key(0), x)
