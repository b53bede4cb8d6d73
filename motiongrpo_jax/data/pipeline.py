"""Grain input pipeline over the on-disk motion dataset.

Reads the sequences written by `data/tfds_builder.py` (one example per
sequence) and yields fixed-length batches of numpy arrays:

* `train_dataset`: random subsequences of `seq_len` frames, start uniform over
  the valid starts `0 .. T - seq_len` (0 for sequences shorter than
  `seq_len`, which are padded), sequences shuffled anew every epoch, epochs
  repeated (`num_epochs=None`: forever).
* `eval_dataset`: every sequence cut into consecutive windows of `window_len`
  frames (stride `window_len` unless given), in order, without shuffling; the
  last partial window of a sequence is padded or dropped. EgoAllo evaluates on
  subsequences of L + 1 CPF poses (L output frames), so pass
  `window_len = L + 1` to reproduce it.

Every element of a batch (leading axis `B` = the process-local batch size,
`L` = `seq_len` / `window_len`) has these keys:

| key | shape | dtype | meaning |
|---|---|---|---|
| `betas` | (B, 16) | float32 | body shape of the sequence |
| `T_world_root` | (B, L, 7) | float32 | pelvis pose `wxyz_xyz` |
| `body_quats` | (B, L, 21, 4) | float32 | local body joint rotations `wxyz` |
| `hand_quats` | (B, L, 30, 4) | float32 | local hand rotations (only with `hands=True`) |
| `has_hands` | (B,) | bool | whether the sequence has real hand rotations |
| `contacts` | (B, L, 21) | float32 | per-joint floor contact |
| `T_world_cpf` | (B, L, 7) | float32 | CPF pose |
| `T_cpf_tm1_cpf_t` | (B, L, 7) | float32 | CPF motion from the previous frame |
| `height_from_floor` | (B, L, 1) | float32 | CPF height above the floor |
| `joints_wrt_cpf` | (B, L, 21, 3) | float32 | joints 1..21 in the CPF frame |
| `mask` | (B, L) | bool | True on real frames, False on padding |
| `seq_index` | (B,) | int32 | index of the sequence in its split (-1: filler) |
| `start` | (B,) | int32 | first frame of the window in that sequence |
| `num_frames` | (B,) | int32 | length T of the whole sequence |

Padding frames hold identity quaternions and poses (`[1, 0, 0, 0]`,
`[1, 0, 0, 0, 0, 0, 0]`) and zeros elsewhere, so that downstream rotation
math stays finite; hand rotations of sequences without hands are identity
too. Filler elements (evaluation with `pad_final_batch`) are all padding.

Sharding between processes: the pipeline enumerates one *global* stream of
elements (shuffled order and crop starts depend only on `seed` and the global
position) and cuts it into global batches of `batch_size * shard_count`;
process `shard_index` takes the `shard_index`-th block of `batch_size`
elements of every global batch. So processes read disjoint elements, the
union of their local batches is the global batch, and that global batch does
not depend on how many processes share it.

Reproducibility: the crop start of global position `g` is drawn from
`numpy.random.default_rng((seed, g))`, and grain's shuffle reseeds every
epoch from `seed + epoch`; the output therefore depends only on the
arguments and the position, not on worker or thread counts. The iterator's
`get_state()` is a small JSON-serialisable dict; `set_state(state)` on a
fresh iterator of the same pipeline resumes with identical batches (also
through Orbax: `grain.checkpoint.CheckpointSave/CheckpointRestore`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags
import grain
import numpy as np

from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.data.tfds_builder import FRAME_FIELDS, HAND_SHAPE, NUM_BETAS

Example = Mapping[str, Any]

# Padding frames: identity rotations and poses, zeros elsewhere.
_IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
_IDENTITY_POSE = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)
_POSE_FIELDS = ("T_world_root", "T_world_cpf", "T_cpf_tm1_cpf_t")
_QUAT_FIELDS = ("body_quats", "hand_quats")


def _pad_frame(field: str) -> np.ndarray:
  """The value of one padding frame of `field`."""
  shape = HAND_SHAPE if field == "hand_quats" else FRAME_FIELDS[field]
  if field in _POSE_FIELDS:
    return np.broadcast_to(_IDENTITY_POSE, shape)
  if field in _QUAT_FIELDS:
    return np.broadcast_to(_IDENTITY_QUAT, shape)
  return np.zeros(shape, np.float32)


def _window(frames: np.ndarray, field: str, start: int, length: int) -> np.ndarray:
  """Frames `[start, start + length)` of `frames`, padded to `length`."""
  out = np.empty((length,) + frames.shape[1:], np.float32)
  part = frames[start:start + length]
  out[:len(part)] = part
  out[len(part):] = _pad_frame(field)
  return out


def num_frames_of(example: Example) -> int:
  """Number of frames T of a decoded example."""
  return int(np.shape(example["T_world_cpf"])[0])


def slice_example(
    example: Example | None,
    *,
    seq_index: int,
    start: int,
    length: int,
    hands: bool,
) -> dict[str, np.ndarray]:
  """Cuts one window out of a decoded sequence (the element of a batch).

  Args:
    example: a decoded sequence (the fields of `FRAME_FIELDS`, `betas (16,)`,
      `hand_quats (T, 30, 4)` or `(0, 30, 4)`, `has_hands`), or None for a
      filler element made only of padding.
    seq_index: index of the sequence in its split (-1 for filler).
    start: first frame of the window.
    length: window length L.
    hands: whether to emit `hand_quats`.

  Returns:
    A dict with the keys and per-element shapes listed in the module
    docstring (without the batch axis).
  """
  if example is None:
    num_frames = 0
    example = {k: np.zeros((0,) + s, np.float32) for k, s in FRAME_FIELDS.items()}
    example.update(betas=np.zeros(NUM_BETAS, np.float32),
                   hand_quats=np.zeros((0,) + HAND_SHAPE, np.float32),
                   has_hands=False)
  else:
    num_frames = num_frames_of(example)
  out = {"betas": np.asarray(example["betas"], np.float32).reshape(NUM_BETAS)}
  for field in FRAME_FIELDS:
    out[field] = _window(np.asarray(example[field]), field, start, length)
  has_hands = bool(example["has_hands"])
  if hands:
    hand = np.asarray(example["hand_quats"]) if has_hands else np.zeros((0,) + HAND_SHAPE)
    out["hand_quats"] = _window(hand, "hand_quats", start, length)
  out["has_hands"] = np.asarray(has_hands)
  mask = np.zeros(length, bool)
  mask[:max(0, min(length, num_frames - start))] = True
  out["mask"] = mask
  out["seq_index"] = np.int32(seq_index)
  out["start"] = np.int32(start)
  out["num_frames"] = np.int32(num_frames)
  return out


def train_start(num_frames: int, seq_len: int, rng: np.random.Generator) -> int:
  """Uniform start over `0 .. num_frames - seq_len` (0 if the sequence is short)."""
  return int(rng.integers(0, max(num_frames - seq_len, 0) + 1))


def eval_windows(
    lengths: Sequence[int],
    window_len: int,
    *,
    stride: int | None = None,
    partial: str = "pad",
) -> np.ndarray:
  """Enumerates the evaluation windows of every sequence, in order.

  Args:
    lengths: number of frames of each sequence, by sequence index.
    window_len: frames per window.
    stride: frames between consecutive window starts (default `window_len`:
      consecutive non-overlapping windows).
    partial: what to do with a last window shorter than `window_len`
      (including a sequence shorter than one window): "pad" keeps it (padded,
      masked), "drop" leaves it out.

  Returns:
    (N, 2) int64 array of (sequence index, start frame).
  """
  stride = window_len if stride is None else stride
  if window_len <= 0 or stride <= 0:
    raise ValueError(f"window_len and stride must be positive, got {window_len}, {stride}")
  if partial not in ("pad", "drop"):
    raise ValueError(f"partial must be 'pad' or 'drop', got {partial!r}")
  out = []
  for i, t in enumerate(lengths):
    start = 0
    while start < t:
      if start + window_len <= t or partial == "pad":
        out.append((i, start))
      if start + window_len >= t:
        break
      start += stride
  return np.asarray(out, np.int64).reshape(-1, 2)


def _local_to_global(i: int, batch_size: int, shard_index: int, shard_count: int) -> int:
  """Global stream position of this process's `i`-th element."""
  block, offset = divmod(i, batch_size)
  return (block * shard_count + shard_index) * batch_size + offset


