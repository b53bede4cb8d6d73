"""`tools/grpo_probe` on the tiny GRPO problem of `tests/grpo/grpo_tiny.py`:
report keys, a set's gradient agrees with itself, a_k/σ_k from the schedule,
resampling a σ = 0 step changes nothing, best ≤ single ≤ worst, and the
critic's rank correlations.

The probe's functions run once, in a subprocess with XLA's fast-compile
options (the programs are tiny; compiling dominates), and write their
results as JSON; the tests check them.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from motiongrpo_jax.diffusion import schedule as schedule_lib
from motiongrpo_jax.tools import grpo_probe

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

_SCRIPT = r"""
import dataclasses, json, sys
import jax, jax.numpy as jnp, numpy as np
import grpo_tiny as tiny
from motiongrpo_jax import body as body_lib
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.tools import grpo_probe

body = body_lib.builtin_body()
critic = critic_lib.Critic(critic_lib.CriticConfig(
    d_model=16, num_heads=2, d_feedforward=32, num_blocks=1,
    trajectory_layers=0))
critic_params = critic_lib.init_params(critic, jax.random.key(3))

def score_fn(cp, samples, condition, mask):
  motion = critic_lib.motion_from_packed(samples, False)
  return critic_lib.score(critic, cp, body, motion, condition.T_world_cpf,
                          condition.T_cpf_tm1_cpf_t, mask)

config = dataclasses.replace(
    tiny.CONFIG, reward=dataclasses.replace(tiny.CONFIG.reward,
                                            weight_vis=0.5))
probe = grpo_probe.Probe(sampler_lib.model_apply_fn(tiny.MODEL), config, body,
                         tiny.DIM, score_fn, critic_params, resample_draws=3)
params = tiny.params()
batch = {k: jnp.asarray(v) for k, v in tiny.batch().items()}
tolist = lambda tree: jax.tree.map(lambda x: np.asarray(x).tolist(),
                                   jax.device_get(tree))
out = {"table": probe.table, "first_third": probe.first_third.tolist(),
       "trained": probe.trained.tolist()}
# The gradient section measures the steps the config trains.
window_1 = dataclasses.replace(
    config, objective=dataclasses.replace(config.objective, train_window=1))
out["trained_window_1"] = grpo_probe.Probe(
    sampler_lib.model_apply_fn(tiny.MODEL), window_1, body, tiny.DIM, score_fn,
    critic_params).trained.tolist()

# 1. Gradient signal: a set with itself, and two independent sets.
set_a = probe.rollout_set(params, batch, jax.random.PRNGKey(1))
set_b = probe.rollout_set(params, batch, jax.random.PRNGKey(2))
out["set_shapes"] = {"xs": list(set_a.xs.shape),
                     "advantages": list(set_a.advantages.shape)}
same, same_gradient = probe.gradient_signal(params, set_a, set_a)
pair, pair_gradient = probe.gradient_signal(params, set_a, set_b)
out["batch_gradient_shapes"] = [list(same_gradient.shape),
                                list(pair_gradient.shape)]
out["same"], out["pair"] = same, pair
summary = grpo_probe.summarize_gradient([same, pair], probe.trained)
out["gradient_summary"] = summary

# 2. Resampling one step's noise.
resample = probe.resample_variance(params, batch, jax.random.PRNGKey(4))
out["resample"] = tolist(resample)
resample_summary = grpo_probe.summarize_resample([resample, resample])
out["resample_summary"] = resample_summary
out["rows"] = grpo_probe.step_report(probe, summary, resample_summary)

# 3. Headroom, with an eval filler window (no valid frame) last.
filler = dict(batch, mask=batch["mask"].at[-1].set(False))
head = probe.headroom(params, filler, jax.random.PRNGKey(5))
out["headroom"] = tolist(head)
out["headroom_summary"] = grpo_probe.summarize_headroom([jax.device_get(head)])

# 4. Critic ranks (one noise kind: each kind is a compile).
ranks = probe.critic_ranks(params, batch, jax.random.PRNGKey(6), "perlin")
out["critic_summary"] = grpo_probe.summarize_critic({"noisy": [ranks]})

# 5. Ascent: rewards of moved parameters with fixed keys.
zero = jnp.zeros_like(pair_gradient)
direction = grpo_probe.ascent_direction(pair_gradient, "gradient")
key = jax.random.PRNGKey(7)
out["moved"] = {
    "zero": probe.moved_rewards(params, zero, 0.0, batch, key),
    "alpha_0": probe.moved_rewards(params, direction, 0.0, batch, key),
    "plus": probe.moved_rewards(params, direction, 0.5, batch, key),
    "other_key": probe.moved_rewards(params, zero, 0.0, batch,
                                     jax.random.PRNGKey(8))}
# 6. Step-0 mean shift: η = 0 twice, then 0.5.
shift = probe.mean_shift(params, batch, jax.random.PRNGKey(9), [0.0, 0.0, 0.5])
out["shift"] = tolist(shift)
# 7. Fit step 0's means to their shift (η = 0.5), scored after 1 and 5 updates.
targets = probe.shift_targets(params, batch, jax.random.PRNGKey(10), 0.5)
fit = probe.fit_shift(params, targets, [1, 5], 1e-4)
out["fit"] = {
    "loss0": float(probe._fit_loss_jit(params, targets)),
    "valid_fraction": float(np.mean(np.asarray(targets.mask))),
    "entries": [{k: v for k, v in e.items() if k != "delta"} for e in fit],
    "delta_norms": [float(jnp.linalg.norm(e["delta"])) for e in fit],
    "moved": [probe.moved_rewards(params, e["delta"], 1.0, batch, key)
              for e in fit]}
anchored = probe.fit_shift(params, targets, [1, 5], 1e-4, anchor_beta=1.0,
                           anchor_steps=1)
out["fit"]["anchored"] = [{k: v for k, v in e.items() if k != "delta"}
                          for e in anchored]
out["fit"]["states_shape"] = list(targets.xs.shape)
json.dump(grpo_probe._finite(out), open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  path = tmp_path_factory.mktemp("probe") / "out.json"
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(_HERE.parent / "grpo"), str(_REPO), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], env=env,
                        cwd=_REPO, capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(path.read_text())


def test_schedule_a_over_sigma_by_hand(results):
  table = results["table"]
  assert [r["step"] for r in table] == [0, 1, 2]
  assert [r["trained"] for r in table] == [True, True, False]
  assert table[-1]["sigma"] == 0 and table[-1]["a_over_sigma"] is None
  assert results["trained"] == [0, 1] and results["first_third"] == [0]
  assert results["trained_window_1"] == [0]
  # Step 1 (t = 4 → 1) of the DDIM-η = 1 update, from the float64 schedule:
  # μ = √ᾱ'·x̂0 + √(1 − ᾱ' − σ²)·(x_t − √ᾱ·x̂0)/√(1 − ᾱ).
  sched = schedule_lib.cosine_schedule(1000)
  ab_t, ab_n = sched.alpha_bar[4], sched.alpha_bar[1]
  sigma = math.sqrt((1 - ab_n) / (1 - ab_t) * (1 - ab_t / ab_n))
  c_dir = math.sqrt(1 - ab_n - sigma**2)
  a = math.sqrt(ab_n) - c_dir * math.sqrt(ab_t) / math.sqrt(1 - ab_t)
  assert table[1]["t"] == 4
  np.testing.assert_allclose(table[1]["sigma"], sigma, rtol=1e-5)
  np.testing.assert_allclose(table[1]["a"], a, rtol=1e-4)
  np.testing.assert_allclose(table[1]["a_over_sigma"], a / sigma, rtol=1e-4)


def test_schedule_table_in_process():
  """The same table without the subprocess: EgoAllo's 30 steps."""
  from motiongrpo_jax.diffusion import sampler as sampler_lib  # pylint: disable=import-outside-toplevel
  table = grpo_probe.schedule_table(sampler_lib.SamplerConfig())
  assert len(table) == 30 and [r["trained"] for r in table] == [True] * 29 + [
      False]
  ratios = [r["a_over_sigma"] for r in table[:-1]]
  assert 0 < ratios[0] < 1 and ratios[-1] > 100  # DESIGN §1.5: 0.3 … ~200
  assert list(grpo_probe.first_third_steps(sampler_lib.SamplerConfig())) == (
      list(range(10)))
  # A training window of 2 trains (and reports) steps 0 and 1 only.
  window = grpo_probe.schedule_table(sampler_lib.SamplerConfig(), 2)
  assert [r["trained"] for r in window] == [True, True] + [False] * 28
  assert list(grpo_probe.first_third_steps(sampler_lib.SamplerConfig(),
                                           2)) == [0, 1]


def test_across_batches_by_hand():
  """Pairwise cosines of [1, 0], [0, 1], [1, 1]: 0, 1/√2, 1/√2; a zero
  gradient has no direction and is left out of its pairs."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  vectors = [jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]),
             jnp.array([1.0, 1.0]), jnp.zeros(2)]
  out = grpo_probe.across_batches(vectors)
  cosines = np.array([0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
  assert out["pairs"] == 3
  np.testing.assert_allclose(out["cosine"], cosines.mean(), rtol=1e-6)
  np.testing.assert_allclose(out["cosine_std"], cosines.std(), rtol=1e-6)


def test_gradient_signal(results):
  assert results["set_shapes"] == {"xs": [12, 4, 4, 226], "advantages": [12]}
  same, pair = results["same"], results["pair"]
  shapes = results["batch_gradient_shapes"]  # flat, for `across_batches`
  assert shapes[0] == shapes[1] and len(shapes[0]) == 1 and shapes[0][0] > 0
  assert set(same["steps"]) == {"0", "1"}
  for entry in list(same["steps"].values()) + [same["all_steps"],
                                                same["first_third"]]:
    assert entry["norm_a"] > 0
    np.testing.assert_allclose(entry["cosine"], 1.0, rtol=1e-5)
  # The first third is step 0 alone; the sum holds both steps.
  np.testing.assert_allclose(same["first_third"]["norm_a"],
                             same["steps"]["0"]["norm_a"], rtol=1e-6)
  assert same["all_steps"]["norm_a"] != same["first_third"]["norm_a"]
  for entry in pair["steps"].values():
    assert -1 <= entry["cosine"] <= 1 and entry["norm_b"] > 0
  summary = results["gradient_summary"]
  assert set(summary) == {"steps", "all_steps", "first_third"}
  assert set(summary["steps"]["0"]) == {"grad_norm", "cosine", "cosine_std"}
  np.testing.assert_allclose(
      summary["steps"]["1"]["cosine"],
      0.5 * (1.0 + pair["steps"]["1"]["cosine"]), rtol=1e-5)
  rows = results["rows"]
  assert len(rows) == 3 and "cosine" in rows[0] and "cosine" not in rows[2]


def test_resample_variance(results):
  out = results["resample"]
  assert set(out) == {"steps", "x_T", "all_eps"} and len(out["steps"]) == 3
  entries = dict(enumerate(out["steps"]), x_T=out["x_T"],
                 all_eps=out["all_eps"])
  for entry in entries.values():
    assert len(entry["reward_var"]) == 4 and len(entry["mpjpe_var_mm2"]) == 4
  # σ = 0 at step 2: its ε does not enter; the other steps' ε do.
  assert entries[2]["reward_var"] == [0.0] * 4
  assert entries[2]["mpjpe_var_mm2"] == [0.0] * 4
  for k in (0, 1, "x_T", "all_eps"):
    assert min(entries[k]["reward_var"]) > 0, k
    assert min(entries[k]["mpjpe_var_mm2"]) > 0, k
  summary = results["resample_summary"]
  assert summary["steps"][2]["mpjpe_std_mm"] == 0
  assert summary["steps"][0]["mpjpe_std_mm"] > 0
  np.testing.assert_allclose(summary["steps"][0]["reward_var"],
                             np.mean(entries[0]["reward_var"]), rtol=1e-6)
  rows = results["rows"]
  assert rows[2]["reward_var"] == 0 and rows[0]["reward_var"] > 0


def test_headroom(results):
  out = results["headroom"]
  assert np.asarray(out["mpjpe"]).shape == (4, 3)
  assert out["valid"] == [True, True, True, False]
  summary = results["headroom_summary"]
  assert summary["windows"] == 3
  for metric in ("mpjpe", "pampjpe"):
    s = summary[metric]
    assert 0 < s["best_of_g"] <= s["single"] <= s["worst_of_g"]
    assert s["best_gap_percent"] <= 0
    assert math.isfinite(s["mean_gap_percent"])
  # The norm is convex: the mean sample's error is at most the mean error,
  # up to the float32 rounding of two means of the same ~300 mm errors (a
  # few ulps of the value; one ulp of 300 is 3e-5).
  single = summary["mpjpe"]["single"]
  assert summary["mpjpe"]["mean_of_g"] <= single * (
      1 + 8 * np.finfo(np.float32).eps)


def test_critic_ranks(results):
  summary = results["critic_summary"]["noisy"]
  assert set(summary) == {"critic", "rot", "pos", "pa_pos", "vel", "skate"}
  # r_pos = exp(−ω·MPJPE/1000): a perfect rank correlation.
  np.testing.assert_allclose(summary["pos"]["spearman"], 1.0, rtol=1e-6)
  assert -1 <= summary["critic"]["spearman"] <= 1
  assert summary["critic"]["groups"] + summary["critic"][
      "undefined_groups"] == 4


def test_moved_rewards_common_random_numbers(results):
  """θ + 0·d is θ: the same keys give the same rollouts, to the last bit;
  a step or another key changes them."""
  moved = results["moved"]
  assert moved["alpha_0"] == moved["zero"]
  assert moved["plus"] != moved["zero"]
  assert moved["other_key"] != moved["zero"]
  for reward, mpjpe in moved.values():
    assert 0 < reward and mpjpe > 0


def test_mean_shift_common_random_numbers(results):
  """η = 0 scores the same fresh members to the last bit; a shift of step
  0's mean changes them; the other x_T gives other samples."""
  shift = results["shift"]
  for name in ("same_x_T", "other_x_T"):
    reward, mpjpe = (np.asarray(v) for v in shift[name])
    assert reward.shape == mpjpe.shape == (3, len(shift["valid"]))
    np.testing.assert_array_equal(reward[1], reward[0])
    np.testing.assert_array_equal(mpjpe[1], mpjpe[0])
    assert np.all(mpjpe[2] != mpjpe[0])
  assert np.all(np.asarray(shift["same_x_T"][1][0])
                != np.asarray(shift["other_x_T"][1][0]))


def test_fit_shift(results):
  """The targets sit η·σ0·u from step 0's means, u at unit RMS: the loss at
  θ is η² = 0.25 (every frame valid; float32 mean of squares). Adam closes
  part of the gap, more with more updates; the fitted θ' moves the scored
  rollouts (same keys as θ's `moved` zero entry)."""
  fit = results["fit"]
  assert fit["valid_fraction"] == 1.0
  np.testing.assert_allclose(fit["loss0"], 0.25, rtol=1e-5)
  first, fifth = fit["entries"]
  assert (first["updates"], fifth["updates"]) == (1, 5)
  assert 0 < first["fit_fraction"] < fifth["fit_fraction"] < 1
  assert 0 < first["distance"] < fifth["distance"]
  np.testing.assert_allclose(fit["delta_norms"],
                             [first["distance"], fifth["distance"]])
  for moved in fit["moved"]:
    assert moved != results["moved"]["zero"]
  # One rollout per sequence, x_T … x_0, holds the anchor's states; with the
  # anchor (β 1 on step 1, the tiny schedule's other σ > 0 step) the same
  # updates land elsewhere and still start from θ.
  assert fit["states_shape"][1] == 4  # 3 steps + x_T
  for plain, anchored in zip(fit["entries"], fit["anchored"]):
    assert anchored["distance"] != plain["distance"]
    assert anchored["distance"] > 0


