"""Tests for the eval mode: outputs, determinism, the ground-truth sanity of
the posing path (root from the input CPF), one compilation, bad input."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import geometry
from motiongrpo_jax.configs import eval as eval_config
from motiongrpo_jax.data import condition_noise
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import synthetic
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import evaluate as evaluate_lib
from motiongrpo_jax.eval import metrics
from motiongrpo_jax.eval import posing
from motiongrpo_jax.model import packing
from motiongrpo_jax.model import params_io
from motiongrpo_jax.modes import eval as eval_mode
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import mesh as mesh_lib

from conftest import save_tiny_denoiser

# Three synthetic test sequences of 40 frames (consistent with the built-in
# body, so the ground truth's CPF is the body's); L = 8 gives windows of 9
# poses: 4 per sequence, 12 in all; batches of 5 leave 3 filler windows.
_NUM_SEQUENCES, _NUM_FRAMES, _L, _BATCH = 3, 40, 8, 5
_WINDOWS = _NUM_SEQUENCES * (_NUM_FRAMES // (_L + 1))
EPS = float(np.finfo(np.float32).eps)  # 1.19e-7
# Two float32 samplers that sum in different orders (EgoAllo's and ours in
# tests/diffusion/test_diffusion_rollout.py) end 30 steps ≤ 1.5e-6 apart in
# the packed state: ≤ 1.5e-6 m through ≤ 1 m of limb chain, plus ≲ 4
# roundings of world coordinates ≤ 8 m.
_JOINT_SPREAD_M = 1.5e-6 + 4 * EPS * 8



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  tfds_builder.build(
      lambda: synthetic.synthetic_records(
          _NUM_SEQUENCES, seed=3, num_frames=(_NUM_FRAMES, _NUM_FRAMES),
          split="test"), path)
  return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A tiny denoiser with random params, body rotations near 3·I + noise
  (well conditioned: float round-off stays round-off in the metrics)."""
  return save_tiny_denoiser(tmp_path_factory.mktemp("models") / "tiny",
                            param_std=0.2, rotation_bias=3.0)


def _config(model_dir, data_dir, **overrides):
  config = eval_config.get_config("demo")
  config.checkpoint = str(model_dir)
  config.num_samples = 2
  config.data.update(data_dir=str(data_dir), seq_len=_L, batch_size=_BATCH,
                     build_synthetic_if_missing=False)
  config.sampler.update = "ddim"  # EgoAllo's σ needs more than 2 steps.
  config.sampler.num_steps = 2
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _read_csv(workdir):
  with open(workdir / eval_mode.PER_SEQUENCE_FILE, newline="") as f:
    return list(csv.DictReader(f))


def _metric_table(rows):
  return np.array([[float(r[n]) for n in metrics.METRIC_NAMES] for r in rows])