def _local_length(total: int, batch_size: int, shard_index: int, shard_count: int,
                  drop_remainder: bool) -> int:
  """How many of the `total` global positions belong to this process."""
  global_batch = batch_size * shard_count
  full, rest = divmod(total, global_batch)
  length = full * batch_size
  if not drop_remainder:
    length += min(max(rest - shard_index * batch_size, 0), batch_size)
  return length


def _check_sharding(batch_size: int, shard_index: int, shard_count: int) -> None:
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if shard_count <= 0 or not 0 <= shard_index < shard_count:
    raise ValueError(
        f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
        f"shard_count={shard_count}")


def _resolve_source(data: Any, split: str) -> Sequence[Example]:
  """A random-access source: `data` itself, or the split stored under a path."""
  if isinstance(data, (str, os.PathLike)):
    return tfds_builder.load_split(data, split)
  return data


def _finish(ds: grain.MapDataset, batch_size: int, num_workers: int,
            read_options: grain.ReadOptions | None) -> grain.IterDataset:
  """Converts to an iterable dataset, batches, and adds worker processes."""
  it = ds.to_iter_dataset(read_options or grain.ReadOptions(num_threads=4, prefetch_buffer_size=32))
  it = it.batch(batch_size, drop_remainder=False)
  if num_workers > 0:
    # grain's worker processes read grain's absl flags directly; outside an
    # absl app (notebooks, tests) nothing parsed them, so take the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return it


