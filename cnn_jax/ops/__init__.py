"""Low-level operations: the lecture's hand-derived convolution backward pass, and
convolution as im2col + matrix product."""

from cnn_jax.ops.gemm_conv import gemm_conv2d, gemm_conv_general_dilated, im2col
from cnn_jax.ops.lecture_conv import lecture_conv2d, lecture_conv_general_dilated

__all__ = ["gemm_conv2d", "gemm_conv_general_dilated", "im2col", "lecture_conv2d",
           "lecture_conv_general_dilated"]
