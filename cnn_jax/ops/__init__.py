"""Low-level operations: conv_impl="auto"'s choice between oneDNN's kernels
and XLA's, the lecture's hand-derived convolution backward pass, convolution
as im2col + matrix product, its input gradient as matrix product + col2im,
depthwise convolution as shifted sums, and max pooling over tiles as
reshape + max."""

from cnn_jax.ops.auto_conv import auto_conv_general_dilated, auto_depthwise_conv_general_dilated
from cnn_jax.ops.col2im_conv import col2im, col2im_conv2d, col2im_conv_general_dilated
from cnn_jax.ops.depthwise_conv import depthwise_conv2d, depthwise_conv_general_dilated
from cnn_jax.ops.gemm_conv import gemm_conv2d, gemm_conv_general_dilated, im2col
from cnn_jax.ops.lecture_conv import lecture_conv2d, lecture_conv_general_dilated
from cnn_jax.ops.tiled_max_pool import tiled_max_pool

__all__ = [
    "auto_conv_general_dilated",
    "auto_depthwise_conv_general_dilated",
    "col2im",
    "col2im_conv2d",
    "col2im_conv_general_dilated",
    "depthwise_conv2d",
    "depthwise_conv_general_dilated",
    "gemm_conv2d",
    "gemm_conv_general_dilated",
    "im2col",
    "lecture_conv2d",
    "lecture_conv_general_dilated",
    "tiled_max_pool",
]
