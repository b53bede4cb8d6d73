"""The package's import graph: layers import only downwards, no module import
cycles, and only main.py imports the modes (README, "Source tree")."""

import ast
import pathlib

import motiongrpo_jax

ROOT = pathlib.Path(motiongrpo_jax.__file__).parent
# Each package (or top-level module) may import its own and lower layers.
LAYERS = (
    ("geometry", "geometry_polar", "config_sections", "run_record"),
    ("body",),
    ("data", "model"),
    ("diffusion", "guidance"),
    ("train",),
    ("eval",),
    ("critic", "grpo", "render", "export"),
    ("modes",),
    ("configs",),
    ("cli", "tools", "main"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
  """{module: project modules it imports, anywhere in its body}."""
  modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and (
          node.module.startswith("motiongrpo_jax")):
        for alias in node.names:
          full = f"{node.module}.{alias.name}"
          found.add(full if full in modules else node.module)
      elif isinstance(node, ast.Import):
        found.update(a.name for a in node.names
                     if a.name.startswith("motiongrpo_jax."))
    graph[name] = found - {name}
  return graph


def _package(module: str) -> str:
  return module.split(".")[1] if "." in module else module


def test_layers_import_only_downwards():
  wrong = sorted(
      f"{a} -> {b}" for a, targets in _imports().items() for b in targets
      if a != "motiongrpo_jax" and b != "motiongrpo_jax"
      and LAYER[_package(b)] > LAYER[_package(a)])
  assert not wrong, wrong
  # Every package has its layer.
  assert {_package(m) for m in _imports()} - {"motiongrpo_jax"} <= set(LAYER)


def test_only_main_imports_modes():
  importers = sorted(a for a, targets in _imports().items()
                     if _package(a) != "modes"
                     and any(_package(b) == "modes" for b in targets))
  assert importers == ["motiongrpo_jax.main"]
  # The modes import libraries, not each other.
  within = sorted(f"{a} -> {b}" for a, targets in _imports().items()
                  if _package(a) == "modes" and a != "motiongrpo_jax.modes"
                  for b in targets if _package(b) == "modes")
  assert not within, within


def test_no_import_cycles():
  graph = _imports()
  # Depth-first search for a back edge (a cycle of any length).
  state, cycles = {}, []

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, cycles


def test_the_sampler_does_not_know_guidance():
  """Inner guidance reaches the sampler only as its `x0_guide` hook: the
  diffusion package imports nothing of guidance (same layer, so the rule
  above would allow it)."""
  wrong = sorted(f"{a} -> {b}" for a, targets in _imports().items()
                 if _package(a) == "diffusion"
                 for b in targets if _package(b) == "guidance")
  assert not wrong, wrong