@pytest.fixture(scope="module")
def first_run(model_dir, data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("eval_a")
  summary = eval_mode.run(_config(model_dir, data_dir), str(workdir))
  return workdir, summary


def test_writes_metrics_and_csv(first_run):
  workdir, summary = first_run
  written = json.loads((workdir / eval_mode.METRICS_FILE).read_text())
  assert written == json.loads(json.dumps(summary))
  for name in metrics.METRIC_NAMES:
    assert set(written[name]) == {"mean", "stderr"}
    assert np.isfinite(written[name]["mean"])
    assert np.isfinite(written[name]["stderr"])
  meta = written["metadata"]
  assert (meta["split"], meta["seq_len"], meta["window_len"]) == ("test", _L,
                                                                  _L + 1)
  assert (meta["num_windows"], meta["num_samples"]) == (_WINDOWS, 2)
  assert meta["num_rows"] == 2 * _WINDOWS and meta["num_sequences"] == 3
  assert meta["checkpoint_kind"] == "model"
  rows = _read_csv(workdir)
  assert len(rows) == 2 * _WINDOWS
  assert list(rows[0])[:5] == ["seq_index", "name", "start", "sample",
                               "num_frames"]
  # Windows in order, both samples of each, all frames valid.
  expected = [(i, s, k) for i in range(3) for s in range(0, 36, 9)
              for k in range(2)]
  assert [(int(r["seq_index"]), int(r["start"]), int(r["sample"]))
          for r in rows] == expected
  assert {r["num_frames"] for r in rows} == {str(_L)}
  assert rows[0]["name"].startswith("synthetic/")
  # The summary is the mean of the rows; the two samples differ.
  table = _metric_table(rows)
  np.testing.assert_allclose(
      [written[n]["mean"] for n in metrics.METRIC_NAMES], table.mean(0),
      rtol=1e-6)
  assert np.abs(table[0::2, 0] - table[1::2, 0]).max() > 2e-3  # mm
  # A random network puts the body far off: MPJPE well above 1 cm.
  assert written["mpjpe"]["mean"] > 10.0


def test_deterministic(first_run, model_dir, data_dir, tmp_path):
  workdir, _ = first_run
  eval_mode.run(_config(model_dir, data_dir), str(tmp_path / "same"))
  np.testing.assert_array_equal(_metric_table(_read_csv(tmp_path / "same")),
                                _metric_table(_read_csv(workdir)))


@pytest.mark.parametrize("options", [
    {"guidance.iterations": 5},  # post
    {"guidance.inner": True, "guidance.inner_iterations": 2,
     "guidance.post": False},  # inner only: 2 LM iterations on each step's x̂0
], ids=["post", "inner"])
def test_guidance_is_paired_with_the_unguided_samples(first_run, model_dir,
                                                       data_dir, tmp_path,
                                                       options):
  """Post or inner guidance: the unguided columns are the guidance-off run's
  samples (same keys: inner guidance samples twice), the change is reported
  per metric, and the jittery samples of a random network come out
  smoother."""
  workdir, _ = first_run
  summary = eval_mode.run(
      _config(model_dir, data_dir, **{"guidance.mode": "no_hands"}, **options),
      str(tmp_path / "guided"))
  rows = _read_csv(tmp_path / "guided")
  unguided = np.array([[float(r[evaluate_lib.UNGUIDED + n])
                        for n in metrics.METRIC_NAMES] for r in rows])
  mpjpe = metrics.METRIC_NAMES.index("mpjpe")
  # The same sampler in a larger program: at most the float32 spread of two
  # summation orders (see _JOINT_SPREAD_M), in mm.
  np.testing.assert_allclose(unguided[:, mpjpe],
                             _metric_table(_read_csv(workdir))[:, mpjpe],
                             rtol=0, atol=1e3 * _JOINT_SPREAD_M)
  assert set(summary["guidance_change"]) == set(metrics.METRIC_NAMES)
  jitter = summary["guidance_change"]["jitter"]
  assert jitter["windows"] == _WINDOWS
  assert summary["jitter"]["mean"] < summary["unguided"]["jitter"]["mean"]
  assert jitter["ci_high"] < 0


def test_wrist_guidance_pulls_the_wrists_to_the_targets(first_run, model_dir,
                                                        data_dir, tmp_path):
  """aria_wrist_only on noiseless ground-truth wrist targets: a random
  network's wrists (metres off) come most of the way to the ground truth, and
  the arms with them."""
  summary = eval_mode.run(
      _config(model_dir, data_dir, **{"guidance.mode": "aria_wrist_only",
                                      "guidance.iterations": 5,
                                      "wrist_target_noise.kind": "none"}),
      str(tmp_path / "wrists"))
  unguided = summary["unguided"]
  assert summary["wrist_error"]["mean"] < 0.5 * unguided["wrist_error"]["mean"]
  assert summary["guidance_change"]["arm_mpjpe"]["ci_high"] < 0


def test_ground_truth_wrists_are_the_wrist_joints_plus_noise(data_dir):
  batch = next(iter(pipeline.eval_dataset(
      data_dir, split="test", window_len=_L + 1, batch_size=4, hands=False)))
  batch = jax.tree.map(jnp.asarray, batch)
  body = body_lib.builtin_body()
  joints = posing.pose_ground_truth(
      batch["betas"], batch["T_world_root"][:, 1:], batch["body_quats"][:, 1:],
      body).joints[:, :, [20, 21]]  # left, right wrist
  key = jax.random.key(3)
  noise = lambda kind: condition_noise.ConditionNoiseConfig(  # pylint: disable=unnecessary-lambda-assignment
      kind=kind, amplitude=0.02)
  exact = evaluate_lib.ground_truth_wrists(batch, body, key, noise("none"))
  assert exact.shape == (4, _L, 2, 7)
  np.testing.assert_array_equal(exact[..., :4], np.broadcast_to(
      [1.0, 0.0, 0.0, 0.0], (4, _L, 2, 4)))
  np.testing.assert_array_equal(exact[..., 4:], joints)
  mask = np.asarray(evaluate_lib.output_mask(batch["mask"]))
  steps = {}
  for kind in ("gaussian", "perlin"):
    noisy = evaluate_lib.ground_truth_wrists(batch, body, key, noise(kind))
    # Per window, wrist and axis: zero mean and RMS 0.02 over valid frames.
    # Each offset is read back as (position + noise) − position in float32:
    # off by at most one ulp of the largest coordinate, the bound below.
    tol = 2 * float(np.spacing(np.abs(np.asarray(noisy[..., 4:])).max()))
    for w in range(4):
      o = np.asarray(noisy[w, :, :, 4:] - joints[w])[mask[w]]
      np.testing.assert_allclose(o.mean(0), 0.0, atol=tol)
      np.testing.assert_allclose(np.sqrt((o**2).mean(0)), 0.02, atol=tol)
    # Mean |frame-to-frame change| over valid pairs, relative to the RMS.
    pairs = mask[:, 1:] & mask[:, :-1]
    steps[kind] = np.abs(np.diff(np.asarray(noisy[..., 4:] - joints), axis=1)
                         )[pairs].mean() / 0.02
    # A window's draw depends on its key and identity, not on the batch.
    again = evaluate_lib.ground_truth_wrists(
        jax.tree.map(lambda a: a[2:], batch), body, key, noise(kind))
    np.testing.assert_array_equal(again, noisy[2:])
  # Over 8-frame windows (zero mean, unit RMS each) the mean of 24 channels
  # is 1.25 ± 0.05 for i.i.d. frames and 0.47 ± 0.02 for Perlin of 0.5–2 Hz
  # at 30 fps (400 draws per kind; 2,000 means of 24 channels all within
  # [1.07, 1.40] and [0.42, 0.55]).
  assert steps["gaussian"] > 0.9 and steps["perlin"] < 0.7


def _gt_packed(batch):
  """The ground truth of output frames 1..L as a packed sample (B, 1, L, d)."""
  seq_len = batch["mask"].shape[1] - 1
  betas = jnp.broadcast_to(batch["betas"][:, None], (batch["betas"].shape[0],
                                                     seq_len, 16))
  x0 = packing.pack(betas, geometry.quat_to_matrix(batch["body_quats"][:, 1:]),
                    batch["contacts"][:, 1:])
  return x0[:, None]


def test_ground_truth_scores_zero(data_dir):
  batch = next(iter(pipeline.eval_dataset(
      data_dir, split="test", window_len=_L + 1, batch_size=4, hands=False)))
  batch = jax.tree.map(jnp.asarray, batch)
  body = body_lib.builtin_body()
  score = jax.jit(lambda x0, b: evaluate_lib.score_samples(x0, b, body, 30.0))
  scores = score(_gt_packed(batch), batch)
  assert set(scores) == set(metrics.METRIC_NAMES)
  # The GT through the prediction path (root placed from the input CPF)
  # lands on the GT: float32 round-off only (the data is made with the same
  # body, so its CPF is the body's CPF).
  for name, bound in [("mpjpe", 1e-2), ("pampjpe", 1e-2),
                      ("pampjpe_egoallo_compat", 1e-2), ("t_head", 1e-2),
                      ("mpjve", 0.5), ("mpjre", 1e-2)]:
    assert np.asarray(scores[name]).shape == (4, 1)
    assert np.all(np.asarray(scores[name]) < bound), (name, scores[name])
  # Moving the input CPF by 10 cm moves the whole predicted body by 10 cm:
  # MPJPE = 100 mm, PA-MPJPE still 0.
  shifted = dict(batch, T_world_cpf=batch["T_world_cpf"].at[..., 4].add(0.1))
  gt_joints = posing.pose_ground_truth(
      batch["betas"], batch["T_world_root"][:, 1:], batch["body_quats"][:, 1:],
      body).joints
  pred = posing.pose_sample(_gt_packed(batch)[:, 0],
                             shifted["T_world_cpf"][:, 1:], body)
  # Two float32 FK paths, ≲ 16 roundings of world coordinates ≤ 8 m.
  np.testing.assert_allclose(pred.joints - gt_joints,
                             np.broadcast_to([0.1, 0, 0], gt_joints.shape),
                             atol=16 * EPS * 8)
  # Through score_samples: the GT comes from the batch's pelvis poses, the
  # prediction from its (shifted) CPF: MPJPE = T_head = 100 mm, PA-MPJPE 0.
  moved = score(_gt_packed(batch), shifted)
  np.testing.assert_allclose(moved["mpjpe"], 100.0, atol=1e-2)
  np.testing.assert_allclose(moved["t_head"], 100.0, atol=1e-2)
  np.testing.assert_allclose(moved["pelvis_error"], 100.0, atol=1e-2)
  np.testing.assert_allclose(moved["root_relative_mpjpe"], 0.0, atol=1e-2)
  np.testing.assert_allclose(moved["mpjve"], 0.0, atol=0.5)
  # float32 round-off only: ≲ 16 roundings of coordinates ≤ 8 m, in mm.
  assert np.all(np.asarray(moved["pampjpe"]) < 16 * EPS * 8 * 1000)


def _close_rows(rows, reference):
  """Equal metrics up to float round-off of differently batched matmuls:
  joints within _JOINT_SPREAD_M (δ), times each metric's sensitivity to them
  (jitter, a third difference times fps³, amplifies it most)."""
  got, want = _metric_table(rows), _metric_table(reference)
  d, fps = _JOINT_SPREAD_M, 30.0
  atol = {"mpjpe": 1000 * d, "pampjpe": 2000 * d,  # + the alignment's change
          "pampjpe_egoallo_compat": 2000 * d, "t_head": 1000 * d,
          "pelvis_error": 1000 * d, "root_relative_mpjpe": 2000 * d,
          "arm_mpjpe": 1000 * d, "wrist_error": 1000 * d,
          "mpjve": 1000 * 2 * d * fps,  # two frames' error, times fps
          "mpjre": np.degrees(8 * 1.5e-6),  # ≤ 8 chained rotations' spread
          "jitter": 8 * d * fps**3,  # |1| + |3| + |3| + |1| frames, fps³
          "ground_penetration": 1000 * d,
          # 4 feet × L steps × (4 coordinates + steps < 1 m times the
          # weight's slope 2·ln 2/0.04 m on both heights)
          "foot_skate": 4 * _L * (4 + 2 * 35 * 1.0) * d,
          "foot_contact": 0.0}  # 0 or 1: no foot within δ of its threshold
  for i, name in enumerate(metrics.METRIC_NAMES):
    np.testing.assert_allclose(got[:, i], want[:, i], rtol=0,
                               atol=atol[name], err_msg=name)


def test_one_compilation_and_batch_independence(first_run, data_dir,
                                                model_dir):
  model, params = checkpoints.load_denoiser(str(model_dir))
  sampler = sampler_lib.SamplerConfig(num_steps=2, update="ddim",
                                     return_means=False)
  eval_fn = evaluate_lib.make_eval_fn(
      sampler_lib.model_apply_fn(model), model.config.packed_dim,
      body_lib.builtin_body(), sampler, num_samples=1, fps=30.0)
  mesh = mesh_lib.make_mesh()
  key = jax.random.PRNGKey(0)

  def batches(partial):
    return pipeline.eval_dataset(data_dir, split="test", window_len=_L + 1,
                                 batch_size=_BATCH, partial=partial,
                                 hands=False)

  # "pad" keeps each sequence's last window of 4 poses (3 frames): counted
  # but left out of the rows (fewer than 4 frames); max_windows stops early.
  rows, seen = evaluate_lib.evaluate(eval_fn, params, batches("pad"), key,
                                     mesh, max_windows=7)
  assert seen == 7 and len(rows) == 6
  assert [(r["seq_index"], r["start"]) for r in rows][3:5] == [(0, 27), (1, 0)]
  rows, seen = evaluate_lib.evaluate(eval_fn, params, batches("drop"), key,
                                     mesh)
  assert seen == _WINDOWS and len(rows) == _WINDOWS
  # Sample 0 of each window is the mode's sample 0 (2 samples per window,
  # so twice the sampler batch): keys are per window and sample.
  reference = [r for r in _read_csv(first_run[0]) if r["sample"] == "0"]
  _close_rows(rows, reference)
  other, _ = evaluate_lib.evaluate(eval_fn, params, batches("drop"),
                                   jax.random.PRNGKey(1), mesh)
  # Another seed: other samples. (This random network's output is dominated
  # by its biases, so samples differ by ~0.01 mm MPJPE; the batching
  # round-off above is ~1.5e-4 mm.)
  assert max(abs(a["mpjpe"] - b["mpjpe"]) for a, b in zip(rows, other)) > 2e-3
  # Three passes over batches of 5 (the last ones completed with filler):
  # one compiled program.
  assert eval_fn.func._cache_size() == 1  # pylint: disable=protected-access


def test_unknown_variant():
  with pytest.raises(ValueError, match="unknown variant 'nope'"):
    eval_config.get_config("nope")


def test_missing_checkpoint(tmp_path, data_dir):
  with pytest.raises(FileNotFoundError, match="config.checkpoint=.*does not exist"):
    eval_mode.run(_config(tmp_path / "absent", data_dir), str(tmp_path / "w"))
  config = _config(tmp_path, data_dir, checkpoint="")
  with pytest.raises(ValueError, match="config.checkpoint is empty"):
    eval_mode.run(config, str(tmp_path / "w"))
  with pytest.raises(ValueError, match="config.checkpoint=.*not a checkpoint"):
    eval_mode.run(_config(data_dir, data_dir), str(tmp_path / "w"))


def test_corrupt_checkpoint(tmp_path, model_dir, data_dir):
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / params_io.CONFIG_FILE).write_text(
      (model_dir / params_io.CONFIG_FILE).read_text())
  (broken / params_io.PARAMS_DIR).mkdir()
  (broken / params_io.PARAMS_DIR / "garbage").write_bytes(b"\x00not orbax")
  with pytest.raises(FileNotFoundError, match="config.checkpoint=.*_METADATA"):
    eval_mode.run(_config(broken, data_dir), str(tmp_path / "w"))
  (broken / params_io.PARAMS_DIR / "_METADATA").write_text("{not json")
  with pytest.raises(ValueError, match="config.checkpoint=.*cannot load"):
    eval_mode.run(_config(broken, data_dir), str(tmp_path / "w"))
  step = tmp_path / "run" / "checkpoints" / "5" / "state"
  step.mkdir(parents=True)
  (step / "junk").write_bytes(b"\x00")
  (tmp_path / "run" / params_io.CONFIG_FILE).write_text(
      (model_dir / params_io.CONFIG_FILE).read_text())
  with pytest.raises(ValueError, match="config.checkpoint="):
    eval_mode.run(_config(step.parent, data_dir), str(tmp_path / "w"))


