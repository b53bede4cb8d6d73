"""Tests of the synthetic motion source: planted feet, plausibility, determinism.

Joint positions come from the body model's own forward kinematics (not the
generator's internal numpy FK), so the checks are independent of how the
motion was built.
"""

import jax
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import records
from motiongrpo_jax.data import synthetic

NUM_POSES = 240  # one shape for every jitted call below
SEEDS = (0, 1, 2, 3, 4, 5)
L_ANKLE, R_ANKLE = skeleton.LEFT_ANKLE, skeleton.RIGHT_ANKLE
L_TOE, R_TOE = skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT


@pytest.fixture(scope="module")
def body():
  return builtin_body()


@pytest.fixture(scope="module")
def posed(body):
  """seed, kinds → (motion, joints (P, 22, 3), T_world_cpf (P, 7)), cached."""
  fk = jax.jit(lambda b, T, q: body.forward_kinematics(b, T, q)[..., 4:])
  cpf = jax.jit(body.T_world_cpf)
  cache = {}

  def get(seed, kinds=None):
    key = (seed, kinds)
    if key not in cache:
      m = synthetic.generate_motion(seed, NUM_POSES, body, kinds=kinds)
      args = (m["betas"], m["T_world_root"], m["body_quats"])
      cache[key] = (m, np.asarray(fk(*args), np.float64),
                    np.asarray(cpf(*args), np.float64))
    return cache[key]

  return get


def _steps(joints, planted):
  """Per-frame 3-D displacement of joints (P, 3) between consecutive frames
  that are both `planted` (P,)."""
  both = planted[1:] & planted[:-1]
  return np.linalg.norm(np.diff(joints, axis=0), axis=-1)[both]


def test_planted_feet_do_not_slide(posed):
  # Tolerance 1 mm per frame (float32 round-off is ~1e-5 m): planted toe
  # joints, and ankle joints while the foot is flat, are fixed by design.
  toe_steps, ankle_steps = [], []
  for seed in SEEDS:
    m, joints, _ = posed(seed)
    for foot, (ankle, toe) in enumerate(((L_ANKLE, L_TOE), (R_ANKLE, R_TOE))):
      toe_steps.append(_steps(joints[:, toe], m["toe_planted"][:, foot]))
      ankle_steps.append(_steps(joints[:, ankle], m["foot_flat"][:, foot]))
  toe_steps, ankle_steps = np.concatenate(toe_steps), np.concatenate(ankle_steps)
  assert len(toe_steps) > 1000 and len(ankle_steps) > 500
  assert toe_steps.max() < 1e-3, toe_steps.max()
  assert ankle_steps.max() < 1e-3, ankle_steps.max()


def test_walking_and_running_feet_alternate_and_stay_planted(posed):
  for seed, kinds in ((1, ("walk",)), (2, ("run",))):
    m, joints, _ = posed(seed, kinds)
    contact = m["stance"]
    # Both feet take steps: each lifts off several times in 8 s.
    liftoffs = (contact[:-1] & ~contact[1:]).sum(axis=0)
    assert (liftoffs >= 4).all(), liftoffs
    if kinds == ("run",):
      assert (~contact.any(axis=1)).mean() > 0.1  # flight phases
    steps = np.concatenate([
        _steps(joints[:, toe], m["toe_planted"][:, foot])
        for foot, toe in enumerate((L_TOE, R_TOE))])
    assert steps.max() < 1e-3


def test_contact_rule_agrees_with_planted_toes(posed):
  # EgoAllo's contact rule (static and < 4 cm high) should find the planted
  # toes, and little else: on frames it labels, the toes barely move.
  labelled, planted, moved = [], [], []
  for seed in SEEDS:
    m, joints, _ = posed(seed)
    contacts = records.contact_labels(joints, 30.0, floor_z=0.0)
    for foot, toe in enumerate((L_TOE, R_TOE)):
      label = contacts[:-1, toe - 1] > 0
      labelled.append(label)
      planted.append(m["toe_planted"][:-1, foot])
      moved.append(np.linalg.norm(np.diff(joints[:, toe, :2], axis=0), axis=-1))
  labelled, planted, moved = map(np.concatenate, (labelled, planted, moved))
  assert (labelled & planted).sum() / planted.sum() > 0.95
  assert (labelled & planted).sum() / labelled.sum() > 0.9
  # Horizontal toe motion on labelled frames (mm per frame at 30 fps).
  assert moved[labelled].mean() < 0.5e-3
  assert moved[labelled].max() < 5e-3


def test_feet_above_floor_and_cpf_heights_plausible(posed):
  for seed in SEEDS:
    _, joints, cpf = posed(seed)
    assert joints[..., 2].min() > 0.005  # toe joints sit 1 cm above the sole
    assert 0.8 < cpf[:, 6].min() and cpf[:, 6].max() < 1.85
  for seed in (0, 1, 2):
    _, _, cpf = posed(seed, ("stand", "look"))
    assert 1.4 < cpf[:, 6].min() and cpf[:, 6].max() < 1.8


