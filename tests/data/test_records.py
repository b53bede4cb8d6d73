"""Tests of sequence records: contacts, floor, validation, derived quantities."""

import dataclasses

import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import records

# Body frame (+y up) to world (+z up): +90° about x.
Y_UP_TO_Z_UP = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0])


@pytest.fixture(scope="module")
def body():
  return builtin_body()


def _walk(num_frames, seed=0, hands=False):
  """A smooth random motion: pelvis drifting and turning, joints swinging."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_frames)[:, None] / 30.0
  scales = np.array([1.0, 6.0, 3.0])[:, None, None]
  amp, freq, phase = rng.uniform(0.1, 0.5, (3, 21, 3)) * scales
  log = amp[None] * np.sin(freq[None] * t[..., None] + phase[None])
  body_quats = np.asarray(jaxlie.SO3.exp(jnp.asarray(log)).wxyz)
  yaw = jaxlie.SO3.from_z_radians(jnp.asarray(0.3 * t[:, 0]))
  root_R = yaw @ jaxlie.SO3(jnp.asarray(Y_UP_TO_Z_UP))
  root_t = np.stack([0.8 * t[:, 0], 0.1 * np.sin(t[:, 0]),
                     0.95 + 0.02 * np.sin(5 * t[:, 0]) + 0.3], axis=-1)
  T_world_root = np.concatenate([np.asarray(root_R.wxyz), root_t], axis=-1)
  hand_quats = None
  if hands:
    hand_quats = np.asarray(jaxlie.SO3.exp(jnp.asarray(
        rng.normal(scale=0.2, size=(num_frames, 30, 3)))).wxyz)
  betas = rng.normal(size=16).astype(np.float32)
  return betas, T_world_root, body_quats, hand_quats


def _record(num_frames=12, hands=True):
  """A structurally valid record with arbitrary values."""
  rng = np.random.default_rng(7)
  unit = lambda *s: (lambda q: q / np.linalg.norm(q, axis=-1, keepdims=True))(
      rng.normal(size=s + (4,)))
  pose = lambda: np.concatenate([unit(num_frames), rng.normal(
      size=(num_frames, 3))], -1).astype(np.float32)
  return records.SequenceRecord(
      betas=rng.normal(size=16).astype(np.float32),
      T_world_root=pose(),
      body_quats=unit(num_frames, 21).astype(np.float32),
      hand_quats=unit(num_frames, 30).astype(np.float32) if hands else None,
      contacts=(rng.uniform(size=(num_frames, 21)) > 0.5).astype(np.float32),
      T_world_cpf=pose(),
      T_cpf_tm1_cpf_t=pose(),
      height_from_floor=rng.uniform(size=(num_frames, 1)).astype(np.float32),
      joints_wrt_cpf=rng.normal(size=(num_frames, 21, 3)).astype(np.float32),
      name="seq", source="test", fps=30.0, split="val")


# --- Contacts and floor ------------------------------------------------------

def test_contact_labels_hand_computed():
  idx = skeleton.JOINT_NAMES.index
  joints = np.zeros((4, 22, 3))
  joints[..., 2] = 1.0  # everything high and static ...
  # Left toe 2 cm up, static for frames 0..2, then it jumps 0.1 m: with
  # forward differences frame 2 is already moving, frame 3 repeats frame 2.
  joints[:, idx("left_foot")] = [0.0, 0.0, 0.02]
  joints[3, idx("left_foot"), 0] = 0.1
  # Right ankle at 7 cm (< 8 cm): in contact throughout.
  joints[:, idx("right_ankle"), 2] = 0.07
  # Right toe at 5 cm (> 4 cm toe limit): never.
  joints[:, idx("right_foot"), 2] = 0.05
  # Left wrist at 5 cm, static: in contact.
  joints[:, idx("left_wrist"), 2] = 0.05
  # Head on the floor: not a contact joint.
  joints[:, idx("head"), 2] = 0.0
  # Left knee at 7.9 cm creeping 4 mm per frame: static at 30 fps only.
  joints[:, idx("left_knee"), 2] = 0.079
  joints[:, idx("left_knee"), 1] = 0.004 * np.arange(4)
  labels = records.contact_labels(joints, 30.0)
  expected = np.zeros((4, 21), np.float32)
  expected[:, idx("left_foot") - 1] = [1, 1, 0, 0]
  expected[:, idx("right_ankle") - 1] = 1
  expected[:, idx("left_wrist") - 1] = 1
  expected[:, idx("left_knee") - 1] = 1
  np.testing.assert_array_equal(labels, expected)
  assert labels.dtype == np.float32
  # At 120 fps the threshold is 0.005·30/120 = 1.25 mm per frame.
  labels_120 = records.contact_labels(joints, 120.0)
  assert labels_120[:, idx("left_knee") - 1].sum() == 0
  # A raised floor lifts nothing into contact and drops the ankle.
  labels_high = records.contact_labels(joints, 30.0, floor_z=-0.02)
  assert labels_high[:, idx("right_ankle") - 1].sum() == 0
  with pytest.raises(ValueError, match="joints_world"):
    records.contact_labels(joints[:, :21], 30.0)


def test_estimate_floor_from_static_toes():
  idx = skeleton.JOINT_NAMES.index
  num_frames = 40
  joints = np.zeros((num_frames, 22, 3))
  joints[..., 2] = 1.5
  for toe, offset in ((idx("left_foot"), 0), (idx("right_foot"), 10)):
    k = (np.arange(num_frames) + offset) % 20
    stance = k < 10
    # Stance: planted at z = 0.30 ± 1 mm, static; swing: lifted and moving.
    joints[:, toe, 2] = np.where(stance, 0.30 + 0.001 * (k % 3 - 1),
                                 0.30 + 0.05 + 0.01 * k)
    joints[:, toe, 0] = np.cumsum(np.where(stance, 0.0, 0.05))
  # A single static glitch far below (a tracking error) must not win.
  joints[5:7, idx("left_foot"), 2] = -0.5
  floor = records.estimate_floor(joints, 30.0)
  assert floor == pytest.approx(0.30 - 0.01, abs=1e-3)


def test_estimate_floor_without_static_frames():
  idx = skeleton.JOINT_NAMES.index
  joints = np.zeros((20, 22, 3))
  for toe in (idx("left_foot"), idx("right_foot")):
    joints[:, toe, 2] = 0.5 + 0.1 * np.arange(20)  # always moving
  # 40 heights 0.5, 0.5, 0.6, 0.6, …: the 5th percentile sits at rank
  # 0.05·39 = 1.95, i.e. 0.5 + 0.95·0.1 = 0.595; the floor is 1 cm lower.
  assert records.estimate_floor(joints, 30.0) == pytest.approx(0.585, abs=1e-9)


# --- Validation --------------------------------------------------------------

def test_valid_record_passes():
  record = _record()
  assert records.validate(record) is record
  assert record.num_frames == 12
  records.validate(_record(hands=False))


@pytest.mark.parametrize("change, message", [
    (dict(body_quats=np.ones((12, 22, 4), np.float32) / 2),
     "body_quats: expected shape (T, 21, 4) with T=12, got (12, 22, 4)"),
    (dict(contacts=np.zeros((11, 21), np.float32)),
     "contacts: expected shape (T, 21) with T=12, got (11, 21)"),
    (dict(hand_quats=np.ones((12, 15, 4), np.float32) / 2),
     "hand_quats: expected shape (T, 30, 4) with T=12, got (12, 15, 4)"),
    (dict(betas=np.zeros(10, np.float32)),
     "betas: expected shape (16,), got (10,)"),
    (dict(fps=0.0), "fps: expected a positive number, got 0.0"),
])
def test_validation_errors_name_the_field(change, message):
  record = dataclasses.replace(_record(), **change)
  with pytest.raises(ValueError) as info:
    records.validate(record)
  assert str(info.value) == message


def test_validation_non_finite_and_quaternion_norms():
  record = _record()
  root = record.T_world_root.copy()
  root[3, 5] = np.nan
  root[4, 6] = np.inf
  root[9, 0] = np.nan
  with pytest.raises(ValueError) as info:
    records.validate(dataclasses.replace(record, T_world_root=root))
  assert str(info.value) == "T_world_root: 3 non-finite values"
  quats = record.body_quats.copy()
  quats[7, 3] *= 1.2
  quats[2, 0] *= 1.1
  with pytest.raises(ValueError) as info:
    records.validate(dataclasses.replace(record, body_quats=quats))
  assert str(info.value) == (
      "body_quats: quaternion norms must be 1 (max deviation 0.2 at frame 7)")
  cpf = record.T_world_cpf.copy()
  cpf[1, :4] = [1.0, 0.0, 0.0, 0.01]  # norm 1.00005: within 1e-3
  records.validate(dataclasses.replace(record, T_world_cpf=cpf))
  cpf[1, :4] = [1.0, 0.0, 0.0, 0.1]  # norm 1.005
  with pytest.raises(ValueError, match=r"^T_world_cpf: quaternion norms"):
    records.validate(dataclasses.replace(record, T_world_cpf=cpf))
  contacts = record.contacts.copy()
  contacts[0, 0] = 2.0
  with pytest.raises(ValueError, match="^contacts: expected values in"):
    records.validate(dataclasses.replace(record, contacts=contacts))


# --- Serialisation -----------------------------------------------------------

@pytest.mark.parametrize("hands", [True, False])
def test_numpy_dict_round_trip(hands):
  record = _record(hands=hands)
  d = records.to_numpy_dict(record)
  assert ("hand_quats" in d) == hands
  assert all(d[k].dtype == np.float32 for k in records.ARRAY_FIELDS if k in d)
  back = records.from_numpy_dict(d)
  for key in records.ARRAY_FIELDS:
    if getattr(record, key) is None:
      assert getattr(back, key) is None
    else:
      np.testing.assert_array_equal(getattr(back, key), getattr(record, key))
  assert (back.name, back.source, back.fps, back.split) == (
      "seq", "test", 30.0, "val")
  # Bytes metadata (as read back from a dataset) decode to str.
  d["name"] = np.asarray(b"seq")
  assert records.from_numpy_dict(d).name == "seq"
  del d["T_world_cpf"]
  with pytest.raises(ValueError, match="T_world_cpf"):
    records.from_numpy_dict(d)


def test_record_is_a_pytree_with_static_metadata():
  import jax
  record = _record(hands=False)
  leaves, treedef = jax.tree.flatten(record)
  assert len(leaves) == 8  # 9 array fields, hand_quats None
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert rebuilt.name == "seq" and rebuilt.split == "val"


# --- from_motion -------------------------------------------------------------

def test_from_motion_invariants(body):
  P = 16
  betas, T_world_root, body_quats, hand_quats = _walk(P, hands=True)
  floor_z = 0.3
  record = records.from_motion(
      body, betas, T_world_root, body_quats, hand_quats, fps=30.0,
      name="walk", source="synthetic", split="train", floor_z=floor_z)
  assert record.num_frames == P - 1
  assert record.hand_quats.shape == (P - 1, 30, 4)
  np.testing.assert_array_equal(record.body_quats, body_quats[1:])
  # Root and CPF shifted down by the floor height.
  expected_root = T_world_root[1:].copy()
  expected_root[:, 6] -= floor_z
  np.testing.assert_allclose(record.T_world_root, expected_root, atol=1e-6)
  cpf_in = np.array(body.T_world_cpf(
      jnp.asarray(betas), jnp.asarray(T_world_root, jnp.float32),
      jnp.asarray(body_quats, jnp.float32)))
  cpf_in[:, 6] -= floor_z
  np.testing.assert_allclose(record.T_world_cpf, cpf_in[1:], atol=1e-5)
  # Height equals the CPF z.
  np.testing.assert_array_equal(record.height_from_floor[:, 0],
                                record.T_world_cpf[:, 6])
  # Relative motion composes back to the absolute poses (tolerance 1e-4 m /
  # 1e-5 on quaternions after 15 float32 compositions).
  T = jaxlie.SE3(jnp.asarray(cpf_in[0]))
  for k in range(P - 1):
    T = T @ jaxlie.SE3(jnp.asarray(record.T_cpf_tm1_cpf_t[k]))
    wxyz = np.asarray(T.rotation().wxyz)
    sign = np.sign(np.dot(wxyz, record.T_world_cpf[k, :4]))
    np.testing.assert_allclose(sign * wxyz,
                               record.T_world_cpf[k, :4], atol=1e-5)
    np.testing.assert_allclose(T.translation(), record.T_world_cpf[k, 4:],
                               atol=1e-4)
  # joints_wrt_cpf round-trips to the world joints.
  joints_world = np.asarray(body.forward_kinematics(
      jnp.asarray(betas), jnp.asarray(record.T_world_root),
      jnp.asarray(record.body_quats)))[:, 1:, 4:]
  back = np.asarray(jaxlie.SE3(jnp.asarray(record.T_world_cpf[:, None]))
                    @ jnp.asarray(record.joints_wrt_cpf))
  np.testing.assert_allclose(back, joints_world, atol=1e-5)
  # Contacts from the shifted joints, first frame dropped.
  all_joints = np.array(body.forward_kinematics(
      jnp.asarray(betas), jnp.asarray(T_world_root, jnp.float32),
      jnp.asarray(body_quats, jnp.float32)))[..., 4:]
  all_joints[..., 2] -= floor_z
  np.testing.assert_array_equal(
      record.contacts, records.contact_labels(all_joints, 30.0)[1:])
  # Given contacts are kept (first frame dropped).
  given = np.zeros((P, 21), np.float32)
  given[:, 3] = 1
  with_given = records.from_motion(
      body, betas, T_world_root, body_quats, fps=30.0, name="walk",
      source="synthetic", split="train", floor_z=floor_z, contacts=given)
  np.testing.assert_array_equal(with_given.contacts, given[1:])
  assert with_given.hand_quats is None


def test_from_motion_standing_still_estimates_floor(body):
  """A body at rest with its toe joints at z = 0.5: the floor is estimated
  at 0.49, toes and ankles are in contact, nothing else."""
  P = 5
  root_z = 0.5 - skeleton.REST_JOINTS[skeleton.LEFT_FOOT][1]
  T_world_root = np.tile(np.concatenate([Y_UP_TO_Z_UP, [2.0, -1.0, root_z]]),
                         (P, 1))
  body_quats = np.tile([1.0, 0.0, 0.0, 0.0], (P, 21, 1))
  record = records.from_motion(
      body, np.zeros(16), T_world_root, body_quats, fps=30.0, name="stand",
      source="synthetic", split="val")
  # Toe joints are 0.01 m above the estimated floor; the CPF is at
  # head + (0, 0.085) above the pelvis in the body frame (y up ↦ z up).
  cpf_height = (root_z - 0.49 + skeleton.REST_JOINTS[skeleton.HEAD][1]
                + skeleton.HEAD_TO_CPF[1])
  np.testing.assert_allclose(record.height_from_floor, cpf_height, atol=1e-5)
  np.testing.assert_allclose(record.T_world_root[:, 6], root_z - 0.49,
                             atol=1e-5)
  expected = np.zeros((P - 1, 21), np.float32)
  for j in (skeleton.LEFT_ANKLE, skeleton.RIGHT_ANKLE, skeleton.LEFT_FOOT,
            skeleton.RIGHT_FOOT):
    expected[:, j - 1] = 1
  np.testing.assert_array_equal(record.contacts, expected)
  # Relative CPF motion of a still body is the identity.
  np.testing.assert_allclose(record.T_cpf_tm1_cpf_t,
                             np.tile([1.0, 0, 0, 0, 0, 0, 0], (P - 1, 1)),
                             atol=1e-6)


def test_from_motion_bad_input_names_field(body):
  betas, T_world_root, body_quats, _ = _walk(6)
  with pytest.raises(ValueError,
                     match=r"body_quats: expected shape \(6, 21, 4\)"):
    records.from_motion(body, betas, T_world_root, body_quats[:, :20],
                        fps=30.0, name="x", source="y", split="train")
  with pytest.raises(ValueError, match="T_world_root: expected at least 2"):
    records.from_motion(body, betas, T_world_root[:1], body_quats[:1],
                        fps=30.0, name="x", source="y", split="train")
