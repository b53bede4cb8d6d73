"""Tests of the TFDS dataset (write, read back) and the grain pipeline."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import records
from motiongrpo_jax.data import tfds_builder

REPO = pathlib.Path(__file__).resolve().parents[2]
IDENTITY_QUAT = np.array([1, 0, 0, 0], np.float32)
IDENTITY_POSE = np.array([1, 0, 0, 0, 0, 0, 0], np.float32)


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _pose(rng, t):
  return np.concatenate([_unit(rng.standard_normal((t, 4))),
                         rng.standard_normal((t, 3))], -1).astype(np.float32)


def fake_record(i, num_frames, split, hands):
  """A valid record with random values of the right shapes."""
  rng = np.random.default_rng([7, i])
  t = num_frames
  return records.SequenceRecord(
      betas=rng.standard_normal(16).astype(np.float32),
      T_world_root=_pose(rng, t),
      body_quats=_unit(rng.standard_normal((t, 21, 4))),
      hand_quats=_unit(rng.standard_normal((t, 30, 4))) if hands else None,
      contacts=(rng.random((t, 21)) > 0.5).astype(np.float32),
      T_world_cpf=_pose(rng, t),
      T_cpf_tm1_cpf_t=_pose(rng, t),
      height_from_floor=rng.random((t, 1)).astype(np.float32),
      joints_wrt_cpf=rng.standard_normal((t, 21, 3)).astype(np.float32),
      name=f"seq{i:03d}", source="fake", fps=30.0, split=split)


# 12 records: lengths 5, 8, ..., 38; splits train, train, val, test, ...;
# hands on every third.
FAKE = [fake_record(i, 5 + 3 * i, ["train", "train", "val", "test"][i % 4], i % 3 == 0)
        for i in range(12)]


def in_memory(recs):
  """The decoded-example view of records (what `load_split` returns)."""
  return [tfds_builder.example_from_record(r) for r in recs]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("ds")
  tfds_builder.build(lambda: iter(FAKE), out)
  return out


def _equal_records(a, b):
  for key in records.ARRAY_FIELDS:
    x, y = getattr(a, key), getattr(b, key)
    if x is None or y is None:
      assert x is None and y is None, key
    else:
      assert y.dtype == np.float32 and np.array_equal(x, y), key
  assert (a.name, a.source, a.fps, a.split) == (b.name, b.source, b.fps, b.split)


# --- Dataset on disk.


def test_build_and_read_back_with_tensorflow_blocked(tmp_path):
  """Writes and reads a dataset in a process where `import tensorflow` fails
  (whether or not TensorFlow is installed)."""
  code = textwrap.dedent(f"""
      import importlib.util, sys
      class Hide:  # Every import finder, blind to tensorflow.
        def __init__(self, finder):
          self.finder = finder
        def __getattr__(self, name):
          return getattr(self.finder, name)
        def find_spec(self, name, path=None, target=None):
          if name.split(".")[0] == "tensorflow":
            return None
          return self.finder.find_spec(name, path, target)
      sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
      assert importlib.util.find_spec("tensorflow") is None
      sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
      from test_pipeline import FAKE
      from motiongrpo_jax.data import tfds_builder
      tfds_builder.build(FAKE, {str(tmp_path)!r})
      ds = tfds_builder.load_split({str(tmp_path)!r}, "train")
      names = sorted(tfds_builder.record_from_example(ds[i]).name for i in range(len(ds)))
      assert "tensorflow" not in sys.modules
      print(",".join(names))
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  expected = sorted(r.name for r in FAKE if r.split == "train")
  assert out.stdout.strip().splitlines()[-1] == ",".join(expected)


def test_records_round_trip_exactly_by_split(data_dir):
  assert "tensorflow" not in sys.modules
  for split in tfds_builder.SPLITS:
    source = tfds_builder.load_split(data_dir, split)
    got = {}
    for i in range(len(source)):
      record = tfds_builder.record_from_example(source[i])
      got[record.name] = record
    expected = {r.name: r for r in FAKE if r.split == split}
    assert sorted(got) == sorted(expected)
    for name, record in expected.items():
      _equal_records(record, got[name])
  meta = tfds_builder.metadata(data_dir)
  assert meta["splits"]["val"] == {"sequences": 3, "frames": 11 + 23 + 35}
  assert meta["sources"] == ["fake"]


