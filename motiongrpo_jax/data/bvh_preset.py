"""Retargeting presets: how a BVH skeleton maps onto SMPL's 22 joints.

A preset is JSON (`presets/<name>.json` ships for Bandai-Namco and CMU; users
pass their own file) with the keys of `Preset`:

  {"name": "...", "units_to_meters": 0.01, "up_axis": "+y",
   "forward_axis": "+z", "skip_frames": 0,
   "joints": {"pelvis": "Hips", ..., "spine2": null, ...},   # all 22 SMPL
   "rest_axes": {"Hips": "+y-x+z", ...},                      # optional
   "rotation_only": ["pelvis", "spine1", "spine3", "neck"],   # optional
   "split_rule": "*_normal_*=val,*=train"}                    # optional

`retarget` explains what each key does to the motion.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping

import numpy as np

from motiongrpo_jax.body import skeleton

SMPL_JOINTS = skeleton.JOINT_NAMES
PRESET_DIR = pathlib.Path(__file__).resolve().parent / "presets"
_PRESET_KEYS = {"name", "description", "units_to_meters", "up_axis",
                "forward_axis", "skip_frames", "joints", "rest_axes",
                "rotation_only", "split_rule"}


class PresetError(ValueError):
  """A bad retargeting preset, or one that does not fit a file."""


def axis_vector(text: str, where: str) -> np.ndarray:
  """'+y' → (0, 1, 0); `where` names the option in errors."""
  if len(text) != 2 or text[0] not in "+-" or text[1] not in "xyzXYZ":
    raise PresetError(f"{where}: expected an axis like '+y' or '-z', got "
                      f"{text!r}")
  v = np.zeros(3)
  v["xyz".index(text[1].lower())] = 1.0 if text[0] == "+" else -1.0
  return v


def axes_matrix(text: str, where: str) -> np.ndarray:
  """'+y-x+z' → the rotation (3, 3) whose columns are those canonical axes
  (a joint's local x, y, z); `where` names the option in errors."""
  if not isinstance(text, str) or len(text) != 6:
    raise PresetError(f"{where}: expected three signed axes like '+y-x+z', "
                      f"got {text!r}")
  matrix = np.stack([axis_vector(text[i:i + 2], where)
                     for i in (0, 2, 4)], axis=1)
  if abs(np.linalg.det(matrix) - 1.0) > 1e-9:
    raise PresetError(f"{where}: {text!r} is not a right-handed frame (its "
                      "axes must be distinct and x × y = z)")
  return matrix


@dataclasses.dataclass(frozen=True)
class Preset:
  """How a source skeleton maps onto SMPL's 22 joints.

  Attributes:
    name: preset name.
    joints: (22,) source joint per SMPL joint (SMPL order); None means the
      SMPL joint follows its parent rigidly (the pelvis must be mapped).
    units_to_meters: metres per source unit.
    up_axis: the source's up axis, e.g. "+y".
    forward_axis: the direction the source's zero pose faces, e.g. "+z".
    rest_axes: source joint → its local axes in the T-pose as canonical axes
      ("+y-x+z"); joints not listed keep their zero-pose rotation relative to
      their parent.
    skip_frames: leading frames to drop (e.g. a T-pose calibration frame).
    rotation_only: SMPL joints whose rotation is the carried source frame
      alone (no swing onto the source bones; see the module docstring).
    split_rule: default split rule for files of this dataset (see
      `splits.parse_split_rule`), or None.
    description: free text.
  """

  name: str
  joints: tuple[str | None, ...]
  units_to_meters: float
  up_axis: str = "+y"
  forward_axis: str = "+z"
  rest_axes: Mapping[str, str] = dataclasses.field(default_factory=dict)
  skip_frames: int = 0
  rotation_only: tuple[str, ...] = ()
  split_rule: str | None = None
  description: str = ""

  def canonical_from_source(self) -> np.ndarray:
    """M_c (3, 3): source axes to SMPL's canonical axes."""
    up = axis_vector(self.up_axis, f"preset {self.name!r}: up_axis")
    forward = axis_vector(self.forward_axis,
                           f"preset {self.name!r}: forward_axis")
    return np.stack([np.cross(up, forward), up, forward])


def available_presets() -> list[str]:
  """Names of the shipped presets."""
  return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | os.PathLike) -> Preset:
  """A shipped preset by name, or a user's preset JSON file.

  Args:
    name_or_path: "bandai_namco", "cmu", or a path to a JSON file with the
      keys of `Preset` ("joints" maps every SMPL joint name to a source joint
      name or null).

  Returns:
    The validated preset.

  Raises:
    PresetError: unknown name, unreadable file or bad content.
  """
  text = os.fspath(name_or_path)
  path = pathlib.Path(text)
  if not path.suffix and (PRESET_DIR / f"{text}.json").exists():
    path = PRESET_DIR / f"{text}.json"
  if not path.exists():
    raise PresetError(f"--preset: {text!r} is neither a shipped preset "
                      f"{available_presets()} nor an existing JSON file")
  try:
    content = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise PresetError(f"{path}: cannot read preset JSON ({e})") from e
  return preset_from_dict(content, source=str(path))


