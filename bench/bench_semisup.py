"""Benchmark DepthMix's two disparity sources: SDE network in the step vs records.

Two Trainers of the semi-supervised task (semisup.mix=depthmix, the synthetic CamVid setting:
ResNet-18 student, teacher and SDE, batch 2 labelled + 2 unlabelled) on the same tiny stripe
records, one with `semisup.depth_source=network` (the frozen SDE runs on the unlabelled crop
in every step) and one with `records` (the disparity `tools/predict_pseudo_depth` stored is
decoded by the input pipeline). After one step each (tracing), their steps alternate
(network, records, network, ...) so that load from other processes hits both alike; the
median step time of each and their ratio are printed and written to
bench/results/bench_semisup.json.

The records source also pays once, before training, for `tools/predict_pseudo_depth` (one SDE
forward pass per training record): reported as the per-record prediction time.

Example:
    python bench/bench_semisup.py --size=64x64 --repeats=8

Measured (one run, 64x64, 8 alternating steps each, this project's 2-core CPU shared with
other jobs, so absolute times are inflated): network 13.5 s/step, records 11.0 s/step, ratio
network / records 1.23 (the SDE forward pass is about a fifth of the records step: one of
four network passes, the others with gradients or in training mode); predicting the records
cost 1.5 s per record once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_export_saved_model import save_like_engine  # noqa: E402
from test_tasks_seg import stripe_sample  # noqa: E402
from tf_depthseg import config as cfg  # noqa: E402
from tf_depthseg.data import records, schema  # noqa: E402
from tf_depthseg.training import loop  # noqa: E402
from tf_depthseg.training.tasks import make_task, semisup_depth  # noqa: E402
from tf_depthseg.training.tasks.sde_config import SDEConfig  # noqa: E402
from tf_depthseg.training.tasks.seg_config import SegConfig  # noqa: E402
from tf_depthseg.training.tasks.semisup_config import SemisupConfig  # noqa: E402


def write_inputs(root: str, size, count: int):
    """Stripe records resized to `size`, an SDE run (initial weights), and the records again
    with its pseudo disparity; returns (plain pattern, pseudo pattern, SDE run, s/record)."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(count):
        sample = stripe_sample(f"train/{index:03d}", rng)
        reps = (-(-size[0] // sample.image.shape[0]), -(-size[1] // sample.image.shape[1]))
        sample.image = np.tile(sample.image, reps + (1,))[:size[0], :size[1]]
        sample.semantic = np.tile(sample.semantic, reps)[:size[0], :size[1]]
        samples.append(sample)
    plain = os.path.join(root, "plain")
    records.write_split(plain, "train", (schema.encode_example(s) for s in samples), 2)
    sde_run = os.path.join(root, "sde")
    sde_config = cfg.ExperimentConfig(name="bench_sde", task="sde", task_sections={
        "sde": SDEConfig(backbone="resnet18", dilate_last_stage=False)})
    models = make_task(sde_config).build(sde_config)
    os.makedirs(sde_run)
    cfg.save_json(sde_config, sde_run)
    save_like_engine(models, os.path.join(sde_run, "checkpoints"), step=1)
    model, _ = semisup_depth.load_sde(sde_run)
    predict = semisup_depth.disparity_predictor(model)
    predict(samples[0].image)  # trace once
    pseudo = os.path.join(root, "pseudo")
    start = time.perf_counter()
    semisup_depth.write_pseudo_depth_records(records.split_pattern(plain, "train"), pseudo,
                                             predict)
    per_record = (time.perf_counter() - start) / count
    return (records.split_pattern(plain, "train"), records.split_pattern(pseudo, "train"),
            sde_run, per_record)


def make_config(pattern: str, size, source: str, sde_run: str):
    return cfg.ExperimentConfig(
        name=f"bench_{source}", task="semisup",
        data=cfg.DataConfig(train_pattern=pattern, keys=("image", "semantic"), num_context=0,
                            image_size=tuple(size), crop_size=tuple(size), batch_size=2,
                            shuffle_buffer=16, color_jitter=0.2),
        optim=cfg.OptimConfig(optimizer="sgd", learning_rate=1e-2, momentum=0.9,
                              weight_decay=5e-4, clip_norm=10.0),
        train=cfg.TrainConfig(steps=1000, log_every=1000, checkpoint_every=0, eval_every=0,
                              image_summaries_every=0, best_metric=""),
        task_sections={"seg": SegConfig(dataset="camvid", backbone="resnet18",
                                        dilate_last_stage=False, labeled_count=4),
                       "semisup": SemisupConfig(mix="depthmix", depth_source=source,
                                                sde_from=sde_run if source == "network"
                                                else "")})


def step_time(trainer) -> float:
    batch = trainer._distribute(trainer._next_batches())  # pylint: disable=protected-access
    start = time.perf_counter()
    trainer._train_step(batch)["grad_norm"].numpy()  # pylint: disable=protected-access
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="64x64", help="HxW of the training crops.")
    parser.add_argument("--repeats", type=int, default=8, help="Timed steps per source.")
    parser.add_argument("--records", type=int, default=8, help="Training records.")
    parser.add_argument("--output", default=os.path.join(REPO, "bench", "results",
                                                         "bench_semisup.json"))
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as root:
        plain, pseudo, sde_run, per_record = write_inputs(root, size, args.records)
        trainers = {}
        for source, pattern in (("network", plain), ("records", pseudo)):
            config = make_config(pattern, size, source, sde_run)
            trainers[source] = loop.Trainer(config, make_task(config),
                                            os.path.join(root, source))
            step_time(trainers[source])  # trace + first call
        times = {source: [] for source in trainers}
        for _ in range(args.repeats):
            for source, trainer in trainers.items():
                times[source].append(step_time(trainer))
    result = {"size": list(size), "repeats": args.repeats,
              "network_step_s": float(np.median(times["network"])),
              "records_step_s": float(np.median(times["records"])),
              "predict_pseudo_depth_s_per_record": per_record}
    result["network_over_records"] = result["network_step_s"] / result["records_step_s"]
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
