"""TFDS's progress bars and INFO logs, hidden around our own offline preparation."""

from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow_datasets as tfds
from absl import flags, logging


@contextlib.contextmanager
def quiet_tfds() -> Iterator[None]:
  """Hides TFDS's progress bars and INFO logs inside the block, then restores both.

  Only around our own preparation of an embedded dataset: a real download
  keeps them. An explicit --verbosity on the command line is respected.
  """
  from tensorflow_datasets.core.utils import tqdm_utils  # the setting has no public getter

  bars = getattr(tqdm_utils, "_active", True)
  verbosity = logging.get_verbosity()
  asked = flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present
  tfds.display_progress_bar(False)
  if not asked:
    logging.set_verbosity(min(verbosity, logging.WARNING))  # absl: lower is quieter
  try:
    yield
  finally:
    tfds.display_progress_bar(bars)
    logging.set_verbosity(verbosity)
