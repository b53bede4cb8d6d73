"""Config for the `infer` mode: `--config=configs/infer.py[:variant]`.

    python -m motiongrpo_jax.main --config=configs/infer.py \\
        --config.input=path/to/mps_folder \\
        --config.checkpoint=runs/pretrain_demo --workdir=runs/infer_demo

Variants (the default is `default`):
  default  EgoAllo's 30-step sampler over the whole recording (windows of
           128 frames, 32 shared), one sample, a GIF of sample 0.
  quick    a preview: 10 DDIM steps (η = 1; EgoAllo's update is defined for
           its 30-step schedule only) and every second frame rendered.
Both write `WORKDIR/outputs.npz` (EgoAllo's output layout, see
`motiongrpo_jax/modes/infer.py`) and `WORKDIR/motion.<render>`.
"""

import ml_collections
from ml_collections import config_dict

from motiongrpo_jax import config_sections
from motiongrpo_jax.data import aria
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.guidance import residuals as guidance

VARIANTS = ("default", "quick")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config of a variant (locked by main.py)."""
  config = config_sections.base("infer", variant, VARIANTS)
  # Seed of the sampler's noise: sample s uses fold_in(key(seed), s).
  config.seed = 0
  # The head trajectory (required): an Aria MPS output folder (or its
  # `slam/` folder), a `closed_loop_trajectory.csv[.gz]`, or an `.npz` with
  # `T_world_cpf (T, 7)` wxyz_xyz at `fps` (optional `floor_z`,
  # `timestamps_ns (T,)`).
  config.input = ""
  # The denoiser (required): a pretrain or GRPO workdir (its latest
  # checkpoint), one checkpoint step directory, a model directory
  # (`model/params_io`) or an imported EgoAllo checkpoint directory.
  config.checkpoint = ""
  # Motions sampled for the trajectory (independent draws).
  config.num_samples = 1
  # Frame rate of the motion (Aria poses are resampled to it; an npz must
  # already be at it).
  config.fps = 30.0
  # First input pose used (poses before it are dropped).
  config.start_frame = 0
  # Most output frames (T; T + 1 input poses are read); 0 = to the end.
  config.max_frames = 0
  # Floor height in the input's world frame; None = from the input (the MPS
  # points, or the npz's `floor_z`; otherwise 1.6 m below the head).
  config.floor_z = config_dict.placeholder(float)
  # Aria only: the CPF in the device frame, "gen1_dvt_s" or "gen1_dvt_l"
  # (Gen 1 CAD values); not used with `aria_calibration`.
  config.aria_device = aria.DEFAULT_DEVICE
  # Aria only: reader of the MPS files: "auto" (projectaria-tools when
  # installed, `pip install .[aria]`, and able to read the file; else the
  # built-in one), "projectaria_tools" or "builtin".
  config.aria_reader = aria.DEFAULT_READER
  # Aria only: the recording's VRS file or its factory calibration JSON;
  # when set, `T_device_cpf` is its device calibration's (projectaria-tools).
  config.aria_calibration = ""
  # Aria only, with `aria_calibration`: the CPF aligned to the unit's
  # calibrated camera positions (projectaria-tools' SVD CPF) instead of the
  # CAD value of its subtype.
  config.aria_use_svd = False
  # Body model (use the body the dataset was built with).
  config.body = config_sections.body()

  # #### Sampler (`diffusion/sampler.py` SamplerConfig: its fields,
  # EgoAllo's defaults and their comments) ####
  config.sampler = config_sections.from_dataclass(sampler_lib.SamplerConfig)

  # #### Guidance (`guidance/residuals.py` GuidanceConfig: after sampling,
  # and with `inner` inside the sampler; "off" by default). With it on,
  # outputs.npz holds the guided samples and the sampler's own under
  # `unguided_*` ####
  config.guidance = config_sections.from_dataclass(guidance.GuidanceConfig)

  # #### Rendering ####
  config.render = ml_collections.ConfigDict()
  # Picture written after sampling: "gif", "mp4", "html" or "none".
  config.render.kind = "gif"
  # Sample shown.
  config.render.sample = 0
  # Render every `stride`-th frame (GIF/MP4 play at fps / stride).
  config.render.stride = 1
  # Frame size in pixels (GIF/MP4).
  config.render.size = 360

  if variant == "quick":
    config.sampler.num_steps = 10
    config.sampler.update = "ddim"
    config.render.stride = 2
  return config
