"""Learning-rate schedules: constant, the SUW paper's two, step, poly, cosine, linear warmup.

Every schedule is a `keras.optimizers.schedules.LearningRateSchedule`: the optimizer calls it
with its update counter (`optimizer.iterations`, 0 for the first update) inside the compiled
train step, so the schedules use only tensor ops (no Python branching on the step).

The paper's recipes (SUW-Learn supplement, training details), with epochs turned into steps by
`steps_per_epoch`:

* encoder-decoder: Adam, 1e-4, then 1e-5 after 10 epochs (`paper_encoder_decoder`),
* hourglass: Adam, 5e-4 divided by 10 every 5 epochs (`paper_hourglass`).

`build_schedule(optim_config, total_steps, steps_per_epoch)` maps `OptimConfig` to one of them.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

from tf_depthseg.config import OptimConfig


def _float_step(step):
    return ops.cast(step, "float32")


class Constant(keras.optimizers.schedules.LearningRateSchedule):
    """The same rate at every step."""

    def __init__(self, rate: float):
        self.rate = float(rate)

    def __call__(self, step):
        del step  # the same at every step
        return ops.convert_to_tensor(self.rate, dtype="float32")

    def get_config(self):
        return {"rate": self.rate}


class PiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """`values[i]` for `boundaries[i-1] <= step < boundaries[i]` (first value before the first
    boundary, last value from the last boundary on)."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        boundaries = [int(b) for b in boundaries]
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstant needs len(values) == len(boundaries) + 1, got "
                             f"{len(values)} values for {len(boundaries)} boundaries")
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])) or any(
                b < 0 for b in boundaries):
            raise ValueError(f"boundaries must be non-negative and strictly increasing, got "
                             f"{boundaries}")
        self.boundaries = boundaries
        self.values = [float(v) for v in values]

    def __call__(self, step):
        step = _float_step(step)
        rate = ops.full((), self.values[0], dtype="float32")
        for boundary, value in zip(self.boundaries, self.values[1:]):
            rate = ops.where(step >= float(boundary), value, rate)
        return rate

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values}


class ExponentialStaircase(keras.optimizers.schedules.LearningRateSchedule):
    """`rate * factor ** floor(step / period_steps)`: e.g. divide by 10 every 5 epochs."""

    def __init__(self, rate: float, period_steps: int, factor: float):
        if period_steps <= 0:
            raise ValueError(f"period_steps must be > 0, got {period_steps}")
        self.rate = float(rate)
        self.period_steps = int(period_steps)
        self.factor = float(factor)

    def __call__(self, step):
        periods = ops.floor(_float_step(step) / float(self.period_steps))
        return self.rate * ops.power(self.factor, periods)

    def get_config(self):
        return {"rate": self.rate, "period_steps": self.period_steps, "factor": self.factor}


def _decay_fraction(step, start_step: int, total_steps: int):
    """Fraction of the decay phase [start_step, total_steps] done at `step`, in [0, 1]."""
    span = float(max(total_steps - start_step, 1))
    return ops.clip((_float_step(step) - float(start_step)) / span, 0.0, 1.0)


class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`end + (rate - end) * (1 - t) ** power`, t going 0 -> 1 over [start_step, total_steps].

    `start_step` lets the decay begin after a warmup, so the peak rate is reached.
    """

    def __init__(self, rate: float, total_steps: int, power: float = 0.9,
                 end_rate: float = 0.0, start_step: int = 0):
        if total_steps <= start_step:
            raise ValueError(f"PolyDecay needs total_steps ({total_steps}) > start_step "
                             f"({start_step})")
        self.rate, self.end_rate = float(rate), float(end_rate)
        self.total_steps, self.start_step = int(total_steps), int(start_step)
        self.power = float(power)

    def __call__(self, step):
        t = _decay_fraction(step, self.start_step, self.total_steps)
        return self.end_rate + (self.rate - self.end_rate) * ops.power(1.0 - t, self.power)

    def get_config(self):
        return {"rate": self.rate, "total_steps": self.total_steps, "power": self.power,
                "end_rate": self.end_rate, "start_step": self.start_step}


class CosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`end + (rate - end) * (1 + cos(pi t)) / 2`, t going 0 -> 1 over [start_step, total]."""

    def __init__(self, rate: float, total_steps: int, end_rate: float = 0.0,
                 start_step: int = 0):
        if total_steps <= start_step:
            raise ValueError(f"CosineDecay needs total_steps ({total_steps}) > start_step "
                             f"({start_step})")
        self.rate, self.end_rate = float(rate), float(end_rate)
        self.total_steps, self.start_step = int(total_steps), int(start_step)

    def __call__(self, step):
        t = _decay_fraction(step, self.start_step, self.total_steps)
        return self.end_rate + (self.rate - self.end_rate) * 0.5 * (1.0 + ops.cos(math.pi * t))

    def get_config(self):
        return {"rate": self.rate, "total_steps": self.total_steps, "end_rate": self.end_rate,
                "start_step": self.start_step}


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Scales `schedule(step)` by `min(1, (step + 1) / warmup_steps)`.

    The `+ 1` makes the first update use a small non-zero rate instead of wasting it at 0;
    update `warmup_steps - 1` is the first at the full rate.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule,
                 warmup_steps: int):
        if warmup_steps <= 0:
            raise ValueError(f"warmup_steps must be > 0, got {warmup_steps}")
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        ramp = ops.minimum(1.0, (_float_step(step) + 1.0) / float(self.warmup_steps))
        return ramp * self.schedule(step)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "warmup_steps": self.warmup_steps}


