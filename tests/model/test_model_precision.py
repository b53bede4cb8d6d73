"""The matmul-precision probe behind the fast sampler mode."""

import math

import pytest

from motiongrpo_jax.model import precision


@pytest.mark.parametrize("fp32, bf16, choice", [
    (100.0, 110.0, "float32"),   # 1.10×: emulated bf16 does not pay
    (100.0, 124.0, "float32"),   # just under the 1.25× bar
    (100.0, 125.0, "bfloat16"),  # at the bar
    (100.0, 400.0, "bfloat16"),  # native bf16 (AMX, GPU)
    (100.0, 50.0, "float32"),    # bf16 slower: never chosen
])
def test_probe_takes_bf16_only_when_clearly_faster(monkeypatch, fp32, bf16,
                                                   choice):
  rates = {"float32": fp32, "bfloat16": bf16}
  monkeypatch.setattr(precision, "matmul_gflops", lambda dtype: rates[dtype])
  precision.probe.cache_clear()
  try:
    result = precision.probe()
    assert result["choice"] == choice == precision.fast_matmul_dtype()
    assert result["bf16_speedup"] == pytest.approx(bf16 / fp32)
  finally:
    precision.probe.cache_clear()


def test_matmul_rate_is_measured():
  for dtype in ("float32", "bfloat16"):
    rate = precision.matmul_gflops(dtype, (64, 32, 16), repeats=2)
    assert math.isfinite(rate) and rate > 0
