"""The JSON records cnn_jax writes and reads back, safe against interrupted writes.

A run can be killed at any byte (SIGKILL, a full disk, a power cut), so:

- a JSON record (results.json, config.json, environment.json, a gallery's
  index.json, ...) is written to a temporary file and renamed over the old
  one: a reader sees the old file or the new one, never half of one;
- a JSON-lines log (metrics.jsonl) can only lose its last line: `append_line`
  first drops a torn last line, so the next row starts on a line of its own,
  and `read_lines` skips lines that do not parse, counting them;
- `read_json` tells a missing file (None) from a damaged one (`DamagedRecord`),
  so that each caller can repair what it owns instead of crashing on it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging

# Bytes read at a time when looking back for the last complete line.
_CHUNK = 1 << 16


class DamagedRecord(ValueError):
  """A record that exists but does not parse (cut short, or not what we write)."""


def write_text(path: str, text: str) -> None:
  """Writes a text file atomically: a reader sees the old file or the new one, never half.

  Args:
    path: the file to (over)write.
    text: its new content, written as is (no newline translation).
  """
  tmp = f"{path}.{os.getpid()}.tmp"  # per process: two writers never share one
  try:
    with open(tmp, "w", newline="") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):  # a full disk leaves no half-written temporary file
      os.remove(tmp)
    raise


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented JSON atomically (see `write_text`).

  Args:
    path: the file to (over)write.
    value: anything json.dumps takes.
  """
  write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
  """The JSON value in `path`, or None if there is no such file.

  Raises:
    DamagedRecord: the file exists but is not valid JSON (e.g. cut short).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    return None
  try:
    return json.loads(data)
  except (ValueError, UnicodeDecodeError) as e:
    raise DamagedRecord(f"{path} is damaged ({len(data)} bytes, {e})") from None


def drop_torn_line(path: str) -> int:
  """Cuts a JSON-lines file back to its last complete line.

  A process killed while appending leaves a last line without its newline;
  the next append would be glued onto it and both rows would be lost.

  Args:
    path: the file (nothing happens if it does not exist or ends in a newline).

  Returns:
    The number of bytes dropped (0 if the file was intact).
  """
  try:
    size = os.path.getsize(path)
  except FileNotFoundError:
    return 0
  if size == 0:
    return 0
  with open(path, "r+b") as f:
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return 0
    keep, end = 0, size
    while end > 0:  # look back chunk by chunk: the file may be long
      start = max(0, end - _CHUNK)
      f.seek(start)
      newline = f.read(end - start).rfind(b"\n")
      if newline >= 0:
        keep = start + newline + 1
        break
      end = start
    f.truncate(keep)
  logging.warning(
      "dropped the torn last line of %s (%d bytes, cut by an interrupted write)", path, size - keep
  )
  return size - keep


def append_line(path: str, record: dict[str, Any], repaired: set[str] | None = None) -> None:
  """Appends one JSON object as a line, on a line of its own.

  Args:
    path: the JSON-lines file.
    record: the object to append.
    repaired: paths already checked for a torn last line by this writer (the
      check runs once per path and writer, before its first append); None
      checks every time.
  """
  if repaired is None or path not in repaired:
    drop_torn_line(path)
    if repaired is not None:
      repaired.add(path)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


_REPORTED: set[str] = set()  # files whose unreadable lines were reported


def read_lines(path: str) -> list[dict[str, Any]]:
  """The JSON objects of a JSON-lines file, skipping lines that do not parse.

  Skipped lines (a torn last line, or one glued to the next by an older
  cnn_jax) are reported once per file and process, as a logging warning.

  Args:
    path: the file ([] if it does not exist).

  Returns:
    The records, in file order.
  """
  records, skipped = [], 0
  try:
    with open(path, "rb") as f:
      lines = f.read().split(b"\n")
  except FileNotFoundError:
    return []
  for line in lines:
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
      record = None
    if isinstance(record, dict):
      records.append(record)
    else:
      skipped += 1
  if skipped and path not in _REPORTED:
    _REPORTED.add(path)
    logging.warning(
        "skipped %d unreadable line(s) of %s (cut by an interrupted write)", skipped, path
    )
  return records


def read_config(workdir: str) -> dict[str, Any] | None:
  """A run's config.json (the config the run started with), or None if there is none.

  Raises:
    DamagedRecord: it does not parse, or holds no config.
  """
  path = os.path.join(workdir, "config.json")
  config = read_json(path)
  if config is not None and not isinstance(config, dict):
    raise DamagedRecord(f"{path} is damaged (it holds no config)")
  return config


# What a results.json must hold to count as a finished run's record.
# What every task's final eval has (a detection run has no accuracy).
RESULTS_KEYS = ("loss", "step")


def read_results(workdir: str) -> dict[str, Any] | None:
  """A run's results.json, or None if it is missing, damaged or incomplete.

  The one reader of results.json (the trainer and the sweep): a run without
  intact results is unfinished, so that re-running it re-evaluates it and
  writes them again (the trainer says so then).

  Args:
    workdir: the run's folder.

  Returns:
    The results dict, with at least RESULTS_KEYS.
  """
  try:
    results = read_json(os.path.join(workdir, "results.json"))
  except DamagedRecord:
    return None
  if not isinstance(results, dict) or any(k not in results for k in RESULTS_KEYS):
    return None
  return results