def test_missing_split_and_data(tmp_path, model_dir, data_dir):
  with pytest.raises(ValueError, match="config.data.split='val'.*not in"):
    eval_mode.run(_config(model_dir, data_dir, **{"data.split": "val"}),
                  str(tmp_path / "w"))
  with pytest.raises(FileNotFoundError, match="config.data.data_dir"):
    eval_mode.run(_config(model_dir, tmp_path / "nothing"), str(tmp_path / "w"))


def test_config_checks(model_dir, data_dir):
  for key, value, match in [
      ("num_samples", 0, "num_samples"), ("data.seq_len", 3, "seq_len"),
      ("data.partial", "keep", "partial"), ("data.batch_size", 0, "batch_size"),
      ("sampler.update", "euler", "config.sampler"),
      ("sampler.update", "egoallo", "config.sampler.*σ too large"),
      ("guidance.mode", "hands", "config.guidance.mode"),
      ("wrist_target_noise.amplitude", -0.01,
       r"^config\.wrist_target_noise\.amplitude"),
      ("wrist_target_noise.kind", "smooth", r"^config\.wrist_target_noise\.kind"),
      ("guidance.cg_iterations", 0, "config.guidance.cg_iterations")]:
    with pytest.raises(ValueError, match=match):
      eval_mode.validate(_config(model_dir, data_dir, **{key: value}))
