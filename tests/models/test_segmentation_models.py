"""Segmentation models: FCN on zoo backbones (Long et al. 2015) and U-Net (Ronneberger et al.)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import introspection, layers, models, summary
from cnn_jax.errors import ArgumentError, GeometryError, UnknownLayerError
from cnn_jax.models import fcn

from conftest import abstract_init, abstract_variables

# Each backbone's output channels at strides 32, 16 and 8 (VGG's stride 32:
# fc7 as a convolution), from the papers' architecture tables.
FEATURE_CHANNELS = {
    "resnet18": (512, 256, 128),
    "efficientnet_lite0": (1280, 112, 40),
    "vgg16": (4096, 512, 256),
}
FCN_NAMES = [f"fcn{s}s_{b}" for b, s in fcn.REGISTERED]


def fcn_params(backbone: str, stride: int, classes: int = 21) -> int:
  """The count from the paper's layers: backbone + 1x1 score layers + upsampling kernels."""
  total = layers.num_params(abstract_variables(backbone, 64)["params"])
  fused = {32: 1, 16: 2, 8: 3}[stride]
  total += sum(c * classes + classes for c in FEATURE_CHANNELS[backbone][:fused])
  # (fused - 1) 4x4 x2-upsamplings, then one 2s x 2s, all classes x classes, no bias.
  return total + ((fused - 1) * 4**2 + (2 * stride) ** 2) * classes**2


def unet_params(width, depth, channels, classes, batch_norm=False) -> int:
  """The count from the paper's Figure 1, level by level."""

  def conv3(cin, cout):  # bias, or batch norm's scale and bias
    return 9 * cin * cout + (2 * cout if batch_norm else cout)

  total, cin = 0, channels
  for level in range(depth + 1):  # contracting path and bottom
    c = width * 2**level
    total += conv3(cin, c) + conv3(c, c)
    cin = c
  for level in reversed(range(depth)):
    c = width * 2**level
    total += 4 * cin * c + c  # 2x2 up-convolution, halving the filters
    total += conv3(2 * c, c) + conv3(c, c)  # on the concatenation with the skip
    cin = c
  return total + cin * classes + classes


def test_registered_segmentation_models():
  segmentation = [n for n in models.names() if models.family(n).name in ("fcn", "unet")]
  assert sorted(segmentation) == sorted([*FCN_NAMES, "unet", "unet_small"])
  for name in FCN_NAMES:
    spec = models.spec(name)
    assert (spec.image_size % 32, spec.channels, spec.num_classes) == (0, 3, 21)


@pytest.mark.parametrize("name", FCN_NAMES)
def test_fcn_shape_count_and_backbone_tree(name):
  variables, logits = abstract_init(name, 64)
  assert logits.shape == (1, 64, 64, 21) and logits.dtype == jnp.float32
  stride, backbone = re.fullmatch(r"fcn(\d+)s_(\w+)", name).groups()
  assert layers.num_params(variables["params"]) == fcn_params(backbone, int(stride))
  # The zoo model's own tree (ImageNet weights for it load into "backbone").
  zoo = abstract_variables(backbone, 64)
  assert set(variables) == set(zoo)
  for collection in zoo:
    assert variables[collection]["backbone"] == zoo[collection], collection
  # Fine-tuning's head: exactly the new layers, every one of them.
  paths = introspection.by_path(variables["params"])
  head = {p for p in paths if re.search(models.head_pattern(name), p)}
  assert head == {p for p in paths if not p.startswith("backbone/")}
  assert {p.split("/")[0] for p in head} <= set(fcn.HEAD_LAYERS)


@pytest.mark.parametrize("factor, size", [(2, 3), (8, 4), (32, 2)])
def test_transposed_conv_by_blocks_equals_laxs_with_its_gradients(factor, size):
  # A learned kernel (not the symmetric bilinear one: a flip would show) and
  # non-square maps; float64, so that only a wrong formula can differ.
  rng = np.random.default_rng(factor)
  x = rng.standard_normal((2, size, size + 1, 3))
  kernel = rng.standard_normal((2 * factor, 2 * factor, 3, 4))
  target = rng.standard_normal((2, (size + 1) * factor, (size + 2) * factor, 4))

  def lax_conv(x, kernel):
    layout = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_transpose(x, kernel, (factor, factor), "VALID", dimension_numbers=layout)

  def ours(x, kernel):
    return fcn.transposed_conv_by_blocks(x, kernel, factor)

  with jax.enable_x64():
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    assert x.dtype == kernel.dtype == jnp.float64
    np.testing.assert_allclose(ours(x, kernel), lax_conv(x, kernel), rtol=1e-12, atol=1e-12)
    grads = [
        jax.grad(lambda x, k: ((f(x, k) - target) ** 2).sum(), argnums=(0, 1))(x, kernel)
        for f in (ours, lax_conv)
    ]
    for a, b in zip(*grads):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-10)


