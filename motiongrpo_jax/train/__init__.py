"""Training infrastructure shared by the training modes.

`state` (train state, optimiser, non-finite-safe update), `mesh` (device
mesh, global batches, the `shard_map` train/eval steps), `checkpoints` (Orbax
checkpoints, exact resume, `init_checkpoint`), `metrics_writer` (JSONL,
TensorBoard, progress line) and `loop` (the training loop).
"""
