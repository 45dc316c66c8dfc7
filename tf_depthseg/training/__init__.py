"""The training engine: a custom `tf.function` loop around pluggable tasks.

Modules:

* `loop`: the `Task` protocol (what a task implements: models, frozen models, named input
  streams with their own batch sizes, losses, an in-step `after_apply` hook for EMA teachers,
  parameter groups, metrics, pictures, the served model; documented in `loop`'s module
  docstring) and the `Trainer` that runs it: `Trainer(config, task, workdir).train()` ->
  `TrainResult`; `.evaluate()`.
* `schedules`: learning-rate schedules (constant, the SUW paper's two, step, poly, cosine,
  linear warmup) and `build_schedule(optim_config, total_steps, steps_per_epoch)`.
* `optimizers`: Adam / AdamW / SGD from `OptimConfig`, learning-rate multipliers per
  parameter group (`optim.lr_multipliers`), loss scaling for `mixed_float16`,
  `clip_by_global_norm` over all groups (reports the pre-clip norm).
* `distribute`: the strategy from `train.distribution` (default, Mirrored,
  MultiWorkerMirrored from `TF_CONFIG`) and logical CPU devices for tests.
* `checkpoints`: resume layout, determinism, keep-best, `restore_models` (evaluation, export),
  and initialising selected modules from another run.
* `summaries`: TensorBoard scalars and images without the `tensorboard` package.

What a run leaves in its workdir: `config.json`, `checkpoints/` (resumable state: every model,
frozen ones included, the optimizer, step, RNG, and one input iterator per stream),
`best/` (+ `best.json`), `history.json` (learning curves), `logs/{train,eval}` (TensorBoard).
"""