def test_head_faces_walking_direction_and_arms_swing_against_legs(posed):
  cosines = []
  for seed in (0, 1, 2, 3):
    m, joints, cpf = posed(seed, ("walk", "look"))
    travel = joints[30:, 0, :2] - joints[:-30, 0, :2]  # pelvis over 1 s
    moving = np.linalg.norm(travel, axis=-1) > 0.5
    direction = np.arctan2(travel[:, 1], travel[:, 0])
    forward = np.asarray(jaxlie.SO3(cpf[15:-15, :4]).as_matrix())[:, :, 2]
    yaw = np.arctan2(forward[:, 1], forward[:, 0])
    cosines.append(np.cos(yaw - direction)[moving])
    # Each wrist swings opposite to the ankle on its side (heading frame).
    mid = joints[15:-15]
    unit = np.stack([np.cos(direction), np.sin(direction)], -1)
    ahead = lambda j: np.sum((mid[:, j, :2] - mid[:, 0, :2]) * unit, -1)[moving]
    assert np.corrcoef(ahead(20), ahead(L_ANKLE))[0, 1] < -0.5
    assert np.corrcoef(ahead(21), ahead(R_ANKLE))[0, 1] < -0.5
  cosines = np.concatenate(cosines)
  assert cosines.mean() > 0.8  # on average within ~35° of the travel direction
  assert (cosines < 0.95).mean() > 0.05  # yet it does look around


def test_deterministic_varied_and_valid(body):
  a = synthetic.generate_motion(7, 60, body)
  b = synthetic.generate_motion(7, 60, body)
  c = synthetic.generate_motion(8, 60, body)
  for key in ("betas", "T_world_root", "body_quats", "stance"):
    np.testing.assert_array_equal(a[key], b[key])
  assert a["description"] == b["description"]
  assert not np.allclose(a["body_quats"], c["body_quats"])
  assert a["T_world_root"].shape == (60, 7) and a["body_quats"].shape == (60, 21, 4)
  for m in (a, c):
    np.testing.assert_allclose(np.linalg.norm(m["body_quats"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(m["T_world_root"][:, :4], axis=-1), 1.0,
                               atol=1e-5)
  betas = np.stack([synthetic.generate_motion(s, 2, body)["betas"] for s in range(40)])
  assert (betas[:, 8:] == 0).all()
  assert 0.5 < betas[:, :8].std() < 0.9  # N(0, 0.7²)


def test_knees_and_elbows_only_bend_forward(posed):
  for seed in SEEDS:
    m, _, _ = posed(seed)
    q = m["body_quats"]
    for joint, axis, sign in (("left_knee", 0, 1), ("right_knee", 0, 1),
                              ("left_elbow", 1, -1), ("right_elbow", 1, 1)):
      quat = q[:, skeleton.JOINT_NAMES.index(joint) - 1]
      w, v = quat[:, 0], quat[:, 1:]
      angle = 2 * np.arctan2(np.linalg.norm(v, axis=-1), np.abs(w))
      along = sign * np.sign(w) * v[:, axis]
      # A pure hinge: the rotation axis is the joint's flexion axis.
      assert (along >= -1e-6).all(), joint
      np.testing.assert_allclose(np.abs(along), np.sin(angle / 2), atol=1e-4)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="kinds"):
    synthetic.generate_motion(0, 10, kinds=("walk", "fly"))
  with pytest.raises(ValueError, match="kinds"):
    synthetic.generate_motion(0, 10, kinds=("wave",))
  with pytest.raises(ValueError, match="num_frames"):
    synthetic.generate_motion(0, 1)
  with pytest.raises(ValueError, match="split"):
    next(synthetic.synthetic_records(1, split="training"))
  with pytest.raises(ValueError, match="num_frames"):
    next(synthetic.synthetic_records(1, num_frames=(50, 10)))


def test_split_assignment_is_balanced_and_deterministic():
  splits = [synthetic.split_of(i, seed=3) for i in range(1000)]
  assert splits == [synthetic.split_of(i, seed=3) for i in range(1000)]
  for name, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
    assert abs(splits.count(name) / 1000 - share) < 0.01
  # Any 13 consecutive sequences already contain every split (a golden-ratio
  # sequence fills the unit interval with gaps below 0.1 from 13 points on).
  assert all(len(set(splits[i:i + 13])) == 3 for i in range(len(splits) - 13))


def test_synthetic_records(body):
  recs = list(synthetic.synthetic_records(3, seed=5, num_frames=(40, 60), body=body))
  again = list(synthetic.synthetic_records(2, seed=5, num_frames=(40, 60), body=body))
  assert [r.name for r in recs] == ["synthetic/000000", "synthetic/000001",
                                    "synthetic/000002"]
  for r in recs:
    assert 40 <= r.num_frames <= 60 and r.source == "synthetic" and r.fps == 30.0
    assert r.split in ("train", "val", "test")
    records.validate(r)
  for r, s in zip(recs, again):  # a prefix of a larger dataset is the same
    np.testing.assert_array_equal(r.body_quats, s.body_quats)
    np.testing.assert_array_equal(r.contacts, s.contacts)
  assert min(r.height_from_floor.min() for r in recs) > 0.8
  assert {s.split for s in synthetic.synthetic_records(
      2, seed=5, num_frames=(40, 40), split="val", body=body)} == {"val"}
