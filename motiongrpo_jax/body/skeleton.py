"""The SMPL 22-joint tree (pelvis + 21 body joints) shared by all body models."""

from __future__ import annotations

# SMPL joint order: pelvis, then the 21 body joints whose local rotations form
# `body_quats (T, 21, 4)`.
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot",
    "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
NUM_BODY_JOINTS = 21  # excludes the pelvis
# Parent of each of the 22 joints (pelvis = −1).
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# Parents as in the foundation issue: indices into the 21 non-root joints,
# −1 meaning the pelvis.
BODY_PARENTS: tuple[int, ...] = tuple(p - 1 for p in PARENTS[1:])

HEAD = JOINT_NAMES.index("head")
LEFT_ANKLE, RIGHT_ANKLE = JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")
LEFT_FOOT, RIGHT_FOOT = JOINT_NAMES.index("left_foot"), JOINT_NAMES.index("right_foot")
# Shoulders, elbows and wrists, (left, right) each; the wrists last.
ARM_JOINTS: tuple[int, ...] = tuple(
    JOINT_NAMES.index(f"{side}_{part}")
    for part in ("shoulder", "elbow", "wrist") for side in ("left", "right"))
WRIST_JOINTS: tuple[int, ...] = ARM_JOINTS[4:]

# A neutral adult T-pose (about 1.70 m tall), metres, in SMPL's canonical body
# frame: +y up, +z forward, +x the body's left; pelvis at the origin. All
# local joint frames are aligned with this frame at rest (identity rotations),
# as in SMPL. Left/right symmetric.
REST_JOINTS: tuple[tuple[float, float, float], ...] = (
    (0.000, 0.000, 0.000),     # pelvis
    (0.070, -0.090, -0.005),   # left_hip
    (-0.070, -0.090, -0.005),  # right_hip
    (0.000, 0.110, -0.025),    # spine1
    (0.105, -0.470, -0.010),   # left_knee
    (-0.105, -0.470, -0.010),  # right_knee
    (0.000, 0.245, -0.020),    # spine2
    (0.090, -0.865, -0.050),   # left_ankle
    (-0.090, -0.865, -0.050),  # right_ankle
    (0.000, 0.300, 0.000),     # spine3
    (0.115, -0.920, 0.075),    # left_foot (ball of the foot / toes joint)
    (-0.115, -0.920, 0.075),   # right_foot
    (0.000, 0.510, -0.040),    # neck
    (0.075, 0.420, -0.030),    # left_collar
    (-0.075, 0.420, -0.030),   # right_collar
    (0.000, 0.580, 0.010),     # head
    (0.175, 0.450, -0.040),    # left_shoulder
    (-0.175, 0.450, -0.040),   # right_shoulder
    (0.430, 0.440, -0.060),    # left_elbow
    (-0.430, 0.440, -0.060),   # right_elbow
    (0.680, 0.445, -0.060),    # left_wrist
    (-0.680, 0.445, -0.060),   # right_wrist
)
# Rest height of the sole below the pelvis (the floor when standing at rest).
# The foot (toe) joints sit 1 cm above the sole, so the floor rule of
# data/records (1 cm below static toe joints, as EgoAllo's preprocessing)
# finds the sole; the ankles sit 6.5 cm above it, under the 8 cm ankle
# contact height.
REST_SOLE_Y = -0.930
# CPF (central pupil frame) relative to the head joint at rest: between the
# eyes, in front of and above the head joint; identity rotation, so the CPF
# axes are the head joint's (+x left, +y up, +z forward), as in EgoAllo.
HEAD_TO_CPF: tuple[float, float, float] = (0.0, 0.085, 0.095)
