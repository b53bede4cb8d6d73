"""Renders a motion npz to a GIF, an MP4 or a self-contained HTML viewer.

    python -m motiongrpo_jax.tools.render --input=WORKDIR/outputs.npz \\
        --output=motion.gif [--ground_truth=gt.npz] [--sample=0] \\
        [--layout=overlay|side_by_side] [--stride=1] [--size=360] \\
        [--nopoints] [--unguided]

The input is the inference output (`modes/infer.py`) or any npz with
`joints_world (T, 22, 3)` or `(S, T, 22, 3)`; see `render/motion_file.py`.
The kind comes from the output's suffix: `.gif`, `.mp4` (needs
`pip install imageio-ffmpeg`) or `.html` (plays offline in a browser);
`--output=viser` serves an interactive viser viewer on `--port` instead
(needs `pip install viser`). The GIF, MP4 and page draw the recording's
semi-dense points when the npz has them (`semidense_points`); a page of an
npz with guided and unguided samples holds both and switches between them.
"""

from __future__ import annotations

from absl import app
from absl import flags
from absl import logging

from motiongrpo_jax import cli
from motiongrpo_jax import render

_INPUT = flags.DEFINE_string("input", None, "Motion npz (e.g. outputs.npz).")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Picture to write: .gif, .mp4 or .html.")
_GROUND_TRUTH = flags.DEFINE_string(
    "ground_truth", None, "Optional npz drawn grey: joints_world or the same "
    "layout as --input (its sample 0).")
_SAMPLE = flags.DEFINE_integer("sample", 0, "Sample of --input to draw.")
_LAYOUT = flags.DEFINE_enum("layout", "overlay", ["overlay", "side_by_side"],
                            "Ground truth in the same view or beside it.")
_STRIDE = flags.DEFINE_integer("stride", 1,
                               "GIF/MP4: draw every stride-th frame.")
_SIZE = flags.DEFINE_integer("size", 360, "GIF/MP4: frame height in pixels.")
_PORT = flags.DEFINE_integer("port", 8080, "--output=viser: the server port.")
_POINTS = flags.DEFINE_boolean(
    "points", True, "Draw the npz's semidense_points (when it has them).")
_UNGUIDED = flags.DEFINE_boolean(
    "unguided", False, "Draw the unguided samples (unguided_* keys); a page "
    "holds both and opens on them.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _INPUT.value or not _OUTPUT.value:
    raise app.UsageError("--input and --output are required")
  if _OUTPUT.value == "viser":
    from motiongrpo_jax.render import viser_viewer  # pylint: disable=g-import-not-at-top
    motions = [render.load_motion(_INPUT.value, _SAMPLE.value,
                                  unguided=_UNGUIDED.value)]
    if _GROUND_TRUTH.value:
      motions.append(render.load_motion(_GROUND_TRUTH.value, 0,
                                        label="ground truth"))
    viser_viewer.serve(motions, _PORT.value)
    return
  path = render.render_file(_INPUT.value, _OUTPUT.value, _GROUND_TRUTH.value,
                            sample=_SAMPLE.value, layout=_LAYOUT.value,
                            stride=_STRIDE.value, size=_SIZE.value,
                            points=_POINTS.value, unguided=_UNGUIDED.value)
  logging.info("wrote %s", path)
  print(path)


if __name__ == "__main__":
  cli.run(main)
