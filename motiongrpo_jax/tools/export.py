"""Exports one sample of an inference output to BVH or an AMASS-style npz.

    python -m motiongrpo_jax.tools.export --input=WORKDIR/outputs.npz \\
        --output=motion.bvh [--sample=0] [--smplh_npz=model.npz]
    python -m motiongrpo_jax.tools.export --input=WORKDIR/outputs.npz \\
        --output=motion.npz [--sample=0] [--nohands]

The format follows the output's suffix: `.bvh` (`export.bvh_writer`: SMPL
joint names, Y up, metres, 30 fps; opens in Blender, reads back with
`build_dataset --source=bvh --preset=smpl`) or `.npz` (`export.amass_npz`:
`poses (T, 156)` axis-angle, `trans`, `betas`; reads back with
`build_dataset --source=amass`). `--smplh_npz` gives the body whose rest
skeleton (BVH offsets) and rest pelvis (AMASS `trans`) are used; the
built-in body otherwise.
"""

from __future__ import annotations

import os
import pathlib

from absl import app
from absl import flags

from motiongrpo_jax import cli
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import smplh
from motiongrpo_jax.export import amass_npz
from motiongrpo_jax.export import bvh_writer
from motiongrpo_jax.export import motion as motion_lib

FLAGS = flags.FLAGS
FORMATS = (".bvh", ".npz")


def export(input_path: str | os.PathLike, output_path: str | os.PathLike,
           sample: int = 0, body: body_model.BodyModel | None = None,
           hands: bool = True) -> pathlib.Path:
  """Exports sample `sample` of an `outputs.npz` to `output_path`.

  Args:
    input_path: inference output (EgoAllo's layout, see `export.motion`).
    output_path: `.bvh` or `.npz`.
    sample: which sample.
    body: body model (rest skeleton / rest pelvis); built-in when None.
    hands: AMASS only: 156 pose values with hands (else 66).

  Returns:
    The path written.

  Raises:
    ValueError: an unknown output suffix, or a bad input file (named).
  """
  output_path = pathlib.Path(output_path)
  suffix = output_path.suffix.lower()
  if suffix not in FORMATS:
    raise ValueError(f"--output={output_path}: unknown format {suffix!r}; "
                     f"expected a file ending in one of {list(FORMATS)}")
  if not pathlib.Path(input_path).is_file():
    raise ValueError(f"--input={input_path}: no such file (expected an "
                     "inference outputs.npz)")
  motion = motion_lib.motion_from_outputs(input_path, sample)
  if suffix == ".bvh":
    return bvh_writer.write_bvh(output_path, motion, body)
  return amass_npz.write_amass_npz(output_path, motion, body, hands=hands)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  body = smplh.load_smplh(FLAGS.smplh_npz) if FLAGS.smplh_npz else None
  path = export(FLAGS.input, FLAGS.output, FLAGS.sample, body, FLAGS.hands)
  print(f"wrote {path} (sample {FLAGS.sample} of {FLAGS.input})")


def _define_flags() -> None:
  # Defined only when run as a program, so that importing this module as a
  # library registers no global flags.
  flags.DEFINE_string("input", None, "Inference output (outputs.npz).",
                      required=True)
  flags.DEFINE_string("output", None, "motion.bvh or motion.npz (AMASS).",
                      required=True)
  flags.DEFINE_integer("sample", 0, "Which sample of the output.")
  flags.DEFINE_string("smplh_npz", None,
                      "SMPL-H model.npz for the rest skeleton (optional).")
  flags.DEFINE_bool("hands", True,
                    "AMASS npz: poses (T, 156) with hands, else (T, 66).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
