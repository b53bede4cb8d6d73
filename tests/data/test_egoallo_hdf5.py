"""Tests of the EgoAllo-HDF5 importer on a file in EgoAllo's exact layout."""

import h5py
import numpy as np
import pytest

from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import egoallo_hdf5
from motiongrpo_jax.data import records

GROUPS = (
    "ACCAD/Female1General_c3d/A1 - Stand_poses.npz",
    "ACCAD/Female1General_c3d/A1 - Stand_poses_reflect.npz",
    "HumanEva/S1/Walking_1_poses.npz",
    "Transitions_mocap/mazen_c3d/jump_poses.npz",
    "GRAB/s1/apple_poses.npz",
)


def _sequence(num_frames, seed, hands=True):
  """Arrays with EgoAllo's keys and shapes (float32), valid values."""
  rng = np.random.default_rng(seed)

  def quats(*shape):
    q = rng.normal(size=shape + (4,))
    return (q / np.linalg.norm(q, axis=-1, keepdims=True)).astype(np.float32)

  def poses():
    return np.concatenate([quats(num_frames), rng.normal(
        size=(num_frames, 3))], -1).astype(np.float32)

  out = dict(
      T_world_root=poses(),
      contacts=(rng.uniform(size=(num_frames, 21)) > 0.7).astype(np.float32),
      betas=rng.normal(size=(1, 16)).astype(np.float32),
      body_quats=quats(num_frames, 21),
      T_cpf_tm1_cpf_t=poses(), T_world_cpf=poses(),
      joints_wrt_cpf=rng.normal(size=(num_frames, 21, 3)).astype(np.float32))
  out["height_from_floor"] = out["T_world_cpf"][:, 6:7].copy()
  if hands:
    out["hand_quats"] = quats(num_frames, 30)
  return out


def write_hdf5(path, groups, drop=None):
  """EgoAllo's writer layout: a group per sequence, float32 datasets
  chunked by 32 frames along time; plus the list file beside it."""
  data = {}
  with h5py.File(path, "w") as f:
    for i, name in enumerate(groups):
      arrays = _sequence(40 + i, i, hands=i != 2)
      group = f.create_group(name)
      for key, value in arrays.items():
        if key == drop and i == 0:
          continue
        chunks = ((min(32, value.shape[0]),) + value.shape[1:]
                  if value.shape[0] != 1 else value.shape)
        group.create_dataset(key, data=value, chunks=chunks)
      data[name] = arrays
  list_path = path.with_name(path.stem + "_files.txt")
  list_path.write_text("\n".join(groups))
  return data, list_path


def test_import_as_is(tmp_path):
  data, list_path = write_hdf5(tmp_path / "egoalgo.hdf5", GROUPS)
  report = batch_import.ImportReport()
  out = {r.name: r for r in egoallo_hdf5.iter_records(
      tmp_path / "egoalgo.hdf5", file_list=str(list_path), report=report)}
  assert sorted(out) == sorted(GROUPS[:4])
  assert report.excluded == [GROUPS[4]]
  assert out[GROUPS[0]].split == out[GROUPS[1]].split == "train"
  assert out[GROUPS[2]].split == "val"
  assert out[GROUPS[3]].split == "test"
  for name, record in out.items():
    arrays = data[name]
    assert record.source == "egoallo_hdf5" and record.fps == 30.0
    np.testing.assert_array_equal(record.betas, arrays["betas"][0])
    for key in records.ARRAY_FIELDS:
      if key in ("betas", "hand_quats"):
        continue
      np.testing.assert_array_equal(getattr(record, key), arrays[key])
  assert out[GROUPS[2]].hand_quats is None
  np.testing.assert_array_equal(out[GROUPS[0]].hand_quats,
                                data[GROUPS[0]]["hand_quats"])
  # Without a list every sequence group is found; a custom rule applies.
  names = [r.name for r in egoallo_hdf5.iter_records(
      tmp_path / "egoalgo.hdf5", split_rule="*_reflect.npz=skip,*=train")]
  assert sorted(names) == sorted(set(GROUPS) - {GROUPS[1]})


def test_missing_dataset_names_group(tmp_path):
  path = tmp_path / "egoalgo.hdf5"
  _, list_path = write_hdf5(path, GROUPS, drop="joints_wrt_cpf")
  with pytest.raises(ValueError) as info:
    list(egoallo_hdf5.iter_records(path, file_list=str(list_path)))
  message = str(info.value)
  assert str(path) in message and GROUPS[0] in message
  assert "joints_wrt_cpf" in message
  report = batch_import.ImportReport()
  names = [r.name for r in egoallo_hdf5.iter_records(
      path, file_list=str(list_path), skip_bad=True, report=report)]
  assert GROUPS[0] not in names and len(names) == 3
  assert report.skipped[0][0] == f"{path}:{GROUPS[0]}"


def test_bad_shape_names_field(tmp_path):
  path = tmp_path / "egoalgo.hdf5"
  write_hdf5(path, GROUPS[:1])
  with h5py.File(path, "a") as f:
    del f[GROUPS[0]]["contacts"]
    f[GROUPS[0]].create_dataset("contacts", data=np.zeros((40, 22),
                                                          np.float32))
  with pytest.raises(ValueError, match=r"A1 - Stand_poses.npz.*contacts"):
    list(egoallo_hdf5.iter_records(path))
