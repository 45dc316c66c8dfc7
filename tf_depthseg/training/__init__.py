"""The training engine: a custom `tf.function` loop around pluggable tasks.

Modules:

* `loop`: the `Task` protocol (what a task implements: models, datasets, losses, metrics,
  pictures; documented in `loop`'s module docstring) and the `Trainer` that runs it:
  `Trainer(config, task, workdir).train()` -> `TrainResult`; `.evaluate()`.
* `schedules`: learning-rate schedules (constant, the SUW paper's two, step, poly, cosine,
  linear warmup) and `build_schedule(optim_config, total_steps, steps_per_epoch)`.
* `optimizers`: Adam / AdamW / SGD from `OptimConfig`, loss scaling for `mixed_float16`,
  `clip_by_global_norm` (reports the pre-clip norm).
* `distribute`: the strategy from `train.distribution` (default, Mirrored,
  MultiWorkerMirrored from `TF_CONFIG`) and logical CPU devices for tests.
* `checkpoints`: resume layout, determinism, keep-best, `restore_models` (evaluation, export),
  and initialising selected modules from another run.
* `summaries`: TensorBoard scalars and images without the `tensorboard` package.

What a run leaves in its workdir: `config.json`, `checkpoints/` (resumable state),
`best/` (+ `best.json`), `history.json` (learning curves), `logs/{train,eval}` (TensorBoard).
"""
