"""The package's layers: imports point down only (DESIGN.md, "Layers of the package").

Read from the source with `ast`, so that an import inside a function counts
as much as one at the top of a module.
"""

import ast
import pathlib
import tomllib

import pytest
import setuptools

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cnn_jax"

# Who may not import whom: (importing layer, forbidden layers).
FORBIDDEN = [
    ("data", {"models", "train", "visualize", "transfer", "sweep"}),
    ("models", {"data", "train", "visualize", "transfer", "sweep"}),
    ("ops", {"data", "models", "train", "visualize", "transfer", "sweep"}),
    ("introspection", {"data", "train", "visualize", "transfer", "sweep"}),
    ("saved_runs", {"data", "models", "train", "visualize", "transfer", "sweep"}),
    ("tasks", {"train", "visualize", "transfer", "sweep", "summary", "saved_runs"}),
    ("transfer", {"train", "visualize", "sweep"}),
    ("train", {"visualize", "sweep"}),
    ("visualize", {"train", "sweep"}),
]


def _layer(module: str) -> str:
  """ "cnn_jax.train.steps" -> "train"; "cnn_jax.summary" -> "summary"."""
  return module.split(".")[1] if module.count(".") else ""


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Every cnn_jax module a source file imports, anywhere in it."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith("cnn_jax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnn_jax"):
      found.add(node.module)
      # `from cnn_jax import data` imports the subpackage cnn_jax.data.
      for alias in node.names:
        candidate = PACKAGE.parent / (node.module.replace(".", "/") + "/" + alias.name)
        if candidate.is_dir() or candidate.with_suffix(".py").is_file():
          found.add(f"{node.module}.{alias.name}")
  return found


def _import_graph() -> dict[str, set[str]]:
  return {_module_name(path): _imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_graph_sees_imports_inside_functions(tmp_path):
  source = tmp_path / "cli.py"
  source.write_text("def main():\n  from cnn_jax import models\n  return models\n")
  assert "cnn_jax.models" in _imported_modules(source)
  assert "cnn_jax.transfer.finetune" in _import_graph()["cnn_jax.train.train"]


@pytest.mark.parametrize("layer, forbidden", FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_imports_point_down(layer, forbidden):
  wrong = sorted(
      f"{module} imports {target}"
      for module, targets in _import_graph().items()
      if _layer(module) == layer
      for target in targets
      if _layer(target) in forbidden
  )
  assert not wrong, "\n".join(wrong)


def test_installing_cnn_jax_installs_no_top_level_launch_package():
  # launch/ holds launch scripts run from the repository; a top-level package
  # named "launch" would shadow (or be shadowed by) ROS 2's launch and others.
  find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
  installed = setuptools.find_packages(str(REPO), include=find["find"]["include"])
  assert "cnn_jax.sweep" in installed
  assert all(name == "cnn_jax" or name.startswith("cnn_jax.") for name in installed), installed
  # The launcher stays a thin entry point over cnn_jax.sweep.
  assert _launcher_statements(REPO / "launch" / "sweep.py") == [
      "import runpy",
      "if __name__ == '__main__':\n"
      "    runpy.run_module('cnn_jax.sweep', run_name='__main__', alter_sys=True)",
  ]


def _launcher_statements(path: pathlib.Path) -> list[str]:
  """A script's top-level statements as source, its docstring left out."""
  body = ast.parse(path.read_text(), str(path)).body
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    body = body[1:]
  return [ast.unparse(node) for node in body]


def test_the_launcher_check_sees_code_added_to_the_launcher(tmp_path):
  script = tmp_path / "sweep.py"
  script.write_text('"""Doc."""\nfrom cnn_jax.sweep import cli\n\ndef run_twice():\n  cli.run()\n')
  assert _launcher_statements(script) == [
      "from cnn_jax.sweep import cli",
      "def run_twice():\n    cli.run()",
  ]


MAX_FUNCTION_LINES = 80  # the project's rule: a longer function is split into named helpers


def _long_functions(source: str, path: str) -> list[str]:
  return [
      f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
      for node in ast.walk(ast.parse(source, path))
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
  ]


def test_no_function_in_the_package_is_over_80_lines():
  long = [
      line
      for path in sorted(PACKAGE.rglob("*.py"))
      for line in _long_functions(path.read_text(), str(path.relative_to(REPO)))
  ]
  assert not long, "\n".join(long)


def test_the_length_check_sees_nested_functions():
  body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
  source = f"def outer():\n  def inner():\n{body}  return inner\n"
  assert [line.split()[1] for line in _long_functions(source, "f.py")] == ["outer", "inner"]


def test_errors_sit_at_the_bottom_and_only_commands_run_the_cli():
  graph = _import_graph()
  assert not graph["cnn_jax.errors"], graph["cnn_jax.errors"]
  commands = {
      module
      for module in graph
      if module.endswith("__main__")
      or module
      in {
          "cnn_jax.main",
          "cnn_jax.benchmark",
          "cnn_jax.predict",
          "cnn_jax.data.prepare",
          "cnn_jax.data.preview",
      }
  }
  running_the_cli = {module for module, targets in graph.items() if "cnn_jax.cli" in targets}
  assert running_the_cli <= commands, running_the_cli - commands
  assert "cnn_jax.main" in running_the_cli
