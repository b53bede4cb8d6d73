"""BVH motion-capture files: parser and FK on the source skeleton.

A BVH file has a HIERARCHY (joints with an OFFSET from their parent, a list of
CHANNELS, optional `End Site` leaves) and a MOTION block (`Frames:`,
`Frame Time:`, then one line of channel values per frame). Conventions used
here, which are those of the format:

- A joint's local transform is a translation followed by a rotation. The
  translation is the OFFSET, except that position channels (`Xposition` …),
  on any joint, replace the matching OFFSET component.
- Rotation channels are Euler angles in degrees, composed in the order they
  are listed (intrinsic): `Zrotation Xrotation Yrotation` gives
  R = Rz·Rx·Ry. Any order per joint, and any subset of axes, is accepted.
- Global rotations and positions come from composing local transforms from
  the root down. Units and axes are the file's; `retarget` converts them.

Files may be plain `.bvh` or gzip-compressed `.bvh.gz`. Every problem raises
`BvhError` naming the file and, where it applies, the line or frame.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re

import numpy as np

_AXES = {"X": 0, "Y": 1, "Z": 2}
_CHANNEL_RE = re.compile(r"^([XYZ])(position|rotation)$", re.IGNORECASE)


class BvhError(ValueError):
  """A malformed or unsupported BVH file."""


@dataclasses.dataclass(frozen=True)
class BvhSkeleton:
  """The joint tree of a BVH file.

  Attributes:
    names: (J,) joint names in file order (root first).
    parents: (J,) parent index per joint, −1 for the root; parents[j] < j.
    offsets: (J, 3) OFFSET of each joint in its parent's frame, file units.
    channels: (J,) per joint, its channel names in file order (e.g.
      ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation",
      "Yrotation")).
    end_sites: (joint index, (3,) offset) of each `End Site`.
  """

  names: tuple[str, ...]
  parents: tuple[int, ...]
  offsets: np.ndarray
  channels: tuple[tuple[str, ...], ...]
  end_sites: tuple[tuple[int, np.ndarray], ...] = ()

  @property
  def num_channels(self) -> int:
    """Values per frame."""
    return sum(len(c) for c in self.channels)

  def index(self, name: str) -> int:
    """Index of joint `name`."""
    return self.names.index(name)


@dataclasses.dataclass(frozen=True)
class BvhMotion:
  """A parsed BVH file.

  Attributes:
    skeleton: the joint tree.
    frame_time: seconds per frame.
    values: (F, C) channel values per frame, in skeleton channel order.
    source: where it was read from (for messages).
  """

  skeleton: BvhSkeleton
  frame_time: float
  values: np.ndarray
  source: str = "<string>"

  @property
  def fps(self) -> float:
    """Frames per second, 1 / frame_time."""
    return 1.0 / self.frame_time

  @property
  def num_frames(self) -> int:
    """F."""
    return int(self.values.shape[0])


def read_bvh(path: str | os.PathLike) -> BvhMotion:
  """Reads a `.bvh` or `.bvh.gz` file.

  Args:
    path: file path; gzip is detected from the file's magic bytes.

  Returns:
    The parsed motion.

  Raises:
    BvhError: unreadable or malformed file (message starts with the path).
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
    if data[:2] == b"\x1f\x8b":
      data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise BvhError(f"{path}: cannot read BVH file ({e})") from e
  return parse_bvh(text, source=path)


def parse_bvh(text: str, source: str = "<string>") -> BvhMotion:
  """Parses the text of a BVH file.

  Args:
    text: the whole file.
    source: name used in error messages.

  Returns:
    The parsed motion.

  Raises:
    BvhError: naming `source`, the line and the problem.
  """
  lines = text.splitlines()
  parser = _HierarchyParser(lines, source)
  skeleton, motion_line = parser.parse()
  frame_time, values = _parse_motion(lines, motion_line, skeleton, source)
  return BvhMotion(skeleton=skeleton, frame_time=frame_time, values=values,
                   source=source)


