"""A visualization folder's gallery: OUT/index.json (the pictures and their captions)
and OUT/index.html (the page that shows them), kept across runs of the command.

Both files are written atomically. An index.json that an interrupted run left
damaged is rebuilt from the PNGs in the folder (their captions are lost and
say so), so that the next run never crashes on our own output and keeps the
gallery's pictures.
"""

from __future__ import annotations

import html
import os
from typing import Sequence

from absl import logging

from cnn_jax import errors, records

Entry = dict[str, str]  # {"method", "png" (a name in OUT), "caption"}

_LOST = "caption lost: index.json was damaged; run this method again to restore it"


def _valid(entries) -> bool:
  return isinstance(entries, list) and all(
      isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("method", "png", "caption"))
      for e in entries
  )


def _method_of(png: str, methods: Sequence[str]) -> str:
  """The method whose name a picture's file name starts with (the longest), or "unknown"."""
  matches = [m for m in methods if png.startswith(m)]
  return max(matches, key=len) if matches else "unknown"


def read(out: str, methods: Sequence[str]) -> list[Entry]:
  """The gallery's entries ([] for a new folder); a damaged index is rebuilt.

  Args:
    out: the output folder.
    methods: the method names, to tell which method made a PNG when the
      index must be rebuilt from the folder's files.

  Returns:
    The entries, oldest first.

  Raises:
    UserError: for an index.json that is not ours in a folder that holds no
      gallery (no PNG, no index.html), which is left as it is.
  """
  path = os.path.join(out, "index.json")
  try:
    entries = records.read_json(path)
  except records.DamagedRecord as e:
    entries = e
  if entries is None:
    return []
  if _valid(entries):
    return entries
  pngs = sorted(name for name in os.listdir(out) if name.endswith(".png"))
  if not pngs and not os.path.exists(os.path.join(out, "index.html")):
    # No trace of a gallery: another program's index.json, not ours to replace.
    raise errors.UserError(
        f"{path} is not the index this command writes (a JSON list of "
        "pictures); move it away or give another --out"
    )
  logging.warning(
      "%s is damaged (%s); rebuilt it from the %d PNG(s) in %s",
      path,
      entries if isinstance(entries, Exception) else "not a list of entries",
      len(pngs),
      out,
  )
  return [{"method": _method_of(png, methods), "png": png, "caption": _LOST} for png in pngs]


def add(entries: list[Entry], method: str, png: str, caption: str) -> list[Entry]:
  """The entries with this picture last (replacing an older one of the same file)."""
  name = os.path.basename(png)  # relative: the folder can be moved or committed
  return [e for e in entries if e["png"] != name] + [
      {"method": method, "png": name, "caption": caption}
  ]


def write(out: str, entries: list[Entry]) -> str:
  """Writes OUT/index.json and OUT/index.html (every picture with its caption).

  Returns:
    The path of index.html.
  """
  records.write_json(os.path.join(out, "index.json"), entries)
  rows = "\n".join(
      f"<figure><img src=\"{html.escape(e['png'])}\">"
      f"<figcaption><b>{html.escape(e['method'])}</b>: {html.escape(e['caption'])}"
      f"</figcaption></figure>"
      for e in entries
  )
  page = (
      '<!doctype html><meta charset="utf-8"><title>cnn_jax visualizations</title>'
      "<style>figure{display:inline-block;margin:8px;vertical-align:top;max-width:900px}"
      "img{max-width:100%}</style>\n" + rows + "\n"
  )
  path = os.path.join(out, "index.html")
  records.write_text(path, page)
  return path