def paper_encoder_decoder(rate: float, steps_per_epoch: int, decay_epochs: float = 10.0,
                          factor: float = 0.1) -> PiecewiseConstant:
    """SUW encoder-decoder: `rate` (1e-4) then `rate * factor` (1e-5) after `decay_epochs`."""
    _check_steps_per_epoch(steps_per_epoch, "paper_encoder_decoder")
    return PiecewiseConstant([int(round(decay_epochs * steps_per_epoch))],
                             [rate, rate * factor])


def paper_hourglass(rate: float, steps_per_epoch: int, decay_epochs: float = 5.0,
                    factor: float = 0.1) -> ExponentialStaircase:
    """SUW hourglass: `rate` (5e-4) multiplied by `factor` (1/10) every `decay_epochs` (5)."""
    _check_steps_per_epoch(steps_per_epoch, "paper_hourglass")
    return ExponentialStaircase(rate, int(round(decay_epochs * steps_per_epoch)), factor)


def _check_steps_per_epoch(steps_per_epoch: int, name: str) -> None:
    if steps_per_epoch is None or steps_per_epoch <= 0:
        raise ValueError(f"optim.schedule={name} counts in epochs, so it needs the number of "
                         f"steps per epoch (got {steps_per_epoch}); set train.steps_per_epoch "
                         "or let the task report its training-set size.")


def build_schedule(optim: OptimConfig, total_steps: int, steps_per_epoch: int = 0
                   ) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule `optim.schedule` describes, with `optim.warmup_steps` of linear warmup.

    Args:
      optim: the optimizer section (learning_rate, schedule, decay_* fields, warmup_steps).
      total_steps: length of the run (poly and cosine decay to `end_learning_rate` by then).
      steps_per_epoch: turns the paper schedules' epochs into steps.
    """
    rate, warmup = optim.learning_rate, optim.warmup_steps
    if optim.schedule == "constant":
        schedule = Constant(rate)
    elif optim.schedule == "paper_encoder_decoder":
        schedule = paper_encoder_decoder(rate, steps_per_epoch, optim.decay_epochs,
                                         optim.decay_rate)
    elif optim.schedule == "paper_hourglass":
        schedule = paper_hourglass(rate, steps_per_epoch, optim.decay_epochs, optim.decay_rate)
    elif optim.schedule == "step":
        if not optim.decay_steps:
            raise ValueError("optim.schedule=step needs optim.decay_steps, e.g. "
                             "--set optim.decay_steps=[1000,2000]")
        schedule = PiecewiseConstant(
            optim.decay_steps,
            [rate * optim.decay_rate ** i for i in range(len(optim.decay_steps) + 1)])
    elif optim.schedule == "poly":
        schedule = PolyDecay(rate, total_steps, optim.poly_power, optim.end_learning_rate,
                             start_step=warmup)
    elif optim.schedule == "cosine":
        schedule = CosineDecay(rate, total_steps, optim.end_learning_rate, start_step=warmup)
    else:
        raise ValueError(f"unknown optim.schedule {optim.schedule!r}")
    if warmup > 0:
        schedule = LinearWarmup(schedule, warmup)
    return schedule
