"""Low-level operations: the lecture's hand-derived convolution backward pass."""

from cnn_jax.ops.lecture_conv import lecture_conv2d, lecture_conv_general_dilated

__all__ = ["lecture_conv2d", "lecture_conv_general_dilated"]
