"""Per-operation time of a compiled function, read from the XLA trace.

XLA runs a compiled CPU program as thunks (a fusion, a dot, a custom call, a
copy), and `jax.profiler.trace` records each one as an event named after
its HLO instruction. `op_split` runs a function under the profiler, reads
the trace back with `jax.profiler.ProfileData`, and charges every thunk's
time to one category of the source operations it holds: their `op_name`
metadata in the compiled HLO (the Flax module path and the
`jax.named_scope`s of `model/denoiser.py`: "attention", "softmax", "gelu",
"rope"). A thunk holding a matmul counts as a matmul even when an
element-wise epilogue is fused into it.
"""

from __future__ import annotations

import collections
import functools
import pathlib
import re
import tempfile
import time
from typing import Any, Callable, Iterable

import jax
from jax.profiler import ProfileData

from motiongrpo_jax.tools import bench_lib

# Categories in priority order: a thunk takes the first one that any of its
# operations matches: the opcode (None: any) and substrings of the op_name.
CATEGORIES = (
    ("rotation projection", None, ("/svd",)),
    ("attention matmuls", "dot", ("/attention/",)),
    ("dense matmuls", "dot", ()),
    ("layernorm", None, ("layernorm",)),
    ("softmax", None, ("/softmax/",)),
    ("gelu", None, ("/gelu/",)),
    ("rope", None, ("/rope/",)),
    ("random numbers", None, ("jit(_normal)",)),
)
OTHER = "other"

_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%([\w.\-]+) = (.*)$")
_OPCODE = re.compile(r" ([a-z][a-z0-9\-]*)\(")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")
_CALLED = re.compile(
    r"\b(?:calls|to_apply|body|condition|branch_computations)="
    r"\{?%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')

# (opcode, op_name) of one HLO operation.
Operation = tuple[str, str]


def categorize(operations: Iterable[Operation]) -> str:
  """The category of a thunk from the operations it holds."""
  operations = list(operations)
  for category, opcode, parts in CATEGORIES:
    if any((opcode is None or op == opcode)
           and all(p in name for p in parts) for op, name in operations):
      return category
  return OTHER


def instruction_operations(hlo_text: str) -> dict[str, list[Operation]]:
  """Every HLO instruction → its operations and those of what it calls.

  Args:
    hlo_text: a compiled module's text (`compiled.as_text()`).

  Returns:
    instruction name (as the trace names its thunk) → (opcode, op_name) of
    itself and of the computations it calls (fusion bodies, loop bodies),
    recursively; operations without an op_name are left out.
  """
  own: dict[str, list[Operation]] = {}
  calls: dict[str, list[str]] = {}
  members: dict[str, list[str]] = collections.defaultdict(list)
  computation = ""
  for line in hlo_text.splitlines():
    instruction = _INSTRUCTION.match(line)
    if instruction is None:
      header = _COMPUTATION.match(line)
      if header is not None:
        computation = header.group(1)
      continue
    name, rest = instruction.groups()
    opcode = _OPCODE.search(" " + rest.split(", metadata=")[0])
    members[computation].append(name)
    own[name] = [(opcode.group(1) if opcode else "", op_name)
                 for op_name in _OP_NAME.findall(rest)]
    calls[name] = _CALLED.findall(rest)

  @functools.cache
  def gather(name: str) -> tuple[Operation, ...]:
    return tuple(own[name]) + tuple(
        operation for computation_name in calls[name]
        for member in members.get(computation_name, ())
        for operation in gather(member))

  return {name: list(gather(name)) for name in own}


def thunk_seconds(trace_dir: str | pathlib.Path,
                  instructions: Iterable[str]) -> dict[str, float]:
  """Total time of each instruction's thunk events in a trace.

  Events nested inside a counted event on the same thread (a loop body's
  thunks inside the loop's) are not counted again.

  Args:
    trace_dir: the directory given to `jax.profiler.trace`.
    instructions: the HLO instruction names to count.

  Returns:
    instruction name → seconds summed over the trace.
  """
  paths = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  if not paths:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}")
  wanted = set(instructions)
  totals: dict[str, float] = collections.defaultdict(float)
  for plane in ProfileData.from_file(str(paths[-1])).planes:
    for line in plane.lines:
      events = sorted((e for e in line.events if e.name in wanted),
                      key=lambda e: (e.start_ns, -e.duration_ns))
      covered_until = -1.0
      for event in events:
        if event.start_ns >= covered_until:
          totals[event.name] += event.duration_ns * 1e-9
          covered_until = event.start_ns + event.duration_ns
  return dict(totals)


def op_split(fn: Callable[..., Any], args: tuple, calls: int = 3,
             top: int = 12) -> dict[str, Any]:
  """Where the time of `jax.jit(fn)(*args)` goes, per category and thunk.

  Args:
    fn: the function (jitted here).
    args: its arguments.
    calls: calls traced after one untraced warm-up call.
    top: how many of the slowest thunks to list.

  Returns:
    `flops` (XLA's count for one call), `wall_seconds` (per call,
    measured around the traced calls),
    `thunk_seconds` (per call, the thunks' summed time; more than the wall
    time where thunks ran concurrently), `categories` (category →
    seconds per call and fraction of the thunk time) and `top_thunks`.
  """
  program = bench_lib.compile_program(jax.jit(fn), *args)
  compiled = program.compiled
  operations = instruction_operations(compiled.as_text())
  jax.block_until_ready(compiled(*args))
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      start = time.perf_counter()
      for _ in range(calls):
        jax.block_until_ready(compiled(*args))
      wall = (time.perf_counter() - start) / calls
    per_thunk = {name: seconds / calls for name, seconds
                 in thunk_seconds(trace_dir, operations).items()}
  total = sum(per_thunk.values())
  category = {name: categorize(operations[name]) for name in per_thunk}
  categories: dict[str, float] = collections.defaultdict(float)
  for name, seconds in per_thunk.items():
    categories[category[name]] += seconds
  slowest = sorted(per_thunk.items(), key=lambda item: -item[1])[:top]
  return {
      "flops": program.flops,
      "wall_seconds": wall,
      "thunk_seconds": total,
      "categories": {
          category: {"seconds": seconds,
                     "fraction": seconds / total if total else 0.0}
          for category, seconds in sorted(categories.items(),
                                          key=lambda item: -item[1])},
      "top_thunks": [
          {"thunk": name, "seconds": seconds,
           "category": category[name],
           "ops": sorted({f"{op} {n.split('/', 1)[-1]}"
                          for op, n in operations[name]})[:6]}
          for name, seconds in slowest],
  }
