"""Training tasks for the engine (`tf_depthseg.training.loop.Trainer`), by `config.task`.

    task = make_task(config)          # a Task bound to the config
    Trainer(config, task, workdir).train()

`TASKS` maps the `ExperimentConfig.task` value to the task class; add new tasks here.
"""

from tf_depthseg.training.tasks.suw import SUWTask

TASKS = {"suw": SUWTask}


def make_task(config):
    """The task of `config.task`, bound to `config`."""
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; known: {sorted(TASKS)}")
    return TASKS[config.task]().bind(config)
