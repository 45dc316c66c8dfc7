"""The SUW train step with and without XLA (train.jit_compile, issue 18): it runs, its losses
are finite and of the same size, and a run resumes from its checkpoint in both modes.

S + U (ego-motion, pose net) on the tiny synthetic drives of test_tasks_suw, resized to 16x48
(stride 16: one pixel at the bottleneck), batch 2, one scale, one step then one more after a
restart (the XLA case's cost is its two compilations, one per Trainer): the depth and pose nets, the bins and view-synthesis
losses and the string source ids of the batch (which XLA cannot take) go through the
compiled step. (W adds the ranking loss, which compiles alone in test_losses_ranking.py.)
"""

import numpy as np
import pytest
import tensorflow as tf

from test_tasks_suw import tiny_config, write_tiny_records
from tf_depthseg import common
from tf_depthseg import config as cfg
from tf_depthseg.training import loop
from tf_depthseg.training.tasks import make_task
from tf_depthseg.training.tasks import suw as suw_task


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_tiny_records(str(tmp_path_factory.mktemp("suw_speed")), train_seeds=(4,),
                              eval_seeds=(4,), frames=4)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_suw_step_runs_and_resumes(records, tmp_path, jit_compile):
    config = tiny_config(records, "soft_classification", "ego", steps=1,
                         checkpoint_every=1, jit_compile=jit_compile)
    config = cfg.apply_overrides(config, ["data.batch_size=2", "suw.num_scales=1",
                                          "data.image_size=[16,48]"])
    workdir = str(tmp_path / "work")
    trainer = loop.Trainer(config, make_task(config), workdir)
    assert (trainer._forward == trainer._replica_forward) != jit_compile
    first = trainer.train()
    assert (first.start_step, first.final_step) == (0, 1)
    rows = trainer.history["train"]
    for key in (common.LOSS_TOTAL, common.LOSS_PHOTOMETRIC):
        values = np.array([row[key] for row in rows])
        assert np.all(np.isfinite(values)) and np.all(values > 0), (key, rows)

    resumed_config = cfg.apply_overrides(config, ["train.steps=2"])
    resumed = loop.Trainer(resumed_config, make_task(resumed_config), workdir)
    result = resumed.train()
    assert (result.start_step, result.final_step) == (1, 2)
    assert resumed.train_step_traces == 1
    assert [row["step"] for row in resumed.history["train"]] == [1, 2]
    assert np.isfinite(resumed.history["train"][-1][common.LOSS_TOTAL])


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_largest_object_ids_compile_with_xla(jit_compile):
    """The object-motion variant picks its objects inside the compiled step: the ids of the
    largest objects per map (background 0 never, 0 in unused slots, ties to the smaller id)
    against numpy, with and without XLA (tf.unique_with_counts had no XLA kernel)."""
    rng = np.random.default_rng(0)
    maps = rng.choice([0, 0, 0, 3, 7, 7, 12, 40], size=(4, 6, 9)).astype(np.int32)
    maps[1, :3] = 5  # 27 pixels: the largest
    maps[2] = 0  # no object
    maps[3] = np.where(np.arange(9) < 3, 9, np.where(np.arange(9) < 6, 4, 0))  # tie: 4 first
    pick = tf.function(lambda x: suw_task._largest_object_ids(x, 3), jit_compile=jit_compile)
    chosen = pick(tf.constant(maps)).numpy()
    for instance_map, ids in zip(maps, chosen):
        values, counts = np.unique(instance_map[instance_map > 0], return_counts=True)
        expected = [v for _, v in sorted(zip(-counts, values))][:3]
        assert ids.tolist() == expected + [0] * (3 - len(expected))
