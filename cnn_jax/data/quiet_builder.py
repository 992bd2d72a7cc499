"""A TFDS builder mixin for datasets prepared without a download."""


class NoDownloadMessages:
  """Drops TFDS's "Downloading and preparing dataset ..." messages.

  TFDS prints them before and after preparing, unconditionally (with
  termcolor), with the size "Unknown" for builders that download nothing:
  a newcomer reads that as a network download. `preparation` prints one line of
  its own instead, saying what is read.
  """

  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass
