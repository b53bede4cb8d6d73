"""Guidance: each residual on hand-computed cases, the LM solver on problems
with known answers, and what guiding a packed sample may change."""

import dataclasses

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.guidance import optimize
from motiongrpo_jax.guidance import residuals
from motiongrpo_jax.model import packing

L = 6
BODY = body_model.builtin_body()
CONFIG = residuals.GuidanceConfig(mode="no_hands")
# float32 rounding of rotations composed a few times (|q| = 1): ~1e-6 rad.
ATOL = 1e-5


def _walk(step_x: float = 0.0):
  """(L, 7) CPF poses moving `step_x` metres per frame along x."""
  T = jnp.broadcast_to(jnp.array([1.0, 0, 0, 0, 0, 0, 1.6]), (L, 7))
  return T.at[:, 4].set(step_x * jnp.arange(L))


def _problem(quats, T_world_cpf, contacts=None, **kwargs):
  if contacts is None:
    contacts = jnp.ones((L, 21))
  return residuals.make_problem(quats, jnp.zeros((L, 16)), contacts,
                                T_world_cpf, BODY, **kwargs)


def _pose(seed: int = 0, scale: float = 0.3):
  """(21, 4) a random pose."""
  delta = scale * jax.random.normal(jax.random.PRNGKey(seed), (21, 3))
  return jaxlie.SO3.exp(delta).wxyz


def test_a_still_body_costs_nothing():
  """Constant pose, still head, δ = 0: every residual is exactly zero."""
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  problem = _problem(quats, _walk(0.0))
  terms = residuals.residuals(jnp.zeros((L, 21, 3)), problem, BODY, CONFIG)
  assert set(terms) == {"prior_rot", "prior_torso", "smooth_corr",
                        "smooth_rot", "smooth_vel", "skate"}
  for name, value in terms.items():
    np.testing.assert_allclose(value, 0.0, atol=ATOL, err_msg=name)


def test_skating_is_contact_times_foot_step():
  """A rigid body gliding 1 cm per frame along x: the skate residual of a
  foot joint is 30·c·(−0.01, 0, 0); smoothness stays zero."""
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  contacts = jnp.zeros((L, 21)).at[:, residuals.FOOT_JOINTS[0] - 1].set(0.5)
  problem = _problem(quats, _walk(0.01), contacts)
  terms = residuals.residuals(jnp.zeros((L, 21, 3)), problem, BODY, CONFIG)
  expected = np.zeros((L - 1, 4, 3), np.float32)
  expected[:, 0, 0] = 30.0 * 0.5 * -0.01
  np.testing.assert_allclose(terms["skate"], expected, atol=ATOL)
  for name in ("smooth_rot", "smooth_vel"):
    np.testing.assert_allclose(terms[name], 0.0, atol=ATOL, err_msg=name)


def test_skating_weighs_each_frame_pair_by_its_mean_contact():
  """EgoAllo's weight of the pair (t, t+1), (c_t + c_{t+1})/2, of contacts
  clipped to [0, 1]: contacts 0, 1, 0.5, 1.5, −0.5, 0 give 0.5, 0.75, 0.75,
  0.5, 0 on the same 1 cm glide."""
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  raw = jnp.array([0.0, 1.0, 0.5, 1.5, -0.5, 0.0])
  contacts = jnp.zeros((L, 21)).at[:, residuals.FOOT_JOINTS[0] - 1].set(raw)
  problem = _problem(quats, _walk(0.01), contacts)
  terms = residuals.residuals(jnp.zeros((L, 21, 3)), problem, BODY, CONFIG)
  expected = np.zeros((L - 1, 4, 3), np.float32)
  expected[:, 0, 0] = 30.0 * np.array([0.5, 0.75, 0.75, 0.5, 0.0]) * -0.01
  np.testing.assert_allclose(terms["skate"], expected, atol=ATOL)


def test_the_body_is_posed_with_the_mean_shape_of_valid_frames():
  """Betas that change per frame pose the body as their mean over the valid
  frames (EgoAllo's one shape per window): the same residuals as constant
  mean betas, and an invalid frame's betas do not count."""
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  mean = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (16,))
  wobble = 0.3 * jnp.array([1.0, -1.0, 1.0, -1.0, 0.0, 0.0])[:, None]
  betas = mean + wobble * jnp.ones(16)
  mask = jnp.arange(L) < 5
  betas = betas.at[5].set(100.0)  # an invalid frame: ignored
  delta = 0.05 * jax.random.normal(jax.random.PRNGKey(2), (L, 21, 3))
  def terms(b):
    problem = residuals.make_problem(quats, b, jnp.ones((L, 21)), _walk(0.01),
                                     BODY, mask)
    return residuals.residuals(delta, problem, BODY, CONFIG)
  varying, constant = terms(betas), terms(jnp.broadcast_to(mean, (L, 16)))
  for name in varying:
    np.testing.assert_allclose(varying[name], constant[name], atol=ATOL,
                               err_msg=name)


def test_rotation_terms_by_hand():
  """Joint 3 turning 0.1 rad per frame about x; a correction δ on one frame.

  smooth_rot = 1·(0.1, 0, 0) at that joint, smooth_vel = 0 (constant
  angular velocity); prior_rot = −δ (log(q⁻¹q⁰) = log(exp(−δ))); the
  correction's change is 10·(δ_t − δ_{t+1}) for a correction about one axis
  that commutes with the joint's motion.
  """
  angles = 0.1 * jnp.arange(L)
  joint3 = jaxlie.SO3.from_x_radians(angles).wxyz  # (L, 4)
  quats = jnp.broadcast_to(jaxlie.SO3.identity().wxyz, (L, 21, 4))
  quats = quats.at[:, 3].set(joint3)
  problem = _problem(quats, _walk(0.0))
  terms = residuals.residuals(jnp.zeros((L, 21, 3)), problem, BODY, CONFIG)
  expected = np.zeros((L - 1, 21, 3), np.float32)
  expected[:, 3, 0] = 0.1
  np.testing.assert_allclose(terms["smooth_rot"], expected, atol=ATOL)
  np.testing.assert_allclose(terms["smooth_vel"], 0.0, atol=ATOL)

  delta = jnp.zeros((L, 21, 3)).at[2, 3, 0].set(0.05)
  terms = residuals.residuals(delta, problem, BODY, CONFIG)
  np.testing.assert_allclose(terms["prior_rot"], -delta, atol=ATOL)
  corr = np.zeros((L - 1, 21, 3), np.float32)
  corr[1, 3, 0], corr[2, 3, 0] = 10.0 * (0 - 0.05), 10.0 * (0.05 - 0)
  np.testing.assert_allclose(terms["smooth_corr"], corr, atol=ATOL)


def test_invalid_frames_have_no_residuals():
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  mask = jnp.arange(L) < 3
  problem = _problem(quats, _walk(0.01), mask=mask)
  delta = 0.1 * jnp.ones((L, 21, 3))
  terms = residuals.residuals(delta, problem, BODY, CONFIG)
  np.testing.assert_array_equal(terms["prior_rot"][3:], 0.0)
  np.testing.assert_array_equal(terms["skate"][2:], 0.0)
  np.testing.assert_array_equal(terms["smooth_vel"][1:], 0.0)