class _TrainElement:
  """Global position -> cropped element (picklable for worker processes)."""

  def __init__(self, source, order, *, seq_len, seed, hands, batch_size,
               shard_index, shard_count):
    self._source = source
    self._order = order
    self._seq_len = seq_len
    self._seed = seed
    self._hands = hands
    self._sharding = (batch_size, shard_index, shard_count)

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    g = _local_to_global(i, *self._sharding)
    seq_index = int(self._order[g])
    example = self._source[seq_index]
    rng = np.random.default_rng((self._seed, g))
    start = train_start(num_frames_of(example), self._seq_len, rng)
    return slice_example(example, seq_index=seq_index, start=start,
                         length=self._seq_len, hands=self._hands)


def train_dataset(
    data: Any,
    *,
    split: str = "train",
    seq_len: int = 128,
    batch_size: int = 256,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    hands: bool = True,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
  """Training batches of random fixed-length subsequences.

  Args:
    data: the dataset directory written by `build_dataset` (`split` is read
      from it), or any random-access sequence of decoded examples.
    split: split to read when `data` is a directory.
    seq_len: frames per subsequence L.
    batch_size: process-local batch size B (the global batch is
      `batch_size * shard_count`).
    seed: seed of the shuffle and of the crop starts.
    shuffle: shuffle the sequences (anew each epoch); False keeps split order.
    num_epochs: passes over the sequences; None repeats forever.
    drop_remainder: drop a last incomplete global batch (otherwise each
      process gets its part of it, possibly a smaller or no batch).
    shard_index: this process's index (`jax.process_index()`).
    shard_count: number of processes (`jax.process_count()`).
    num_workers: grain worker processes; 0 reads in this process.
    hands: emit `hand_quats`.
    read_options: grain read threads / prefetch (default 4 threads, 32
      elements).

  Returns:
    A grain `IterDataset`; `iter()` of it yields dicts of numpy arrays as in
    the module docstring, and supports `get_state()` / `set_state()`.
  """
  _check_sharding(batch_size, shard_index, shard_count)
  if seq_len <= 0:
    raise ValueError(f"seq_len must be positive, got {seq_len}")
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  source = _resolve_source(data, split)
  if len(source) == 0:
    raise ValueError(f"split {split!r} of {data!r} has no sequences")
  order = grain.MapDataset.range(len(source))
  if shuffle:
    order = order.shuffle(seed=seed)
  order = order.repeat(num_epochs)
  total = len(order)  # sys.maxsize when repeating forever.
  length = _local_length(total, batch_size, shard_index, shard_count,
                         drop_remainder or num_epochs is None)
  if length == 0:
    raise ValueError(
        f"no full batch: {len(source)} sequences x {num_epochs} epochs < global batch "
        f"{batch_size * shard_count} (lower batch_size or set drop_remainder=False)")
  element = _TrainElement(source, order, seq_len=seq_len, seed=seed, hands=hands,
                          batch_size=batch_size, shard_index=shard_index,
                          shard_count=shard_count)
  ds = grain.MapDataset.range(length).map(element)
  return _finish(ds, batch_size, num_workers, read_options)


class _EvalElement:
  """Local position -> evaluation window (caches the last decoded sequence)."""

  def __init__(self, source, windows, *, window_len, hands, batch_size,
               shard_index, shard_count):
    self._source = source
    self._windows = windows
    self._window_len = window_len
    self._hands = hands
    self._sharding = (batch_size, shard_index, shard_count)
    self._cache: tuple[int, Example] | None = None
    self._lock = threading.Lock()

  def __getstate__(self):
    state = self.__dict__.copy()
    state["_cache"] = None
    del state["_lock"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def _read(self, seq_index: int) -> Example:
    with self._lock:
      cached = self._cache
    if cached is not None and cached[0] == seq_index:
      return cached[1]
    example = self._source[seq_index]
    with self._lock:
      self._cache = (seq_index, example)
    return example

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    g = _local_to_global(i, *self._sharding)
    if g >= len(self._windows):  # Filler up to a whole global batch.
      return slice_example(None, seq_index=-1, start=0, length=self._window_len,
                           hands=self._hands)
    seq_index, start = (int(v) for v in self._windows[g])
    return slice_example(self._read(seq_index), seq_index=seq_index, start=start,
                         length=self._window_len, hands=self._hands)


def eval_dataset(
    data: Any,
    *,
    split: str = "test",
    window_len: int = 129,
    batch_size: int = 32,
    stride: int | None = None,
    partial: str = "pad",
    pad_final_batch: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    hands: bool = True,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
  """Evaluation batches: deterministic consecutive windows of every sequence.

  Args:
    data: the dataset directory written by `build_dataset`, or any
      random-access sequence of decoded examples.
    split: split to read when `data` is a directory.
    window_len: frames per window (EgoAllo: L + 1 CPF poses for L frames).
    batch_size: process-local batch size B.
    stride: frames between window starts (default `window_len`).
    partial: "pad" or "drop" a last window shorter than `window_len`.
    pad_final_batch: complete the last global batch with filler elements
      (`seq_index` -1, mask all False), so every process gets the same number
      of full batches; otherwise the last global batch is split as it comes.
    shard_index: this process's index (`jax.process_index()`).
    shard_count: number of processes (`jax.process_count()`).
    num_workers: grain worker processes; 0 reads in this process.
    hands: emit `hand_quats`.
    read_options: grain read threads / prefetch (default 4 threads, 32
      elements).

  Returns:
    A grain `IterDataset` yielding the windows of `eval_windows` in order
    (global order; see the module docstring for sharding), one pass.
  """
  _check_sharding(batch_size, shard_index, shard_count)
  source = _resolve_source(data, split)
  lengths = [num_frames_of(source[i]) for i in range(len(source))]
  windows = eval_windows(lengths, window_len, stride=stride, partial=partial)
  total = len(windows)
  global_batch = batch_size * shard_count
  if pad_final_batch:
    total = -(-total // global_batch) * global_batch
  length = _local_length(total, batch_size, shard_index, shard_count, False)
  element = _EvalElement(source, windows, window_len=window_len, hands=hands,
                         batch_size=batch_size, shard_index=shard_index,
                         shard_count=shard_count)
  ds = grain.MapDataset.range(length).map(element)
  return _finish(ds, batch_size, num_workers, read_options)


__all__ = [
    "FRAME_FIELDS",
    "eval_dataset",
    "eval_windows",
    "num_frames_of",
    "slice_example",
    "train_dataset",
    "train_start",
]
