"""The README cannot drift from the code: its numbers and snippets are checked."""

import pathlib
import re

from cnn_jax import models, summary

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def test_model_table_lists_every_model_with_its_counts():
  rows = re.findall(
      r"^\| `(\w+)`[^|]*\|[^|]*\|[^|]*\| ([\d,]+)[^|]*\| ([\d.]+) ([MG])", README, re.MULTILINE
  )
  assert sorted(row[0] for row in rows) == sorted(models.names())
  for name, count, macs, unit in rows:
    spec = models.spec(name)
    # The summary counts the parameters of one abstract init, as
    # conftest.abstract_variables does for tests/models' counts from the papers.
    s = summary.summarize(models.create(name), (spec.image_size, spec.image_size, spec.channels))
    assert s.total_params == int(count.replace(",", "")), name
    scale = 1e9 if unit == "G" else 1e6
    assert round(s.total_macs / scale, 3 if unit == "G" else 2) == float(macs), name


def test_python_snippets_run():
  snippets = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
  assert snippets
  for code in snippets:
    exec(compile(code, "README.md", "exec"), {})