class _HierarchyParser:
  """Recursive-descent parser of the HIERARCHY block, line by line."""

  def __init__(self, lines: list[str], source: str):
    self.lines = lines
    self.source = source
    self.pos = 0
    self.names: list[str] = []
    self.parents: list[int] = []
    self.offsets: list[np.ndarray] = []
    self.channels: list[tuple[str, ...]] = []
    self.end_sites: list[tuple[int, np.ndarray]] = []

  def error(self, message: str, line: int | None = None) -> BvhError:
    line = self.pos if line is None else line
    return BvhError(f"{self.source}: line {line + 1}: {message}")

  def next_tokens(self) -> list[str]:
    """Tokens of the next non-empty line; advances past it."""
    while self.pos < len(self.lines):
      tokens = self.lines[self.pos].split()
      self.pos += 1
      if tokens:
        return tokens
    raise BvhError(f"{self.source}: file ends inside HIERARCHY (truncated)")

  def parse(self) -> tuple[BvhSkeleton, int]:
    tokens = self.next_tokens()
    if tokens[0].upper() != "HIERARCHY":
      raise self.error(f"expected 'HIERARCHY', got {' '.join(tokens)!r}",
                       self.pos - 1)
    tokens = self.next_tokens()
    if tokens[0].upper() != "ROOT" or len(tokens) < 2:
      raise self.error(f"expected 'ROOT <name>', got {' '.join(tokens)!r}",
                       self.pos - 1)
    self.parse_joint(" ".join(tokens[1:]), parent=-1)
    tokens = self.next_tokens()
    if tokens[0].upper() == "ROOT":
      raise self.error("more than one ROOT is not supported", self.pos - 1)
    if tokens[0].upper() != "MOTION":
      raise self.error(f"expected 'MOTION', got {' '.join(tokens)!r}",
                       self.pos - 1)
    duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
    if duplicates:
      raise BvhError(f"{self.source}: duplicate joint names {duplicates}")
    skeleton = BvhSkeleton(
        names=tuple(self.names), parents=tuple(self.parents),
        offsets=np.stack(self.offsets).astype(np.float64),
        channels=tuple(self.channels), end_sites=tuple(self.end_sites))
    return skeleton, self.pos

  def expect(self, word: str) -> list[str]:
    tokens = self.next_tokens()
    if tokens[0].upper() != word.upper():
      raise self.error(f"expected {word!r}, got {' '.join(tokens)!r}",
                       self.pos - 1)
    return tokens

  def parse_offset(self) -> np.ndarray:
    tokens = self.expect("OFFSET")
    if len(tokens) != 4:
      raise self.error(f"OFFSET needs 3 numbers, got {len(tokens) - 1}",
                       self.pos - 1)
    try:
      offset = np.array([float(t) for t in tokens[1:]])
    except ValueError:
      raise self.error(f"OFFSET values are not numbers: {tokens[1:]}",
                       self.pos - 1) from None
    if not np.all(np.isfinite(offset)):
      raise self.error(f"OFFSET has non-finite values {tokens[1:]}",
                       self.pos - 1)
    return offset

  def parse_joint(self, name: str, parent: int) -> None:
    index = len(self.names)
    self.names.append(name)
    self.parents.append(parent)
    self.expect("{")
    self.offsets.append(self.parse_offset())
    tokens = self.expect("CHANNELS")
    line = self.pos - 1
    try:
      count = int(tokens[1])
    except (IndexError, ValueError):
      raise self.error(f"CHANNELS needs a count, got {' '.join(tokens)!r}",
                       line) from None
    names = tuple(tokens[2:])
    if len(names) != count:
      raise self.error(
          f"joint {name!r} declares CHANNELS {count} but lists {len(names)} "
          f"channel names {list(names)}", line)
    for channel in names:
      if not _CHANNEL_RE.match(channel):
        raise self.error(
            f"joint {name!r}: unknown channel {channel!r} (expected "
            "X/Y/Z followed by 'position' or 'rotation')", line)
    if len({c.lower() for c in names}) != len(names):
      raise self.error(f"joint {name!r}: repeated channel in {list(names)}",
                       line)
    self.channels.append(names)
    while True:
      tokens = self.next_tokens()
      keyword = tokens[0].upper()
      if keyword == "}":
        return
      if keyword == "JOINT" and len(tokens) >= 2:
        self.parse_joint(" ".join(tokens[1:]), parent=index)
      elif keyword == "END":
        self.expect("{")
        self.end_sites.append((index, self.parse_offset()))
        self.expect("}")
      else:
        raise self.error(
            f"expected 'JOINT', 'End Site' or '}}' in joint {name!r}, got "
            f"{' '.join(tokens)!r}", self.pos - 1)


