"""The one error type of the data package."""


class DataError(ValueError):
  """A dataset that cannot be read as asked; the message says how to fix it."""
