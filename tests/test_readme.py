"""The README cannot drift from the code: its numbers and snippets are checked."""

import pathlib
import re

from cnn_jax import layers, models

from conftest import abstract_variables

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def test_model_table_lists_every_model_with_its_count():
  rows = re.findall(r"^\| `(\w+)`[^|]*\|[^|]*\|[^|]*\| ([\d,]+)", README, re.MULTILINE)
  assert sorted(name for name, _ in rows) == sorted(models.names())
  for name, count in rows:
    assert layers.num_params(abstract_variables(name)["params"]) == int(
        count.replace(",", "")), name


def test_python_snippets_run():
  snippets = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
  assert snippets
  for code in snippets:
    exec(compile(code, "README.md", "exec"), {})
