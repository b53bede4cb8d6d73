"""Paired comparisons of two policies on the same held-out windows.

Both policies are evaluated on the same windows with the same sampling keys,
so their per-window metrics are paired. The relative change of the mean,
100·(mean(new) − mean(base))/mean(base) %, gets a percentile bootstrap
confidence interval over windows (`scipy.stats.bootstrap`, paired: a
resample draws windows, each with both of its values). Windows where either
value is not finite are left out of that metric.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def relative_change(base: np.ndarray, new: np.ndarray,
                    axis: int | None = None) -> np.ndarray:
  """100·(mean(new) − mean(base))/|mean(base)| over `axis`, in %."""
  base_mean = np.mean(base, axis)
  return 100.0 * (np.mean(new, axis) - base_mean) / np.abs(base_mean)


def paired_change(base: np.ndarray, new: np.ndarray, *,
                  confidence: float = 0.95, num_resamples: int = 2000,
                  seed: int = 0) -> dict[str, float]:
  """Relative change of the mean and its paired bootstrap interval.

  Args:
    base: (N,) per-window values of the base policy.
    new: (N,) the same windows' values of the new policy.
    confidence: level of the interval.
    num_resamples: bootstrap resamples.
    seed: seed of the resampling (fixed: the interval is reproducible).

  Returns:
    {"change_percent", "ci_low", "ci_high", "windows"}; the interval is NaN
    with fewer than 2 paired windows or a zero base mean.
  """
  base, new = np.asarray(base, np.float64), np.asarray(new, np.float64)
  if base.shape != new.shape or base.ndim != 1:
    raise ValueError(f"paired_change: expected two (N,) arrays, got "
                     f"{base.shape} and {new.shape}")
  ok = np.isfinite(base) & np.isfinite(new)
  base, new = base[ok], new[ok]
  out = {"windows": float(len(base)), "change_percent": float("nan"),
         "ci_low": float("nan"), "ci_high": float("nan")}
  if len(base) == 0 or np.mean(base) == 0:
    return out
  out["change_percent"] = float(relative_change(base, new))
  if len(base) < 2 or np.all(base == base[0]) and np.all(new == new[0]):
    return out
  result = stats.bootstrap(
      (base, new), relative_change, paired=True, vectorized=True,
      confidence_level=confidence, n_resamples=num_resamples,
      method="percentile", rng=np.random.default_rng(seed))
  out["ci_low"] = float(result.confidence_interval.low)
  out["ci_high"] = float(result.confidence_interval.high)
  return out
