"""Optimizers (Adam, AdamW, SGD with momentum), weight decay, and global-norm clipping.

The Trainer sums gradients across replicas itself, before clipping, because the global norm
must be the norm of the *summed* gradient (Keras clips each replica's partial gradient
separately, and then sums). The optimizers built here therefore take gradients that are
already summed and must not sum them again: `_PreReducedGradients` turns Keras' own
cross-replica sum into a pass-through. The two-device test
(`tests/test_training_distribute.py`) would catch a Keras change that reintroduced the sum.

Weight decay follows the usual (PyTorch and paper) meanings:

* `adam`, `sgd`: L2 regularisation added to the gradient, `g + weight_decay * w`, before the
  moments/momentum (Hoyer et al.'s SGD 5e-4 is this kind),
* `adamw`: decoupled weight decay, `w -= lr * weight_decay * w` (`keras.optimizers.AdamW`).

Parameter groups (`Task.param_groups`) get their own learning rate, the schedule's rate times
the group's `optim.lr_multipliers` entry (1 for groups not named). Scaling the gradient would
not do it: Adam is invariant to the gradient's scale. One optimizer serves all groups and
multiplies the rate per variable inside its update rule (`_GroupLearningRates`), so the
groups share the step counter, the schedule, the loss scale of `mixed_float16` and the global
clipping norm, and the checkpoint keeps one `optimizer` entry whatever the groups. The
decoupled decay of `adamw` uses the group's rate too (as PyTorch's per-group `lr` does).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from tf_depthseg import errors
from tf_depthseg.config import OptimConfig

if not hasattr(keras.optimizers.Adam, "_all_reduce_sum_gradients"):
    # Without this hook Keras would sum the already-summed gradients again, silently
    # multiplying them by the number of replicas; fail loudly instead.
    raise ImportError("this Keras version has no Optimizer._all_reduce_sum_gradients; "
                      "tf_depthseg.training.optimizers needs updating for it")


class _PreReducedGradients:
    """Mixin: the gradients given to `apply` are already summed over replicas."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class _GroupLearningRates:
    """Mixin: multiplies the learning rate of each variable by its group's multiplier."""

    _lr_multipliers: Tuple[float, ...] = ()  # by the variable's index in `build`; () = all 1

    def set_lr_multipliers(self, multipliers: Sequence[float]) -> None:
        """One multiplier per variable the optimizer was built on, in that order."""
        if len(multipliers) != len(self._trainable_variables):
            raise ValueError(f"{len(multipliers)} learning-rate multipliers for "
                             f"{len(self._trainable_variables)} variables")
        self._lr_multipliers = tuple(float(m) for m in multipliers)

    def _group_learning_rate(self, variable, learning_rate):
        if self._lr_multipliers:
            # A Python float chosen at trace time: no multiplication for 1x groups, so a
            # single-group run computes exactly what it did before groups existed.
            multiplier = self._lr_multipliers[self._get_variable_index(variable)]
            if multiplier != 1.0:
                learning_rate = learning_rate * multiplier
        return learning_rate

    def update_step(self, gradient, variable, learning_rate):
        return super().update_step(gradient, variable,
                                   self._group_learning_rate(variable, learning_rate))


class _CoupledL2:
    """Mixin: adds `l2 * variable` to each gradient before the optimizer's update rule."""

    def _init_l2(self, l2: float) -> None:
        self._l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self._l2 > 0.0:
            gradient = gradient + tf.cast(self._l2, gradient.dtype) * tf.cast(
                variable, gradient.dtype)
        return super().update_step(gradient, variable, learning_rate)


class _FusedAdamUpdate:
    """Mixin: Adam's update rule in TensorFlow's fused kernel (`ResourceApplyAdam`).

    Keras' Adam runs ~12 element-wise ops per variable, each a pass over the variable; the
    kernel is one pass, with Keras' arithmetic: `m += (g - m)(1 - b1)`, `v += (g^2 - v)(1 -
    b2)`, `w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, t = iterations + 1
    (docs/hoyer_speed.md: part of the SDE step's session-8 gain). Under a distribution strategy Keras calls this inside the strategy's
    per-replica update, where a mirrored variable's handle is that replica's copy; one device
    and two replicas must run the same update (test_training_distribute compares them to
    1e-5). Keras' own update for amsgrad.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class Adam(_PreReducedGradients, _GroupLearningRates, _CoupledL2, _FusedAdamUpdate,
           keras.optimizers.Adam):
    """Adam with optional L2 (coupled) weight decay; takes pre-summed gradients."""

    def __init__(self, learning_rate, l2: float = 0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._init_l2(l2)


class SGD(_PreReducedGradients, _GroupLearningRates, _CoupledL2, keras.optimizers.SGD):
    """SGD (momentum) with optional L2 (coupled) weight decay; takes pre-summed gradients."""

    def __init__(self, learning_rate, l2: float = 0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._init_l2(l2)


class AdamW(_PreReducedGradients, _GroupLearningRates, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` (decoupled weight decay); takes pre-summed gradients.

    The decay is applied in `update_step`, with the variable's group learning rate, instead of
    Keras' `_apply_weight_decay` pass over all variables at the base rate (same arithmetic,
    `w -= w * weight_decay * lr`, right before the Adam update of the same variable).
    """

    def _apply_weight_decay(self, variables):
        del variables  # see update_step

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self._group_learning_rate(variable, learning_rate)
        if self._use_weight_decay(variable):
            lr = tf.cast(learning_rate, variable.dtype)
            variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype) * lr)
        # Skips _GroupLearningRates.update_step: the rate is already the group's.
        return keras.optimizers.AdamW.update_step(self, gradient, variable, learning_rate)


