"""The README cannot drift from the code: its numbers and snippets are checked.

Its model table is checked in tests/models/test_models.py, which traces every
model for the papers' counts anyway.
"""

import pathlib
import re

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def test_python_snippets_run():
  snippets = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
  assert snippets
  for code in snippets:
    exec(compile(code, "README.md", "exec"), {})