def test_bilinear_transposed_conv_is_bilinear_upsampling():
  x = np.random.default_rng(0).standard_normal((2, 4, 5, 3)).astype(np.float32)
  for factor in (2, 8):
    up = fcn.BilinearUpsampling(3, factor)
    variables = up.init(jax.random.key(0), x)
    y = np.asarray(up.apply(variables, x))
    assert y.shape == (2, 4 * factor, 5 * factor, 3)
    # = jax.image.resize's bilinear (half-pixel centres) of the zero-padded
    # input, cropped: the 2f x 2f kernel, stride f, is its triangle filter.
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    resized = jax.image.resize(padded, (2, 6 * factor, 7 * factor, 3), "bilinear")
    np.testing.assert_allclose(y, resized[:, factor:-factor, factor:-factor], atol=1e-5)
    # In the interior that is the resize of x itself; within f/2 pixels of
    # the border the resize repeats the edge where the conv sees zeros.
    plain = np.asarray(jax.image.resize(x, y.shape, "bilinear"))
    inner = np.s_[:, factor // 2 : -(factor // 2), factor // 2 : -(factor // 2)]
    np.testing.assert_allclose(y[inner], plain[inner], atol=1e-5)
    assert not np.allclose(y[:, 0], plain[:, 0], atol=1e-2)
    # Each channel upsamples itself only (the paper's per-class interpolation).
    kernel = np.asarray(variables["params"]["kernel"])
    assert not kernel[:, :, 0, 1].any() and np.allclose(kernel[:, :, 0, 0], kernel[:, :, 2, 2])


def test_fcn8s_starts_at_zero_skips_the_classifier_and_trains_the_backbone():
  model = models.create("fcn8s_resnet18", num_classes=3)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  params = variables["params"]
  for layer, factor in [("up_32to16", 2), ("up_16to8", 2), ("up_8to1", 8)]:
    np.testing.assert_array_equal(params[layer]["kernel"], fcn.bilinear_kernel(factor, 3))
  compiled = jax.jit(model.apply).lower(variables, x).compile()
  # Score layers start at zero (Section 4.2): so does every logit.
  logits = compiled(variables, x)
  assert logits.shape == (2, 32, 32, 3) and not np.asarray(logits).any()
  # The backbone's classifier (512 -> 1000) is not in the compiled program.
  assert "f32[2,1000]" not in compiled.as_text()

  def loss(p):
    out, state = model.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out * jnp.arange(3.0)), state

  rng = np.random.default_rng(2)
  for layer in ("score_32", "score_16", "score_8"):
    kernel = params[layer]["kernel"]
    params[layer]["kernel"] = rng.standard_normal(kernel.shape).astype(np.float32)
  grads, state = jax.jit(jax.grad(loss, has_aux=True))(params)
  flat = {p: float(np.abs(g).sum()) for p, g in introspection.by_path(grads).items()}
  assert all(np.isfinite(list(flat.values())))
  # Every layer the segmentation reads learns; the unused classifier does not.
  assert [p for p, g in flat.items() if g == 0] == ["backbone/fc/bias", "backbone/fc/kernel"]
  assert flat["backbone/conv1/kernel"] > 0
  assert not jax.tree.all(
      jax.tree.map(np.array_equal, state["batch_stats"], variables["batch_stats"])
  )


def test_vgg_fc_layers_become_convolutions():
  # fc6 reads a flattened 7x7x512 pool5; as a 7x7 "same" convolution its
  # output at the centre of a 7x7 map is that dense layer's output.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 7, 7, 4)).astype(np.float32)
  kernel = rng.standard_normal((7 * 7 * 4, 5)).astype(np.float32)
  bias = rng.standard_normal(5).astype(np.float32)
  y = fcn.DenseAsConv(7 * 7 * 4).apply({}, x, kernel, bias)
  np.testing.assert_allclose(y[0, 3, 3], x.reshape(-1) @ kernel + bias, rtol=1e-4, atol=1e-4)
  # FCN-VGG16's stride-32 scores read fc7, and fc6/fc7 are the backbone's own.
  shapes = introspection.layer_shapes(
      models.create("fcn32s_vgg16"),
      abstract_variables("fcn32s_vgg16", 64),
      jnp.zeros((1, 64, 64, 3)),
  )
  assert shapes["fc6_conv"] == shapes["fc7_conv"] == (1, 2, 2, 4096)
  assert shapes["score_32"] == (1, 2, 2, 21)