def test_lm_reaches_the_least_squares_minimum():
  """r(x) = A·x − b: LM ends at the normal equations' solution."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=(12, 5)).astype(np.float32)
  b = rng.normal(size=12).astype(np.float32)
  x, costs = jax.jit(lambda: optimize.levenberg_marquardt(
      lambda x: {"r": a @ x - b}, jnp.zeros(5), iterations=30,
      cg_iterations=10))()
  expected = np.linalg.lstsq(a.astype(np.float64), b, rcond=None)[0]
  # cond(A) ≈ 3 here, so float32 CG lands within ~1e-5 of the solution.
  np.testing.assert_allclose(x, expected, atol=1e-4)
  minimum = 0.5 * np.sum((a @ expected - b) ** 2)
  np.testing.assert_allclose(costs[-1], minimum, rtol=1e-4)


def test_guidance_lowers_the_cost_monotonically_and_keeps_the_rest():
  """A skating, jittery sample with hands: the LM cost never rises and ends
  far below its start; betas, contacts and hands are untouched."""
  key = jax.random.PRNGKey(1)
  delta = 0.3 * jax.random.normal(key, (L, 21, 3))
  rotmats = geometry.quat_to_matrix(jaxlie.SO3.exp(delta).wxyz)
  hands = geometry.quat_to_matrix(jaxlie.SO3.exp(
      0.2 * jax.random.normal(jax.random.fold_in(key, 1), (L, 30, 3))).wxyz)
  betas = 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (L, 16))
  contacts = jax.random.uniform(jax.random.fold_in(key, 3), (L, 21))
  x0 = packing.pack(betas, rotmats, contacts, hands)
  T = _walk(0.02)

  quats = geometry.matrix_to_quat(rotmats)
  problem = residuals.make_problem(quats, betas, contacts, T, BODY)
  start = residuals.cost(jnp.zeros((L, 21, 3)), problem, BODY, CONFIG)
  _, costs = jax.jit(lambda: optimize.levenberg_marquardt(
      lambda d: residuals.residuals(d, problem, BODY, CONFIG),
      jnp.zeros((L, 21, 3)), 10, CONFIG.cg_iterations))()
  assert np.all(np.diff(np.concatenate([[start], costs])) <= 0)
  assert costs[-1] < 0.5 * start

  ten = dataclasses.replace(CONFIG, iterations=10)
  guided = jax.jit(lambda x: optimize.guide(x, T, BODY, ten))(x0)
  before, after = (packing.unpack(x, True) for x in (x0, guided))
  np.testing.assert_array_equal(after.hand_rotmats, before.hand_rotmats)
  np.testing.assert_array_equal(after.betas, before.betas)
  np.testing.assert_array_equal(after.contacts, before.contacts)
  assert not np.allclose(after.body_rotmats, before.body_rotmats, atol=1e-3)
  eye = np.broadcast_to(np.eye(3), after.body_rotmats.shape)
  np.testing.assert_allclose(
      np.swapaxes(after.body_rotmats, -1, -2) @ after.body_rotmats, eye,
      atol=1e-5)


def test_wrist_targets_pull_the_wrists():
  """aria_wrist_only: targets 5 cm from the sampled wrists; guidance moves
  the wrists most of the way (the priors hold the rest of the body)."""
  config = residuals.GuidanceConfig(mode="aria_wrist_only")
  quats = jnp.broadcast_to(_pose(scale=0.1), (L, 21, 4))
  T = _walk(0.0)
  joints = residuals.posed_joints(quats, jnp.zeros((L, 16)), T, BODY)
  wrists = joints[:, jnp.array(residuals.WRIST_JOINTS)]
  targets = wrists.at[..., 4:].add(jnp.array([0.0, 0.05, 0.0]))
  problem = _problem(quats, T, jnp.zeros((L, 21)), wrists=targets)
  delta = jax.jit(lambda: optimize.solve(problem, BODY, config))()
  moved = residuals.posed_joints(residuals.corrected_quats(delta, quats),
                                 jnp.zeros((L, 16)), T, BODY)
  error = jnp.linalg.norm(
      moved[:, jnp.array(residuals.WRIST_JOINTS), 4:] - targets[..., 4:],
      axis=-1)
  assert float(error.max()) < 0.02


@pytest.mark.parametrize("field, value, match", [
    ("mode", "hands", "guidance.mode"),
    ("iterations", 0, "guidance.iterations"),
    ("weight_skate", -1.0, "guidance.weight_skate"),
])
def test_bad_options_name_themselves(field, value, match):
  config = residuals.GuidanceConfig(**{field: value})
  with pytest.raises(ValueError, match=match):
    config.validate()


@pytest.mark.parametrize("options, match", [
    (dict(mode="no_hands", inner_iterations=0), r"guidance.inner_iterations=0"),
    (dict(mode="no_hands", inner=1), r"guidance.inner=1: expected True or"),
    (dict(mode="no_hands", post="yes"), r"guidance.post='yes'"),
    (dict(inner=True), r"guidance.inner=True: needs guidance.mode"),
    (dict(mode="no_hands", post=False), r"guidance.post=False: .* guides "
     "nothing"),
])
def test_bad_inner_and_post_options_name_themselves(options, match):
  with pytest.raises(ValueError, match=match) as error:
    residuals.GuidanceConfig(**options).validate()
  assert "\n" not in str(error.value)  # one line


def test_inner_and_post_switches():
  """Defaults: post only. Off mode runs neither; inner alone is allowed."""
  assert (CONFIG.runs_inner, CONFIG.runs_post) == (False, True)
  off = residuals.GuidanceConfig(post=True).validate()
  assert (off.runs_inner, off.runs_post) == (False, False)
  inner = residuals.GuidanceConfig(mode="no_hands", inner=True,
                                   post=False).validate()
  assert (inner.runs_inner, inner.runs_post) == (True, False)


def test_inner_hook_is_guide_with_the_inner_iterations():
  """The sampler hook of inner guidance guides x̂0 (B, L, d) like `guide`
  with `inner_iterations` LM iterations, at whatever step it is called."""
  key = jax.random.PRNGKey(2)
  rotmats = geometry.quat_to_matrix(jaxlie.SO3.exp(
      0.3 * jax.random.normal(key, (2, L, 21, 3))).wxyz)
  x0 = packing.pack(jnp.zeros((2, L, 16)), rotmats, jnp.ones((2, L, 21)))
  T = _walk(0.02)
  config = dataclasses.replace(CONFIG, inner=True, inner_iterations=2)
  hook = optimize.inner_guide(T, BODY, config)
  expected = jax.jit(lambda x: optimize.guide(
      x, T, BODY, dataclasses.replace(config, iterations=2)))(x0)
  for step in (0, 7):
    np.testing.assert_array_equal(
        jax.jit(hook)(x0, jnp.int32(step)), expected)
  assert not np.allclose(expected, x0, atol=1e-3)


def test_wrist_rotation_has_its_own_mask():
  """Targets 5 cm and 0.2 rad (about x) off the sampled wrists. The
  rotation mask defaults to the position mask; masked off, only the
  orientation residual vanishes (MPS gives wrist positions, no
  orientation)."""
  config = residuals.GuidanceConfig(mode="aria_wrist_only")
  quats = jnp.broadcast_to(_pose(scale=0.1), (L, 21, 4))
  T = _walk(0.0)
  joints = residuals.posed_joints(quats, jnp.zeros((L, 16)), T, BODY)
  wrists = jaxlie.SE3(joints[:, jnp.array(residuals.WRIST_JOINTS)])
  offset = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_x_radians(0.2), jnp.array([0.0, 0.05, 0.0]))
  targets = jaxlie.SE3.from_rotation_and_translation(
      wrists.rotation() @ offset.rotation(),
      wrists.translation() + offset.translation()).wxyz_xyz
  mask = jnp.ones((L, 2), bool).at[0, 1].set(False)
  zero = jnp.zeros((L, 21, 3))

  def terms(**masks):
    problem = _problem(quats, T, jnp.zeros((L, 21)), wrists=targets, **masks)
    return residuals.residuals(zero, problem, BODY, config)

  both = terms(wrist_mask=mask)
  # |w·log(R⁻¹R̄)| = 10 · 0.2 rad and |w·Δp| = 50 · 0.05 m where valid.
  for name, expected in (("wrist_rot", 2.0), ("wrist_pos", 2.5)):
    np.testing.assert_allclose(np.linalg.norm(both[name], axis=-1),
                               expected * np.asarray(mask), atol=1e-4,
                               err_msg=name)
  no_rot = terms(wrist_mask=mask, wrist_rot_mask=jnp.zeros((L, 2), bool))
  np.testing.assert_array_equal(no_rot["wrist_rot"], 0.0)
  np.testing.assert_array_equal(no_rot["wrist_pos"], both["wrist_pos"])


def test_floor_is_the_depth_of_each_joint_below_it():
  """weight_floor w: the residual of a joint is w·(floor − z) below the
  floor and 0 above it; with no floor given (None) the term is zero."""
  config = dataclasses.replace(CONFIG, weight_floor=7.0)
  quats = jnp.broadcast_to(_pose(), (L, 21, 4))
  T = _walk(0.0)
  problem_of = lambda floor: _problem(quats, T, floor_z=floor)
  z = residuals.posed_joints(quats, jnp.zeros((L, 16)), T, BODY)[..., 6]
  floor = float(jnp.sort(z[0])[3])  # three joints lie below it
  terms = residuals.residuals(jnp.zeros((L, 21, 3)), problem_of(floor), BODY,
                              config)
  expected = 7.0 * np.maximum(floor - np.asarray(z), 0.0)
  assert np.count_nonzero(expected[0]) == 3
  np.testing.assert_allclose(terms["floor"], expected, atol=ATOL)
  none = residuals.residuals(jnp.zeros((L, 21, 3)), problem_of(None), BODY,
                             config)
  np.testing.assert_array_equal(none["floor"], 0.0)
  assert "floor" not in residuals.residuals(
      jnp.zeros((L, 21, 3)), problem_of(floor), BODY, CONFIG)


def test_floor_term_lifts_the_body_out_of_the_floor():
  """A sample whose lowest joints are 5 cm below the floor: guided with the
  floor term, the deepest joint ends within 1 cm of the floor (the head is
  held on its trajectory, so the legs bend); without it, unchanged."""
  quats = jnp.broadcast_to(_pose(scale=0.1), (L, 21, 4))
  T = _walk(0.0)
  z = residuals.posed_joints(quats, jnp.zeros((L, 16)), T, BODY)[..., 6]
  floor = float(z.min()) + 0.05
  x0 = packing.pack(jnp.zeros((L, 16)), geometry.quat_to_matrix(quats),
                    jnp.zeros((L, 21)))
  def depth(config):
    guided = packing.unpack(jax.jit(lambda x: optimize.guide(
        x, T, BODY, config, floor_z=jnp.float32(floor)))(x0), False)
    quats_after = geometry.matrix_to_quat(guided.body_rotmats)
    z_after = residuals.posed_joints(quats_after, jnp.zeros((L, 16)), T,
                                     BODY)[..., 6]
    return float(floor - z_after.min())
  assert depth(dataclasses.replace(CONFIG, weight_floor=100.0)) < 0.01
  assert depth(CONFIG) > 0.045