def test_build_refuses_existing_and_overwrites(data_dir, tmp_path):
  with pytest.raises(FileExistsError, match="already exists"):
    tfds_builder.build(FAKE, data_dir)
  out = tmp_path / "d"
  tfds_builder.build(FAKE[:4], out)
  summary = tfds_builder.build(FAKE[4:8], out, overwrite=True)
  assert summary.sequences == 4 and summary.splits["val"]["sequences"] == 1
  source = tfds_builder.load_split(out, "val")
  assert tfds_builder.record_from_example(source[0]).name == "seq006"
  assert sorted(p.name for p in out.iterdir()) == ["motion_sequences"]


def _bad_quat(record):
  return record.replace(body_quats=record.body_quats * 2)


@pytest.mark.parametrize("bad,match", [
    (_bad_quat(FAKE[1]), r"record 1 \('seq001'\) is invalid: body_quats"),
    (FAKE[1].replace(split="holdout"), "split 'holdout' is not one of"),
    (FAKE[0], "name 'seq000' repeats record 0"),
])
def test_failed_build_leaves_nothing(tmp_path, bad, match):
  out = tmp_path / "new" / "data"

  def source():
    yield FAKE[0]
    yield bad

  with pytest.raises(ValueError, match=match):
    tfds_builder.build(source, out)
  assert not (tmp_path / "new").exists()
  # An existing folder keeps exactly what it had.
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "keep.txt").write_text("x")
  with pytest.raises(ValueError, match=match):
    tfds_builder.build(source, existing)
  assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_load_split_errors(data_dir, tmp_path):
  with pytest.raises(ValueError, match="split 'holdout' not in"):
    tfds_builder.load_split(data_dir, "holdout")
  with pytest.raises(FileNotFoundError, match="no motion dataset under"):
    tfds_builder.load_split(tmp_path, "train")


# --- Training batches.

KEYS = {
    "betas": ((16,), np.float32), "T_world_root": ((8, 7), np.float32),
    "body_quats": ((8, 21, 4), np.float32), "hand_quats": ((8, 30, 4), np.float32),
    "has_hands": ((), np.bool_), "contacts": ((8, 21), np.float32),
    "T_world_cpf": ((8, 7), np.float32), "T_cpf_tm1_cpf_t": ((8, 7), np.float32),
    "height_from_floor": ((8, 1), np.float32), "joints_wrt_cpf": ((8, 21, 3), np.float32),
    "mask": ((8,), np.bool_), "seq_index": ((), np.int32), "start": ((), np.int32),
    "num_frames": ((), np.int32),
}


