"""`tools/op_profile`: thunks read from a real XLA trace and charged to the
categories of their source operations (structure only; no timing bounds)."""

import jax
import jax.numpy as jnp
import pytest

from motiongrpo_jax.tools import op_profile


def _program(x, w):
  with jax.named_scope("attention"):
    scores = x @ w
  with jax.named_scope("gelu"):
    hidden = jax.nn.gelu(scores * 3.0 + 1.0, approximate=False)
  return jnp.linalg.svd(hidden[:, :3, :3])[1].sum() + hidden.sum()


def _args():
  return (jnp.ones((4, 64, 64)), jnp.ones((64, 64)) * 0.01)


def test_categorize_takes_the_first_matching_category():
  dot = ("dot", "jit(f)/Denoiser/layer_0/attention/bqhd,bkhd->bhqk/dot_general")
  softmax = ("exponential", "jit(f)/Denoiser/layer_0/attention/softmax/exp")
  assert op_profile.categorize([softmax, dot]) == "attention matmuls"
  assert op_profile.categorize([softmax]) == "softmax"
  # A bitcast of a dot's output carries the dot's op_name, but is no matmul.
  assert op_profile.categorize(
      [("bitcast", "jit(f)/mlp0/...i,io->...o/dot_general")]) == "other"
  assert op_profile.categorize(
      [("dot", "jit(f)/mlp0/...i,io->...o/dot_general")]) == "dense matmuls"
  assert op_profile.categorize([]) == op_profile.OTHER


def test_instructions_carry_the_operations_of_their_fusions():
  compiled = jax.jit(_program).lower(*_args()).compile()
  operations = op_profile.instruction_operations(compiled.as_text())
  categories = {op_profile.categorize(ops) for ops in operations.values()}
  assert {"attention matmuls", "gelu", "rotation projection"} <= categories
  # Every fusion's category comes from the computation it calls.
  fusions = [ops for name, ops in operations.items() if "fusion" in name]
  assert fusions and all(len(ops) > 1 for ops in fusions)


def test_op_split_charges_every_traced_thunk_once():
  split = op_profile.op_split(_program, _args(), calls=2, top=3)
  categories = split["categories"]
  assert {"attention matmuls", "rotation projection"} <= set(categories)
  assert sum(c["seconds"] for c in categories.values()) == pytest.approx(
      split["thunk_seconds"], rel=1e-9)
  assert sum(c["fraction"] for c in categories.values()) == pytest.approx(1.0)
  assert split["wall_seconds"] > 0 and split["thunk_seconds"] > 0
  assert len(split["top_thunks"]) == 3
  assert all(t["category"] in categories for t in split["top_thunks"])
