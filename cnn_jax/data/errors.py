"""The one error type of the data package."""

from cnn_jax.errors import UserError


class DataError(UserError, ValueError):
  """A dataset that cannot be read as asked; the message says how to fix it."""
