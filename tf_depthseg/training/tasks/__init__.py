"""Training tasks for the engine (`tf_depthseg.training.loop.Trainer`), by `config.task`.

    task = make_task(config)          # the Task of config.task (tasks keep no config state)
    task.check_config(config)         # the Trainer does this too
    Trainer(config, task, workdir).train()

`TASKS` maps the `ExperimentConfig.task` value to the task class. A task owns its config
sections (`Task.config_sections`, e.g. `{"suw": SUWConfig}`), registered with
`tf_depthseg.config` here (and by the section module itself). To add a task: a module with the
Task subclass and its section dataclass, one entry below.
"""

from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg.training.tasks.multitask import MultitaskTask
from tf_depthseg.training.tasks.sde import SDETask
from tf_depthseg.training.tasks.seg import SegTask
from tf_depthseg.training.tasks.semisup import SemisupTask
from tf_depthseg.training.tasks.suw import SUWTask

TASKS = {"suw": SUWTask, "sde": SDETask, "seg": SegTask, "semisup": SemisupTask,
         "multitask": MultitaskTask}

for _name, _task in TASKS.items():  # the sections config.py knows are the tasks' own
    config_lib.register_task_sections(_name, _task.config_sections)


def make_task(config):
    """A new task object for `config.task`."""
    if config.task not in TASKS:
        raise errors.ConfigError(f"task={config.task!r} is not a registered task; known: "
                                 f"{sorted(TASKS)}")
    return TASKS[config.task]()