def test_summarize_shift_by_hand():
  """Changes vs η = 0 over the valid sequences (the third is a filler)."""
  result = {"valid": [True, True, False],
            "same_x_T": ([[0.5, 0.7, 9.0], [0.6, 0.9, 9.0]],
                         [[100.0, 80.0, 9.0], [90.0, 76.0, 9.0]]),
            "other_x_T": ([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]],
                          [[90.0, 90.0, 0.0], [90.0, 90.0, 0.0]])}
  out = grpo_probe.summarize_shift([result], [0.0, 0.4])
  same = out["same_x_T"]
  assert same["sequences"] == 2 and same["base_mpjpe"] == 90.0
  row = same["steps"]["0.4"]
  np.testing.assert_allclose([row["reward"], row["mpjpe"]], [0.15, -7.0])
  np.testing.assert_allclose(row["mpjpe_percent"], -700 / 90)
  # Changes −10 and −4 mm: standard deviation 3√2, 1.96·3√2/√2 = 5.88.
  np.testing.assert_allclose(row["mpjpe_ci95"], 5.88)
  assert out["other_x_T"]["steps"]["0.4"]["mpjpe"] == 0.0


def test_ascent_direction_by_hand():
  """The ascent direction of a LOSS gradient is its negative, unit norm;
  Adam's first step is its sign, scaled to unit norm."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  g = jnp.array([3.0, -4.0, 0.0])
  np.testing.assert_allclose(grpo_probe.ascent_direction(g, "gradient"),
                             [-0.6, 0.8, 0.0], rtol=1e-6)
  np.testing.assert_allclose(grpo_probe.ascent_direction(g, "sign"),
                             [-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0],
                             rtol=1e-6)
  # Adam's steady direction of two batches' gradients g1 = (3, −4, 0) and
  # g2 = (1, 0, 0): −(4, −4, 0)/√(10, 16, 0) = (−1.265, 1, 0), unit norm.
  g2 = jnp.array([1.0, 0.0, 0.0])
  d = grpo_probe.ascent_direction(g + g2, "adam", g * g + g2 * g2)
  expected = np.array([-4 / math.sqrt(10), 1.0, 0.0])
  np.testing.assert_allclose(d, expected / np.linalg.norm(expected),
                             rtol=1e-6)
  np.testing.assert_allclose(grpo_probe.ascent_direction(g, "adam"),
                             grpo_probe.ascent_direction(g, "sign"))


def test_ascent_pairs_by_hand():
  """Each direction's batch i and scored batch j; pooled (i = −1) scores
  every batch with the others' summed gradient, only from 3 batches on."""
  assert grpo_probe.ascent_pairs(2, grpo_probe.ASCENT_SETS) == [
      (0, 0, "same"), (0, 1, "other"), (1, 0, "other"), (1, 1, "same")]
  assert grpo_probe.ascent_pairs(3, ("pooled",)) == [
      (-1, 0, "pooled"), (-1, 1, "pooled"), (-1, 2, "pooled")]
  assert grpo_probe.ascent_pairs(3, ("same",)) == [
      (0, 0, "same"), (1, 1, "same"), (2, 2, "same")]


def test_ascent_options_checked():
  config = types.SimpleNamespace(init_checkpoint="base")
  with pytest.raises(ValueError, match="--ascent_sets=best"):
    grpo_probe.run(config, sections=("ascent",), ascent_sets=("best",))
  with pytest.raises(ValueError, match="--shift_steps"):
    grpo_probe.run(config, sections=("shift",), shift_steps=(0.0,))
  with pytest.raises(ValueError, match="--fit_updates"):
    grpo_probe.run(config, sections=("fit",), fit_updates=(0, 10))


def test_summarize_ascent_by_hand():
  out = grpo_probe.summarize_ascent({
      "same": [{"reward_symmetric": 1.0}, {"reward_symmetric": 3.0}],
      "other": [{"reward_symmetric": -2.0}]})
  assert out["same"]["pairs"] == 2 and out["same"]["reward_symmetric"] == 2.0
  # std with ddof 1 of (1, 3) is √2; over √2 pairs: 1.
  np.testing.assert_allclose(out["same"]["reward_symmetric_stderr"], 1.0)
  assert out["other"]["reward_symmetric"] == -2.0
  assert math.isnan(out["other"]["reward_symmetric_stderr"])


def test_finite_json():
  assert grpo_probe._finite({"a": np.float32(np.nan), 1: [np.int64(2)]}) == {  # pylint: disable=protected-access
      "a": None, "1": [2]}