def lr_multipliers(optim: OptimConfig, groups: Sequence[str]) -> Dict[str, float]:
    """Each group's learning-rate multiplier from `optim.lr_multipliers` (1 if not named).

    Raises:
      errors.ConfigError: `optim.lr_multipliers` names a group that is not in `groups`, or
        names one twice (`OptimConfig` itself refuses negative multipliers).
    """
    multipliers = {name: 1.0 for name in groups}
    named = set()
    for name, multiplier in optim.lr_multipliers:
        if name not in multipliers:
            raise errors.ConfigError(
                f"optim.lr_multipliers names the parameter group '{name}', which this task "
                f"does not have; its groups are {list(groups)}. Use one of those names.")
        if name in named:
            raise errors.ConfigError(f"optim.lr_multipliers names the group '{name}' twice; "
                                     "give each group one multiplier.")
        named.add(name)
        multipliers[name] = float(multiplier)
    return multipliers


def build_optimizer(optim: OptimConfig, learning_rate, mixed_precision: str = "float32",
                    param_groups: Optional[Mapping[str, Sequence]] = None
                    ) -> keras.optimizers.Optimizer:
    """The optimizer `optim` describes, wrapped for loss scaling under `mixed_float16`.

    Args:
      optim: the optimizer section (optimizer, weight_decay, momentum, lr_multipliers).
      learning_rate: a float or a `LearningRateSchedule` (see `schedules.build_schedule`).
      mixed_precision: the Keras dtype policy; float16 needs dynamic loss scaling so small
        gradients do not underflow, bfloat16 has float32's range and does not.
      param_groups: group name -> variables. If given, the optimizer is built on the groups'
        variables concatenated in order (`apply` takes gradients in that order), and each
        group trains at `learning_rate` times its `lr_multipliers` entry. Without it the
        optimizer is unbuilt and every variable trains at `learning_rate`.

    Returns:
      A Keras optimizer. Gradient clipping is not configured on it: the Trainer clips by the
      global norm of the replica-summed gradient of all groups (`clip_by_global_norm`).

    Raises:
      errors.ConfigError: a bad `optim.lr_multipliers` (see `lr_multipliers`).
    """
    if optim.optimizer == "adam":
        optimizer = Adam(learning_rate, l2=optim.weight_decay)
    elif optim.optimizer == "adamw":
        optimizer = AdamW(learning_rate=learning_rate, weight_decay=optim.weight_decay)
    elif optim.optimizer == "sgd":
        optimizer = SGD(learning_rate, l2=optim.weight_decay, momentum=optim.momentum)
    else:
        raise ValueError(f"unknown optim.optimizer {optim.optimizer!r}; use adam, adamw or sgd")
    inner = optimizer
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if param_groups is not None:
        multipliers = lr_multipliers(optim, list(param_groups))
        variables = [v for group in param_groups.values() for v in group]
        optimizer.build(variables)
        if any(m != 1.0 for m in multipliers.values()):
            inner.set_lr_multipliers([multipliers[name] for name, group in param_groups.items()
                                      for _ in group])
    return optimizer


def loss_scale(optimizer: keras.optimizers.Optimizer):
    """The current loss scale (1.0 without a `LossScaleOptimizer`)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale if optimizer.built else optimizer.initial_scale
    return 1.0


def clip_by_global_norm(grads: Sequence[tf.Tensor], clip_norm: float, scale=1.0
                        ) -> Tuple[List[tf.Tensor], tf.Tensor]:
    """Clips gradients by their global norm; returns (gradients, norm before clipping).

    Args:
      grads: gradients (None entries are kept as None), possibly multiplied by a loss scale.
      clip_norm: maximum global norm of the *unscaled* gradients; 0 turns clipping off.
      scale: the loss scale the gradients carry. Clipping scaled gradients at
        `clip_norm * scale` equals clipping unscaled ones at `clip_norm`, so the loss-scale
        optimizer can still unscale (and detect overflow) afterwards.

    Returns:
      The (clipped) gradients and the global norm of the unscaled gradients before clipping
      (inf/nan when a gradient overflowed).
    """
    present = [g for g in grads if g is not None]
    if not present:
        raise ValueError("no gradients: the loss does not depend on any trainable variable")
    scale = tf.cast(scale, tf.float32)
    scaled_norm = tf.linalg.global_norm([tf.cast(g, tf.float32) for g in present])
    if clip_norm > 0:
        clipped, _ = tf.clip_by_global_norm(present, clip_norm * scale, use_norm=scaled_norm)
        clipped_iter = iter(clipped)
        grads = [None if g is None else next(clipped_iter) for g in grads]
    return list(grads), scaled_norm / scale