def test_unet_counts_shapes_and_skip_concatenation():
  for name, width, dropout in [("unet", 64, 0.5), ("unet_small", 16, 0.0)]:
    model = models.create(name)
    assert (model.width, model.depth, model.dropout, model.batch_norm) == (width, 4, dropout, False)
    variables, logits = abstract_init(name, 64)
    assert logits.shape == (1, 64, 64, 2) and logits.dtype == jnp.float32
    assert layers.num_params(variables["params"]) == unet_params(width, 4, 1, 2)
  variables, logits = abstract_init("unet_small", 32, num_classes=5, batch_norm=True, depth=3)
  assert logits.shape == (1, 32, 32, 5)
  assert layers.num_params(variables["params"]) == unet_params(16, 3, 1, 5, batch_norm=True)
  # The expanding path's first conv reads the skip and the up-convolution, concatenated.
  assert variables["params"]["up0_conv"]["conv1"]["kernel"].shape == (3, 3, 32, 16)


def test_unet_forward_and_gradient():
  model = models.create("unet_small", num_classes=3, width=4, depth=2, batch_norm=True)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  labels = jax.random.randint(jax.random.key(2), (2, 16, 16), 0, 3)

  def loss(p):
    out, _ = model.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), labels[..., None], -1))

  value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
  assert np.isfinite(float(value))
  assert all(float(np.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_up_sampling_layers_count_their_real_macs():
  rows = {r.name: r for r in summary.summarize(models.create("fcn8s_resnet18"), (64, 64, 3)).rows}
  # 2x2 of the 2f x 2f taps reach each output pixel, per pair of classes.
  assert rows["up_8to1"].macs == 64 * 64 * 21 * 21 * 4
  assert rows["up_32to16"].macs == 4 * 4 * 21 * 21 * 4
  rows = {r.name: r for r in summary.summarize(models.create("unet_small"), (64, 64, 1)).rows}
  assert rows["up0"].macs == 64 * 64 * 16 * 32  # one tap per pixel and channel pair


@pytest.mark.parametrize(
    "name, size, overrides, error, message",
    [
        ("fcn8s_resnet18", (48, 64), {}, GeometryError, "multiples of 32.* 48x64.* 64x64"),
        ("unet_small", (36, 32), {}, GeometryError, "multiples of 16, got 36x32"),
        ("unet_small", (36, 32), {"depth": 2}, None, ""),
        (
            "fcn8s_resnet18",
            (32, 32),
            {"feature_layers": ("layer4_1", "layer3_1", "layer2_9")},
            UnknownLayerError,
            "no layer 'layer2_9'.*layer2_1",
        ),
        (
            "fcn8s_resnet18",
            (32, 32),
            {"feature_layers": ("layer4_1", "layer4_0", "layer2_1"), "finest_stride": 16},
            ArgumentError,
            "'layer4_0'.*not the 2x2 map of stride 16",
        ),
        ("fcn8s_resnet18", (32, 32), {"finest_stride": 4}, ArgumentError, "finest_stride=4"),
        (
            "fcn32s_vgg16",
            (32, 32),
            {"fc_as_conv": ("head/fc9",)},
            UnknownLayerError,
            "no dense layer 'head/fc9'.*head/fc6",
        ),
    ],
)
def test_wrong_inputs_are_one_line_errors(name, size, overrides, error, message):
  model = models.create(name, **overrides)
  x = jnp.zeros((1, *size, models.spec(name).channels))
  init = lambda: model.init(jax.random.key(0), x)  # noqa: E731
  if error is None:
    assert jax.eval_shape(init)["params"]
    return
  with pytest.raises(error, match=message) as raised:
    jax.eval_shape(init)
  assert "\n" not in str(raised.value)


def test_backbone_options_reach_the_backbone():
  x = jnp.zeros((1, 32, 32, 3))
  model = models.create("fcn8s_resnet18", backbone_kwargs=(("shortcut", "A"),))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
  assert "downsample_conv" not in params["backbone"]["layer2_0"]  # option A: parameter-free
  assert (
      "downsample_conv"
      in abstract_variables("fcn8s_resnet18", 64)["params"]["backbone"]["layer2_0"]
  )
  model = models.create("fcn8s_resnet18", backbone_kwargs={"bn_momentum": 0.5})
  with pytest.raises(ArgumentError, match="no argument 'bn_momentum'"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), x))