def _batches(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


def _same(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _check_element(batch, j, source):
  """Element j of a batch equals its window of the source, padded as documented."""
  i, start, length = int(batch["seq_index"][j]), int(batch["start"][j]), batch["mask"].shape[1]
  ex = source[i]
  t = pipeline.num_frames_of(ex)
  real = max(0, min(length, t - start))
  assert batch["num_frames"][j] == t
  np.testing.assert_array_equal(batch["mask"][j], np.arange(length) < real)
  np.testing.assert_array_equal(batch["betas"][j], ex["betas"])
  assert batch["has_hands"][j] == ex["has_hands"]
  for key in list(tfds_builder.FRAME_FIELDS) + ["hand_quats"]:
    got = batch[key][j]
    if key == "hand_quats" and not ex["has_hands"]:
      np.testing.assert_array_equal(got, np.broadcast_to(IDENTITY_QUAT, got.shape))
      continue
    np.testing.assert_array_equal(got[:real], ex[key][start:start + real])
    pad = got[real:]
    if key in ("T_world_root", "T_world_cpf", "T_cpf_tm1_cpf_t"):
      np.testing.assert_array_equal(pad, np.broadcast_to(IDENTITY_POSE, pad.shape))
    elif key in ("body_quats", "hand_quats"):
      np.testing.assert_array_equal(pad, np.broadcast_to(IDENTITY_QUAT, pad.shape))
    else:
      np.testing.assert_array_equal(pad, 0)


def test_train_batch_shapes_masks_and_padding():
  source = in_memory(FAKE[:4])  # Lengths 5, 8, 11, 14; seq 0 has hands.
  batches = _batches(pipeline.train_dataset(source, seq_len=8, batch_size=3, seed=3), 8)
  for batch in batches:
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: ((3,) + s, d) for k, (s, d) in KEYS.items()}
    for j in range(3):
      _check_element(batch, j, source)
      t, start = int(batch["num_frames"][j]), int(batch["start"][j])
      assert 0 <= start <= max(t - 8, 0)
  # The 5-frame sequence is padded with 3 masked frames.
  short = [(b, j) for b in batches for j in range(3) if b["seq_index"][j] == 0]
  assert short and all(b["mask"][j].sum() == 5 for b, j in short)


def test_train_options_and_errors():
  source = in_memory(FAKE[:4])
  batch = next(iter(pipeline.train_dataset(source, seq_len=8, batch_size=2, hands=False)))
  assert "hand_quats" not in batch and batch["has_hands"].shape == (2,)
  with pytest.raises(ValueError, match="no full batch: 4 sequences x 1 epochs"):
    pipeline.train_dataset(source, seq_len=8, batch_size=3, shard_count=2, num_epochs=1)
  with pytest.raises(ValueError, match="shard_index < shard_count"):
    pipeline.train_dataset(source, seq_len=8, batch_size=3, shard_index=2, shard_count=2)


def test_train_start_is_uniform_over_valid_starts():
  starts = [pipeline.train_start(10, 8, np.random.default_rng(s)) for s in range(300)]
  counts = np.bincount(starts, minlength=3)
  assert len(counts) == 3 and counts.min() > 70  # Starts 0, 1, 2; ~100 each.
  assert pipeline.train_start(5, 8, np.random.default_rng(0)) == 0


def test_same_seed_same_batches_other_seed_differs():
  source = in_memory(FAKE)
  make = lambda seed: pipeline.train_dataset(source, seq_len=8, batch_size=4, seed=seed)
  a, b, c = _batches(make(5), 6), _batches(make(5), 6), _batches(make(6), 6)
  assert all(_same(x, y) for x, y in zip(a, b))
  assert not all(_same(x, y) for x, y in zip(a, c))


def test_epochs_are_permutations_reshuffled_each_epoch():
  source = in_memory(FAKE)
  ds = pipeline.train_dataset(source, seq_len=8, batch_size=4, seed=1, num_epochs=2)
  order = np.concatenate([b["seq_index"] for b in ds])
  assert len(order) == 24
  first, second = order[:12], order[12:]
  assert sorted(first) == sorted(second) == list(range(12))
  assert not np.array_equal(first, second)
  unshuffled = pipeline.train_dataset(source, seq_len=8, batch_size=4, shuffle=False,
                                      num_epochs=1)
  np.testing.assert_array_equal(np.concatenate([b["seq_index"] for b in unshuffled]),
                                np.arange(12))


def test_iterator_state_restores_identical_batches():
  source = in_memory(FAKE)
  ds = pipeline.train_dataset(source, seq_len=8, batch_size=5, seed=2)
  it = iter(ds)
  for _ in range(2):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(4)]  # Crosses an epoch boundary.
  fresh = iter(pipeline.train_dataset(source, seq_len=8, batch_size=5, seed=2))
  fresh.set_state(state)
  assert all(_same(x, next(fresh)) for x in expected)


def test_iterator_state_through_orbax(tmp_path):
  grain = pytest.importorskip("grain")
  ocp = pytest.importorskip("orbax.checkpoint")
  source = in_memory(FAKE)
  ds = pipeline.train_dataset(source, seq_len=8, batch_size=3, seed=4)
  it = iter(ds)
  next(it)
  checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
  checkpointer.save(tmp_path / "it", args=grain.checkpoint.CheckpointSave(it))
  expected = next(it)
  fresh = iter(ds)
  checkpointer.restore(tmp_path / "it", args=grain.checkpoint.CheckpointRestore(fresh))
  assert _same(expected, next(fresh))