def preset_from_dict(content: Mapping, source: str = "<preset>") -> Preset:
  """Builds and validates a preset from its JSON content.

  Args:
    content: the parsed JSON object.
    source: name for error messages.

  Returns:
    The preset.

  Raises:
    PresetError: naming `source` and every problem found.
  """
  if not isinstance(content, Mapping):
    raise PresetError(f"{source}: expected a JSON object")
  unknown = sorted(set(content) - _PRESET_KEYS)
  if unknown:
    raise PresetError(f"{source}: unknown keys {unknown} (allowed: "
                      f"{sorted(_PRESET_KEYS)})")
  for key in ("joints", "units_to_meters"):
    if key not in content:
      raise PresetError(f"{source}: missing key {key!r}")
  mapping = content["joints"]
  if not isinstance(mapping, Mapping):
    raise PresetError(f"{source}: 'joints' must map SMPL joint names to "
                      "source joint names (or null)")
  missing = [n for n in SMPL_JOINTS if n not in mapping]
  extra = sorted(set(mapping) - set(SMPL_JOINTS))
  problems = []
  if missing:
    problems.append(f"missing SMPL joints {missing}")
  if extra:
    problems.append(f"unknown SMPL joint names {extra} (SMPL joints: "
                    f"{list(SMPL_JOINTS)})")
  bad_values = [k for k, v in mapping.items()
                if v is not None and not (isinstance(v, str) and v)]
  if bad_values:
    problems.append(f"joints {bad_values} must map to a joint name or null")
  if problems:
    raise PresetError(f"{source}: 'joints': " + "; ".join(problems))
  joints = tuple(mapping[n] for n in SMPL_JOINTS)
  if joints[0] is None:
    raise PresetError(f"{source}: 'joints': 'pelvis' must be mapped")
  used = [j for j in joints if j is not None]
  repeated = sorted({j for j in used if used.count(j) > 1})
  if repeated:
    raise PresetError(f"{source}: 'joints': source joints {repeated} are "
                      "mapped to more than one SMPL joint")
  units = content["units_to_meters"]
  if not (isinstance(units, (int, float)) and np.isfinite(units) and units > 0):
    raise PresetError(f"{source}: 'units_to_meters' must be a positive "
                      f"number, got {units!r}")
  rest_axes = content.get("rest_axes", {}) or {}
  if not isinstance(rest_axes, Mapping):
    raise PresetError(f"{source}: 'rest_axes' must map joint names to axes")
  for joint, axes in rest_axes.items():
    axes_matrix(axes, f"{source}: rest_axes[{joint!r}]")
  skip = content.get("skip_frames", 0)
  if not (isinstance(skip, int) and skip >= 0):
    raise PresetError(f"{source}: 'skip_frames' must be an integer ≥ 0, got "
                      f"{skip!r}")
  rotation_only = content.get("rotation_only", []) or []
  if not (isinstance(rotation_only, list) and
          all(isinstance(n, str) for n in rotation_only)):
    raise PresetError(f"{source}: 'rotation_only' must be a list of SMPL "
                      "joint names")
  bad = [n for n in rotation_only if n not in SMPL_JOINTS]
  if bad:
    raise PresetError(f"{source}: 'rotation_only': unknown SMPL joint names "
                      f"{bad}")
  preset = Preset(
      name=str(content.get("name", pathlib.Path(source).stem)),
      joints=joints, units_to_meters=float(units),
      up_axis=content.get("up_axis", "+y"),
      forward_axis=content.get("forward_axis", "+z"),
      rest_axes=dict(rest_axes), skip_frames=skip,
      rotation_only=tuple(rotation_only),
      split_rule=content.get("split_rule"),
      description=str(content.get("description", "")))
  up = axis_vector(preset.up_axis, f"{source}: up_axis")
  forward = axis_vector(preset.forward_axis, f"{source}: forward_axis")
  if abs(up @ forward) > 0:
    raise PresetError(f"{source}: up_axis {preset.up_axis!r} and "
                      f"forward_axis {preset.forward_axis!r} must differ")
  return preset