def _parse_motion(lines: list[str], start: int, skeleton: BvhSkeleton,
                  source: str) -> tuple[float, np.ndarray]:
  """Parses `Frames:`, `Frame Time:` and the frame lines after MOTION."""
  header: dict[str, str] = {}
  pos = start
  while len(header) < 2:
    if pos >= len(lines):
      raise BvhError(f"{source}: file ends before 'Frames:' and 'Frame Time:' "
                     "(truncated)")
    line = lines[pos].strip()
    pos += 1
    if not line:
      continue
    key, sep, value = line.partition(":")
    key = " ".join(key.split()).lower()
    if not sep or key not in ("frames", "frame time"):
      raise BvhError(f"{source}: line {pos}: expected 'Frames:' and "
                     f"'Frame Time:', got {line!r}")
    header[key] = value.strip()
  try:
    num_frames = int(header["frames"])
    frame_time = float(header["frame time"])
  except ValueError:
    raise BvhError(f"{source}: bad MOTION header 'Frames: {header['frames']}'"
                   f", 'Frame Time: {header['frame time']}'") from None
  if num_frames < 1:
    raise BvhError(f"{source}: 'Frames: {num_frames}', expected at least 1")
  if not (np.isfinite(frame_time) and frame_time > 0):
    raise BvhError(f"{source}: 'Frame Time: {frame_time}', expected > 0")
  body = [(i, ln) for i, ln in enumerate(lines[pos:], start=pos + 1)
          if ln.strip()]
  num_channels = skeleton.num_channels
  if len(body) < num_frames:
    raise BvhError(
        f"{source}: truncated: header says {num_frames} frames, the file has "
        f"{len(body)} frame lines")
  if len(body) > num_frames:
    raise BvhError(
        f"{source}: header says {num_frames} frames, the file has "
        f"{len(body)} frame lines (extra data at line {body[num_frames][0]})")
  try:
    values = np.array(" ".join(ln for _, ln in body).split(), np.float64)
  except ValueError:
    for number, ln in body:
      try:
        np.array(ln.split(), np.float64)
      except ValueError:
        raise BvhError(f"{source}: line {number}: frame values are not all "
                       f"numbers ({ln.strip()[:60]!r}...)") from None
    raise
  if values.size != num_frames * num_channels:
    for frame, (number, ln) in enumerate(body):
      count = len(ln.split())
      if count < num_channels and frame == num_frames - 1:
        raise BvhError(
            f"{source}: truncated: the last frame (line {number}) has {count} "
            f"of {num_channels} values")
      if count != num_channels:
        raise BvhError(
            f"{source}: line {number} (frame {frame}): {count} values, the "
            f"hierarchy declares {num_channels} channels")
  values = values.reshape(num_frames, num_channels)
  bad = ~np.isfinite(values)
  if bad.any():
    frame, channel = np.argwhere(bad)[0]
    joint, name = _channel_owner(skeleton, int(channel))
    raise BvhError(
        f"{source}: {int(bad.sum())} non-finite (NaN/inf) values, first at "
        f"frame {frame} channel {channel} ({joint} {name}), line "
        f"{body[frame][0]}")
  return frame_time, values


def _channel_owner(skeleton: BvhSkeleton, channel: int) -> tuple[str, str]:
  for name, channels in zip(skeleton.names, skeleton.channels):
    if channel < len(channels):
      return name, channels[channel]
    channel -= len(channels)
  raise IndexError(channel)


def axis_rotation(axis: int, radians: np.ndarray) -> np.ndarray:
  """Rotation matrices about a coordinate axis.

  Args:
    axis: 0, 1, 2 for x, y, z.
    radians: (...,) angles.

  Returns:
    (..., 3, 3) rotation matrices.
  """
  c, s = np.cos(radians), np.sin(radians)
  out = np.zeros(np.shape(radians) + (3, 3))
  i, j = [(1, 2), (2, 0), (0, 1)][axis]
  out[..., axis, axis] = 1.0
  out[..., i, i] = c
  out[..., j, j] = c
  out[..., i, j] = -s
  out[..., j, i] = s
  return out


def local_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame local rotations and translations of every joint.

  Args:
    motion: a parsed file.

  Returns:
    rotations (F, J, 3, 3) and translations (F, J, 3), file units: joint j's
    pose in its parent's frame.
  """
  skeleton = motion.skeleton
  num_frames, num_joints = motion.num_frames, len(skeleton.names)
  rotations = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
  translations = np.broadcast_to(
      skeleton.offsets, (num_frames, num_joints, 3)).copy()
  column = 0
  for j, channels in enumerate(skeleton.channels):
    rotation = None
    for channel in channels:
      axis = _AXES[channel[0].upper()]
      values = motion.values[:, column]
      column += 1
      if channel[1:].lower() == "position":
        translations[:, j, axis] = values
      else:
        step = axis_rotation(axis, np.deg2rad(values))
        rotation = step if rotation is None else rotation @ step
    if rotation is not None:
      rotations[:, j] = rotation
  return rotations, translations


def forward_kinematics(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Global joint rotations and positions of every frame.

  Args:
    motion: a parsed file.

  Returns:
    rotations (F, J, 3, 3) mapping joint-frame vectors to the file's world
    frame, and positions (F, J, 3) in file units.
  """
  local_r, local_t = local_transforms(motion)
  global_r = np.empty_like(local_r)
  global_t = np.empty_like(local_t)
  for j, parent in enumerate(motion.skeleton.parents):
    if parent < 0:
      global_r[:, j] = local_r[:, j]
      global_t[:, j] = local_t[:, j]
    else:
      global_r[:, j] = global_r[:, parent] @ local_r[:, j]
      global_t[:, j] = global_t[:, parent] + np.einsum(
          "fab,fb->fa", global_r[:, parent], local_t[:, j])
  return global_r, global_t