def test_shards_are_disjoint_and_union_is_the_global_batch():
  source = in_memory(FAKE)
  kw = dict(seq_len=8, seed=9, num_epochs=1)
  whole = list(pipeline.train_dataset(source, batch_size=4, **kw))
  shards = [list(pipeline.train_dataset(source, batch_size=2, shard_index=p, shard_count=2,
                                        **kw)) for p in range(2)]
  assert len(whole) == len(shards[0]) == len(shards[1]) == 3
  for g, (a, b) in enumerate(zip(*shards)):
    union = {k: np.concatenate([a[k], b[k]]) for k in a}
    assert _same(union, whole[g])
  seen = [np.concatenate([b["seq_index"] for b in s]) for s in shards]
  assert not set(seen[0]) & set(seen[1])
  assert sorted(np.concatenate(seen)) == list(range(12))


def test_workers_give_the_same_batches():
  source = in_memory(FAKE[:6])
  kw = dict(seq_len=8, batch_size=3, seed=0)
  with_workers = _batches(pipeline.train_dataset(source, num_workers=1, **kw), 3)
  in_process = _batches(pipeline.train_dataset(source, **kw), 3)
  assert all(_same(x, y) for x, y in zip(with_workers, in_process))


def test_reads_the_dataset_directory(data_dir):
  source = tfds_builder.load_split(data_dir, "train")
  batch = next(iter(pipeline.train_dataset(data_dir, split="train", seq_len=8,
                                           batch_size=6, seed=0)))
  for j in range(6):
    _check_element(batch, j, source)
  assert sorted(batch["seq_index"]) == list(range(6))


# --- Evaluation windows.


def test_eval_windows_hand_computed():
  lengths = [5, 16, 17, 0]
  pad = pipeline.eval_windows(lengths, 8)
  np.testing.assert_array_equal(pad, [[0, 0], [1, 0], [1, 8], [2, 0], [2, 8], [2, 16]])
  drop = pipeline.eval_windows(lengths, 8, partial="drop")
  np.testing.assert_array_equal(drop, [[1, 0], [1, 8], [2, 0], [2, 8]])
  strided = pipeline.eval_windows([12], 8, stride=3, partial="drop")
  np.testing.assert_array_equal(strided, [[0, 0], [0, 3]])
  with pytest.raises(ValueError, match="partial must be"):
    pipeline.eval_windows(lengths, 8, partial="keep")


def test_eval_batches_in_order_with_filler():
  source = in_memory(FAKE[:4])  # Lengths 5, 8, 11, 14.
  batches = list(pipeline.eval_dataset(source, window_len=8, batch_size=4))
  windows = [[0, 0], [1, 0], [2, 0], [2, 8], [3, 0], [3, 8]]
  assert len(batches) == 2
  got = np.stack([np.concatenate([b["seq_index"] for b in batches]),
                  np.concatenate([b["start"] for b in batches])], 1)
  np.testing.assert_array_equal(got, windows + [[-1, 0], [-1, 0]])
  for b, batch in enumerate(batches):
    for j in range(4):
      if batch["seq_index"][j] >= 0:
        _check_element(batch, j, source)
  filler = batches[1]
  assert not filler["mask"][2:].any()
  np.testing.assert_array_equal(filler["body_quats"][3], np.broadcast_to(IDENTITY_QUAT, (8, 21, 4)))
  again = list(pipeline.eval_dataset(source, window_len=8, batch_size=4))
  assert all(_same(x, y) for x, y in zip(batches, again))
  dropped = list(pipeline.eval_dataset(source, window_len=8, batch_size=4, partial="drop",
                                       pad_final_batch=False))
  np.testing.assert_array_equal(np.concatenate([b["seq_index"] for b in dropped]), [1, 2, 3])


def test_eval_shards_union_is_the_unsharded_stream():
  source = in_memory(FAKE[:6])
  whole = list(pipeline.eval_dataset(source, window_len=8, batch_size=4))
  shards = [list(pipeline.eval_dataset(source, window_len=8, batch_size=2, shard_index=p,
                                       shard_count=2)) for p in range(2)]
  assert len(shards[0]) == len(shards[1]) == len(whole)
  for g, (a, b) in enumerate(zip(*shards)):
    assert _same({k: np.concatenate([a[k], b[k]]) for k in a}, whole[g])
