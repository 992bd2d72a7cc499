"""oneDNN's convolution kernels behind jax.ffi: forward, input and weight gradients
of float32 2-D convolutions, grouped and depthwise too, on x86-64 Linux CPUs
(built on first use)."""

from cnn_jax.ops.onednn.build import OnednnUnavailable
from cnn_jax.ops.onednn.conv import (
    onednn_computes,
    onednn_conv2d,
    onednn_conv_general_dilated,
    onednn_depthwise_conv2d,
    onednn_depthwise_conv_general_dilated,
    unavailable_reason,
)

__all__ = [
    "OnednnUnavailable",
    "onednn_computes",
    "onednn_conv2d",
    "onednn_conv_general_dilated",
    "onednn_depthwise_conv2d",
    "onednn_depthwise_conv_general_dilated",
    "unavailable_reason",
]
