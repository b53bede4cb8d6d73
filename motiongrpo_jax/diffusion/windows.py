"""Windowed x̂0 prediction for sequences longer than the denoiser's window.

EgoAllo's stitching (`reference/egoallo/README.md` §2 (e) 1): windows start at
s = 0, W−O, 2(W−O), … while s < L and cover [s, min(s+W, L)); canonical
weights w_k = min(O, k+1, L−k)/O are computed once over the whole length L
and window j uses the prefix w[0:len_j]; x̂0 = Σ_j w·net(window_j) / Σ_j w,
both sums accumulated in float32 from zeros in window order. Each window is a
separate network call, so RoPE positions and the noise token restart in each.

Windows are static (computed in Python from L), so inside a jitted program
the window loop unrolls: one network call per window, no dynamic shapes.

Non-redundant option: a window whose span lies entirely inside the windows
before it is dropped (L = 128 → one window instead of two; L = 300 → three
instead of four). It changes x̂0 only on the dropped windows' frames, where
the earlier window's output is used alone instead of a blend.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# (x_t (B,n,d), T_world_cpf (B,n,7), T_cpf_tm1_cpf_t (B,n,7), mask (B,n)|None)
# -> x̂0 (B,n,d): the network restricted to one window, everything else bound.
WindowFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array | None], jax.Array]


def window_spans(
    seq_len: int,
    window_size: int = 128,
    overlap: int = 32,
    non_redundant: bool = False,
) -> tuple[tuple[int, int], ...]:
  """EgoAllo's window spans [start, end) for a sequence of `seq_len` frames.

  Args:
    seq_len: L ≥ 1.
    window_size: W, the longest window.
    overlap: O < W, frames shared by consecutive windows.
    non_redundant: drop windows that add no frame not already covered.

  Returns:
    Tuple of (start, end) pairs in accumulation order.
  """
  if seq_len < 1:
    raise ValueError(f"window_spans: seq_len must be ≥ 1, got {seq_len}")
  if not 0 <= overlap < window_size:
    raise ValueError(f"window_spans: need 0 ≤ overlap < window_size, got "
                     f"overlap={overlap}, window_size={window_size}")
  spans = []
  covered = 0
  for start in range(0, seq_len, window_size - overlap):
    end = min(start + window_size, seq_len)
    if non_redundant and end <= covered:
      continue
    spans.append((start, end))
    covered = max(covered, end)
  return tuple(spans)


def canonical_weights(seq_len: int, overlap: int = 32) -> np.ndarray:
  """EgoAllo's blend profile w_k = min(O, k+1, L−k)/O over the whole length.

  Args:
    seq_len: L.
    overlap: O.

  Returns:
    (L,) float32 weights.
  """
  k = np.arange(seq_len)
  ramp = np.minimum(k + 1, seq_len - k)
  if overlap == 0:
    return np.ones((seq_len,), np.float32)
  return (np.minimum(overlap, ramp) / overlap).astype(np.float32)


def blended_x0(
    window_fn: WindowFn,
    x_t: jax.Array,
    T_world_cpf: jax.Array,
    T_cpf_tm1_cpf_t: jax.Array,
    mask: jax.Array | None,
    spans: tuple[tuple[int, int], ...],
    overlap: int = 32,
    batch_equal: bool = False,
) -> jax.Array:
  """x̂0 over the whole sequence by EgoAllo's weighted window blend.

  With a single window covering the sequence this is (0 + o·w)/(0 + w), as
  EgoAllo computes it (it can differ from o by one ulp).

  Args:
    window_fn: the network on one window (see `WindowFn`); it must treat
      batch rows independently when `batch_equal` is set.
    x_t: (B, L, d) current state.
    T_world_cpf: (B, L, 7) floor-shifted CPF poses of frames 1..L.
    T_cpf_tm1_cpf_t: (B, L, 7) relative CPF poses.
    mask: (B, L) valid frames, or None (EgoAllo's sampler passes None).
    spans: static window spans from `window_spans` (for this L).
    overlap: O of the canonical weights.
    batch_equal: run windows of equal length as one call, stacked along the
      batch axis (fewer, larger matmuls; the blend order is unchanged).

  Returns:
    (B, L, d) float32 blended x̂0.
  """
  batch, seq_len = x_t.shape[:2]
  weights = canonical_weights(seq_len, overlap)

  def cut(a, start, end):
    return None if a is None else a[:, start:end]

  # --- (1) One network call per window, or per group of equal-length windows.
  groups: dict[int, list[int]] = {}
  for j, (start, end) in enumerate(spans):
    groups.setdefault(end - start if batch_equal else -1 - j, []).append(j)
  outputs: dict[int, jax.Array] = {}
  for members in groups.values():
    parts = [[cut(a, *spans[j]) for j in members]
             for a in (x_t, T_world_cpf, T_cpf_tm1_cpf_t, mask)]
    stacked = [None if p[0] is None else jnp.concatenate(p, axis=0)
               for p in parts]
    out = window_fn(*stacked)
    for i, j in enumerate(members):
      outputs[j] = out[i * batch:(i + 1) * batch]

  # --- (2) Blend in window order: num/den from zeros, float32.
  num = jnp.zeros(x_t.shape, jnp.float32)
  den = jnp.zeros((1, seq_len, 1), jnp.float32)
  for j, (start, end) in enumerate(spans):
    w = jnp.asarray(weights[: end - start])[None, :, None]
    num = num.at[:, start:end].add(outputs[j].astype(jnp.float32) * w)
    den = den.at[:, start:end].add(w)
  return num / den
